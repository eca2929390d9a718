"""Encode a query, search the vector stores, join the metadata: a ranked list of Hits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import QueryError
from .media import AudioSource, ImageSource, load_audio, load_image
from .store.metadata import MetadataStore
from .store.vectors import VectorStore
from .types import Hit, Kind

KINDS = ("image", "audio", "any")


def kinds_for(kind: str | Kind) -> list[str]:
    """The vector stores a `kind` filter searches."""
    value = kind.value if isinstance(kind, Kind) else str(kind)
    if value not in KINDS:
        raise QueryError(f"kind must be one of {', '.join(KINDS)}, not '{value}'")
    return ["image", "audio"] if value == "any" else [value]


def encode_query(bundle, audio: AudioSource | None = None, image: ImageSource | None = None,
                 text: str | None = None) -> tuple[np.ndarray, str | None]:
    """One unit query vector [1, D] from exactly one of audio, image or text (+ the transcript, if any)."""
    given = [name for name, value in (("audio", audio), ("image", image), ("text", text)) if value is not None]
    if len(given) != 1:
        raise QueryError("give exactly one query: audio, image or text" + (f" (got {', '.join(given)})" if given else ""))
    if text is not None:
        if not text.strip():
            raise QueryError("the text query is empty")
        return bundle.encode_texts([text.strip()]), None
    if image is not None:
        return bundle.encode_images([load_image(_as_source(image))]), None
    vectors, transcripts = bundle.encode_speech([load_audio(_as_source(audio)).samples])
    return vectors, transcripts[0]


def _as_source(value):
    """Paths as Path, everything else (bytes, arrays, PIL images) as is."""
    return Path(value) if isinstance(value, str) else value


def search_stores(query: np.ndarray, vectors: dict[str, VectorStore], metadata: MetadataStore,
                  kinds: list[str], k: int) -> list[Hit]:
    """Top-k hits over the chosen kinds; a content held by several paths yields one hit per path."""
    if k < 1:
        raise QueryError("k must be at least 1")
    scored: list[tuple[float, int]] = []
    for kind in kinds:
        scores, ids = vectors[kind].search(query, k)
        scored.extend((float(s), int(i)) for s, i in zip(scores[0], ids[0]) if i >= 0)
    scored.sort(key=lambda pair: -pair[0])
    contents = metadata.lookup([cid for _, cid in scored])
    hits: list[Hit] = []
    for score, cid in scored:
        content = contents.get(cid)  # absent when removed after the vectors were loaded
        if content is None:
            continue
        hits.extend(Hit(fid, path, content.kind, score, content.transcript, content.width, content.height,
                        content.duration) for fid, path in content.paths)
    return hits[:k]

