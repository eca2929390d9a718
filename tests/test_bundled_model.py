"""The bundled model on a stamp-scenes world it never saw (a seed not used in training), indexed through
the CLI: spoken captions must find their photos, and photos their spoken captions, far above chance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from searchengine import open_index
from searchengine.cli import cli

ROOT = Path(__file__).resolve().parents[1]
SEED = 202  # the bundled model was trained on seed 0 (scripts/build_bundled_model.sh)
SCENES = 40


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_stamp_scenes.py"), "--out", str(out),
                    "--seed", str(SEED), "--scenes", str(SCENES), "--objects", "40", "--size", "128",
                    "--captions-per-image", "1", "--voices", "espeak", "flite"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out


@pytest.fixture(scope="module")
def pairs(world) -> list[tuple[str, str]]:
    lines = [json.loads(line) for line in (world / "manifest.jsonl").read_text().splitlines()]
    return [(str(world / rec["image"]), str(world / rec["audio"])) for rec in lines]


@pytest.fixture(scope="module")
def index_dir(world, tmp_path_factory) -> Path:
    index_dir = tmp_path_factory.mktemp("index")
    result = CliRunner().invoke(cli, ["index", str(world), "--index", str(index_dir),
                                      "--bundle", "stamp-scenes-small", "--json"])
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


def test_voice_finds_its_photo(index_dir, pairs):
    queries = [(audio, image) for image, audio in pairs]
    r1, r5 = recall(index_dir, queries, "audio", 1), recall(index_dir, queries, "audio", 5)
    assert r1 >= 0.3 and r5 >= 0.6, (r1, r5)  # chance: 0.025 and 0.125


def test_photo_finds_its_spoken_caption(index_dir, pairs):
    r1, r5 = recall(index_dir, pairs, "image", 1), recall(index_dir, pairs, "image", 5)
    assert r1 >= 0.3 and r5 >= 0.6, (r1, r5)
