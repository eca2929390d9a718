"""MetadataStore: the database side of an index (files, contents and their vectors, skips, bundle)."""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import delete, func, insert, select, tuple_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ..errors import SearchEngineError
from ..filters import SearchFilters
from ..types import MOMENT_STORE, TRANSCRIPT_STORE, VECTOR_STORES, BundleInfo, Skipped
from . import hits, migrate, moments
from .batches import content_ids, contents_of_paths, file_ids
from .database import database_error, label, server_engine, sqlite_engine
from .hits import StoredContent, file_conditions
from .models import BundleRecord, Content, MediaFile, Moment, SkippedFile


@dataclass(frozen=True)
class FileState:
    """What the store remembers of a path, to decide whether it changed."""

    size: int
    mtime_ns: int
    content_hash: str


@dataclass(frozen=True)
class NewContent:
    """A freshly embedded media body."""

    content_hash: str
    kind: str
    vector: np.ndarray
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    transcript: str | None = None
    warning: str | None = None
    text_vector: np.ndarray | None = None  # the transcript through the text tower (learned speech only)
    moments: tuple[moments.NewMoment, ...] = ()  # a long recording's stretches (searchengine/moments.py)


@dataclass(frozen=True)
class FileLink:
    """A path that now holds the content (`content_hash`, `kind`), and when its photo was taken, if known."""

    path: str
    content_hash: str
    kind: str
    size: int
    mtime_ns: int
    captured_at: float | None = None


def _blob(vector: np.ndarray | None) -> bytes | None:
    return None if vector is None else np.asarray(vector, dtype=np.float32).tobytes()


def _store_rows(store: str) -> tuple:
    """(vector column, row conditions) of a vector store: a kind's vectors, the transcripts' text vectors,
    or the moments of long recordings (whose ids are moment ids)."""
    if store == TRANSCRIPT_STORE:
        return Content.text_vector, (Content.kind == "audio", Content.text_vector.is_not(None))
    if store == MOMENT_STORE:
        return Moment.vector, ()
    return Content.vector, (Content.kind == store,)


def _store_id(store: str):
    """The id column of a vector store's rows (its FAISS ids)."""
    return Moment.id if store == MOMENT_STORE else Content.id


def _delete_paths(s: Session, table, paths: list[str]) -> None:
    """DELETE ... WHERE path IN (...), chunked under SQLite's bound-parameter limit."""
    for start in range(0, len(paths), 500):
        s.execute(delete(table).where(table.path.in_(paths[start:start + 500])))


def _guarded(method):
    """Run a store method with SQLAlchemy's errors turned into the library's own."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except SQLAlchemyError as exc:
            raise database_error(self.where, exc) from exc
    return wrapper


class MetadataStore:
    """All reads and writes of the metadata database; callers never see SQLAlchemy."""

    def __init__(self, db_path: Path | None = None, *, url: str | None = None, schema: str | None = None):
        """SQLite at `db_path`, or the schema `schema` of the server database at `url`."""
        self.path = db_path  # None on a server: nothing of the metadata is in the index folder
        self.where: Path | str = db_path if url is None else label(url, schema)
        self.engine = sqlite_engine(db_path) if url is None else server_engine(url, schema)
        self.moments = moments.MomentReader(self.engine, self.where)
        try:
            migrate.upgrade(self.engine)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise database_error(self.where, exc) from exc
        except SearchEngineError:
            self.engine.dispose()
            raise

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    # --- bundle -------------------------------------------------------------
    @_guarded
    def bundle(self) -> BundleInfo | None:
        """The bundle recorded at creation, if any."""
        with Session(self.engine) as s:
            row = s.scalars(select(BundleRecord)).first()
            if row is None:
                return None
            return BundleInfo(row.name, row.source, row.dim, row.fingerprint)

    @_guarded
    def set_bundle(self, info: BundleInfo) -> None:
        """Record (or replace) the index's bundle."""
        with Session(self.engine) as s, s.begin():
            s.execute(delete(BundleRecord))
            s.add(BundleRecord(id=1, name=info.name, source=info.source, dim=info.dim,
                               fingerprint=info.fingerprint, created_at=time.time()))

    # --- planning -----------------------------------------------------------
    @_guarded
    def file_states(self) -> dict[str, FileState]:
        """Every indexed path with the size, mtime and hash it had when indexed."""
        query = select(MediaFile.path, MediaFile.size, MediaFile.mtime_ns, Content.content_hash).join(Content)
        with Session(self.engine) as s:
            return {p: FileState(size, mtime, h) for p, size, mtime, h in s.execute(query)}

    @_guarded
    def skip_states(self) -> dict[str, tuple[int, int]]:
        """(size, mtime_ns) of every skipped path, so unchanged bad files are not retried."""
        with Session(self.engine) as s:
            rows = s.execute(select(SkippedFile.path, SkippedFile.size, SkippedFile.mtime_ns))
            return {p: (size, mtime) for p, size, mtime in rows}

    @_guarded
    def known_keys(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (content hash, kind) pairs are already embedded."""
        found: set[tuple[str, str]] = set()
        with Session(self.engine) as s:
            for start in range(0, len(keys), 400):
                chunk = keys[start:start + 400]
                rows = s.execute(select(Content.content_hash, Content.kind)
                                 .where(tuple_(Content.content_hash, Content.kind).in_(chunk)))
                found.update((h, k) for h, k in rows)
        return found

    # --- writing ------------------------------------------------------------
    @_guarded
    def write(self, contents: list[NewContent], links: list[FileLink], removed_paths: list[str],
              skips: list[tuple[str, str, int, int]]) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
        """Apply one batch in one transaction.

        Returns (new content ids by kind, orphaned content ids by kind) so the caller can mirror
        both into FAISS after the commit.
        """
        with Session(self.engine) as s, s.begin():
            # The contents this batch may leave without a path: those of the paths it touches, and its
            # own new ones (so the orphan check costs the batch, not the whole index).
            touched = [link.path for link in links] + list(removed_paths) + [path for path, *_ in skips]
            candidates = contents_of_paths(s, touched)
            added = self._insert_contents(s, contents)
            self._link_files(s, links)
            self._remove_files(s, removed_paths)
            self._record_skips(s, skips, cleared=[link.path for link in links])
            orphans = self._delete_orphans(s, candidates | {i for ids in added.values() for i in ids})
        return added, orphans

    def _insert_contents(self, s: Session, contents: list[NewContent]) -> dict[str, list[int]]:
        """Insert the batch's contents in one executemany; their new ids by store, in batch order (read back by
        (hash, kind): INSERT ... RETURNING in input order costs SQLite one statement per row)."""
        added: dict[str, list[int]] = defaultdict(list)
        if not contents:
            return {}
        rows = [{"content_hash": c.content_hash, "kind": c.kind, "width": c.width, "height": c.height,
                 "duration": c.duration, "transcript": c.transcript, "warning": c.warning,
                 "vector": _blob(c.vector), "text_vector": _blob(c.text_vector)} for c in contents]
        s.execute(insert(Content.__table__), rows)  # Core: the ORM's bulk path adds a third
        ids = content_ids(s, [c.content_hash for c in contents])
        for c in contents:
            row_id = ids[(c.content_hash, c.kind)]
            added[c.kind].append(row_id)
            if c.text_vector is not None:
                added[TRANSCRIPT_STORE].append(row_id)
            if c.moments:
                added[MOMENT_STORE] += moments.insert_for(s, row_id, c.moments)
        return dict(added)

    def _link_files(self, s: Session, links: list[FileLink]) -> None:
        if not links:
            return
        ids = content_ids(s, {link.content_hash for link in links})
        existing = file_ids(s, [link.path for link in links])
        now = time.time()
        new, changed = [], []
        for link in links:
            row = {"path": link.path, "content_id": ids[(link.content_hash, link.kind)], "size": link.size,
                   "mtime_ns": link.mtime_ns, "indexed_at": now, "captured_at": link.captured_at}
            if link.path in existing:
                changed.append({**row, "id": existing[link.path]})
            else:
                new.append(row)
        if new:  # executemany of one prepared statement each, not an ORM object per row
            s.execute(insert(MediaFile.__table__), new)
        if changed:
            s.execute(update(MediaFile), changed)

    def _remove_files(self, s: Session, paths: list[str]) -> None:
        """Forget paths entirely: gone from disk means neither indexed nor skipped."""
        _delete_paths(s, MediaFile, paths)
        _delete_paths(s, SkippedFile, paths)

    def _record_skips(self, s: Session, skips: list[tuple[str, str, int, int]], cleared: list[str]) -> None:
        """Store skip reasons; paths indexed in this batch stop being skipped, skipped ones stop being indexed."""
        _delete_paths(s, SkippedFile, cleared)
        now = time.time()
        for path, reason, size, mtime_ns in skips:
            s.merge(SkippedFile(path=path, reason=reason, size=size, mtime_ns=mtime_ns, skipped_at=now))
        _delete_paths(s, MediaFile, [path for path, *_ in skips])

    def _delete_orphans(self, s: Session, candidates: set[int]) -> dict[str, list[int]]:
        """Those of `candidates` no path points at any more: their vectors must leave FAISS too."""
        has_text = Content.text_vector.is_not(None)
        linked = select(MediaFile.id).where(MediaFile.content_id == Content.id).exists()
        rows, pending = [], sorted(candidates)
        for start in range(0, len(pending), 500):
            chunk = pending[start:start + 500]
            rows += s.execute(select(Content.id, Content.kind, has_text).where(Content.id.in_(chunk), ~linked)).all()
        orphans: dict[str, list[int]] = defaultdict(list)
        if rows:
            if gone := moments.delete_for(s, [r.id for r in rows]):
                orphans[MOMENT_STORE] = gone
            s.execute(delete(Content).where(Content.id.in_([r.id for r in rows])))
        for cid, kind, text in rows:
            orphans[kind].append(cid)
            if text:
                orphans[TRANSCRIPT_STORE].append(cid)
        return dict(orphans)

    @_guarded
    def touch(self, updates: list[tuple[str, int, int]]) -> None:
        """Refresh size/mtime of files whose bytes turned out unchanged."""
        with Session(self.engine) as s, s.begin():
            for path, size, mtime_ns in updates:
                row = s.scalars(select(MediaFile).where(MediaFile.path == path)).one()
                row.size, row.mtime_ns = size, mtime_ns

    # --- reading ------------------------------------------------------------
    @_guarded
    def vectors(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every content in a vector store (a kind, or the transcripts), for rebuilding FAISS."""
        column, where = _store_rows(kind)
        with Session(self.engine) as s:
            rows = s.execute(select(_store_id(kind).label("id"), column.label("vector")).where(*where)).all()
        ids = np.array([r.id for r in rows], dtype=np.int64)
        vecs = np.stack([np.frombuffer(r.vector, dtype=np.float32) for r in rows]) if rows else None
        return ids, vecs

    @_guarded
    def vector_counts(self) -> dict[str, int]:
        """Vectors each store holds, as the database knows them (FAISS is reconciled to it on open)."""
        counts = {}
        with Session(self.engine) as s:
            for store in VECTOR_STORES:
                counts[store] = s.scalar(select(func.count(_store_id(store))).where(*_store_rows(store)[1]))
        return counts

    @_guarded
    def content_ids(self, kind: str) -> set[int]:
        """Ids of every content in a vector store (a kind, or the transcripts)."""
        with Session(self.engine) as s:
            return set(s.scalars(select(_store_id(kind)).where(*_store_rows(kind)[1])))

    @_guarded
    def lookup(self, content_ids: list[int], filters: SearchFilters | None = None) -> dict[int, StoredContent]:
        """Contents by id, each with its paths (those `filters` let through); ids that vanished are absent."""
        return hits.lookup(self.engine, content_ids, filters)

    @_guarded
    def matching_contents(self, kind: str, filters: SearchFilters) -> np.ndarray:
        """Ids of the contents of a kind that at least one file matching `filters` holds."""
        query = (select(MediaFile.content_id).join(Content).where(Content.kind == kind, *file_conditions(filters))
                 .distinct())
        with Session(self.engine) as s:
            return np.fromiter(s.scalars(query), dtype=np.int64)

    @_guarded
    def content_id(self, content_hash: str, kind: str) -> int | None:
        """The id of the content with these bytes and kind, if indexed."""
        query = select(Content.id).where(Content.content_hash == content_hash, Content.kind == kind)
        with Session(self.engine) as s:
            return s.scalars(query).first()

    @_guarded
    def file_by_id(self, file_id: int) -> tuple[str, str] | None:
        """(path, kind) of an indexed file id, or None."""
        with Session(self.engine) as s:
            row = s.execute(select(MediaFile.path, Content.kind).join(Content)
                            .where(MediaFile.id == file_id)).first()
            return (row.path, row.kind) if row else None

    @_guarded
    def file_counts(self) -> dict[str, int]:
        """Indexed paths per kind."""
        with Session(self.engine) as s:
            rows = s.execute(select(Content.kind, func.count(MediaFile.id)).join(Content).group_by(Content.kind))
            return {kind: n for kind, n in rows}

    @_guarded
    def skipped(self) -> list[Skipped]:
        """Every skipped path with its reason."""
        with Session(self.engine) as s:
            rows = s.execute(select(SkippedFile.path, SkippedFile.reason).order_by(SkippedFile.path))
            return [Skipped(p, r) for p, r in rows]

    @_guarded
    def warnings(self) -> list[Skipped]:
        """Every indexed path whose content was indexed only in part, with what is missing."""
        query = (select(MediaFile.path, Content.warning).join(Content).where(Content.warning.is_not(None))
                 .order_by(MediaFile.path))
        with Session(self.engine) as s:
            return [Skipped(p, w) for p, w in s.execute(query)]
