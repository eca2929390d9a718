"""The cascade on real weights: Whisper tiny.en (installed from a hash-pinned package) transcribes a clip
spoken by espeak-ng, and the transcript lands in the metadata and in search results."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tiny_bundle import build_tiny_bundle
from searchengine import open_index
from searchengine.bundles.cascade import resolve_whisper
from searchengine.errors import WeightsMissing


def speak(text: str, path, voice: str = "en-us") -> None:
    """espeak-ng writes the clip; the engine resamples it to 16 kHz itself."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required (apt-get install espeak-ng)")
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["espeak-ng", "-v", voice, "-s", "140", "-w", str(path), text], check=True)


@pytest.fixture(scope="module")
def cascade_bundle(tmp_path_factory):
    directory = build_tiny_bundle(tmp_path_factory.mktemp("cascade") / "tiny-cascade", name="tiny-cascade")
    config = json.loads((directory / "bundle.json").read_text())
    config["speech"] = {"type": "cascade", "whisper": "tiny.en"}
    (directory / "bundle.json").write_text(json.dumps(config))
    return directory


def test_transcript_is_stored_and_shown(cascade_bundle, tmp_path):
    speak("a red apple on the kitchen table", tmp_path / "media" / "apple.wav")
    speak("two ducks swimming on a lake", tmp_path / "media" / "ducks.wav")
    with open_index(tmp_path / "index", cascade_bundle) as index:
        report = index.index([tmp_path / "media"])
        assert report.embedded == 2
        hits = index.search(audio=tmp_path / "media" / "apple.wav", kind="audio", k=2)
    assert "apple" in hits.transcript.lower()  # what the cascade heard in the query itself
    by_name = {h.path.rsplit("/", 1)[1]: (h.transcript or "").lower() for h in hits}
    assert "apple" in by_name["apple.wav"] and "table" in by_name["apple.wav"]
    assert "duck" in by_name["ducks.wav"]
    assert hits[0].path.endswith("apple.wav")  # identical transcript → identical text embedding


def test_installed_weight_packages_resolve_to_local_folders():
    for name in ("tiny.en", "base"):
        assert (Path(resolve_whisper(name)) / "model.bin").is_file()


def test_missing_whisper_folder_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsMissing, match="no model.bin"):
        resolve_whisper(str(tmp_path))

