"""What a new user meets first at the terminal: errors that say what to do, in text and in JSON."""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import pytest
from click.testing import CliRunner

from indexer.walk import walk
from media_factory import make_image
from searchengine.cli import cli


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


@pytest.fixture
def built(index_dir, tiny_bundle, media_dir):
    result = run("index", media_dir, "--index", index_dir, "--bundle", tiny_bundle)
    assert result.exit_code == 0, result.output
    return index_dir


def test_errors_are_json_objects_with_the_exit_code_when_json_is_asked(tmp_path):
    missing = tmp_path / "nothing-here"
    result = run("status", "--index", missing, "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)
    assert error["code"] == 1 and str(missing) in error["error"]
    usage = run("search", "--no-such-option", "--json")
    assert usage.exit_code == 2 and json.loads(usage.stdout)["code"] == 2


def test_errors_stay_plain_text_without_json(tmp_path):
    result = run("status", "--index", tmp_path / "nothing-here")
    assert result.exit_code == 1 and result.output.startswith("Error: no index at")


def test_serve_refuses_a_folder_without_an_index_and_creates_nothing(tmp_path):
    folder = tmp_path / "not-an-index"
    folder.mkdir()
    result = run("serve", "--index", folder, "--port", _free_port())
    assert result.exit_code == 1 and "no index at" in result.output
    assert list(folder.iterdir()) == []


def test_serve_says_the_port_is_taken_before_loading_anything(built):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--index", built, "--port", port, "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert f"port {port}" in error and "--port" in error


def test_walk_reports_scanning_progress_with_a_running_count(tmp_path):
    for n in range(5):
        make_image(tmp_path / "photos" / f"p{n}.png", n)
    events = []
    walk([tmp_path / "photos"], progress=events.append)
    assert events and all(e.stage == "scanning" for e in events)
    assert events[-1].done == 5 and events[-1].message == f"scanning {tmp_path / 'photos'}"
    assert [e.done for e in events] == sorted(e.done for e in events)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ctrl_c_saves_what_is_done_and_exits_130(tmp_path, tiny_bundle):
    photos = tmp_path / "photos"
    for n in range(400):
        make_image(photos / f"p{n:03}.png", n)
    index = tmp_path / "index"
    cmd = [sys.executable, "-m", "searchengine", "index", str(photos), "--index", str(index),
           "--bundle", str(tiny_bundle), "--batch-size", "4"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_saved_files(index, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    saved = int(re.search(r"stopped: (\d+) files saved, run again to continue", err).group(1))
    assert 0 < saved < 400
    again = run("index", photos, "--index", index, "--json")
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert (report["added"], report["unchanged"]) == (400 - saved, saved)


def _wait_for_saved_files(index, proc, timeout: float = 60.0) -> None:
    """Until the running indexer has committed some files: read through a read-only SQLite connection,
    which can never take a lock the writer waits for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for db in index.glob("**/metadata.sqlite"):
            try:
                with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as con:
                    if con.execute("select count(*) from files").fetchone()[0] > 0:
                        return
            except sqlite3.Error:  # not created yet
                pass
        time.sleep(0.1)
    raise AssertionError(f"the indexer saved nothing in time: {proc.communicate()[1] if proc.poll() is not None else ''}")


def test_a_path_that_does_not_exist_is_an_error_naming_it(tmp_path, tiny_bundle):
    missing = tmp_path / "Picturs"
    result = run("index", missing, "--index", tmp_path / "index", "--bundle", tiny_bundle)
    assert result.exit_code == 1 and str(missing) in result.output


def test_a_folder_without_media_says_what_is_looked_for(tmp_path, tiny_bundle):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("not media")
    result = run("index", tmp_path / "docs", "--index", tmp_path / "index", "--bundle", tiny_bundle)
    assert result.exit_code == 0
    assert "no photos or recordings found" in result.output and ".heic" in result.output and ".wav" in result.output
    as_json = json.loads(run("index", tmp_path / "docs", "--index", tmp_path / "index", "--json").stdout)
    assert as_json["added"] == 0 and ".jpg" in as_json["note"]


def test_status_leaves_out_skip_records_of_files_deleted_since(tmp_path, tiny_bundle, media_dir):
    broken = media_dir / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a photo")
    assert run("index", media_dir, "--index", tmp_path / "index", "--bundle", tiny_bundle).exit_code == 0
    assert [s["path"] for s in json.loads(run("status", "--index", tmp_path / "index", "--json").stdout)["skipped"]] \
        == [str(broken)]
    broken.unlink()
    assert json.loads(run("status", "--index", tmp_path / "index", "--json").stdout)["skipped"] == []


def _json_hits(*args):
    result = run("search", *args, "--json")
    assert result.exit_code == 0, result.output
    return [(h["path"], h["score"]) for h in json.loads(result.stdout)["hits"]]


def test_a_bare_query_is_text_or_the_file_it_names(built, media_dir):
    assert _json_hits("a photo of a tree", "--index", built) == _json_hits("--text", "a photo of a tree", "--index", built)
    photo, clip = media_dir / "photos" / "b.jpg", media_dir / "voice" / "clip1.wav"
    assert _json_hits(photo, "--index", built) == _json_hits("--image", photo, "--index", built)
    assert _json_hits(clip, "--index", built) == _json_hits("--audio", clip, "--index", built)
    renamed = media_dir / "photo-without-suffix"
    renamed.write_bytes(photo.read_bytes())
    assert _json_hits(renamed, "--index", built)[1:] == _json_hits("--image", photo, "--index", built)[1:]


def test_a_bare_query_with_another_query_option_or_a_text_file_is_a_usage_error(built, media_dir):
    assert run("search", "ducks", "--text", "geese", "--index", built).exit_code == 2
    result = run("search", media_dir / "notes.txt", "--index", built)
    assert result.exit_code == 2 and "--text" in result.output


def test_paths_only_prints_one_path_per_line_for_pipes(built):
    result = run("search", "a photo", "-k", 4, "-f", "--index", built)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [path for path, _ in _json_hits("a photo", "-k", 4, "--index", built)]


def test_status_answers_from_the_database_without_faiss_or_models(built):
    code = ("import sys\nfrom searchengine.cli import cli\ntry:\n    cli(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\nprint('LOADED', [m for m in ('torch', 'open_clip', 'faiss') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code, "status", "--index", str(built), "--json"],
                         capture_output=True, text=True, check=True)
    status, loaded = out.stdout.strip().splitlines()
    assert loaded == "LOADED []"
    light = json.loads(status)
    full = run("search", "x", "--index", built)  # any search reads the FAISS files; status must agree with them
    assert full.exit_code == 0
    from searchengine.index import open_index

    with open_index(built) as idx:
        loaded_status = idx.status().to_dict()
    assert light["vectors"] == loaded_status["vectors"] == {"image": 3, "audio": 3}
    assert light["index_bytes"] == loaded_status["index_bytes"] and "Flat" in light["index_type"]
