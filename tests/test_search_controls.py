"""Search that people can steer: calibrated scores, --min-score, filters, paging and the query's own file.

Through the CLI (CliRunner) and the HTTP API (TestClient) over real indexes; the calibration's
statistics against SciPy; the mixed-kind ranking and the threshold with the bundled model.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

from media_factory import make_image, tone, write_wav
from searchengine import open_index
from searchengine.calibrate import calibrated_scores, chance_best, standing_out, t_to_normal
from searchengine.cli import cli
from searchengine.errors import QueryError
from searchengine.filters import make_filters
from searchengine.media import capture_time
from searchengine.server.app import create_app
from searchengine.types import DEFAULT_MIN_SCORE

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "media"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def search_json(index_dir, *args) -> dict:
    result = run("search", *args, "--index", index_dir, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def photo_taken(path: Path, seed: int, taken: str | None, offset: str | None = None) -> Path:
    """A JPEG whose EXIF says when it was taken ("YYYY:MM:DD HH:MM:SS"), or that says nothing."""
    make_image(path, seed)
    exif = Image.Exif()
    if taken:
        exif.get_ifd(0x8769)[0x9003] = taken
        if offset:
            exif.get_ifd(0x8769)[0x9011] = offset
    with Image.open(path) as img:
        img.convert("RGB").save(path, "JPEG", exif=exif)
    return path


# ------------------------------------------------------------------ calibration, filters, capture time

def test_calibrated_scores_are_a_leave_one_out_t_as_normal_less_the_chance_best():
    stats = pytest.importorskip("scipy.stats")
    t = np.array([-4.0, -0.5, 0.0, 1.0, 3.0, 8.0])
    for dof in (1, 3, 20, 500):
        assert np.allclose(t_to_normal(t, dof), stats.norm.isf(stats.t.sf(t, dof)), atol=1e-9)
    rng = np.random.default_rng(1)
    sample, ids = rng.normal(0.2, 0.05, 40), np.arange(40)
    sample[7] = 0.6  # a strong match: left out of its own yardstick
    others = np.delete(sample, 7)
    t7 = (0.6 - others.mean()) / (others.std(ddof=1) * np.sqrt(1 + 1 / 39))
    outside = (0.5 - sample.mean()) / (sample.std(ddof=1) * np.sqrt(1 + 1 / 40))  # a hit not in the sample
    expected = [stats.norm.isf(stats.t.sf(t7, 38)), stats.norm.isf(stats.t.sf(outside, 39))]
    assert standing_out(np.array([0.6, 0.5]), np.array([7, 99]), sample, ids) == pytest.approx(expected)
    # Less what the best of N unrelated files reaches by chance: the median of the largest of N normals.
    draws = np.random.default_rng(2).standard_normal((20_000, 300)).max(1)
    assert chance_best(300) == pytest.approx(np.median(draws), abs=0.02) and chance_best(1) == 0.0
    got = calibrated_scores(np.array([0.6, 0.5]), np.array([7, 99]), sample, ids, store_size=300)
    assert got == pytest.approx(np.array(expected) - chance_best(300))
    # Too few others to measure a spread: z = 0, not a division by zero.
    assert standing_out(np.array([0.9]), np.array([1]), np.array([0.9, 0.1]), np.array([1, 2])).tolist() == [0.0]


def test_filters_parse_dates_times_types_and_refuse_nonsense(tmp_path):
    f = make_filters(under=[tmp_path / "a", "rel"], since="2021-06-01", until="2021-06-01", types=["JPG", ".wav"])
    assert f.under == (str(tmp_path / "a"), str(Path("rel").absolute()))
    assert f.since == datetime(2021, 6, 1).timestamp() and f.until == datetime(2021, 6, 2).timestamp()  # whole day
    assert set(f.suffixes) == {".jpg", ".jpeg", ".wav"}
    stamped = make_filters(since="2021-06-01T12:00:00+02:00")
    assert stamped.since == datetime(2021, 6, 1, 10, tzinfo=timezone.utc).timestamp()
    assert not make_filters()
    for bad in ({"since": "June"}, {"since": "2021-02-30"}, {"types": "docx"}, {"under": 3},
                {"since": "2022-01-01", "until": "2021-01-01"}):
        with pytest.raises(QueryError):
            make_filters(**bad)


def test_capture_time_reads_exif_with_and_without_offset(tmp_path):
    with_offset = photo_taken(tmp_path / "a.jpg", 1, "2021:06:01 12:30:00", "+02:00")
    local = photo_taken(tmp_path / "b.jpg", 2, "2021:06:01 12:30:00")
    assert capture_time(with_offset) == datetime(2021, 6, 1, 10, 30, tzinfo=timezone.utc).timestamp()
    assert capture_time(local) == datetime(2021, 6, 1, 12, 30).timestamp()  # no offset: local time
    assert capture_time(photo_taken(tmp_path / "c.jpg", 3, None)) is None
    assert capture_time(photo_taken(tmp_path / "d.jpg", 4, "0000:00:00 00:00:00")) is None
    (tmp_path / "e.jpg").write_bytes(b"\xff\xd8 not really")
    assert capture_time(tmp_path / "e.jpg") is None


# ------------------------------------------------------------------ the CLI over a tiny-bundle index

@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_bundle) -> dict:
    """12 photos in each of two folders (some with EXIF dates), a copy of one, and 4 recordings."""
    root = tmp_path_factory.mktemp("steer") / "media"
    for i in range(12):
        make_image(root / "trips" / f"t{i:02}.png", 100 + i)
        make_image(root / "home" / f"h{i:02}.png", 200 + i)
    photo_taken(root / "dated" / "y2020.jpg", 1, "2020:07:04 10:00:00")
    photo_taken(root / "dated" / "y2022.jpg", 2, "2022:01:15 18:00:00")
    undated = photo_taken(root / "dated" / "mtime2019.jpg", 3, None)
    os.utime(undated, (datetime(2019, 3, 1).timestamp(),) * 2)  # no EXIF: the file's time counts
    shutil.copy(root / "trips" / "t00.png", root / "home" / "copy-of-t00.png")
    for i in range(4):
        write_wav(root / "voice" / f"v{i}.wav", tone(30 + i, 1.0 + 0.4 * i))
    index_dir = root.parent / "index"
    result = run("index", root, "--index", index_dir, "--bundle", tiny_bundle, "--json")
    assert result.exit_code == 0, result.output
    return {"root": root, "index": index_dir}


def test_under_filters_inside_the_search_so_k_hits_still_come(library):
    root, index = library["root"], library["index"]
    hits = search_json(index, "--text", "a photo", "--under", root / "trips", "-k", 10)["hits"]
    assert len(hits) == 10 and all(h["path"].startswith(str(root / "trips") + "/") for h in hits)
    both = search_json(index, "--text", "a photo", "--under", root / "trips", "--under", root / "voice", "-k", 50)
    assert {Path(h["path"]).parent.name for h in both["hits"]} == {"trips", "voice"} and len(both["hits"]) == 16
    # A folder is a folder: "/trips" does not match "/trips-old".
    assert search_json(index, "--text", "x", "--under", str(root / "trip"))["hits"] == []


def test_since_until_use_exif_else_the_file_time(library):
    root, index = library["root"], library["index"]
    names = lambda data: sorted(Path(h["path"]).name for h in data["hits"])  # noqa: E731
    dated = ["--text", "x", "--under", root / "dated", "-k", 10]
    assert names(search_json(library["index"], *dated, "--since", "2021-01-01")) == ["y2022.jpg"]
    assert names(search_json(index, *dated, "--until", "2020-07-04")) == ["mtime2019.jpg", "y2020.jpg"]
    assert names(search_json(index, *dated, "--since", "2020-07-04T10:00:01", "--until", "2022-12-31")) == ["y2022.jpg"]
    hit = search_json(index, *dated, "--since", "2022-01-15", "--until", "2022-01-15")["hits"][0]
    assert hit["time"] == datetime(2022, 1, 15, 18).timestamp()
    bad = run("search", "--text", "x", "--since", "last week", "--index", index)
    assert bad.exit_code == 2 and "since must be a date" in bad.output


def test_file_type_filter(library):
    hits = search_json(library["index"], "--text", "x", "--type", "jpeg", "-k", 50)["hits"]
    assert sorted(Path(h["path"]).name for h in hits) == ["mtime2019.jpg", "y2020.jpg", "y2022.jpg"]
    wav = search_json(library["index"], "--text", "x", "--type", "WAV", "--kind", "any", "-k", 50)["hits"]
    assert len(wav) == 4 and {h["kind"] for h in wav} == {"audio"}


def test_offset_pages_through_the_same_ranking(library):
    index = library["index"]
    whole = search_json(index, "--text", "a photo", "-k", 30)
    pages = [search_json(index, "--text", "a photo", "-k", 10, "--offset", offset) for offset in (0, 10, 20)]
    assert [h["path"] for p in pages for h in p["hits"]] == [h["path"] for h in whole["hits"]]
    assert [p["more"] for p in pages] == [True, True, True] and [p["offset"] for p in pages] == [0, 10, 20]
    last = search_json(index, "--text", "a photo", "-k", 10, "--offset", 25)
    assert len(last["hits"]) == 7 and last["more"] is False  # 32 files in all
    text = run("search", "--text", "a photo", "-k", 3, "--offset", 3, "--index", index).output
    assert text.splitlines()[1].split()[0] == "4" and "more: --offset 6" in text


def test_min_score_leaves_out_weak_hits_and_says_so(library):
    index = library["index"]
    everything = search_json(index, "--text", "a photo", "-k", 50)["hits"]
    cut = sorted(h["score"] for h in everything)[len(everything) // 2]
    kept = search_json(index, "--text", "a photo", "-k", 50, "--min-score", cut)["hits"]
    assert kept and all(h["score"] >= cut for h in kept) and len(kept) < len(everything)
    out = run("search", "--text", "a photo", "--min-score", 99, "--index", index)
    assert out.exit_code == 0 and "no results" in out.output and "no good match" in out.output
    # `--min-score default` is the documented threshold.
    alone = search_json(index, "--text", "a photo", "-k", 50, "--min-score", "default")["hits"]
    assert all(h["score"] >= DEFAULT_MIN_SCORE for h in alone)
    assert run("search", "--text", "x", "--min-score", "lots", "--index", index).exit_code == 2


def test_query_file_in_the_index_is_marked_or_left_out(library):
    root, index = library["root"], library["index"]
    query = root / "trips" / "t00.png"
    marked = search_json(index, "--image", query, "--kind", "image", "-k", 5)
    assert [h["path"] for h in marked["hits"][:2]] == sorted([str(query), str(root / "home" / "copy-of-t00.png")])
    assert all(h.get("is_query") for h in marked["hits"][:2]) and not any(h.get("is_query") for h in marked["hits"][2:])
    assert marked["hits"][0]["cosine"] == pytest.approx(1.0, abs=1e-4)
    left_out = search_json(index, "--image", query, "--kind", "image", "-k", 5, "--exclude-query")
    paths = [h["path"] for h in left_out["hits"]]
    assert len(paths) == 5 and str(query) not in paths and str(root / "home" / "copy-of-t00.png") not in paths
    assert sorted(left_out["query_paths"]) == sorted([str(query), str(root / "home" / "copy-of-t00.png")])
    text = run("search", "--image", query, "--kind", "image", "-k", 3, "--index", index).output
    assert "#1, #2: the query itself" in text
    # A photo that is not indexed is nobody's copy.
    other = make_image(root.parent / "elsewhere.png", 999)
    assert "query_paths" not in search_json(index, "--image", other, "--kind", "image")


def test_the_api_takes_the_same_controls(library):
    root = library["root"]
    with open_index(library["index"]) as idx, TestClient(create_app(idx)) as client:
        form = {"text": "a photo", "kind": "image", "k": "4", "offset": "2", "under": str(root / "trips"),
                "type": "png", "since": "1970-01-02", "min_score": "-50"}
        body = client.post("/api/search", data=form).json()
        assert len(body["hits"]) == 4 and body["offset"] == 2 and body["more"] is True
        assert all(h["path"].startswith(str(root / "trips")) and "cosine" in h for h in body["hits"])
        image = {"image": ("t00.png", (root / "trips" / "t00.png").read_bytes(), "image/png")}
        query = client.post("/api/search", files=image, data={"kind": "image", "exclude_query": "true"}).json()
        assert str(root / "trips" / "t00.png") in query["query_paths"]
        assert all(not h["path"].endswith("t00.png") for h in query["hits"])
        assert client.post("/api/search", data={"text": "x", "min_score": "default"}).status_code == 200
        for bad in ({"offset": "-1"}, {"min_score": "high"}, {"since": "yesterday"}, {"type": "exe"},
                    {"exclude_query": "maybe"}):
            r = client.post("/api/search", data={"text": "x", **bad})
            assert r.status_code == 400 and r.json()["error"], (bad, r.text)
        spec = client.get("/openapi.json").json()["paths"]["/api/search"]["post"]["requestBody"]
        fields = spec["content"]["multipart/form-data"]["schema"]["properties"]
        assert {"offset", "min_score", "under", "since", "until", "type", "exclude_query"} <= set(fields)


# ------------------------------------------------------------------ migration 0003

def _downgrade(engine, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from searchengine.store.migrate import migrations_dir

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_an_index_from_before_capture_times_migrates_and_filters_by_mtime(tmp_path, tiny_bundle, db):
    root = tmp_path / "media"
    photo_taken(root / "old.jpg", 5, "2001:01:01 00:00:00")
    os.utime(root / "old.jpg", (datetime(2015, 5, 5).timestamp(),) * 2)
    with open_index(tmp_path / "index", tiny_bundle, db=db) as idx:
        idx.index([root])
        assert idx.search(text="x", since="2001-01-01", until="2001-01-01").hits  # EXIF read at index time
        _downgrade(idx.metadata.engine, "0002")  # as an engine of the previous version left it
    with open_index(tmp_path / "index", db=db) as idx:  # opening migrates to 0003: captured_at is NULL
        assert not idx.search(text="x", since="2001-01-01", until="2001-01-01").hits
        hit = idx.search(text="x", since="2015-05-05", until="2015-05-05").hits[0]  # the mtime instead
        assert hit.path == str(root / "old.jpg") and hit.time == datetime(2015, 5, 5).timestamp()
        idx.index([root])  # an unchanged file is not read again: it keeps its mtime
        assert idx.search(text="x", since="2015-05-05", until="2015-05-05").hits


# ------------------------------------------------------------------ the bundled model

@pytest.fixture(scope="module")
def samples_manifest() -> dict[str, str]:
    records = [json.loads(line) for line in (SAMPLES / "manifest.jsonl").read_text().splitlines()]
    return {Path(r["image"]).stem: r["text"] for r in records}


def _folder_without(tmp: Path, left_out: str) -> Path:
    """The sample media minus one file: the one partner that could answer instead of the right one."""
    folder = tmp / f"without-{Path(left_out).stem}-{Path(left_out).suffix[1:]}"
    shutil.copytree(SAMPLES, folder, ignore=lambda d, names: [n for n in names if n == Path(left_out).name
                                                               and Path(d).name == Path(left_out).parent.name])
    return folder


@pytest.mark.weights
@pytest.mark.parametrize("left_out,answer,kind", [("recordings/scene-01.wav", "photos/scene-01.jpg", "image"),
                                                  ("photos/scene-01.jpg", "recordings/scene-01.wav", "audio")])
def test_bundled_model_mixed_list_puts_the_right_kind_first(tmp_path, samples_manifest, left_out, answer, kind):
    folder = _folder_without(tmp_path, left_out)
    index = tmp_path / "index"
    result = run("index", folder, "--index", index, "--bundle", "stamp-scenes-small", "--json")
    assert result.exit_code == 0, result.output
    hits = search_json(index, "--text", samples_manifest["scene-01"], "--kind", "any", "-k", 5)["hits"]
    assert hits[0]["path"] == str(folder / answer), hits
    assert hits[0]["score"] >= DEFAULT_MIN_SCORE
    # Three scenes show a dog (01, 15, 17): the best of the kind that holds the answer leads.
    first = search_json(index, "--text", "a dog", "--kind", "any", "-k", 5)["hits"][0]
    assert first["kind"] == kind
    assert Path(first["path"]).stem in ("scene-01", "scene-15", "scene-17"), first


@pytest.mark.weights
def test_bundled_model_default_threshold_answers_real_queries_before_nonsense(tmp_path, samples_manifest):
    index = tmp_path / "index"
    assert run("index", SAMPLES, "--index", index, "--bundle", "stamp-scenes-small").exit_code == 0
    tops, right = [], 0
    for scene, caption in samples_manifest.items():
        hits = search_json(index, "--text", caption, "--min-score", "default", "-k", 3)["hits"]
        assert hits, f"{caption!r} found nothing at the default threshold"
        tops.append(hits[0]["score"])
        right += Path(hits[0]["path"]).stem == scene
    assert right >= 22, right  # of 24: the first hit, photo or recording, is the captioned scene
    nonsense = search_json(index, "--text", "asdkjh qwe", "-k", 1)["hits"][0]
    assert nonsense["score"] < min(tops)  # below every real query's best (test split: below 0, docs/BENCHMARKS.md)
