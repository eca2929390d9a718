"""atomic_write(): the one way the engine replaces a file, so no reader and no crash sees half of one."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from pathlib import Path
from typing import Callable

from .errors import StorageError

Writer = Callable[[Path], None]
# The errors that mean "the disk will not take more", as opposed to a bug or a missing folder.
NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def atomic_write(path: str | os.PathLike, data: bytes | str | Writer, *, fsync: bool = False,
                 size_hint: int = 0) -> Path:
    """Write `data` (bytes, text, or a function that writes a given path) beside `path`, then rename.

    The temporary name is hidden and unique per call, so concurrent writers of one target never
    share a temp file; the last rename wins whole. `fsync` flushes the bytes to disk before the
    rename (for files that must survive a power cut, not only a crash of this process). A full
    disk raises StorageError and leaves `path` as it was; `size_hint` is what a function is about to
    write, for that error's message.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    payload = data.encode() if isinstance(data, str) else data
    try:
        if callable(payload):
            payload(tmp)
        else:
            with open(tmp, "wb") as out:
                _write_all(out, payload)
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise no_space(path.parent, size_hint if callable(payload) else len(memoryview(payload).cast("B")), exc) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def no_space(folder: Path, needed: int, exc: BaseException | None = None) -> StorageError:
    """The StorageError for a full disk: how much the write needed and how much is free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    want = f"about {_size(needed + (1 << 20))} free" if needed else "more free space"
    have = f" ({_size(free)} free now)" if free is not None else ""
    why = f": {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else ""
    return StorageError(f"the disk holding {folder} is full{why}; the write needs {want}{have}. "
                        "Nothing was lost: free some space and run the command again.")


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _write_all(out, payload) -> None:
    out.write(memoryview(payload))  # a view: no copy of a large buffer


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
