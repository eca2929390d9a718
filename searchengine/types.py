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


# What a search may ask for: one kind, or both.
KIND_FILTERS = ("image", "audio", "any")


def kinds_for(kind: str | Kind) -> list[str]:
    """The kinds a `kind` filter searches; QueryError for anything else."""
    value = kind.value if isinstance(kind, Kind) else str(kind)
    if value not in KIND_FILTERS:
        raise QueryError(f"kind must be one of {', '.join(KIND_FILTERS)}, not '{value}'")
    return [k.value for k in Kind] if value == "any" else [value]


@dataclass(frozen=True)
class Hit:
    """One search result: an indexed file and its similarity to the query."""

    id: int
    path: str
    kind: str
    score: float
    transcript: str | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None

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

    def __getitem__(self, item):
        return self.hits[item]

    def __len__(self) -> int:
        return len(self.hits)

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    def to_dict(self) -> dict:
        """What `search --json` prints: the hits, and `query_transcript` when there is one."""
        out: dict = {"hits": [h.to_dict() for h in self.hits]}
        if self.transcript is not None:
            out["query_transcript"] = self.transcript
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
