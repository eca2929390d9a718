"""The metadata database's copy of one vector store's rows, read in the sizes reconciling needs.

Opening an index compares each FAISS store with these rows by count and id sum first (one indexed
aggregate), then fetches only the rows newer than FAISS's newest id (ids only ever grow: the tables
use AUTOINCREMENT), and compares every id only when that still leaves a difference (a removal the
crash lost). Vectors are read as raw bytes through Core, not as ORM objects.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from sqlalchemy import func, select

from .database import read_in_session
from .metadata import MetadataStore, _store_id, _store_rows

CHUNK = 50_000


class VectorRows:
    """Read-only queries over the rows behind one vector store (`kind`: a VECTOR_STORES name)."""

    def __init__(self, metadata: MetadataStore, kind: str):
        self.engine, self.where, self.kind = metadata.engine, metadata.where, kind
        self.id_column = _store_id(kind)
        self.vector_column, self.conditions = _store_rows(kind)

    def _run(self, work):
        return read_in_session(self.engine, self.where, work)

    def summary(self) -> tuple[int, int]:
        """(how many rows, the sum of their ids)."""
        query = select(func.count(self.id_column), func.coalesce(func.sum(self.id_column), 0)).where(*self.conditions)
        count, total = self._run(lambda s: s.execute(query).one())
        return int(count), int(total)

    def ids(self) -> np.ndarray:
        """Every id, ascending."""
        query = select(self.id_column).where(*self.conditions).order_by(self.id_column)
        return self._run(lambda s: np.fromiter(s.scalars(query), dtype=np.int64))

    def after(self, newest: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the rows with an id above `newest`."""
        return self._vectors(self.id_column > newest)

    def of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of these ids (those that exist)."""
        parts = [self._vectors(self.id_column.in_(ids[start:start + 500].tolist())) for start in range(0, len(ids), 500)]
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every (ids, vectors), CHUNK rows at a time in id order (training an approximate index)."""
        newest = -1
        while True:
            query = (select(self.id_column, self.vector_column).where(*self.conditions, self.id_column > newest)
                     .order_by(self.id_column).limit(CHUNK))
            ids, vectors = self._decode(self._run(lambda s: s.execute(query).all()))
            if not len(ids):
                return
            yield ids, vectors
            newest = int(ids[-1])

    def _vectors(self, condition) -> tuple[np.ndarray, np.ndarray]:
        query = select(self.id_column, self.vector_column).where(*self.conditions, condition).order_by(self.id_column)
        return self._decode(self._run(lambda s: s.execute(query).all()))

    @staticmethod
    def _decode(rows) -> tuple[np.ndarray, np.ndarray]:
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if not rows:
            return ids, np.zeros((0, 0), np.float32)
        return ids, np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
