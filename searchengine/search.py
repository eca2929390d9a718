"""Encode a query, search the vector stores, calibrate, join the metadata: a ranked SearchResult.

Ranking: each kind's store is searched for its best `offset + k + 1` contents (only those a file
matching the filters holds, through a FAISS id selector), every candidate gets its calibrated score
(searchengine/calibrate.py) so images and recordings compare fairly, the union is sorted by it,
each content becomes one hit per matching path, hits under `min_score` go, and the page
[offset, offset + k) is returned, with whether more follow.

Recordings: a long one is searched by its moments (the "moment" store, searchengine/moments.py)
instead of its whole-file vectors, which hear only its beginning; a short one is one moment, its
whole length. A recording's hit is its best moment, or (options.moments) every moment that ranks.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .calibrate import SAMPLE_SIZE, calibrated_scores, members
from .errors import QueryError
from .filters import SearchFilters, make_filters
from .media import AudioSource, ImageSource, load_audio, load_image
from .store.metadata import MetadataStore, file_conditions
from .store.moments import StoredMoment
from .store.vectors import VectorStore
from .types import MOMENT_STORE, TRANSCRIPT_STORE, Hit, Kind, SearchResult, kinds_for

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
    moments: bool = False  # every matching moment of a recording, not only its best


def search_options(kind="any", k=10, offset=0, min_score=None, exclude_query=False, under=None, since=None,
                   until=None, types=None, moments=False) -> SearchOptions:
    """Checked SearchOptions from a search call's arguments; QueryError for anything unusable."""
    if not isinstance(exclude_query, bool):
        raise QueryError(f"exclude_query must be True or False, not {exclude_query!r}")
    if not isinstance(moments, bool):
        raise QueryError(f"moments must be True or False, not {moments!r}")
    return SearchOptions(tuple(kinds_for(kind)), check_k(k), _check_offset(offset), _check_min_score(min_score),
                         make_filters(under=under, since=since, until=until, types=types), exclude_query, moments)


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
    moment: StoredMoment | None = None  # when found through the moment store


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
    moment_store = vectors.get(MOMENT_STORE)
    split, most = metadata.moments.spread() if moment_store is not None and moment_store.count else (0, 0)
    for kind in options.kinds:
        # Whole-file vectors of long recordings are passed over (their moments stand for them): fetch as many more.
        extra = split if kind == Kind.AUDIO.value else 0
        candidates += _store_candidates(query, vectors[kind], metadata, kind, options, wanted + extra, query_content)
        transcripts = vectors.get(TRANSCRIPT_STORE)
        if typed and kind == Kind.AUDIO.value and transcripts is not None and transcripts.count:
            candidates += _store_candidates(query, transcripts, metadata, kind, options, wanted + extra, query_content)
        if kind == Kind.AUDIO.value and split:
            candidates = _without_split_wholes(candidates, metadata)
            # each recording may fill `most` places before a second recording shows (unless every moment is wanted)
            per_recording = 1 if options.moments else max(1, most)
            candidates += _moment_candidates(query, moment_store, metadata, options, wanted * per_recording,
                                             query_content)
    candidates = _best_per_content(candidates, options.moments)
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
        start, end, said = _span(content, cand.moment)
        hits.extend(Hit(stored.id, stored.path, content.kind, cand.score, cosine=cand.cosine,
                        transcript=said, width=content.width, height=content.height,
                        duration=content.duration, time=stored.time, is_query=is_query, start=start, end=end)
                    for stored in content.paths)
    end = options.offset + options.k
    return SearchResult(hits[options.offset:end], offset=options.offset, more=len(hits) > end)


def _span(content, moment) -> tuple[float | None, float | None, str | None]:
    """(start, end, transcript) of a hit: its moment's, a short recording's whole length, nothing for images."""
    if moment is not None:
        return moment.start, moment.end, moment.text or content.transcript
    if content.kind != Kind.AUDIO.value:
        return None, None, content.transcript
    return 0.0, content.duration, content.transcript


def _best_per_content(candidates: list[_Candidate], every_moment: bool = False) -> list[_Candidate]:
    """One candidate per content, its best: a recording found by its speech and by its transcript counts once,
    and a long one by its best moment (every_moment: one per moment)."""
    best: dict[tuple, _Candidate] = {}
    for cand in candidates:
        key = (cand.content_id, cand.moment.id if every_moment and cand.moment else None)
        held = best.get(key)
        if held is None or (cand.score, cand.cosine) > (held.score, held.cosine):  # stores too small to calibrate tie
            best[key] = cand
    return list(best.values())


def _without_split_wholes(candidates: list[_Candidate], metadata: MetadataStore) -> list[_Candidate]:
    """Leave out whole-file candidates of recordings that have moments (their moments are searched instead)."""
    split = metadata.moments.split_contents([c.content_id for c in candidates if c.moment is None])
    return [c for c in candidates if c.moment is not None or c.content_id not in split]


def _moment_candidates(query: np.ndarray, store: VectorStore, metadata: MetadataStore, options: SearchOptions,
                       wanted: int, query_content: int | None) -> list[_Candidate]:
    """The best `wanted` moments of the recordings the filters allow, with calibrated scores over the moment store."""
    among = metadata.moments.matching(file_conditions(options.filters)) if options.filters else None
    own = [m.id for m in metadata.moments.of_content(query_content)] if query_content is not None else []
    scores, cosines, ids = _nearest(query, store, wanted, among, own if options.exclude_query else [], own)
    found = metadata.moments.lookup(ids.tolist())
    return [_Candidate(float(s), float(c), found[int(i)].content_id, found[int(i)])
            for s, c, i in zip(scores, cosines, ids) if int(i) in found]


def _store_candidates(query: np.ndarray, store: VectorStore, metadata: MetadataStore, kind: str,
                      options: SearchOptions, wanted: int, query_content: int | None) -> list[_Candidate]:
    """The store's best `wanted` contents among those the filters allow, with calibrated scores."""
    among = metadata.matching_contents(kind, options.filters) if options.filters else None
    own = [query_content] if query_content is not None else []
    scores, cosines, ids = _nearest(query, store, wanted, among, own if options.exclude_query else [], own)
    return [_Candidate(float(s), float(c), int(i)) for s, c, i in zip(scores, cosines, ids)]


def _nearest(query: np.ndarray, store: VectorStore, wanted: int, among: np.ndarray | None, leave_out: list[int],
             own: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(calibrated scores, cosines, ids) of the store's best `wanted` ids among `among` (None: all), `leave_out`
    left out; `own` (the query's own ids) is no typical item of the store, so the calibration sample drops it."""
    if among is not None and leave_out:
        among = among[~members(among, leave_out)]
    extra = len(leave_out) if among is None else 0  # room for the ids left out after the search
    cosines, ids = store.search(query, wanted + extra, among)
    keep = (ids[0] >= 0) & ~members(ids[0], leave_out)
    cosines, ids = cosines[0][keep], ids[0][keep]
    sample_ids, sample = store.sample(SAMPLE_SIZE)
    typical = ~members(sample_ids, own) if own else slice(None)  # a mask copies the sample: only when needed
    scores = calibrated_scores(cosines, ids, sample[typical] @ query[0], sample_ids[typical], store.count)
    return scores, cosines, ids


def query_paths(metadata: MetadataStore, content_id: int | None) -> tuple[str, ...]:
    """The indexed paths that hold the query's own bytes."""
    if content_id is None:
        return ()
    content = metadata.lookup([content_id]).get(content_id)
    return tuple(p.path for p in content.paths) if content else ()
