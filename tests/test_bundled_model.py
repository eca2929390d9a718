"""The bundled models on stamp-scenes worlds they never saw (a seed not used in training), indexed through
the CLI: spoken captions must find their photos, and photos their spoken captions, far above chance.

`stamp-scenes-small` (the offline default) is tried on a world of its 40 objects, `stamp-scenes-all` on a
world drawn from its whole 224-object vocabulary, where a voice query sent as a browser records it (24 kb/s
Opus) must still find its photo."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from searchengine import open_index
from searchengine.cli import cli

ROOT = Path(__file__).resolve().parents[1]
SEED = 202  # the bundled models were trained on seed 0 (scripts/build_bundled_model.sh)
SCENES = 40  # chance: R@1 0.025, R@5 0.125


@dataclass(frozen=True)
class Case:
    bundle: str
    objects: list[str]  # make_stamp_scenes.py arguments choosing the world's vocabulary
    r1: float
    r5: float


CASES = [
    Case("stamp-scenes-small", ["--objects", "40"], 0.3, 0.6),
    # Measured: voice 0.50 / 0.875, photo 0.475 / 0.825 (R@1 / R@5), voice R@5 after Opus 0.85.
    Case("stamp-scenes-all", [], 0.35, 0.65),
]
OPUS_R5 = 0.7  # stamp-scenes-all


@pytest.fixture(scope="module", params=CASES, ids=[c.bundle for c in CASES])
def case(request) -> Case:
    return request.param


@pytest.fixture(scope="module")
def world(case, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_stamp_scenes.py"), "--out", str(out),
                    "--seed", str(SEED), "--scenes", str(SCENES), *case.objects, "--size", "128",
                    "--captions-per-image", "1", "--voices", "espeak", "flite"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out


@pytest.fixture(scope="module")
def pairs(world) -> list[tuple[str, str]]:
    lines = [json.loads(line) for line in (world / "manifest.jsonl").read_text().splitlines()]
    return [(str(world / rec["image"]), str(world / rec["audio"])) for rec in lines]


@pytest.fixture(scope="module")
def index_dir(case, world, tmp_path_factory) -> Path:
    index_dir = tmp_path_factory.mktemp("index")
    result = CliRunner().invoke(cli, ["index", str(world), "--index", str(index_dir), "--bundle", case.bundle, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["added"] == 2 * SCENES and report["skipped"] == []
    return index_dir


def recall(index_dir: Path, queries: list[tuple[str, str]], query_kind: str, k: int) -> float:
    """Share of queries whose partner is among the top k hits of the other kind."""
    target = "image" if query_kind == "audio" else "audio"
    found = 0
    with open_index(index_dir) as idx:
        for query, partner in queries:
            hits = idx.search(**{query_kind: query}, kind=target, k=k)
            found += partner in [h.path for h in hits]
    return found / len(queries)


def test_voice_finds_its_photo(case, index_dir, pairs):
    queries = [(audio, image) for image, audio in pairs]
    r1, r5 = recall(index_dir, queries, "audio", 1), recall(index_dir, queries, "audio", 5)
    assert r1 >= case.r1 and r5 >= case.r5, (r1, r5)


def test_photo_finds_its_spoken_caption(case, index_dir, pairs):
    r1, r5 = recall(index_dir, pairs, "image", 1), recall(index_dir, pairs, "image", 5)
    assert r1 >= case.r1 and r5 >= case.r5, (r1, r5)


def test_a_voice_sent_as_a_browser_records_it_still_finds_its_photo(case, index_dir, pairs, tmp_path):
    from searchengine.media import encode_audio, load_audio

    queries = []
    for image, audio in pairs:
        opus = tmp_path / (Path(audio).stem + ".opus")  # 24 kb/s Opus in Ogg, as MediaRecorder sends
        opus.write_bytes(encode_audio(load_audio(audio).samples, "opus", 24000))
        queries.append((str(opus), image))
    clean = recall(index_dir, [(audio, image) for image, audio in pairs], "audio", 5)
    sent = recall(index_dir, queries, "audio", 5)
    # the bundle trained on capture-like recordings is held to a fixed bar as well
    assert sent >= clean - 0.1 and (case.bundle != "stamp-scenes-all" or sent >= OPUS_R5), (sent, clean)
