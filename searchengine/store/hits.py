"""What a page of hits shows of the contents it found, and the file filters a search applies.

A search answers in a few milliseconds or less once the index is approximate, so the rows of a page
are read in one round trip by a statement built once (its id list bound at run time): building a
SQLAlchemy statement costs more than SQLite takes to run it.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Engine, Float, and_, bindparam, cast, func, or_, select
from sqlalchemy.exc import DBAPIError

from ..filters import SearchFilters
from .models import Content, MediaFile


@dataclass(frozen=True)
class StoredPath:
    """A file holding a content: its id, path, and its time (capture time, else modification time)."""

    id: int
    path: str
    time: float


@dataclass(frozen=True)
class StoredContent:
    """A content row joined with every path that holds it (every path a search's filters let through)."""

    id: int
    kind: str
    paths: tuple[StoredPath, ...]
    width: int | None
    height: int | None
    duration: float | None
    transcript: str | None


# A file's time for date filters: when the photo was taken, else when the file was last written.
FILE_TIME = func.coalesce(MediaFile.captured_at, cast(MediaFile.mtime_ns, Float) / 1e9)


def file_conditions(filters: SearchFilters | None) -> list:
    """SQL conditions on `files` rows for a search's filters (none for no filters)."""
    if not filters:
        return []
    conditions = []
    if filters.under:
        conditions.append(or_(*[or_(MediaFile.path == folder,
                                    MediaFile.path.startswith(folder.rstrip("/") + "/", autoescape=True))
                                for folder in filters.under]))
    if filters.since is not None:
        conditions.append(FILE_TIME >= filters.since)
    if filters.until is not None:
        conditions.append(FILE_TIME < filters.until)
    if filters.suffixes:
        lowered = func.lower(MediaFile.path)
        conditions.append(or_(*[lowered.endswith(suffix, autoescape=True) for suffix in filters.suffixes]))
    return conditions


def lookup(engine: Engine, content_ids: list[int], filters: SearchFilters | None = None) -> dict[int, StoredContent]:
    """Contents by id, each with its paths (those `filters` let through); ids that vanished are absent."""
    if not content_ids:
        return {}
    # Filters vary from search to search; a search without them reuses one compiled statement.
    compiled = _shown_rows(file_conditions(filters)).compile(dialect=engine.dialect) if filters \
        else _unfiltered(engine.dialect)
    paths: dict[int, list[StoredPath]] = defaultdict(list)
    rows: dict[int, tuple] = {}
    for cid, kind, width, height, duration, transcript, file_id, path, when in _run(engine, compiled, content_ids):
        rows[cid] = (kind, width, height, duration, transcript)
        if file_id is not None:
            paths[cid].append(StoredPath(file_id, path, when))
    return {cid: StoredContent(cid, kind, tuple(paths[cid]), width, height, duration, transcript)
            for cid, (kind, width, height, duration, transcript) in rows.items()}


def _run(engine: Engine, compiled, content_ids: list[int]) -> list[tuple]:
    """The compiled statement's rows for these ids, run on a pooled driver connection: SQLAlchemy expands
    the id list; its result machinery, 4x SQLite's own time for a page of rows, is left out."""
    state = compiled.construct_expanded_state({"ids": [int(i) for i in content_ids]})
    params = state.positional_parameters if compiled.positional else state.parameters
    dbapi_error = engine.dialect.loaded_dbapi.Error
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(state.statement, params)
        return cursor.fetchall()
    except dbapi_error as exc:  # the store's callers see SQLAlchemy's errors, as from any other query
        raise DBAPIError.instance(state.statement, params, exc, dbapi_error) from exc
    finally:
        raw.close()  # back to the pool (rolled back there)


@functools.lru_cache(maxsize=4)
def _unfiltered(dialect):
    """The statement of a search without filters, built and compiled once per dialect."""
    return _shown_rows([]).compile(dialect=dialect)


def _shown_rows(conditions: list):
    """Each content with its paths that pass `conditions` (none: a row of NULLs), only the columns a hit
    shows (not ORM objects carrying the vector BLOBs)."""
    shown = (Content.id, Content.kind, Content.width, Content.height, Content.duration, Content.transcript)
    held = and_(MediaFile.content_id == Content.id, *conditions)
    return (select(*shown, MediaFile.id.label("file_id"), MediaFile.path, FILE_TIME.label("when"))
            .outerjoin(MediaFile, held).where(Content.id.in_(bindparam("ids", expanding=True)))
            .order_by(Content.id, MediaFile.path))
