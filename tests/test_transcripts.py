"""Transcripts for every spoken file: Whisper writes down recordings beside a learned speech encoder."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from media_factory import make_image
from searchengine.cli import cli
from searchengine.errors import ArgumentError
from searchengine.index import open_index

pytestmark = pytest.mark.weights  # Whisper tiny.en from its weight package


@pytest.fixture
def spoken(tmp_path):
    folder = tmp_path / "memos"
    folder.mkdir()
    subprocess.run(["espeak-ng", "-s", "130", "-w", str(folder / "memo.wav"), "the green grass in the garden"],
                   check=True)
    make_image(folder / "photo.png", 1)
    return folder


def _transcripts(index_dir):
    with open_index(index_dir, create=False) as idx:
        return {h.path.rsplit("/", 1)[-1]: h.transcript for h in idx.search(text="grass", kind="audio", k=5)}


def test_recordings_are_written_down_by_default_when_whisper_is_installed(spoken, tmp_path, tiny_bundle, monkeypatch):
    monkeypatch.delenv("SEARCHENGINE_TRANSCRIBE")  # the default: auto
    with open_index(tmp_path / "index", tiny_bundle) as idx:
        idx.index([spoken])
    assert "grass" in _transcripts(tmp_path / "index")["memo.wav"].lower()


def test_no_transcribe_leaves_them_out_and_transcribe_shows_them_in_the_cli(spoken, tmp_path, tiny_bundle):
    runner = CliRunner()
    off = runner.invoke(cli, ["index", str(spoken), "--index", str(tmp_path / "off"), "--bundle", str(tiny_bundle),
                              "--no-transcribe"])
    assert off.exit_code == 0, off.output
    assert _transcripts(tmp_path / "off") == {"memo.wav": None}
    on = runner.invoke(cli, ["index", str(spoken), "--index", str(tmp_path / "on"), "--bundle", str(tiny_bundle),
                             "--transcribe"])
    assert on.exit_code == 0, on.output
    table = runner.invoke(cli, ["search", "grass", "--kind", "audio", "--index", str(tmp_path / "on")])
    assert "memo.wav" in table.output and "grass" in table.output.lower()
    hits = json.loads(runner.invoke(cli, ["search", "grass", "--kind", "audio", "--index", str(tmp_path / "on"),
                                          "--json"]).stdout)["hits"]
    assert "grass" in hits[0]["transcript"].lower()


def test_the_setting_takes_yes_no_auto_only(spoken, tmp_path, tiny_bundle, monkeypatch):
    monkeypatch.setenv("SEARCHENGINE_TRANSCRIBE", "perhaps")
    with open_index(tmp_path / "index", tiny_bundle) as idx, pytest.raises(ArgumentError, match="auto, yes, no"):
        idx.index([spoken])


def _heard(index_dir) -> str:
    with open_index(index_dir, create=False) as idx:
        return idx.search(text="anything", kind="audio", k=1)[0].transcript


def test_typed_words_reach_a_recording_through_its_transcript(spoken, tmp_path, tiny_bundle):
    with open_index(tmp_path / "on", tiny_bundle) as idx:
        idx.index([spoken], transcribe=True)
    with open_index(tmp_path / "off", tiny_bundle) as idx:
        idx.index([spoken], transcribe=False)
    said = _heard(tmp_path / "on")
    with open_index(tmp_path / "on", create=False) as on, open_index(tmp_path / "off", create=False) as off:
        assert on.status().vectors["transcript"] == 1 and "transcript" not in off.status().vectors
        # The exact words meet their own text vector (cosine 1); the speech vector alone is far from that.
        assert on.search(text=said, kind="audio", k=1)[0].cosine == pytest.approx(1.0, abs=1e-4)
        assert off.search(text=said, kind="audio", k=1)[0].cosine < 0.99
        assert len(on.search(text=said, kind="audio", k=5)) == 1  # found twice, listed once


def test_transcript_vectors_leave_with_their_file_and_come_back_after_a_lost_faiss_file(spoken, tmp_path,
                                                                                        tiny_bundle):
    with open_index(tmp_path / "index", tiny_bundle) as idx:
        idx.index([spoken], transcribe=True)
        folder = idx.gen.folder
    (folder / "transcript.faiss").unlink()  # as a crash before the first save would leave it
    with open_index(tmp_path / "index", create=False) as idx:
        assert idx.status().vectors["transcript"] == 1  # rebuilt from the database's copy
        (spoken / "memo.wav").unlink()
        idx.index([spoken], transcribe=True)
        assert "transcript" not in idx.status().vectors and "audio" not in idx.status().files
