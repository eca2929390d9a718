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
