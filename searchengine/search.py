"""Encode a query, search the vector stores, join the metadata: a ranked SearchResult."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import QueryError
from .media import AudioSource, ImageSource, load_audio, load_image
from .store.metadata import MetadataStore
from .store.vectors import VectorStore
from .types import Hit

QUERY_FIELDS = ("audio", "image", "text")


def one_query(**given) -> tuple[str, object]:
    """(field, value) of the one query among audio/image/text that is not None; QueryError otherwise."""
    present = [name for name in QUERY_FIELDS if given.get(name) is not None]
    if len(present) != 1:
        raise QueryError("give exactly one query: audio, image or text"
                         + (f" (got {', '.join(present)})" if present else ""))
    return present[0], given[present[0]]


def encode_query(bundle, audio: AudioSource | None = None, image: ImageSource | None = None,
                 text: str | None = None) -> tuple[np.ndarray, str | None]:
    """One unit query vector [1, D] from exactly one of audio, image or text (+ the transcript, if any)."""
    field, value = one_query(audio=audio, image=image, text=text)
    if field == "text":
        if not isinstance(value, str) or not value.strip():
            raise QueryError("the text query is empty" if isinstance(value, str) else "the text query must be a string")
        return bundle.encode_texts([value.strip()]), None
    if field == "image":
        return bundle.encode_images([load_image(_as_source(value), min_side=bundle.image_size)]), None
    vectors, transcripts = bundle.encode_speech([load_audio(_as_source(value)).samples])
    return vectors, transcripts[0]


def _as_source(value):
    """Paths as Path, everything else (bytes, arrays, PIL images) as is."""
    return Path(value) if isinstance(value, str) else value


def check_k(k) -> int:
    """k as an int of at least 1, or QueryError."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:  # True is an int to Python
        raise QueryError(f"k must be a whole number of at least 1, not {k!r}")
    return int(k)


def search_stores(query: np.ndarray, vectors: dict[str, VectorStore], metadata: MetadataStore,
                  kinds: list[str], k: int) -> list[Hit]:
    """Top-k hits over the chosen kinds; a content held by several paths yields one hit per path."""
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
