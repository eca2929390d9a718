"""Indexing speed work: preprocessing in the decode workers, the thread policy, int8/bf16 precision, the GPU script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from media_factory import make_image
from torch import nn

from searchengine import threads
from searchengine.bundles.bundle import load_bundle
from searchengine.bundles.precision import quantizable_linears, resolve_precision
from searchengine.cli import cli
from searchengine.errors import ArgumentError
from searchengine.index import open_index
from searchengine.media import load_image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fp32(tiny_bundle):
    return load_bundle(tiny_bundle, device="cpu", precision="fp32")


@pytest.fixture
def big_photo(tmp_path) -> Path:
    """A 2400 × 1600 camera-sized JPEG: decoding it small (draft) is what the workers save."""
    return make_image(tmp_path / "big.jpg", 5, size=(2400, 1600))


# ------------------------------------------------------------------ preprocessing in the decode workers

def test_decode_hands_the_encoder_its_exact_input(fp32, big_photo):
    from indexer.pipeline import decode
    from indexer.walk import Candidate
    from searchengine.types import Kind

    item = decode("d", [Candidate(str(big_photo), Kind.IMAGE, 0, 0)], fp32.image_size, prepare=fp32.prepare_image)
    side = fp32.image_size
    assert item.media.shape == (3, side, side) and item.media.dtype == np.float32
    assert item.size == (2400, 1600)  # the original size survives decoding small
    assert item.nbytes == 3 * side * side * 4  # what the memory budget counts is the tensor, not the photo
    expected = fp32.towers.preprocess(load_image(big_photo, min_side=side)).numpy()
    assert np.array_equal(item.media, expected)  # the same transform the query path runs


def test_indexed_photo_finds_itself_with_the_same_vector(index_dir, tiny_bundle, tmp_path, big_photo):
    folder = tmp_path / "photos"
    folder.mkdir()
    big_photo.rename(folder / "big.jpg")
    make_image(folder / "small.png", 6)
    with open_index(index_dir, tiny_bundle) as idx:
        idx.index([folder])
        hit = idx.search(image=folder / "big.jpg", kind="image", k=1).hits[0]
    assert hit.path.endswith("big.jpg") and hit.cosine > 0.9999


def test_draft_decoding_keeps_vectors_close_to_full_resolution(fp32, big_photo):
    drafted = fp32.encode_pixels(np.stack([fp32.prepare_image(load_image(big_photo, min_side=fp32.image_size))]))
    full = fp32.encode_images([load_image(big_photo)])
    assert float(drafted[0] @ full[0]) > 0.99


def test_an_image_the_transform_cannot_take_is_skipped_with_its_reason(index_dir, tiny_bundle, tmp_path, monkeypatch):
    from searchengine.bundles.bundle import Bundle

    folder = tmp_path / "photos"
    make_image(folder / "ok.png", 1)
    make_image(folder / "odd.png", 2, size=(13, 7))
    real = Bundle.prepare_image

    def picky(self, image):
        if image.size == (13, 7):
            raise ValueError("no such crop")
        return real(self, image)

    monkeypatch.setattr(Bundle, "prepare_image", picky)
    with open_index(index_dir, tiny_bundle) as idx:
        report = idx.index([folder])
    assert [Path(s.path).name for s in report.skipped] == ["odd.png"]
    assert "encoder failed: ValueError: no such crop" in report.skipped[0].reason
    assert report.embedded == 1


# ------------------------------------------------------------------ the thread policy

def test_a_query_wakes_one_thread_and_an_index_run_splits_the_cores():
    assert threads.plan_for("query", 8).to_dict() == {"role": "query", "budget": 8, "torch": 1, "faiss": 1,
                                                      "decode": 1}
    assert (threads.plan_for("index", 2).torch, threads.plan_for("index", 2).decode) == (1, 2)
    assert (threads.plan_for("index", 8).torch, threads.plan_for("index", 8).decode) == (4, 8)
    assert threads.plan_for("index", 1).torch == 1


@pytest.mark.parametrize("raw", ["0", "-2", "many", "1.5"])
def test_a_bad_thread_budget_is_a_usage_error(raw):
    with pytest.raises(ArgumentError, match="threads"):
        threads.parse_budget(raw)
    assert threads.parse_budget("auto") is None and threads.parse_budget("3") == 3


def test_a_role_sizes_torch_and_faiss_and_puts_them_back():
    from searchengine.store import vectors

    torch.set_num_threads(2)
    vectors.set_threads(2)
    with threads.role("query", 4) as plan:
        assert plan.torch == 1 and torch.get_num_threads() == 1 and vectors.get_threads() == 1
    assert torch.get_num_threads() == 2 and vectors.get_threads() == 2


def test_an_index_run_uses_the_index_plan_and_restores_the_callers(index_dir, tiny_bundle, media_dir, monkeypatch):
    from indexer import pipeline

    seen = []
    real = pipeline.Pipeline._run

    def spy(self, groups, data, workers):
        seen.append((torch.get_num_threads(), workers))
        return real(self, groups, data, workers)

    monkeypatch.setattr(pipeline.Pipeline, "_run", spy)
    # a caller with no plan of its own (earlier in-process CLI calls in this test process applied one)
    monkeypatch.setattr(threads, "_current", None)
    torch.set_num_threads(2)
    with open_index(index_dir, tiny_bundle) as idx:
        idx.index([media_dir])
    plan = threads.plan_for("index")
    assert seen == [(plan.torch, plan.decode)]
    assert torch.get_num_threads() == 2


# ------------------------------------------------------------------ precision

def test_precision_names_are_checked():
    assert resolve_precision(None, "cpu") == "fp32" and resolve_precision("auto", "cuda") == "bf16"
    with pytest.raises(ArgumentError, match="CPU only"):
        resolve_precision("int8", "cuda")
    with pytest.raises(ArgumentError, match="precision must be"):
        resolve_precision("fp8", "cpu")


def test_int8_quantises_the_linear_layers_and_keeps_vectors_close(tiny_bundle, fp32, media_dir):
    int8 = load_bundle(tiny_bundle, device="cpu", precision="int8")
    assert int8.precision == "int8"
    assert not any(type(m) is nn.Linear for m in int8.towers.runner.modules() if m not in _kept(int8.towers.model))
    assert any(type(m) is nn.Linear for m in fp32.towers.runner.modules())  # the float model is untouched
    assert any("quantized" in type(m).__module__ for m in int8.speech.encoder.modules())
    images = [load_image(media_dir / "photos" / n, min_side=fp32.image_size) for n in ("a.png", "b.jpg")]
    texts = ["a red square", "two ducks on a lake"]
    clips = [np.sin(np.linspace(0, 400, 16000)).astype(np.float32)]
    for a, b in ((fp32.encode_images(images), int8.encode_images(images)),
                 (fp32.encode_texts(texts), int8.encode_texts(texts)),
                 (fp32.encode_speech(clips)[0], int8.encode_speech(clips)[0])):
        assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
        assert (np.sum(a * b, axis=1) > 0.95).all()
        assert not np.array_equal(a, b)  # it did run in other arithmetic


def _kept(model: nn.Module) -> set:
    """Linear layers the quantiser must leave alone (read as tensors by their parent)."""
    names = set(quantizable_linears(model))
    return {m for n, m in model.named_modules() if type(m) is nn.Linear and n not in names}


def test_bf16_on_the_cpu_runs_in_autocast(tiny_bundle, fp32, media_dir):
    bf16 = load_bundle(tiny_bundle, device="cpu", precision="bf16")
    texts = ["a red square", "two ducks on a lake"]
    a, b = fp32.encode_texts(texts), bf16.encode_texts(texts)
    assert (np.sum(a * b, axis=1) > 0.98).all() and not np.array_equal(a, b)


def test_cli_index_and_search_take_precision_and_threads(tiny_bundle, media_dir, tmp_path):
    env = {"SEARCHENGINE_CONFIG": None, "SEARCHENGINE_PRECISION": "int8"}
    index = tmp_path / "idx"
    result = CliRunner().invoke(cli, ["index", str(media_dir), "--index", str(index), "--bundle", str(tiny_bundle),
                                      "--threads", "1", "--no-transcribe", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["embedded"] == 6
    result = CliRunner().invoke(cli, ["search", "--text", "x", "--index", str(index), "--precision", "fp32",
                                      "--threads", "2", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["hits"]) == 6
    assert threads.current().role == "query" and torch.get_num_threads() == 1
    bad = CliRunner().invoke(cli, ["search", "--text", "x", "--index", str(index), "--threads", "0", "--json"])
    assert bad.exit_code == 2 and "threads" in json.loads(bad.output)["error"]
    bad = CliRunner().invoke(cli, ["search", "--text", "x", "--index", str(index), "--precision", "fp8"])
    assert bad.exit_code == 2


# ------------------------------------------------------------------ the GPU script, at toy sizes on the CPU

def test_gpu_check_runs_every_section_on_the_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out")}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--cpu-smoke"], check=False, cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert results["builds"]["faiss"] and results["tower"]["flops_per_image"] > 0
    assert results["indexing"]["end_to_end_images_per_s"] > 0 and results["indexing"]["photos"] == 12
    assert set(results["faiss"]["sizes"]) == {"5000", "10000"}


def test_the_model_gets_every_core_unless_it_waits_on_the_decoders():
    plan = threads.plan_for("index", 4)
    governor = threads.ModelThreads(plan)
    governor.waited_for_decode(0.5)
    assert governor.after_batch(encode_seconds=1.0) == plan.torch == 2 and torch.get_num_threads() == 2
    governor.waited_for_decode(0.01)  # the next batch was ready: the model is the bottleneck
    assert governor.after_batch(encode_seconds=1.0) == 4 and torch.get_num_threads() == 4
