"""`search --record`: a real PulseAudio server started here, a null sink whose monitor is the default
microphone, a WAV played into it: the bytes pass through the audio stack (PortAudio → ALSA → PulseAudio,
or parecord) into the search."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from media_factory import tone, write_wav
from searchengine.errors import RecordingError
from searchengine.index import open_index

PULSEAUDIO = shutil.which("pulseaudio")
REPO = Path(__file__).resolve().parents[1]

if PULSEAUDIO is None or shutil.which("paplay") is None:
    pytest.skip("PulseAudio is not installed (scripts/setup.sh --dev installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    """The environment of a private PulseAudio server: a null sink `feed`, its monitor the default source."""
    home = tmp_path_factory.mktemp("pulse")
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home), "PULSE_RUNTIME_PATH": str(home / "run"),
           "PULSE_STATE_PATH": str(home / "state"), "PULSE_SERVER": f"unix:{home}/native"}
    log = open(home / "pulse.log", "w")
    server = subprocess.Popen(
        [PULSEAUDIO, "--system=false", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
         "--use-pid-file=no", "-L", f"module-native-protocol-unix socket={home}/native auth-anonymous=1",
         "-L", "module-null-sink sink_name=feed rate=16000 channels=1"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"PulseAudio did not start:\n{(home / 'pulse.log').read_text()}")
            time.sleep(0.2)
        subprocess.run(["pactl", "set-default-source", "feed.monitor"], env=env, check=True)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


class Playing:
    """Plays a WAV into the server's sink over and over until stopped (the recorder may start any time)."""

    def __init__(self, wav: Path, env: dict):
        self.wav, self.env, self.stop = wav, env, threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            subprocess.run(["paplay", "--device=feed", str(self.wav)], env=self.env, capture_output=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=15)


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_bundle):
    """Recordings of clearly different lengths (what the tiny random encoder hears best), indexed."""
    root = tmp_path_factory.mktemp("record") / "media"
    for seed, (name, seconds) in enumerate({"short": 1.0, "three": 3.0, "seven": 7.0, "twelve": 12.0}.items()):
        write_wav(root / f"{name}.wav", tone(20 + seed, seconds))
    index = root.parent / "index"
    with open_index(index, tiny_bundle) as idx:
        idx.index([root])
    return root, index


def search_cli(index: Path, env: dict, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "searchengine", "search", "--index", str(index), *args],
                          env={**env, "SEARCHENGINE_DEVICE": "cpu"}, capture_output=True, text=True, timeout=300,
                          cwd=REPO, stdin=subprocess.DEVNULL)


def test_record_json_finds_the_recording_played_into_the_microphone(pulse, library):
    root, index = library
    with Playing(root / "three.wav", pulse):
        done = search_cli(index, pulse, "--record", "3", "--kind", "audio", "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    hits = json.loads(done.stdout)["hits"]
    assert hits[0]["path"] == str(root / "three.wav"), hits
    assert "recording" not in done.stderr  # no meter with --json


def test_record_shows_a_level_meter_on_stderr(pulse, library):
    root, index = library
    with Playing(root / "three.wav", pulse):
        done = search_cli(index, pulse, "--record", "1.5", "--kind", "audio")
    assert done.returncode == 0, done.stderr
    frames = [f for f in done.stderr.splitlines() if f.startswith("recording")]  # text mode reads \r as a line end
    assert len(frames) >= 10 and "#" in frames[-1] and "(Enter stops)" in frames[-1]  # a tenth of a second each
    assert "three.wav" in done.stdout


def test_no_microphone_is_a_clear_error(library, pulse, tmp_path):
    _, index = library
    env = {**pulse, "PULSE_SERVER": f"unix:{tmp_path}/no-such-server"}
    done = search_cli(index, env, "--record", "2", "--json")
    assert done.returncode == 1
    error = json.loads(done.stdout)["error"]
    assert error.startswith("no microphone to record from") and "PortAudio" in error and "parecord" in error


def test_both_recorders_hear_the_sound_server(pulse, library, monkeypatch):
    from searchengine.record import PortAudioSource, PulseSource, level_db, record

    root, _ = library
    for name, value in pulse.items():
        monkeypatch.setenv(name, value)
    with Playing(root / "twelve.wav", pulse):
        time.sleep(0.5)
        for source in (PulseSource, PortAudioSource):
            with source() as mic:
                heard = np.concatenate([mic.read(1600) for _ in range(10)])
            assert heard.size == 16_000 and level_db(heard) > -30, source.__name__
    with pytest.raises(RecordingError, match="between 0 and"):
        record(0)
