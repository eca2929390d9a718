"""Long recordings become moments: speech regions from a voice-activity detector, bounded in length.

A 3-second caption is one vector, but a voice memo of minutes or a lecture of an hour holds many
things said at different times, and a speech encoder hears only its first seconds. So a recording
longer than `moments_after` seconds (setting `moments_after`, default 25) is cut into moments:
the speech regions Silero VAD finds (its weights ship inside its package), joined when the pause
between them is short and the result stays under LONGEST seconds, cut into equal parts when one
region runs longer, widened to SHORTEST seconds when shorter. Each moment is embedded and indexed
with its start and end. A long recording without detectable speech (music, noise) is cut into
fixed windows, so all of it stays searchable.

Silero VAD (and through it torch) is imported here only, on first use.
"""

from __future__ import annotations

import math
import threading
import warnings
from dataclasses import dataclass

import numpy as np

from . import settings
from .errors import ArgumentError
from .types import SAMPLE_RATE

DEFAULT_MOMENTS_AFTER = 25.0
# The longest recording the indexer takes (a spoken query stays under media.MAX_AUDIO_SECONDS): a
# two-hour lecture is 460 MB of decoded samples, held while its moments are found and embedded.
LONGEST_RECORDING = 2 * 3600.0
SHORTEST = 3.0  # seconds: a shorter moment carries too few words to match anything
LONGEST = 20.0  # seconds: a longer one blurs several things said into one vector
JOIN_PAUSE = 1.0  # seconds: regions closer than this are one thing said, if the result fits LONGEST
# Silero's own merging: pauses shorter than this stay inside a region (breaths between words).
MIN_SILENCE_MS = 500
SPEECH_PAD_MS = 150


@dataclass(frozen=True)
class Span:
    """A stretch of a recording, in seconds from its start."""

    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


def moments_after(flag: float | str | None = None) -> float:
    """The length (seconds) above which recordings become moments: the flag, else the setting, else 25."""
    raw = settings.value("moments_after", None if flag is None else str(flag))
    if raw is None:
        return DEFAULT_MOMENTS_AFTER
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < SHORTEST:
        raise ArgumentError(f"moments_after must be a number of seconds of at least {SHORTEST:g}, not {raw!r}")
    return seconds


def moment_spans(samples: np.ndarray, after: float) -> list[Span] | None:
    """The moments of a recording, or None when it is short enough to stay one (its whole length)."""
    duration = len(samples) / SAMPLE_RATE
    if duration <= after:
        return None
    regions = speech_regions(samples)
    if not regions:
        return fixed_windows(duration)
    return bound(regions, duration)


def bound(regions: list[Span], duration: float, shortest: float = SHORTEST, longest: float = LONGEST,
          join_pause: float = JOIN_PAUSE) -> list[Span]:
    """Speech regions (in time order) joined, cut and widened into moments of shortest..longest seconds."""
    joined: list[Span] = []
    for region in regions:
        last = joined[-1] if joined else None
        if last and region.start - last.end <= join_pause and region.end - last.start <= longest:
            joined[-1] = Span(last.start, region.end)
        else:
            joined.append(region)
    cut = [part for span in joined for part in _cut(span, longest)]
    return [_widen(span, shortest, duration) for span in cut]


def fixed_windows(duration: float, longest: float = LONGEST) -> list[Span]:
    """Equal windows of at most `longest` seconds covering the whole recording."""
    return _cut(Span(0.0, duration), longest)


def _cut(span: Span, longest: float) -> list[Span]:
    parts = max(1, math.ceil(span.length / longest - 1e-9))
    step = span.length / parts
    return [Span(round(span.start + i * step, 3), round(span.start + (i + 1) * step, 3)) for i in range(parts)]


def _widen(span: Span, shortest: float, duration: float) -> Span:
    """A span at least `shortest` long (as far as the recording allows), grown evenly on both sides."""
    if span.length >= shortest:
        return span
    grow = (shortest - span.length) / 2
    start = max(0.0, span.start - grow)
    end = min(duration, start + shortest)
    return Span(round(max(0.0, end - shortest), 3), round(end, 3))


def slice_of(samples: np.ndarray, span: Span) -> np.ndarray:
    """The samples of one span."""
    return samples[int(span.start * SAMPLE_RATE):int(math.ceil(span.end * SAMPLE_RATE))]


_vad = None
_vad_lock = threading.Lock()  # the model keeps state between calls: one recording at a time


def speech_regions(samples: np.ndarray) -> list[Span]:
    """Where someone speaks in a 16 kHz mono recording (Silero VAD), in time order."""
    global _vad
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    with _vad_lock:
        if _vad is None:
            with warnings.catch_warnings():  # its loader's own deprecation notices, nothing to act on here
                warnings.simplefilter("ignore", DeprecationWarning)
                _vad = load_silero_vad()
        found = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)), _vad,
                                      sampling_rate=SAMPLE_RATE, min_silence_duration_ms=MIN_SILENCE_MS,
                                      speech_pad_ms=SPEECH_PAD_MS, return_seconds=True)
    return [Span(float(r["start"]), float(r["end"])) for r in found]
