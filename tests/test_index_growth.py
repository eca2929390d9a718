"""The vector store grows from exact to IVF-SQ8, saves by appending to a change log, and reconciles
with the database by what a crash left undone; the metadata's orphan check follows the batch."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from indexer.writer import Writer, commit_rows_for
from searchengine import open_index
from searchengine.cli import cli
from searchengine.store import growth
from searchengine.store.generation import Generation
from searchengine.store.growth import EXACT, Layout, nlist_for, wanted_layout
from searchengine.store.metadata import FileLink, NewContent
from searchengine.store.vectorrows import VectorRows
from searchengine.store.vectors import VectorStore
from searchengine.types import BundleInfo

DIM = 16


def clustered(n: int, seed: int, centres: int = 64) -> np.ndarray:
    """Unit vectors around `centres` random centres: embeddings cluster; uniform noise does not."""
    rng = np.random.default_rng(seed)
    middle = np.random.default_rng(99).standard_normal((centres, DIM))
    x = middle[rng.integers(0, centres, n)] + 0.35 * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall_at_10(store: VectorStore, ids: np.ndarray, data: np.ndarray, queries: np.ndarray) -> float:
    truth = ids[np.argsort(-(queries @ data.T), axis=1)[:, :10]]
    _, found = store.search(queries, 10)
    return float(np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)]))


def test_the_rule_follows_faiss_guidelines_with_hysteresis():
    assert nlist_for(50_000) == 1024 and nlist_for(1_000_000) == 4096 and nlist_for(10_000_000) == 16384
    assert nlist_for(100) == 2  # never fewer than 39 training points per list
    assert wanted_layout(49_999, EXACT) == EXACT and wanted_layout(50_000, EXACT) == Layout(1024)
    assert wanted_layout(30_000, Layout(1024)) == Layout(1024)  # no flip back at the threshold
    assert wanted_layout(20_000, Layout(1024)) == EXACT
    assert wanted_layout(260_000, Layout(1024)) == Layout(1024) and wanted_layout(270_000, Layout(1024)) == Layout(2048)
    assert wanted_layout(1_000_000, Layout(2048)) == Layout(2048) and wanted_layout(1_100_000, Layout(2048)) == Layout(4096)
    assert wanted_layout(10, EXACT, "ivf") == Layout(1) and wanted_layout(10**6, Layout(4096), "flat") == EXACT
    assert Layout(16384).factory == "IVF16384_HNSW32,SQ8"


def test_a_store_becomes_ivf_at_the_threshold_and_keeps_ids_removals_and_recall(tmp_path, monkeypatch):
    monkeypatch.setattr(growth, "EXACT_LIMIT", 3000)
    data, queries = clustered(4000, 0), clustered(50, 1)
    ids = np.arange(1, 4001) * 3  # ids are row ids, not positions
    store = VectorStore(tmp_path / "v.faiss", DIM, index_type="auto")
    for start in range(0, 4000, 500):
        store.add(ids[start:start + 500], data[start:start + 500])
        assert store.layout.exact == (start + 500 < 3000)
    assert store.layout == Layout(nlist_for(3000)) and "IVF" in store.description and "nprobe" in store.description
    assert recall_at_10(store, ids, data, queries) >= 0.9
    assert store.remove(ids[:100]) == 100 and store.count == 3900
    assert set(store.ids().tolist()) == set(ids[100:].tolist())
    store.save()
    again = VectorStore(tmp_path / "v.faiss", DIM)  # a reader: keeps the file's type whatever it holds
    again.remove(ids[100:2900])
    assert again.layout == store.layout and again.count == 1100
    again = VectorStore(tmp_path / "v.faiss", DIM)
    assert again.layout == store.layout and set(again.ids().tolist()) == set(ids[100:].tolist())
    _, found = again.search(data[500:501], 1)
    assert found[0, 0] == ids[500]
    store.add(ids[:100], data[:100])
    store.save()  # appended with their lists: replay needs no quantiser
    replayed = VectorStore(tmp_path / "v.faiss", DIM)
    assert replayed.count == 4000 and replayed.search(data[7:8], 1)[1][0, 0] == ids[7]
    # a filter leaving few ids scores exactly those
    scores, found = again.search(queries[:1], 5, among=ids[200:210])
    assert set(found[0].tolist()) <= set(ids[200:210].tolist()) and len(found[0]) == 5


def test_retraining_uses_the_exact_source_and_shrinking_goes_back_to_exact(tmp_path, monkeypatch):
    monkeypatch.setattr(growth, "EXACT_LIMIT", 1000)
    data = clustered(1200, 2)
    ids = np.arange(1, 1201)
    served, live = [], np.ones(len(ids), bool)  # the database's rows: it commits before FAISS changes

    def source():
        served.append(True)
        yield ids[:1000][live[:1000]], data[:1000][live[:1000]]
        yield ids[1000:][live[1000:]], data[1000:][live[1000:]]

    store = VectorStore(tmp_path / "v.faiss", DIM, index_type="auto", exact_source=source)
    store.add(ids[:999], data[:999])
    store.add(ids[999:], data[999:])  # crosses: the source has every row, exactly those ids
    assert not store.layout.exact and served
    live[:800] = False
    assert store.remove(ids[:800]) == 800 and store.layout.exact  # below EXACT_LIMIT / 2
    assert np.allclose(store.vectors_of(ids[1100:1101]), data[1100:1101], atol=1e-6)  # exact again, from the source


def test_saving_appends_to_the_log_and_reopening_replays_it(tmp_path):
    data = clustered(300, 3)
    store = VectorStore(tmp_path / "v.faiss", DIM)
    store.add(np.arange(1, 101), data[:100])
    store.save()  # no base yet: written whole
    base = (tmp_path / "v.faiss").stat()
    store.add(np.arange(101, 201), data[100:200])
    store.remove([5, 6])
    store.save()
    after = (tmp_path / "v.faiss").stat()
    assert (after.st_mtime_ns, after.st_size) == (base.st_mtime_ns, base.st_size)  # the base was not rewritten
    log = tmp_path / "v.faiss.log"
    assert log.stat().st_size > 100 * DIM * 4
    reader = VectorStore(tmp_path / "v.faiss", DIM)
    assert reader.count == 198 and 5 not in set(reader.ids().tolist())
    store.add(np.arange(201, 211), data[200:210])
    store.save()
    assert reader.reload_if_changed() and reader.count == 208  # a reader follows appended records
    with open(log, "ab") as handle:  # a crash mid-append: a torn record
        handle.write(b"\x01\x05\x00\x00\x00garbage")
    assert VectorStore(tmp_path / "v.faiss", DIM).count == 208
    store.add(np.arange(211, 221), data[210:220])
    store.save()  # the next writer cuts the torn tail off before appending
    assert VectorStore(tmp_path / "v.faiss", DIM).count == 218
    store.fold()  # small: folded into a new base, the log starts again
    assert log.stat().st_size == 24 and VectorStore(tmp_path / "v.faiss", DIM).count == 218
    assert reader.reload_if_changed() and reader.count == 218  # follows the new base, no record twice
    store.add(np.arange(221, 231), data[220:230])
    store.save()
    assert reader.reload_if_changed() and reader.count == 228 and len(set(reader.ids().tolist())) == 228


def test_a_log_left_from_before_a_compaction_is_ignored(tmp_path):
    data = clustered(40, 4)
    store = VectorStore(tmp_path / "v.faiss", DIM)
    store.add(np.arange(1, 21), data[:20])
    store.save()
    store.add(np.arange(21, 41), data[20:])
    store.save()
    old_log = (tmp_path / "v.faiss.log").read_bytes()
    store.compact()
    (tmp_path / "v.faiss.log").write_bytes(old_log)  # as if killed between the new base and its new log
    assert VectorStore(tmp_path / "v.faiss", DIM).count == 40  # not 60: the old records are in the base


def metadata_with_contents(tmp_path, n: int):
    gen = Generation(tmp_path / "idx")
    gen.record(BundleInfo("t", "t", DIM, "f" * 64))
    writer = Writer(gen.metadata, gen.vectors, save_every=1e9)
    data = clustered(n, 5)
    contents = [NewContent(f"h{i}", "image", data[i]) for i in range(n)]
    links = [FileLink(f"/m/{i}.jpg", f"h{i}", "image", 1, 1) for i in range(n)]
    writer.write(contents, links)
    writer.flush()
    return gen, writer, data


def test_orphans_are_found_among_the_rows_a_batch_touches(tmp_path):
    gen, writer, data = metadata_with_contents(tmp_path, 6)
    writer.write(links=[FileLink("/m/copy.jpg", "h0", "image", 1, 1)])  # a second path to content 1
    writer.write(removed=["/m/0.jpg"])
    assert gen.metadata.content_ids("image") == {1, 2, 3, 4, 5, 6}  # still held by the copy
    writer.write([NewContent("new", "image", data[0])], [FileLink("/m/1.jpg", "new", "image", 2, 2)],
                 removed=["/m/copy.jpg"], skips=[("/m/2.jpg", "broken", 1, 1)])
    assert gen.metadata.content_ids("image") == {4, 5, 6, 7}  # relinked, removed, skipped: all gone
    assert set(gen.vectors["image"].ids().tolist()) == {4, 5, 6, 7}


def test_new_files_are_gathered_into_one_transaction_and_removals_keep_their_order(tmp_path):
    gen, writer, data = metadata_with_contents(tmp_path, 2)
    writer = Writer(gen.metadata, gen.vectors, save_every=1e9, commit_rows=commit_rows_for(5000))
    assert commit_rows_for(100) == 1  # a small run commits every batch
    writer.write([NewContent("a", "image", data[0])], [FileLink("/m/a.jpg", "a", "image", 1, 1)])
    assert gen.metadata.content_ids("image") == {1, 2}  # gathered, not committed yet
    writer.write(removed=["/m/a.jpg"])  # commits the gathered file first, then removes it
    assert gen.metadata.content_ids("image") == {1, 2} and gen.vectors["image"].count == 2
    many = clustered(600, 7)
    for start in range(0, 600, 32):
        writer.write([NewContent(f"m{i}", "image", many[i]) for i in range(start, min(600, start + 32))],
                     [FileLink(f"/m/m{i}.jpg", f"m{i}", "image", 1, 1) for i in range(start, min(600, start + 32))])
    assert len(gen.metadata.content_ids("image")) == 2 + 512  # committed at 512 gathered files, 88 wait
    writer.flush()
    assert len(gen.metadata.content_ids("image")) == 602 and gen.vectors["image"].count == 602


def test_reconcile_after_a_crash_reads_only_what_faiss_lacks(tmp_path, monkeypatch):
    gen, writer, data = metadata_with_contents(tmp_path, 6)
    more = clustered(4, 6)
    writer.write([NewContent(f"x{i}", "image", more[i]) for i in range(4)],
                 [FileLink(f"/m/x{i}.jpg", f"x{i}", "image", 1, 1) for i in range(4)])
    writer.commit()
    gen.close()  # killed after the commit, before saving: FAISS on disk lacks the last batch
    monkeypatch.setattr(VectorRows, "ids", lambda self: pytest.fail("compared every id for a crash that only lost adds"))
    again = Generation(tmp_path / "idx")
    assert again.stale and set(again.vectors["image"].ids().tolist()) == set(range(1, 11))
    assert np.allclose(again.vectors["image"].vectors_of(np.array([10])), more[3:4], atol=1e-6)
    monkeypatch.undo()
    writer = Writer(again.metadata, again.vectors, save_every=1e9)
    again.save_if_stale()
    writer.write(removed=["/m/x0.jpg", "/m/0.jpg"])
    again.close()  # killed again: the removals never reached FAISS's files
    third = Generation(tmp_path / "idx")
    assert set(third.vectors["image"].ids().tolist()) == set(range(2, 11)) - {7}


def test_index_type_override_and_status(tmp_path, tiny_bundle, media_dir):
    index_dir = tmp_path / "index"
    with open_index(index_dir, tiny_bundle) as index:
        index.index([media_dir], index_type="ivf")
        status = index.status()
        assert "IVF" in status.index_type and "SQ8" in status.index_type and "nprobe" in status.index_type
        hits = index.search(image=media_dir / "photos" / "a.png", kind="image", k=1).hits
        assert hits[0].path.endswith("a.png")
    light = json.loads(CliRunner().invoke(cli, ["status", "--index", str(index_dir), "--json"]).output)
    assert light["index_type"] == status.index_type  # read from the files' headers, FAISS not loaded
    result = CliRunner().invoke(cli, ["index", str(media_dir), "--index", str(index_dir), "--index-type", "flat",
                                      "--json"])
    assert result.exit_code == 0, result.output
    with open_index(index_dir) as index:
        assert "Flat" in index.status().index_type and "IVF" not in index.status().index_type
    assert CliRunner().invoke(cli, ["index", str(media_dir), "--index", str(index_dir),
                                    "--index-type", "hnsw"]).exit_code == 2


def test_hashing_side_by_side_plans_exactly_what_one_thread_plans(tmp_path):
    """Files hashed on several threads: the same contents, duplicates grouped, the unreadable one skipped."""
    from indexer.plan import StoreView, make_plan
    from indexer.walk import walk

    for i in range(12):
        (tmp_path / f"p{i}.jpg").write_bytes(b"\xff\xd8" + bytes([i % 5]) * 4000)  # 5 distinct bodies
    locked = tmp_path / "locked.jpg"
    locked.write_bytes(b"\xff\xd8secret")
    locked.chmod(0)
    store = StoreView({}, {}, {}, lambda keys: set())
    try:
        plans = [make_plan(walk([tmp_path]), store, hash_workers=n) for n in (1, 4)]
    finally:
        locked.chmod(0o600)
    groups = [{key: sorted(c.path for c in cands) for key, cands in p.embed.items()} for p in plans]
    assert groups[0] == groups[1] and len(groups[0]) == (5 if os.geteuid() else 6)
    assert [s.path for s in plans[0].skipped] == [s.path for s in plans[1].skipped]
