"""Encode a query, search the vector stores, calibrate, join the metadata: a ranked SearchResult.

Ranking: each kind's store is searched for its best `offset + k + 1` contents (only those a file
matching the filters holds, through a FAISS id selector), every candidate gets its calibrated score
(searchengine/calibrate.py) so images and recordings compare fairly, the union is sorted by it,
each content becomes one hit per matching path, hits under `min_score` go, and the page
[offset, offset + k) is returned, with whether more follow.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .calibrate import SAMPLE_SIZE, calibrated_scores
from .errors import QueryError
from .filters import SearchFilters, make_filters
from .media import AudioSource, ImageSource, load_audio, load_image
from .store.metadata import MetadataStore
from .store.vectors import VectorStore
from .types import TRANSCRIPT_STORE, Hit, Kind, SearchResult, kinds_for

QUERY_FIELDS = ("audio", "image", "text")


@dataclass(frozen=True)
class SearchOptions:
    """What a search asks for besides its query: kinds, page, threshold, filters, the query's own file."""

    kinds: tuple[str, ...]
    k: int
    offset: int = 0
    min_score: float | None = None
    filters: SearchFilters = field(default_factory=SearchFilters)
    exclude_query: bool = False


def search_options(kind="any", k=10, offset=0, min_score=None, exclude_query=False, under=None, since=None,
                   until=None, types=None) -> SearchOptions:
    """Checked SearchOptions from a search call's arguments; QueryError for anything unusable."""
    if not isinstance(exclude_query, bool):
        raise QueryError(f"exclude_query must be True or False, not {exclude_query!r}")
    return SearchOptions(tuple(kinds_for(kind)), check_k(k), _check_offset(offset), _check_min_score(min_score),
                         make_filters(under=under, since=since, until=until, types=types), exclude_query)


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
    field_, value = one_query(audio=audio, image=image, text=text)
    if field_ == "text":
        if not isinstance(value, str) or not value.strip():
            raise QueryError("the text query is empty" if isinstance(value, str) else "the text query must be a string")
        return bundle.encode_texts([value.strip()]), None
    if field_ == "image":
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


def _check_offset(offset) -> int:
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or offset < 0:
        raise QueryError(f"offset must be a whole number of at least 0, not {offset!r}")
    return int(offset)


def _check_min_score(min_score) -> float | None:
    if min_score is None:
        return None
    if isinstance(min_score, bool) or not isinstance(min_score, (int, float, np.number)) or math.isnan(min_score):
        raise QueryError(f"min_score must be a number, not {min_score!r}")
    return float(min_score)


def query_digest(field_: str, value) -> str | None:
    """sha256 of a file query's bytes (as the indexer hashes files), None for text, arrays and PIL images."""
    if field_ == "text" or not isinstance(value, (str, Path, bytes)):
        return None
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()
    digest = hashlib.sha256()
    try:
        with open(value, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None  # the decoder reports an unreadable query with a better message
    return digest.hexdigest()


@dataclass
class _Candidate:
    score: float
    cosine: float
    content_id: int


def search_stores(query: np.ndarray, vectors: dict[str, VectorStore], metadata: MetadataStore,
                  options: SearchOptions, query_content: int | None = None, typed: bool = False) -> SearchResult:
    """One page of hits over the chosen kinds; a content held by several matching paths yields one hit per path.

    query_content: the id of the indexed content holding the query's own bytes (of the query's kind),
    left out with `options.exclude_query`, else marked `is_query`.
    typed: a text query, which also meets recordings through their transcripts' text vectors (a photo
    or a voice is compared with recordings' own vectors only: that is what the speech encoder learned).
    """
    wanted = options.offset + options.k + 1  # one more than the page, to tell whether more follow
    candidates: list[_Candidate] = []
    for kind in options.kinds:
        candidates += _store_candidates(query, vectors[kind], metadata, kind, options, wanted, query_content)
        transcripts = vectors.get(TRANSCRIPT_STORE)
        if typed and kind == Kind.AUDIO.value and transcripts is not None and transcripts.count:
            candidates += _store_candidates(query, transcripts, metadata, kind, options, wanted, query_content)
    candidates = _best_per_content(candidates)
    # An exact copy of the query is the best match there can be: marked, it leads whatever the
    # calibration of a store too small to measure says.
    candidates.sort(key=lambda c: (c.content_id != query_content, -c.score))
    contents = metadata.lookup([c.content_id for c in candidates], options.filters)
    hits: list[Hit] = []
    for cand in candidates:
        content = contents.get(cand.content_id)  # absent when removed after the vectors were loaded
        if content is None or (options.min_score is not None and cand.score < options.min_score):
            continue
        is_query = True if cand.content_id == query_content else None
        hits.extend(Hit(stored.id, stored.path, content.kind, cand.score, cosine=cand.cosine,
                        transcript=content.transcript, width=content.width, height=content.height,
                        duration=content.duration, time=stored.time, is_query=is_query) for stored in content.paths)
    end = options.offset + options.k
    return SearchResult(hits[options.offset:end], offset=options.offset, more=len(hits) > end)


def _best_per_content(candidates: list[_Candidate]) -> list[_Candidate]:
    """One candidate per content, its best: a recording found by its speech and by its transcript counts once."""
    best: dict[int, _Candidate] = {}
    for cand in candidates:
        held = best.get(cand.content_id)
        if held is None or (cand.score, cand.cosine) > (held.score, held.cosine):  # stores too small to calibrate tie
            best[cand.content_id] = cand
    return list(best.values())


def _store_candidates(query: np.ndarray, store: VectorStore, metadata: MetadataStore, kind: str,
                      options: SearchOptions, wanted: int, query_content: int | None) -> list[_Candidate]:
    """The store's best `wanted` contents among those the filters allow, with calibrated scores."""
    among = metadata.matching_contents(kind, options.filters) if options.filters else None
    leave_out = query_content if options.exclude_query else None
    if among is not None and leave_out is not None:
        among = among[among != leave_out]
    extra = 1 if leave_out is not None and among is None else 0  # room for the query's own content
    cosines, ids = store.search(query, wanted + extra, among)
    keep = (ids[0] >= 0) & (ids[0] != leave_out if leave_out is not None else True)
    cosines, ids = cosines[0][keep], ids[0][keep]
    sample_ids, sample = store.sample(SAMPLE_SIZE)
    typical = sample_ids != query_content if query_content is not None else slice(None)  # the query is no typical item
    scores = calibrated_scores(cosines, ids, sample[typical] @ query[0], sample_ids[typical], store.count)
    return [_Candidate(float(s), float(c), int(i)) for s, c, i in zip(scores, cosines, ids)]


def query_paths(metadata: MetadataStore, content_id: int | None) -> tuple[str, ...]:
    """The indexed paths that hold the query's own bytes."""
    if content_id is None:
        return ()
    content = metadata.lookup([content_id]).get(content_id)
    return tuple(p.path for p in content.paths) if content else ()
