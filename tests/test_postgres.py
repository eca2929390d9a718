"""Metadata in PostgreSQL: a schema per generation, rebuilds that drop the old one, one writer across
processes (an advisory lock), an index bound to its backend, the CLI's --db, typed server errors.

The store and index lifecycle tests (test_store.py, test_index.py) also run on PostgreSQL; these are
what only a server database has.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from pg_server import psycopg_conninfo
from searchengine import errors, open_index
from searchengine.cli import cli


def schemas(url: str, prefix: str = "searchengine_") -> list[str]:
    engine = create_engine(url)
    with engine.connect() as con:
        names = con.execute(text("select schema_name from information_schema.schemata")).scalars().all()
    engine.dispose()
    return sorted(n for n in names if n.startswith(prefix))


@pytest.fixture
def built(index_dir, tiny_bundle, media_dir, postgres_url):
    """An index of media_dir built with the tiny bundle, its metadata on the server; closed."""
    with open_index(index_dir, tiny_bundle, db=postgres_url) as index:
        assert index.index([media_dir]).added == 6
    return index_dir


def prefix_of(index_dir) -> str:
    return (index_dir / "SCHEMA").read_text().strip()


def assert_intact(index_dir, url, media_dir, bundle_name="tiny"):
    with open_index(index_dir, db=url, create=False) as index:
        assert index.status().bundle.name == bundle_name
        assert index.status().files == {"image": 3, "audio": 3}
        assert index.search(image=media_dir / "photos" / "a.png", k=1)[0].path.endswith("a.png")


def test_only_vectors_live_in_the_folder_and_status_counts_them(built, postgres_url):
    assert sorted(p.name for p in built.iterdir() if not p.name.endswith(".faiss.log")) == [
        "SCHEMA", "audio.faiss", "image.faiss", "moment.faiss", "transcript.faiss"]  # each base beside its change log
    assert schemas(postgres_url, prefix_of(built)) == [prefix_of(built) + "_g0"]
    with open_index(built, db=postgres_url) as index:
        status = index.status()
    assert status.index_bytes == sum(p.stat().st_size for p in built.glob("*.faiss*"))


def test_a_rebuild_publishes_a_new_generation_and_drops_the_old_schema(built, postgres_url, media_dir,
                                                                        other_bundle, monkeypatch):
    from searchengine.bundles.bundle import Bundle

    real, calls = Bundle.encode_speech, []

    def dies_on_the_second_batch(self, clips):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, clips)

    monkeypatch.setattr(Bundle, "encode_speech", dies_on_the_second_batch)
    with open_index(built, other_bundle, rebuild=True, db=postgres_url) as index, pytest.raises(KeyboardInterrupt):
        index.index([media_dir], batch_size=1)
    monkeypatch.undo()
    assert_intact(built, postgres_url, media_dir)  # the live generation is untouched
    prefix = prefix_of(built)
    assert schemas(postgres_url, prefix) == [f"{prefix}_g0", f"{prefix}_g1"]
    with open_index(built, db=postgres_url) as reader:
        assert reader.status().rebuild == {"bundle": "other", "files": 4}
        with open_index(built, other_bundle, rebuild=True, db=postgres_url) as writer:
            assert writer.index([media_dir]).embedded == 2  # resumed
        assert reader.search(text="x", k=1)[0]  # the reader follows the published rebuild
        assert reader.status().bundle.name == "other"
    assert_intact(built, postgres_url, media_dir, "other")
    assert (built / "CURRENT").read_text().strip() == "gen-1"
    assert schemas(postgres_url, prefix) == [f"{prefix}_g1"]  # the old generation's schema is gone
    assert not list(built.glob("*.faiss*")) and sorted(p.name for p in (built / "gen-1").iterdir()
                                                      if not p.name.endswith(".faiss.log")) == [
        "audio.faiss", "image.faiss", "moment.faiss", "transcript.faiss"]


def test_a_crash_before_the_faiss_save_is_reconciled_from_the_server(index_dir, tiny_bundle, media_dir,
                                                                     postgres_url, monkeypatch):
    from searchengine.store.vectors import VectorStore

    def crash(self):
        raise RuntimeError("simulated crash between the commit and the FAISS write")

    monkeypatch.setattr(VectorStore, "save", crash)
    with open_index(index_dir, tiny_bundle, db=postgres_url) as index, pytest.raises(RuntimeError):
        index.index([media_dir])
    monkeypatch.undo()
    assert not (index_dir / "image.faiss").exists()
    with open_index(index_dir, db=postgres_url) as index:
        assert index.status().vectors == {"image": 3, "audio": 3}
        assert (index_dir / "image.faiss").exists()  # rewritten at open: no writer held the lock
        assert index.index([media_dir]).embedded == 0


HOLD_LOCK = """
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as con:
    con.execute("select pg_advisory_lock(%s)", (int(sys.argv[2]),))
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_second_writer_in_another_process_is_refused(built, postgres_url, media_dir, other_bundle):
    with open_index(built, db=postgres_url) as index:
        key = index.backend.lock_key()
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, psycopg_conninfo(postgres_url), str(key)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            with pytest.raises(errors.IndexStateError, match=f"another index run is writing to {built}"):
                index.index([media_dir])
            with open_index(built, other_bundle, rebuild=True, db=postgres_url) as rebuild, \
                    pytest.raises(errors.IndexStateError, match="another index run"):
                rebuild.index([media_dir])
        finally:
            holder.communicate("")  # its connection closes: the server drops the lock
        assert index.index([media_dir]).unchanged == 6
    assert not (built / "gen-1").exists()


def test_two_writers_in_one_process_hold_separate_sessions(built, postgres_url, media_dir):
    with open_index(built, db=postgres_url) as first, open_index(built, db=postgres_url) as second:
        with first._writer_lock():
            with pytest.raises(errors.IndexStateError, match="another index run"):
                second.index([media_dir])


def test_two_index_folders_share_one_database(built, postgres_url, tiny_bundle, media_dir, tmp_path):
    (media_dir / "voice" / "clip0.wav").unlink()
    with open_index(tmp_path / "second", tiny_bundle, db=postgres_url) as other:
        assert other.index([media_dir]).added == 5
    assert prefix_of(built) != prefix_of(tmp_path / "second")
    assert_intact(built, postgres_url, media_dir)


def test_an_index_stays_with_its_backend(built, postgres_url, tiny_bundle, media_dir, tmp_path):
    with pytest.raises(errors.IndexStateError, match="database server"):
        open_index(built)
    with open_index(tmp_path / "lite", tiny_bundle) as lite:
        lite.index([media_dir])
    with pytest.raises(errors.IndexStateError, match="SQLite"):
        open_index(tmp_path / "lite", db=postgres_url)
    with pytest.raises(errors.IndexStateError, match="no index at"):
        open_index(tmp_path / "empty", db=postgres_url, create=False)
    with pytest.raises(errors.ArgumentError, match="PostgreSQL"):
        open_index(tmp_path / "x", db="mysql://u@h/d")
    with pytest.raises(errors.ArgumentError, match="needs its driver"):
        open_index(tmp_path / "x", db="postgresql+asyncpg://u@h/d")
    with open_index(built, db=postgres_url.replace("+psycopg", "")) as plain:  # postgresql:// is psycopg 3
        assert plain.status().files == {"image": 3, "audio": 3}


def test_an_unreachable_server_is_a_typed_error(tmp_path):
    with pytest.raises(errors.IndexStateError, match="metadata database postgresql") as caught:
        open_index(tmp_path / "index", db="postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    assert "secret" not in str(caught.value)  # the password never reaches a message


def test_a_full_disk_on_the_server_is_a_storage_error():
    from sqlalchemy.exc import OperationalError

    from searchengine.store.database import database_error

    class DiskFull(Exception):
        sqlstate = "53100"

    exc = OperationalError("INSERT", {}, DiskFull("could not extend file: wrote only 4096 of 8192 bytes"))
    assert isinstance(database_error("postgresql://db (schema s)", exc), errors.StorageError)


def test_the_cli_takes_db_as_an_option_and_from_the_environment(index_dir, tiny_bundle, media_dir, postgres_url):
    runner = CliRunner()
    done = runner.invoke(cli, ["index", str(media_dir), "--index", str(index_dir), "--bundle", str(tiny_bundle),
                               "--db", postgres_url, "--json"])
    assert done.exit_code == 0, done.output
    status = runner.invoke(cli, ["status", "--index", str(index_dir), "--json"], env={"SEARCHENGINE_DB": postgres_url})
    assert json.loads(status.output)["files"] == {"image": 3, "audio": 3}
    found = runner.invoke(cli, ["search", "--text", "x", "--index", str(index_dir), "--db", postgres_url, "--json"])
    assert found.exit_code == 0 and json.loads(found.output)["hits"]
    refused = runner.invoke(cli, ["status", "--index", str(index_dir)])
    assert refused.exit_code == 1 and "--db" in refused.output


def test_serve_opens_the_index_with_db(built, postgres_url, monkeypatch):
    from searchengine.server import serving

    served = []
    monkeypatch.setattr(serving, "run", lambda app, host, port, **kw: served.append(app))
    done = CliRunner().invoke(cli, ["serve", "--index", str(built), "--db", postgres_url, "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output.splitlines()[0])["index"] == str(built) and served
