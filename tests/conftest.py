"""Fixtures: a tiny bundle built on the fly (random weights), real media files, real indexes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from media_factory import make_image, tone, write_wav  # tests/ is on sys.path: pytest puts conftest's folder there
from tiny_bundle import build_tiny_bundle


@pytest.fixture(autouse=True, scope="session")
def no_transcripts_unless_asked():
    """Index runs write down recordings when Whisper is installed (it is here): loading it costs seconds
    a run, so tests ask for transcripts where they check them (test_transcripts.py checks the default).
    Session-wide, so module fixtures that index (set up before any function's fixtures) see it too."""
    previous = os.environ.get("SEARCHENGINE_TRANSCRIBE")
    os.environ["SEARCHENGINE_TRANSCRIBE"] = "no"
    yield
    if previous is None:
        os.environ.pop("SEARCHENGINE_TRANSCRIBE", None)
    else:
        os.environ["SEARCHENGINE_TRANSCRIBE"] = previous


@pytest.fixture(autouse=True)
def thread_pools_put_back():
    """Each test leaves torch's pool and the thread plan as it found them.

    CLI calls in-process apply a thread plan (searchengine/threads.py); left behind, it would change the
    pool size of later tests, and training is bit-for-bit repeatable only on the same number of threads."""
    import torch
    from searchengine import threads

    pool, plan = torch.get_num_threads(), threads.current()
    yield
    torch.set_num_threads(pool)
    threads._restore(plan)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """Path of a tiny bundle folder shared by the whole session."""
    return build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def other_bundle(tmp_path_factory) -> Path:
    """A second tiny bundle with different weights (for mismatch tests)."""
    return build_tiny_bundle(tmp_path_factory.mktemp("bundle2") / "other", name="other", seed=1)


@pytest.fixture
def media_dir(tmp_path) -> Path:
    """Three images (png, jpg, webp) and three voice-like clips in nested folders."""
    root = tmp_path / "media"
    make_image(root / "photos" / "a.png", 1)
    make_image(root / "photos" / "b.jpg", 2)
    make_image(root / "photos" / "deep" / "c.webp", 3)
    for i in range(3):
        write_wav(root / "voice" / f"clip{i}.wav", tone(10 + i, 1.0 + 0.3 * i))
    (root / "notes.txt").write_text("not media")
    return root


@pytest.fixture
def index_dir(tmp_path) -> Path:
    """Where a test's index lives."""
    return tmp_path / "index"


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a PostgreSQL 15 server started for this test session (skips when none can run here)."""
    import pg_server

    try:
        server = pg_server.start()
    except pg_server.Unavailable as exc:
        pytest.skip(f"no PostgreSQL server for the tests: {exc}")
    yield server.url
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request):
    """The metadata backends a test runs on: None (SQLite in the index folder) or a PostgreSQL URL."""
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
