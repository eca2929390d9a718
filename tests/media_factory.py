"""Real media files made on the fly: images with Pillow, audio encoded by FFmpeg (through PyAV)."""

from __future__ import annotations

import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

RATE = 16_000
# extension -> (container format, codec, sample rate, sample format)
AUDIO_FORMATS = {
    ".wav": ("wav", "pcm_s16le", 16000, "s16"),
    ".flac": ("flac", "flac", 44100, "s16"),
    ".mp3": ("mp3", "libmp3lame", 44100, "s16p"),
    ".ogg": ("ogg", "vorbis", 44100, "fltp"),  # FFmpeg's own vorbis encoder: stereo only
    ".opus": ("ogg", "libopus", 48000, "s16"),
    ".m4a": ("ipod", "aac", 44100, "fltp"),
    ".webm": ("webm", "libopus", 48000, "s16"),
}


def make_image(path: Path, seed: int, size: tuple[int, int] = (48, 40), fmt: str | None = None) -> Path:
    """A random blocky picture (distinct per seed)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    img = Image.fromarray(blocks).resize(size, Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path


def tone(seed: int, seconds: float = 1.0, rate: int = RATE) -> np.ndarray:
    """A chord of random pitches with a little noise, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    freqs = rng.uniform(150, 2000, size=3)
    signal = sum(np.sin(2 * np.pi * f * t) for f in freqs) / 3
    return (0.6 * signal + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    """16-bit mono WAV with the standard library."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def encode_audio(path: Path, samples: np.ndarray) -> Path:
    """Encode 16 kHz mono samples into the format the suffix names (resampled by FFmpeg as needed)."""
    fmt, codec, rate, sample_fmt = AUDIO_FORMATS[path.suffix]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as container:
        layout = "stereo" if codec == "vorbis" else "mono"
        stream = container.add_stream(codec, rate=rate, layout=layout)
        if codec == "vorbis":
            stream.codec_context.options = {"strict": "-2"}  # it is flagged experimental
        resampler = av.AudioResampler(format=sample_fmt, layout=layout, rate=rate)
        frame = av.AudioFrame.from_ndarray((samples[None, :] * 32767).astype(np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.time_base = RATE, Fraction(1, RATE)
        for chunk in list(resampler.resample(frame)) + list(resampler.resample(None)):
            for packet in stream.encode(chunk):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
