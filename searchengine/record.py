"""Record a spoken query from the default microphone: PortAudio (sounddevice), else PulseAudio's parecord.

Recording stops after `seconds`, when `stop` is set (the CLI sets it on Enter), or after a trailing
silence once something was heard. `on_level` gets the level of each tenth of a second, so a caller
can draw a meter; the library itself never prints. No input device (or no sound server) is a
RecordingError that says so.

sounddevice is imported here only, on first use (it loads the PortAudio library).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable

import numpy as np

from .errors import RecordingError
from .types import SAMPLE_RATE

CHUNK = SAMPLE_RATE // 10  # samples per read: a tenth of a second
SPEECH_DB = -35.0  # a chunk louder than this (dBFS) is someone speaking
TRAILING_SILENCE = 1.5  # seconds of quiet after speech that end a recording
MAX_SECONDS = 600.0


def level_db(chunk: np.ndarray) -> float:
    """The loudness of a chunk in dB below full scale (-100 for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(chunk, dtype=np.float64)))) if chunk.size else 0.0
    return max(-100.0, 20 * np.log10(rms)) if rms > 0 else -100.0


def record(seconds: float, *, on_level: Callable[[float, float], None] | None = None,
           stop: threading.Event | None = None, stop_on_silence: bool = True) -> np.ndarray:
    """Up to `seconds` of 16 kHz mono float32 from the default input; on_level(dBFS, seconds so far)."""
    if not 0 < seconds <= MAX_SECONDS:
        raise RecordingError(f"a recording lasts between 0 and {MAX_SECONDS:g} seconds, not {seconds:g}")
    stop = stop or threading.Event()
    chunks: list[np.ndarray] = []
    heard, quiet, total = False, 0.0, 0
    with open_source() as source:
        while total < seconds * SAMPLE_RATE and not stop.is_set():
            chunk = source.read(min(CHUNK, int(seconds * SAMPLE_RATE) - total))
            if chunk.size == 0:
                break
            chunks.append(chunk)
            total += chunk.size
            level = level_db(chunk)
            if on_level is not None:
                on_level(level, total / SAMPLE_RATE)
            heard = heard or level > SPEECH_DB
            quiet = 0.0 if level > SPEECH_DB else quiet + chunk.size / SAMPLE_RATE
            if stop_on_silence and heard and quiet >= TRAILING_SILENCE:
                break
    if not chunks:
        raise RecordingError("the microphone delivered no sound")
    return np.concatenate(chunks).astype(np.float32)


def open_source():
    """The first recorder that works: PortAudio's default input, else PulseAudio's parecord."""
    reasons = []
    for make in (PortAudioSource, PulseSource):
        try:
            return make()
        except RecordingError as exc:
            reasons.append(str(exc))
    raise RecordingError("no microphone to record from: " + "; ".join(reasons))


class PortAudioSource:
    """The default input device through PortAudio (ALSA, or PulseAudio/PipeWire behind ALSA's default)."""

    def __init__(self):
        try:
            import sounddevice
        except (ImportError, OSError) as exc:  # OSError: the PortAudio library itself is missing
            raise RecordingError(f"PortAudio is not available ({exc})") from exc
        try:
            sounddevice.query_devices(kind="input")
            self.stream = sounddevice.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32",
                                                  blocksize=CHUNK)
            self.stream.start()
        except Exception as exc:  # PortAudioError and ValueError: no device, or none that opens
            raise RecordingError(f"PortAudio found no usable input device ({_first_line(exc)})") from exc

    def read(self, frames: int) -> np.ndarray:
        data, _overflowed = self.stream.read(frames)
        return np.asarray(data, dtype=np.float32).reshape(-1)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stream.stop()
        self.stream.close()


class PulseSource:
    """PulseAudio's (or PipeWire's) default source through the parecord command."""

    def __init__(self):
        parecord = shutil.which("parecord")
        if parecord is None:
            raise RecordingError("parecord (PulseAudio's recorder) is not installed")
        self.process = subprocess.Popen([parecord, "--raw", "--format=float32le", f"--rate={SAMPLE_RATE}",
                                         "--channels=1", "--latency-msec=50"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.2)
        if self.process.poll() is not None:
            message = self.process.stderr.read().decode(errors="replace").strip()
            raise RecordingError(f"parecord could not record ({_first_line(message) or 'no sound server'})")

    def read(self, frames: int) -> np.ndarray:
        data = self.process.stdout.read(frames * 4)
        return np.frombuffer(data[:len(data) // 4 * 4], dtype="<f4").copy()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _first_line(exc) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
