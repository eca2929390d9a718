"""Typed records passed across module boundaries."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from pathlib import Path


class Kind(str, enum.Enum):
    """The two kinds of indexed media."""

    IMAGE = "image"
    AUDIO = "audio"


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
class Skipped:
    """A file the indexer could not use, and why."""

    path: str
    reason: str


@dataclass
class IndexReport:
    """What one `index` run did."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    embedded: int = 0

    def to_dict(self) -> dict:
        """The JSON summary printed by `index --json`."""
        out = asdict(self)
        out["skipped"] = [asdict(s) for s in self.skipped]
        return out


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

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        out = asdict(self)
        out["skipped"] = [asdict(s) for s in self.skipped]
        return out
