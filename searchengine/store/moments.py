"""The moments of long recordings in the metadata database: written with their content, read by search.

A moment belongs to one content (not to a path), so two paths to one recording share its moments,
and they leave with the content: MetadataStore's orphan sweep calls `delete_for` in the same
transaction, and hands the ids to the writer to drop from the "moment" FAISS store.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine, delete, func, insert, select
from sqlalchemy.orm import Session

from .database import read_in_session
from .models import MediaFile, Moment


@dataclass(frozen=True)
class NewMoment:
    """A freshly embedded stretch of a recording (seconds from its start)."""

    start: float
    end: float
    vector: np.ndarray
    text: str | None = None


@dataclass(frozen=True)
class StoredMoment:
    """A moment as search needs it: which content, which stretch, what was said."""

    id: int
    content_id: int
    start: float
    end: float
    text: str | None


def insert_for(s: Session, content_id: int, moments) -> list[int]:
    """Add a content's moments (inside the caller's transaction); their new ids in order."""
    rows = [{"content_id": content_id, "start": float(m.start), "end": float(m.end),
             "vector": np.asarray(m.vector, dtype=np.float32).tobytes(), "text": m.text} for m in moments]
    if not rows:
        return []
    return list(s.scalars(insert(Moment).returning(Moment.id, sort_by_parameter_order=True), rows))


def delete_for(s: Session, content_ids: list[int]) -> list[int]:
    """Delete the moments of contents about to go; their ids (to leave FAISS too)."""
    gone: list[int] = []
    for start in range(0, len(content_ids), 500):
        chunk = content_ids[start:start + 500]
        ids = list(s.scalars(select(Moment.id).where(Moment.content_id.in_(chunk))))
        if ids:
            s.execute(delete(Moment).where(Moment.content_id.in_(chunk)))
        gone += ids
    return gone


class MomentReader:
    """Read-only queries search makes about moments."""

    def __init__(self, engine: Engine, where):
        self.engine, self.where = engine, where

    def _run(self, work):
        return read_in_session(self.engine, self.where, work)

    def lookup(self, moment_ids: list[int]) -> dict[int, StoredMoment]:
        """Moments by id (ids whose content was removed meanwhile are absent)."""
        if not moment_ids:
            return {}
        query = select(Moment.id, Moment.content_id, Moment.start, Moment.end, Moment.text).where(
            Moment.id.in_(moment_ids))
        return self._run(lambda s: {r.id: StoredMoment(r.id, r.content_id, r.start, r.end, r.text)
                                    for r in s.execute(query)})

    def split_contents(self, content_ids: list[int]) -> set[int]:
        """Which of these contents are searched by their moments (long recordings)."""
        if not content_ids:
            return set()
        query = select(Moment.content_id).where(Moment.content_id.in_(content_ids)).distinct()
        return self._run(lambda s: set(s.scalars(query)))

    def spread(self) -> tuple[int, int]:
        """(how many contents have moments, the most moments any one has), in one pass; (0, 0) without moments."""
        counts = select(func.count().label("n")).select_from(Moment).group_by(Moment.content_id).subquery()
        row = self._run(lambda s: s.execute(select(func.count(), func.max(counts.c.n))).one())
        return int(row[0] or 0), int(row[1] or 0)

    def matching(self, conditions: list) -> np.ndarray:
        """Ids of the moments of contents that at least one file matching `conditions` holds."""
        held = select(MediaFile.content_id).where(*conditions)
        query = select(Moment.id).where(Moment.content_id.in_(held))
        return self._run(lambda s: np.fromiter(s.scalars(query), dtype=np.int64))

    def of_content(self, content_id: int) -> list[StoredMoment]:
        """A content's moments in time order."""
        query = (select(Moment.id, Moment.content_id, Moment.start, Moment.end, Moment.text)
                 .where(Moment.content_id == content_id).order_by(Moment.start))
        return self._run(lambda s: [StoredMoment(*row) for row in s.execute(query)])

