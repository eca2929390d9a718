"""Lookups a write batch makes about the rows it touches, so its cost follows the batch, not the index."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Content, MediaFile

CHUNK = 500  # bound parameters per IN (...), well under SQLite's limit


def contents_of_paths(s: Session, paths: list[str]) -> set[int]:
    """The content ids the files at these paths hold now (the contents a batch may leave without a path)."""
    found: set[int] = set()
    for start in range(0, len(paths), CHUNK):
        found.update(s.scalars(select(MediaFile.content_id).where(MediaFile.path.in_(paths[start:start + CHUNK]))))
    return found


def file_ids(s: Session, paths: list[str]) -> dict[str, int]:
    """path -> files.id for those of these paths already indexed."""
    found: dict[str, int] = {}
    for start in range(0, len(paths), CHUNK):
        rows = s.execute(select(MediaFile.path, MediaFile.id).where(MediaFile.path.in_(paths[start:start + CHUNK])))
        found.update({path: row_id for path, row_id in rows})
    return found


def content_ids(s: Session, hashes: set[str] | list[str]) -> dict[tuple[str, str], int]:
    """(content hash, kind) -> contents.id for the contents with these hashes."""
    hashes, found = sorted(set(hashes)), {}
    for start in range(0, len(hashes), CHUNK):
        query = select(Content.content_hash, Content.kind, Content.id).where(
            Content.content_hash.in_(hashes[start:start + CHUNK]))
        found.update({(h, k): i for h, k, i in s.execute(query)})
    return found
