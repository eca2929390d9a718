"""Issue-12 defects, each pinned: rebuilds never lose the live index, damaged files are repaired,
odd files never hang a run, unplugged drives keep their entries, and every failure is typed."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import sqlite3
from pathlib import Path

import pytest
from media_factory import make_image, tone, write_wav

from searchengine import errors, open_index
from searchengine.store.vectors import VectorStore


def names(records) -> dict[str, str]:
    return {r.path.rsplit("/", 1)[1]: r.reason for r in records}


@pytest.fixture
def built(index_dir, tiny_bundle, media_dir):
    """An index of media_dir (3 images, 3 recordings) built with the tiny bundle, closed."""
    with open_index(index_dir, tiny_bundle) as index:
        index.index([media_dir])
    return index_dir


def assert_intact(index_dir, media_dir, bundle_name="tiny"):
    """The live index answers with its own bundle and holds every file."""
    with open_index(index_dir) as index:
        assert index.status().bundle.name == bundle_name
        assert index.status().files == {"image": 3, "audio": 3}
        assert index.search(image=media_dir / "photos" / "a.png", k=1)[0].path.endswith("a.png")


# ------------------------------------------------------------------ 1. rebuilds

def test_rebuild_whose_bundle_cannot_load_leaves_the_index_untouched(built, media_dir, tmp_path, tiny_bundle):
    broken = tmp_path / "broken-bundle"
    shutil.copytree(tiny_bundle, broken)
    (broken / "clip.pt").write_bytes(b"not a checkpoint")
    with open_index(built, broken, rebuild=True) as index, pytest.raises(errors.SearchEngineError):
        index.index([media_dir])
    assert_intact(built, media_dir)


def test_rebuild_while_another_run_writes_is_refused_before_anything_changes(built, media_dir, other_bundle):
    with open(built / "write.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with open_index(built, other_bundle, rebuild=True) as index, pytest.raises(errors.IndexStateError):
            index.index([media_dir])
    assert_intact(built, media_dir)


def test_an_interrupted_rebuild_keeps_the_old_index_live_and_the_next_one_resumes(built, media_dir, other_bundle,
                                                                                   monkeypatch):
    from searchengine.bundles.bundle import Bundle

    real, calls = Bundle.encode_speech, []

    def dies_on_the_second_batch(self, clips):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C (or a crash) half way
        return real(self, clips)

    monkeypatch.setattr(Bundle, "encode_speech", dies_on_the_second_batch)
    with open_index(built, other_bundle, rebuild=True) as index, pytest.raises(KeyboardInterrupt):
        index.index([media_dir], batch_size=1)
    monkeypatch.undo()
    assert_intact(built, media_dir)
    with open_index(built) as index:
        assert index.status().rebuild == {"bundle": "other", "files": 4}  # 3 images + 1 recording done
    with open_index(built, other_bundle, rebuild=True) as index:
        assert index.index([media_dir]).embedded == 2  # resumed: only what was missing
    assert_intact(built, media_dir, "other")
    assert sorted(p.name for p in built.iterdir() if p.name.startswith("gen-")) == ["gen-1"]
    assert not (built / "metadata.sqlite").exists()  # the old generation is gone once the new one is live


def test_a_rebuild_takes_a_bundle_the_caller_loaded(built, media_dir, other_bundle):
    from searchengine import load_bundle

    with open_index(built, load_bundle(other_bundle, device="cpu"), rebuild=True) as index:
        assert index.index([media_dir]).embedded == 6
    assert_intact(built, media_dir, "other")


def test_a_reader_follows_a_rebuild_published_by_another_writer(built, media_dir, other_bundle):
    with open_index(built) as reader:
        assert reader.search(text="x", k=1)[0]
        with open_index(built, other_bundle, rebuild=True) as writer:
            writer.index([media_dir])
        assert reader.search(image=media_dir / "photos" / "b.jpg", k=1)[0].path.endswith("b.jpg")
        assert reader.status().bundle.name == "other"


# ------------------------------------------------------------------ 2. full disk, atomic migration

def test_a_failed_first_migration_leaves_no_half_made_schema(tmp_path, monkeypatch):
    from alembic import op

    from searchengine.store.metadata import MetadataStore

    real, made = op.create_table, []

    def fails_on_the_third_table(*args, **kwargs):
        made.append(args[0])
        if len(made) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(op, "create_table", fails_on_the_third_table)
    with pytest.raises(OSError):
        MetadataStore(tmp_path / "m.sqlite")
    monkeypatch.undo()
    tables = {r[0] for r in sqlite3.connect(tmp_path / "m.sqlite").execute("select name from sqlite_master where type='table'")}
    assert not tables - {"sqlite_sequence"}  # rolled back whole
    MetadataStore(tmp_path / "m.sqlite").close()  # and the next open makes it


def test_a_half_made_schema_from_an_older_engine_is_repaired(tmp_path):
    from searchengine.store.metadata import MetadataStore

    con = sqlite3.connect(tmp_path / "m.sqlite")
    con.execute("create table bundle_info (id integer primary key, name text)")
    con.commit()
    con.close()
    MetadataStore(tmp_path / "m.sqlite").close()  # was: "table bundle_info already exists", forever


def test_a_full_disk_while_saving_vectors_is_a_storage_error_and_keeps_the_old_file(built, media_dir, monkeypatch):
    before = (built / "image.faiss").read_bytes()

    from searchengine.store import vectors

    write_base = vectors._write_base  # FAISS streams the base through Python: here into a device that is always full

    make_image(media_dir / "photos" / "new.png", 9)
    monkeypatch.setattr(vectors, "_write_base", lambda index, epoch, _path: write_base(index, epoch, Path("/dev/full")))
    with open_index(built) as index, pytest.raises(errors.StorageError, match=r"needs about .* free"):
        index.index([media_dir])
    monkeypatch.undo()
    assert (built / "image.faiss").read_bytes() == before
    with open_index(built) as index:  # SQLite committed the new file; FAISS catches up on open
        assert index.status().files["image"] == 4
        assert index.search(image=media_dir / "photos" / "new.png", k=1)[0].path.endswith("new.png")


# ------------------------------------------------------------------ 3. damaged FAISS files

@pytest.mark.parametrize("damage", ["empty", "truncated", "random", "wrong_dimension", "wrong_type"])
def test_an_unreadable_faiss_file_is_rebuilt_from_sqlite(built, media_dir, damage):
    import faiss
    import numpy as np

    path = built / "image.faiss"
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(3000))
    elif damage == "wrong_dimension":
        VectorStore(path, 7).save()
    else:
        faiss.write_index(faiss.IndexFlatL2(16), str(path))
    with open_index(built) as index:
        assert index.status().vectors == {"image": 3, "audio": 3}
        assert index.search(image=media_dir / "photos" / "a.png", k=1)[0].path.endswith("a.png")
    assert VectorStore(path, 16).damaged is None  # repaired on disk by the open (no writer was running)


def test_a_rerun_after_a_crash_during_save_writes_the_faiss_files_again(index_dir, tiny_bundle, media_dir,
                                                                         monkeypatch):
    monkeypatch.setattr(VectorStore, "save", lambda self: (_ for _ in ()).throw(SystemExit(9)))
    with open_index(index_dir, tiny_bundle) as index, pytest.raises(SystemExit):
        index.index([media_dir])
    monkeypatch.undo()
    with open(index_dir / "write.lock", "a") as held:  # a writer is busy: opening must not write
        fcntl.flock(held, fcntl.LOCK_EX)
        open_index(index_dir).close()
    assert not (index_dir / "image.faiss").exists()
    (index_dir / ".image.faiss.4242-0badc0de.tmp").write_bytes(b"half a file")  # what a kill mid-write leaves
    with open_index(index_dir) as index:
        assert index.index([media_dir]).embedded == 0
    assert VectorStore(index_dir / "image.faiss", 16).count == 3
    assert not list(index_dir.glob(".*.tmp"))


# ------------------------------------------------------------------ 4, 5, 10. odd files

def test_identical_bytes_under_an_image_and_an_audio_name_are_judged_apart(index_dir, tiny_bundle, tmp_path):
    media = tmp_path / "m"
    song = write_wav(media / "song.wav", tone(3, 1.0))
    shutil.copy(song, media / "a_copy.jpg")
    with open_index(index_dir, tiny_bundle) as index:
        report = index.index([media])
        assert names(report.skipped).keys() == {"a_copy.jpg"} and index.status().files == {"audio": 1}
        (media / "a_copy.jpg").unlink()
        index.index([media])
        assert index.status().files == {"audio": 1} and index.status().skipped == []


def test_fifos_devices_and_bad_links_are_skipped_without_hanging(index_dir, tiny_bundle, tmp_path):
    signal.alarm(120)  # a hang fails the test instead of the whole run
    media = tmp_path / "m"
    make_image(media / "ok.png", 1)
    os.mkfifo(media / "pipe.wav")
    os.symlink("/dev/zero", media / "zero.wav")
    os.symlink("/dev/urandom", media / "noise.jpg")
    os.symlink(media / "loop2.jpg", media / "loop1.jpg")
    os.symlink(media / "loop1.jpg", media / "loop2.jpg")
    os.symlink(media / "gone.png", media / "dangling.png")
    for name in ("empty.jpg", "empty.wav", "empty.mp3"):
        (media / name).write_bytes(b"")
    shutil.copy(media / "ok.png", os.fsencode(media) + b"/latin1-caf\xe9.png")  # not UTF-8: unstorable
    with open_index(index_dir, tiny_bundle) as index:
        reasons = names(index.index([media]).skipped)
        assert index.status().files == {"image": 1}
    assert "FIFO" in reasons["pipe.wav"] and "character device" in reasons["zero.wav"]
    assert "character device" in reasons["noise.jpg"]
    assert reasons["loop1.jpg"] == reasons["loop2.jpg"] == "symbolic link loop"
    assert reasons["dangling.png"] == "dangling symbolic link"
    assert {reasons[n] for n in ("empty.jpg", "empty.wav", "empty.mp3")} == {"empty file (0 bytes)"}
    assert "not valid UTF-8" in reasons["latin1-caf\ufffd.png"]
    signal.alarm(0)


def test_skip_records_of_deleted_files_leave_status(index_dir, tiny_bundle, tmp_path):
    media = tmp_path / "m"
    make_image(media / "ok.png", 1)
    (media / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with open_index(index_dir, tiny_bundle) as index:
        index.index([media])
        assert names(index.status().skipped).keys() == {"broken.jpg"}
        (media / "broken.jpg").unlink()
        index.index([media])
        assert index.status().skipped == []


def test_partial_recordings_are_indexed_with_a_warning(index_dir, tiny_bundle, tmp_path):
    media = tmp_path / "m"
    write_wav(media / "long.wav", tone(1, 40.0))
    one = write_wav(media / "one-sample.wav", tone(2, 1.0)[:1])
    whole = write_wav(media / "cut.wav", tone(3, 2.0)).read_bytes()
    (media / "cut.wav").write_bytes(whole[: len(whole) // 2])
    with open_index(index_dir, tiny_bundle) as index:
        # moments only after 60 s: the 40-s recording is one vector that hears its first 30 s
        report = index.index([media], moments_after=60)
        assert report.embedded == 3 and not report.skipped
        warned = names(index.status().warnings)
    assert names(report.warnings) == warned
    assert "first 30 s of this 40-s recording" in warned["long.wav"]
    assert "truncated" in warned["cut.wav"] and "too short" in warned[one.name]


def test_a_recording_split_into_moments_is_searchable_whole_without_a_warning(index_dir, tiny_bundle, tmp_path):
    write_wav(tmp_path / "m" / "long.wav", tone(1, 40.0))
    with open_index(index_dir, tiny_bundle) as index:
        report = index.index([tmp_path / "m"], moments_after=25)
        assert report.embedded == 1 and not report.warnings and not index.status().warnings


# ------------------------------------------------------------------ 7. unplugged drives

def test_a_missing_root_keeps_its_entries_until_pruned(index_dir, tiny_bundle, tmp_path):
    drive_a, drive_b = tmp_path / "a", tmp_path / "b"
    make_image(drive_a / "x.png", 1)
    make_image(drive_b / "y.png", 2)
    with open_index(index_dir, tiny_bundle) as index:
        index.index([drive_a, drive_b])
        drive_b.rename(tmp_path / "unplugged")
        report = index.index([drive_a])
        assert report.removed == 0 and index.status().files == {"image": 2}
        report = index.index([drive_a, drive_b])
        assert [(o.root, o.kept) for o in report.offline] == [(str(drive_b), 1)]
        assert index.index([drive_a], prune=True).removed == 1
        assert index.status().files == {"image": 1}


def test_the_cli_reports_offline_roots_and_prunes(index_dir, tiny_bundle, tmp_path):
    from click.testing import CliRunner

    from searchengine.cli import cli

    make_image(tmp_path / "b" / "y.png", 2)
    run = lambda *a: CliRunner().invoke(cli, ["index", *a, "--index", str(index_dir), "--bundle", str(tiny_bundle)])
    assert run(str(tmp_path / "b")).exit_code == 0
    shutil.rmtree(tmp_path / "b")
    out = run(str(tmp_path / "b"))
    assert out.exit_code == 0 and "offline:" in out.output and "kept its 1 indexed files" in out.output
    out = run(str(tmp_path / "b"), "--prune", "--json")
    assert json.loads(out.output)["removed"] == 1


# ------------------------------------------------------------------ 8. typed errors

def test_a_garbled_database_page_is_a_typed_error(built):
    db = built / "metadata.sqlite"
    sqlite3.connect(db).execute("pragma wal_checkpoint(truncate)").close()
    data = bytearray(db.read_bytes())
    data[4096:8192] = os.urandom(4096)
    db.write_bytes(bytes(data))
    with pytest.raises(errors.IndexStateError, match="damaged"):
        with open_index(built) as index:
            index.status()
            index.search(text="x")


def test_a_lock_file_that_is_a_folder_is_a_typed_error(built, media_dir):
    (built / "write.lock").unlink(missing_ok=True)
    (built / "write.lock").mkdir()
    with open_index(built) as index, pytest.raises(errors.IndexStateError, match="write.lock"):
        index.index([media_dir])


# ------------------------------------------------------------------ 6. bounded memory

def test_large_decodes_wait_for_memory_and_huge_images_decode_small(tmp_path):
    import threading

    from PIL import Image

    from indexer.pipeline import ByteBudget
    from searchengine.media import load_image

    budget, events = ByteBudget(100), []

    def second():
        with budget.reserve(80):
            events.append("second in")

    with budget.reserve(80):
        worker = threading.Thread(target=second)
        worker.start()
        worker.join(0.3)
        events.append("first out")
    worker.join(5)
    assert events == ["first out", "second in"]  # the second waited for the first's memory
    Image.new("P", (6000, 5000)).save(tmp_path / "huge.png")  # a few KB on disk, 30 MP decoded
    asked = []
    small = load_image(tmp_path / "huge.png", min_side=96, reserve=lambda cost: asked.append(cost) or budget.reserve(1))
    assert asked == [6000 * 5000 * 4]  # the decode asked for its whole-size peak before decoding
    assert min(small.size) < 400 and small.info["original_size"] == (6000, 5000)


def test_a_damaged_current_file_falls_back_to_the_only_generation(built, media_dir, other_bundle):
    with open_index(built, other_bundle, rebuild=True) as index:
        index.index([media_dir])
    (built / "CURRENT").write_bytes(os.urandom(64))
    assert_intact(built, media_dir, "other")  # one generation: it must be the live one
    (built / "gen-2").mkdir()
    with pytest.raises(errors.IndexStateError, match="gen-1, gen-2"):
        open_index(built)


def test_a_failed_write_inside_faiss_reaches_python_as_the_disks_own_error():
    """FAISS's own file writer only logs a failed write; the base goes through Python's file instead."""
    import faiss
    import numpy as np

    from searchengine.store.vectors import _write_base

    index = faiss.IndexIDMap2(faiss.IndexFlatIP(64))
    index.add_with_ids(np.ones((500, 64), np.float32), np.arange(500))  # 128 KB: the error comes mid-index
    with pytest.raises(OSError) as caught:
        _write_base(index, b"e" * 16, Path("/dev/full"))
    assert caught.value.errno == errno.ENOSPC
