"""Find media under the given roots and decide what changed since the last run."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from searchengine.media import kind_of_path
from searchengine.types import Kind, Progress, ProgressEvent


@dataclass(frozen=True)
class Candidate:
    """A regular media file found on disk."""

    path: str
    kind: Kind
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Problem:
    """A media-named path that cannot be indexed, known before reading it (a FIFO, a loop, ...)."""

    path: str
    reason: str
    size: int = 0
    mtime_ns: int = 0


@dataclass
class Walk:
    """What walking the roots found."""

    candidates: list[Candidate] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    walked: list[str] = field(default_factory=list)  # roots found on disk (folders or files)
    missing: list[str] = field(default_factory=list)  # roots not found: an unplugged drive, a typo


_NOT_REGULAR = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
                stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}


def walk(roots: list[Path], progress: Progress | None = None) -> Walk:
    """Every image and audio file under the roots (recursive, regular files only).

    `progress` hears "scanning ROOT: N files" a few times a second: a large tree takes a while to list.
    """
    found = Walk()
    for root in roots:
        root = Path(root).expanduser().absolute()
        try:
            is_dir = root.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            found.walked.append(str(root))
            tick = _Ticker(progress, f"scanning {root}")
            tick(0)  # at once: listing a large tree takes a while before the first file shows
            for path in _files_under(root, found.problems):
                _classify(found, path)
                tick(len(found.candidates))
            tick(len(found.candidates), final=True)
        elif os.path.lexists(root):
            found.walked.append(str(root))
            if kind_of_path(root) is None:
                found.problems.append(Problem(str(root), f"unsupported file type '{root.suffix or '(none)'}'"))
            else:
                _classify(found, root)
        else:
            found.missing.append(str(root))
    found.candidates.sort(key=lambda c: c.path)
    return found


class _Ticker:
    """Reports a running count at most every REPORT_EVERY seconds (and once at the end)."""

    REPORT_EVERY = 0.2

    def __init__(self, progress: Progress | None, message: str):
        self.progress, self.message, self.last = progress, message, 0.0

    def __call__(self, count: int, final: bool = False) -> None:
        now = time.monotonic()
        if self.progress is not None and (final or now - self.last >= self.REPORT_EVERY):
            self.last = now
            self.progress(ProgressEvent("scanning", done=count, message=self.message))


def _files_under(root: Path, problems: list[Problem]):
    """Media-named files below root in a stable order; folder symlinks are not followed (no loops)."""
    def unreadable(exc: OSError) -> None:
        problems.append(Problem(exc.filename or str(root), f"unreadable folder: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames.sort()
        for name in sorted(filenames):
            if kind_of_path(name) is not None:
                yield Path(dirpath) / name


def _classify(found: Walk, path: Path) -> None:
    """A candidate, or a problem with its reason; a file gone since it was listed is passed over."""
    if not _utf8(str(path)):  # the database, the JSON output and the web page all need a UTF-8 name
        shown = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        found.problems.append(Problem(shown, "the file name is not valid UTF-8: rename the file to index it"))
        return
    try:
        st = os.stat(path)  # follows symlinks: a link to a photo is that photo
    except OSError as exc:
        reason = _link_problem(path, exc)
        if reason:
            found.problems.append(Problem(str(path), reason))
        return
    if not stat.S_ISREG(st.st_mode):
        what = _NOT_REGULAR.get(stat.S_IFMT(st.st_mode), "not a regular file")
        found.problems.append(Problem(str(path), f"not a regular file: {what}"))
    elif st.st_size == 0:
        found.problems.append(Problem(str(path), "empty file (0 bytes)", 0, st.st_mtime_ns))
    else:
        found.candidates.append(Candidate(str(path), kind_of_path(path), st.st_size, st.st_mtime_ns))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _link_problem(path: Path, exc: OSError) -> str | None:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT:
        return "dangling symbolic link" if os.path.islink(path) else None  # else: deleted meanwhile
    return f"unreadable: {exc.strerror or exc}"


def content_hash(path: str) -> str:
    """sha256 of the file's bytes: identical files share one embedding.

    Opened without blocking and checked again: a path swapped for a FIFO after the walk must not
    hang the run.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file any more")
        digest = hashlib.sha256()
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def under(path: str, roots: list[str]) -> bool:
    """Whether `path` is one of the roots or inside one."""
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)
