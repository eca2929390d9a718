"""Several processes opening one brand-new index at the same moment: each gets a working index.

A real race on a real SQLite file: processes forked after a barrier all create or migrate it at once.
"""

from __future__ import annotations

import multiprocessing as mp

import pytest

PROCESSES = 3
TRIALS = 4


def _open_after(barrier, results, open_one) -> None:
    barrier.wait()
    try:
        open_one()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 — the parent asserts on what each process met
        results.put(f"{type(exc).__name__}: {exc}")


def _race(open_one) -> list[str]:
    """Run open_one in PROCESSES processes released together; what each reported."""
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=_open_after, args=(barrier, results, open_one)) for _ in range(PROCESSES)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    return outcomes


@pytest.mark.parametrize("trial", range(TRIALS))
def test_processes_creating_one_metadata_database_together_all_succeed(tmp_path, trial):
    from searchengine.store.metadata import MetadataStore

    db_path = tmp_path / "metadata.db"
    assert _race(lambda: MetadataStore(db_path).close()) == ["ok"] * PROCESSES
    store = MetadataStore(db_path)
    try:
        # every table of the newest schema is there, empty: no process half-made or doubled it
        assert store.bundle() is None and store.file_states() == {} and store.skipped() == []
    finally:
        store.close()


def test_processes_opening_one_new_index_together_all_get_a_searchable_index(tmp_path, tiny_bundle, media_dir):
    import searchengine

    index_path = tmp_path / "index"

    def open_and_search():
        index = searchengine.open_index(index_path, bundle=str(tiny_bundle))
        try:
            index.search(text="a red square", k=3)
        finally:
            index.close()

    assert _race(open_and_search) == ["ok"] * PROCESSES
    index = searchengine.open_index(index_path, bundle=str(tiny_bundle), create=False)
    try:
        index.index([media_dir])
        assert index.search(text="a red square", k=3)
    finally:
        index.close()
