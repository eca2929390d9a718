"""Typed records passed across module boundaries."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

from .errors import QueryError

# Every waveform that crosses a module boundary is mono float32 at this rate (Whisper's).
SAMPLE_RATE = 16_000


class Kind(str, enum.Enum):
    """The two kinds of indexed media."""

    IMAGE = "image"
    AUDIO = "audio"


# The FAISS stores of an index: one per kind, and the text vectors of recordings' transcripts (made
# beside a learned speech encoder, so typed words reach recordings through the text tower too).
TRANSCRIPT_STORE = "transcript"
# The moments of long recordings (searchengine/moments.py): ids are moment ids, not content ids.
MOMENT_STORE = "moment"
VECTOR_STORES = (Kind.IMAGE.value, Kind.AUDIO.value, TRANSCRIPT_STORE, MOMENT_STORE)

# What every vector store is today: exact inner-product search over id-mapped vectors.
FLAT_INDEX = "IDMap2,Flat inner product"

# What a search may ask for: one kind, or both.
KIND_FILTERS = ("image", "audio", "any")
# The documented threshold of `--min-score default`, on the calibrated score (searchengine/calibrate.py):
# 0 is what the best unrelated file of a store reaches by chance half the time. Measured on the
# shipped bundle's test split in docs/BENCHMARKS.md ("Calibrated scores").
DEFAULT_MIN_SCORE = 0.0


def kinds_for(kind: str | Kind) -> list[str]:
    """The kinds a `kind` filter searches; QueryError for anything else."""
    value = kind.value if isinstance(kind, Kind) else str(kind)
    if value not in KIND_FILTERS:
        raise QueryError(f"kind must be one of {', '.join(KIND_FILTERS)}, not '{value}'")
    return [k.value for k in Kind] if value == "any" else [value]


@dataclass(frozen=True)
class Hit:
    """One search result: an indexed file and how well it matches the query.

    score: the calibrated score hits are ranked by, comparable across kinds and store sizes: how
        many standard deviations the cosine stands above what the best unrelated file of the hit's
        store reaches by chance (searchengine/calibrate.py). Above 0 stands out further than chance
        explains; most files score well below 0.
    cosine: the raw cosine similarity of the embeddings (1 = identical).
    time: the file's time date filters use (POSIX seconds): when the photo was taken (EXIF), else
        when the file was last modified.
    is_query: True when the file holds exactly the query's bytes (the query itself is indexed).
    start, end: for recordings, the moment that matched (seconds from the file's start); a short
        recording is one moment covering the whole file. None for images.
    """

    id: int
    path: str
    kind: str
    score: float
    cosine: float | None = None
    transcript: str | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    time: float | None = None
    is_query: bool | None = None
    start: float | None = None
    end: float | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict (None fields dropped)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class SearchResult(Sequence):
    """The hits of one search, best first, and what the engine heard in a spoken query (cascade only).

    It is a sequence of its hits, so `for hit in index.search(...)` reads naturally.
    """

    hits: list[Hit]
    transcript: str | None = None
    offset: int = 0  # how many better hits came before these (paging)
    more: bool = False  # whether hits beyond these pass the same filters and threshold
    query_paths: tuple[str, ...] = ()  # indexed files holding the query's own bytes (left out or marked)

    def __getitem__(self, item):
        return self.hits[item]

    def __len__(self) -> int:
        return len(self.hits)

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    def to_dict(self) -> dict:
        """What `search --json` prints: the hits, paging, and `query_transcript` / `query_paths` when known."""
        out: dict = {"hits": [h.to_dict() for h in self.hits], "offset": self.offset, "more": self.more}
        if self.transcript is not None:
            out["query_transcript"] = self.transcript
        if self.query_paths:
            out["query_paths"] = list(self.query_paths)
        return out


@dataclass(frozen=True)
class ProgressEvent:
    """One report of long work: `done` of `total` units of a stage, or the end of an epoch.

    kind is "step" (done/total moved), "epoch" (an epoch ended: loss and dev metrics) or "stage"
    (a new stage began; `message` names it).
    """

    stage: str
    done: int = 0
    total: int = 0
    kind: str = "step"
    message: str = ""
    epoch: int = 0
    epochs: int = 0
    loss: float | None = None
    metrics: dict | None = None


# Long library calls take `progress=`: a function called with each ProgressEvent.
Progress = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class Skipped:
    """A file the indexer could not use, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Offline:
    """A root that was not found this run (an unplugged drive?): its indexed files were kept."""

    root: str
    kept: int


@dataclass
class IndexReport:
    """What one `index` run did.

    warnings: files indexed only in part (the path, and what is missing), e.g. a recording longer
    than the speech encoder hears, or a truncated file.
    """

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    embedded: int = 0
    warnings: list[Skipped] = field(default_factory=list)
    offline: list[Offline] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The JSON summary printed by `index --json`."""
        return asdict(self)


@dataclass(frozen=True)
class BundleInfo:
    """The bundle an index was built with."""

    name: str
    source: str
    dim: int
    fingerprint: str


@dataclass
class IndexStatus:
    """Counts and facts about one index directory."""

    path: str
    bundle: BundleInfo | None
    files: dict[str, int]
    vectors: dict[str, int]
    index_type: str
    index_bytes: int
    skipped: list[Skipped]
    warnings: list[Skipped] = field(default_factory=list)
    rebuild: dict | None = None  # an unfinished rebuild beside the live index: its bundle and files so far

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)
