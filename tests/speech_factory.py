"""Long recordings with speech at known times: espeak-ng sentences between quiet noise."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

RATE = 16_000
ESPEAK = shutil.which("espeak-ng")
SENTENCES = ("A red bicycle leans against a stone wall near the harbour.",
             "Two ducks swim on a quiet lake at sunset.",
             "An old lighthouse stands on the rocks under a grey sky.",
             "Three children build a sand castle on the beach.")


def spoken(text: str, voice: str = "en") -> np.ndarray:
    """`text` said by espeak-ng, as 16 kHz mono float32."""
    if ESPEAK is None:
        pytest.skip("espeak-ng is not installed (scripts/setup.sh --dev installs it)")
    from searchengine.media import load_audio

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "said.wav"
        subprocess.run([ESPEAK, "-v", voice, "-w", str(wav), text], check=True, capture_output=True)
        return load_audio(wav).samples


def quiet(seconds: float, seed: int = 0, level: float = 0.003) -> np.ndarray:
    """Faint noise: a room, not digital silence."""
    return (np.random.default_rng(seed).standard_normal(int(seconds * RATE)) * level).astype(np.float32)


def long_recording(parts: list[tuple[float, str]], tail: float = 5.0, seed: int = 0) -> tuple[np.ndarray, list]:
    """Sentences each after a pause: parts = [(pause before, text)]; returns (samples, [(start, end)] of speech)."""
    pieces, truth, at = [], [], 0.0
    for i, (pause, text) in enumerate(parts):
        said = spoken(text)
        pieces += [quiet(pause, seed + i), said]
        at += pause
        truth.append((at, at + len(said) / RATE))
        at += len(said) / RATE
    pieces.append(quiet(tail, seed + 99))
    return np.concatenate(pieces).astype(np.float32), truth
