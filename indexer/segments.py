"""Embed the moments of long recordings (searchengine/moments.py says where they are)."""

from __future__ import annotations

import logging

import numpy as np

from searchengine.moments import moment_spans, slice_of
from searchengine.store.moments import NewMoment
from searchengine.types import SAMPLE_RATE

# Moments encoded at once: an hour-long lecture has hundreds, each up to 20 s of audio.
MOMENT_BATCH = 16
log = logging.getLogger("searchengine")


def embed_moments(bundle, samples: np.ndarray, after: float, transcriber=None) -> tuple[NewMoment, ...]:
    """The embedded moments of a recording longer than `after` seconds; () for a shorter one.

    transcriber: writes down each moment beside a learned speech encoder (the cascade's encoder
    writes them down itself), so a hit can show what was said in its moment. A recording whose moments
    cannot be made is still indexed whole (with the warning that only its beginning is searchable).
    """
    if len(samples) <= after * SAMPLE_RATE:
        return ()
    try:
        return _embed(bundle, samples, after, transcriber)
    except Exception:  # noqa: BLE001 — torch and the detector raise anything on odd inputs
        log.warning("could not cut a %.0f-s recording into moments", len(samples) / SAMPLE_RATE, exc_info=True)
        return ()


def _embed(bundle, samples: np.ndarray, after: float, transcriber) -> tuple[NewMoment, ...]:
    spans = moment_spans(samples, after)
    if not spans:
        return ()
    moments: list[NewMoment] = []
    for first in range(0, len(spans), MOMENT_BATCH):
        batch = spans[first:first + MOMENT_BATCH]
        clips = [slice_of(samples, span) for span in batch]
        vectors, texts = bundle.encode_speech(clips)
        if transcriber is not None and all(text is None for text in texts):
            texts = [transcriber.transcribe(clip) for clip in clips]
        moments += [NewMoment(span.start, span.end, vector, text or None)
                    for span, vector, text in zip(batch, vectors, texts)]
    return tuple(moments)
