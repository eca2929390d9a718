"""The two stores: FAISS against numpy brute force, metadata (SQLite or PostgreSQL) migrated by alembic."""

from __future__ import annotations

import sqlite3
import uuid

import numpy as np

from searchengine.store.metadata import FileLink, MetadataStore, NewContent
from searchengine.store.vectors import VectorStore


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_search_matches_brute_force(tmp_path):
    data, queries = unit_rows(500, 32, 0), unit_rows(7, 32, 1)
    ids = np.arange(1000, 1500)
    store = VectorStore(tmp_path / "v.faiss", 32)
    store.add(ids, data)
    scores, found = store.search(queries, 10)
    truth = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    assert (found == ids[truth]).all()
    assert np.allclose(scores, np.take_along_axis(queries @ data.T, truth, axis=1), atol=1e-5)


def test_remove_save_and_reload(tmp_path):
    data = unit_rows(20, 8, 2)
    store = VectorStore(tmp_path / "v.faiss", 8)
    store.add(np.arange(1, 21), data)
    assert store.remove([3, 4, 999]) == 2
    store.save()
    assert not (tmp_path / "v.faiss.tmp").exists()
    again = VectorStore(tmp_path / "v.faiss", 8)
    assert again.count == 18 and 3 not in set(again.ids().tolist())
    _, found = again.search(data[9:10], 1)
    assert found[0, 0] == 10


def test_reader_sees_a_newer_file(tmp_path):
    writer = VectorStore(tmp_path / "v.faiss", 4)
    writer.add([1], unit_rows(1, 4, 3))
    writer.save()
    reader = VectorStore(tmp_path / "v.faiss", 4)
    writer.add([2], unit_rows(1, 4, 4))
    writer.save()
    assert reader.reload_if_changed() and reader.count == 2
    assert not reader.reload_if_changed()


def test_k_larger_than_index(tmp_path):
    store = VectorStore(tmp_path / "v.faiss", 4)
    assert store.search(unit_rows(1, 4, 0), 5)[1].shape == (1, 0)
    store.add([7], unit_rows(1, 4, 5))
    assert store.search(unit_rows(1, 4, 0), 5)[1].tolist() == [[7]]


def test_unusable_files_start_empty_and_say_why(tmp_path):
    store = VectorStore(tmp_path / "v.faiss", 4)
    store.add([1], unit_rows(1, 4, 0))
    store.save()
    wrong_dim = VectorStore(tmp_path / "v.faiss", 8)
    assert wrong_dim.count == 0 and "4-d vectors, expected 8" in wrong_dim.damaged
    for garbage in (b"", (tmp_path / "v.faiss").read_bytes()[:50], np.random.default_rng(0).bytes(4096)):
        (tmp_path / "bad.faiss").write_bytes(garbage)
        bad = VectorStore(tmp_path / "bad.faiss", 4)
        assert bad.count == 0 and "not a readable FAISS file" in bad.damaged
        bad.add([2], unit_rows(1, 4, 1))
        bad.save()  # the repaired file replaces the bad one
        assert VectorStore(tmp_path / "bad.faiss", 4).ids().tolist() == [2]


def test_schema_comes_from_alembic_in_wal_mode(tmp_path):
    MetadataStore(tmp_path / "m.sqlite").close()
    con = sqlite3.connect(tmp_path / "m.sqlite")
    tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    assert {"contents", "files", "skipped", "bundle_info", "alembic_version"} <= tables
    assert con.execute("select version_num from alembic_version").fetchone()[0] == "0005"
    assert con.execute("pragma journal_mode").fetchone()[0] == "wal"
    MetadataStore(tmp_path / "m.sqlite").close()  # reopening at head is a no-op


def open_store(tmp_path, db, schema=None) -> MetadataStore:
    schema = schema or f"searchengine_{uuid.uuid4().hex[:12]}_g0"  # one per test on the shared server
    return MetadataStore(tmp_path / "m.sqlite") if db is None else MetadataStore(url=db, schema=schema)


def test_schema_comes_from_alembic_in_its_own_postgresql_schema(postgres_url):
    from sqlalchemy import create_engine, text

    open_store(None, postgres_url, "searchengine_schema_g0").close()
    open_store(None, postgres_url, "searchengine_schema_g0").close()  # reopening at head is a no-op
    engine = create_engine(postgres_url)
    with engine.connect() as con:
        tables = set(con.execute(text("select table_name from information_schema.tables "
                                      "where table_schema = 'searchengine_schema_g0'")).scalars())
        assert {"contents", "files", "skipped", "bundle_info", "alembic_version"} <= tables
        assert not con.execute(text("select 1 from information_schema.tables where table_schema = 'public'")).first()
        version = con.execute(text("select version_num from searchengine_schema_g0.alembic_version")).scalar()
        types = dict(con.execute(text("select column_name, data_type from information_schema.columns where "
                                      "table_schema = 'searchengine_schema_g0' and table_name = 'files'")).all())
    engine.dispose()
    assert version == "0005" and types["mtime_ns"] == types["size"] == "bigint"


def test_large_sizes_and_nanosecond_mtimes_round_trip(tmp_path, db):
    store = open_store(tmp_path, db)
    big, mtime = 5 * 2**40, 1_790_000_000_123_456_789
    store.write([NewContent("h", "audio", unit_rows(1, 4, 0)[0])], [FileLink("/x.wav", "h", "audio", big, mtime)],
                [], [])
    assert store.file_states()["/x.wav"].size == big and store.file_states()["/x.wav"].mtime_ns == mtime
    store.close()


def test_shared_content_and_orphan_cleanup(tmp_path, db):
    store = open_store(tmp_path, db)
    vec = unit_rows(1, 4, 0)[0]
    added, _ = store.write([NewContent("h1", "image", vec, width=2, height=3)],
                           [FileLink("/a.png", "h1", "image", 10, 1), FileLink("/b.png", "h1", "image", 10, 2)], [], [])
    (cid,) = added["image"]
    assert [p.path for p in store.lookup([cid])[cid].paths] == ["/a.png", "/b.png"]
    _, orphans = store.write([], [], ["/a.png"], [])
    assert orphans == {}  # /b.png still holds the content
    _, orphans = store.write([], [], ["/b.png"], [])
    assert orphans == {"image": [cid]} and store.lookup([cid]) == {}
    added, _ = store.write([NewContent("h2", "image", vec)], [FileLink("/c.png", "h2", "image", 1, 1)], [], [])
    assert added["image"][0] > cid  # ids are never reused (AUTOINCREMENT)


OPEN_STORE = """
import sys
from searchengine.store.metadata import MetadataStore
print("ready", flush=True)
sys.stdin.readline()  # all at once, imports done
MetadataStore(url=sys.argv[1], schema=sys.argv[2]).close()
"""


def test_processes_opening_one_new_schema_at_once_all_succeed(postgres_url):
    import subprocess
    import sys

    schema = f"searchengine_{uuid.uuid4().hex[:12]}_g0"
    runs = [subprocess.Popen([sys.executable, "-c", OPEN_STORE, postgres_url, schema], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    assert [run.stdout.readline() for run in runs] == ["ready\n"] * 4
    for run in runs:
        run.stdin.write("go\n")
        run.stdin.flush()
    assert [(run.wait(timeout=120), run.stderr.read()[-300:]) for run in runs] == [(0, "")] * 4
    store = open_store(None, postgres_url, schema)
    assert store.bundle() is None
    store.close()
