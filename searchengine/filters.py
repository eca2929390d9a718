"""What a search can be narrowed to: folders, a window of capture times, file types.

The filters apply to files (paths), not to contents: of two copies of one photo, only the one
under the asked folder is a hit. The store turns them into SQL and the vector search into a FAISS
id selector, so a filtered search still returns k hits when k files match.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from .errors import QueryError

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class SearchFilters:
    """Narrowing of a search; the empty one (all defaults) narrows nothing.

    under: absolute folders; a file matches when it lies in any of them (at any depth).
    since, until: POSIX seconds; a file matches when since <= its time < until. Its time is when the
        photo was taken (EXIF DateTimeOriginal), else the file's modification time.
    suffixes: lower-case file name extensions with the dot; a file matches when its name ends in one.
    """

    under: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None
    suffixes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.under or self.suffixes) or self.since is not None or self.until is not None


def make_filters(under=None, since=None, until=None, types=None) -> SearchFilters:
    """SearchFilters from what people give: folders, dates or ISO timestamps, file types ("jpg", ".WAV").

    A date alone means the whole day: `since` from its first moment, `until` to its last. Times
    without a UTC offset are local times, as EXIF's are. QueryError for anything unusable.
    """
    filters = SearchFilters(under=_folders(under), since=parse_time(since, "since"),
                            until=parse_time(until, "until", end=True), suffixes=_suffixes(types))
    if filters.since is not None and filters.until is not None and filters.since >= filters.until:
        raise QueryError("since must be earlier than until")
    return filters


def _many(value) -> list:
    """One value or an iterable of them, as a list (a string is one value)."""
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [value]
    if isinstance(value, Iterable):
        return list(value)
    return [value]


def _folders(under) -> tuple[str, ...]:
    folders = []
    for folder in _many(under):
        if not isinstance(folder, (str, os.PathLike)) or not str(folder).strip():
            raise QueryError(f"under takes folder paths, not {folder!r}")
        # The same spelling the indexer stores paths in: absolute, symlinks kept.
        folders.append(str(Path(folder).expanduser().absolute()))
    return tuple(folders)


def parse_time(value, name: str, end: bool = False) -> float | None:
    """POSIX seconds from a date (YYYY-MM-DD), an ISO timestamp, a datetime/date or a number.

    end: a bare date means the moment its day ends (the first moment of the next day).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise QueryError(f"{name} must be a date or a time, not {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and _DATE_ONLY.fullmatch(value.strip()):
        value = _parse(date.fromisoformat, value.strip(), name)
    elif isinstance(value, str):
        value = _parse(datetime.fromisoformat, value.strip(), name)
    if isinstance(value, datetime):
        return value.timestamp()  # a naive datetime is local time
    if isinstance(value, date):
        return datetime.combine(value + timedelta(days=1 if end else 0), time()).timestamp()
    raise QueryError(f"{name} must be a date (YYYY-MM-DD) or an ISO timestamp, not {value!r}")


def _parse(parser, text: str, name: str):
    try:
        return parser(text)
    except ValueError:
        raise QueryError(f"{name} must be a date (YYYY-MM-DD) or an ISO timestamp "
                         f"(YYYY-MM-DDTHH:MM[:SS][+HH:MM]), not '{text}'") from None


def _suffixes(types) -> tuple[str, ...]:
    """File types as the extensions that hold that format: "jpg" is .jpg and .jpeg, "tif" .tif and .tiff."""
    from .media import CONTENT_TYPES

    wanted = set()
    for name in _many(types):
        if not isinstance(name, str) or not name.strip():
            raise QueryError(f"a file type is a name such as jpg or wav, not {name!r}")
        suffix = "." + name.strip().lower().lstrip(".")
        if suffix not in CONTENT_TYPES:
            known = ", ".join(sorted(ext.lstrip(".") for ext in CONTENT_TYPES))
            raise QueryError(f"unknown file type '{name}' (known: {known})")
        wanted.update(ext for ext, ctype in CONTENT_TYPES.items() if ctype == CONTENT_TYPES[suffix])
    return tuple(sorted(wanted))
