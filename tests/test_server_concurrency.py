"""Concurrency of the HTTP API: a search held in flight, and searches while another process indexes."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from media_factory import make_image, tone, write_wav
from searchengine import open_index
from searchengine.server.app import create_app

MEDIA_IMAGE: list[Path] = []


@pytest.fixture(scope="module")
def index(tiny_bundle, tmp_path_factory):
    """A small real index: two images and two recordings."""
    root = tmp_path_factory.mktemp("concurrency_media")
    MEDIA_IMAGE[:] = [make_image(root / "a.png", 1), make_image(root / "b.jpg", 2)]
    write_wav(root / "v.wav", tone(1, 1.0))
    write_wav(root / "w.wav", tone(2, 2.0))
    with open_index(tmp_path_factory.mktemp("concurrency_index") / "index", tiny_bundle) as idx:
        assert idx.index([root]).added == 4
        yield idx


def hold_first_search(index, monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Make the index's first search wait inside Index.search until released: (entered, release)."""
    entered, release, real_search = threading.Event(), threading.Event(), index.search

    def search(**kwargs):
        if not entered.is_set():
            entered.set()
            assert release.wait(30), "the held search was never released"
        return real_search(**kwargs)

    monkeypatch.setattr(index, "search", search)
    return entered, release


def test_a_search_in_flight_does_not_block_other_requests(index, monkeypatch):
    entered, release = hold_first_search(index, monkeypatch)
    with TestClient(create_app(index)) as c:
        held: list = []
        worker = threading.Thread(target=lambda: held.append(c.post("/api/search", data={"text": "x"})))
        worker.start()
        try:
            assert entered.wait(10), "the first search never reached Index.search"
            # While it is held inside the library, other searches and the status page are answered.
            other = c.post("/api/search", files={"image": ("b.jpg", MEDIA_IMAGE[1].read_bytes())})
            assert other.status_code == 200 and other.json()["hits"], other.text
            assert c.get("/api/status").status_code == 200
            assert worker.is_alive() and not held  # the first one really is still in flight
        finally:
            release.set()
            worker.join(30)
        assert held and held[0].status_code == 200 and held[0].json()["hits"]


def _search_loop(client, queries, stop: threading.Event, results: list) -> None:
    """Search round-robin until told to stop; record (status, hits) of each answer."""
    i = 0
    while not stop.is_set() or i < 4:
        field, path = queries[i % len(queries)]
        r = client.post("/api/search", files={field: (path.name, path.read_bytes())})
        results.append((r.status_code, r.json()))
        i += 1


def test_concurrent_searches_while_another_process_indexes(tiny_bundle, tmp_path):
    first, extra = tmp_path / "first", tmp_path / "extra"
    queries = [("image", make_image(first / "a.png", 1)), ("image", make_image(first / "b.png", 2)),
               ("audio", write_wav(first / "v.wav", tone(1, 1.0))), ("audio", write_wav(first / "w.wav", tone(2, 2.0)))]
    for i in range(40):
        make_image(extra / f"img{i}.png", 100 + i)
    for i in range(8):
        write_wav(extra / f"rec{i}.wav", tone(100 + i, 0.5 + 0.25 * i))
    index_dir = tmp_path / "index"
    with open_index(index_dir, tiny_bundle) as idx:
        idx.index([first])
        with TestClient(create_app(idx)) as c:
            results, during = _search_during_reindex(c, queries, [first, extra], index_dir, tiny_bundle)
            assert during >= 8  # answered while the other process ran
            for status, body in results:
                assert status == 200, body
                assert body["hits"] and all(Path(h["path"]).exists() and math.isfinite(h["score"]) for h in body["hits"])
            # the other process's vectors are picked up without a restart
            new = c.post("/api/search", files={"image": ("img7.png", (extra / "img7.png").read_bytes())}).json()
            assert new["hits"][0]["path"] == str(extra / "img7.png")
            assert c.get("/api/status").json()["files"] == {"image": 42, "audio": 10}


def _search_during_reindex(client, queries, folders, index_dir, bundle) -> tuple[list, int]:
    """Four threads search while `python -m searchengine index` writes to the same index."""
    cmd = [sys.executable, "-m", "searchengine", "index", *map(str, folders), "--index", str(index_dir),
           "--bundle", str(bundle), "--batch-size", "4"]
    stop, results = threading.Event(), []
    threads = [threading.Thread(target=_search_loop, args=(client, queries, stop, results)) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        during = len(results)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    assert proc.returncode == 0, proc.stderr
    return results, during


