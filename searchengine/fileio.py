"""atomic_write(): the one way the engine replaces a file, so no reader and no crash sees half of one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable

Writer = Callable[[Path], None]


def atomic_write(path: str | os.PathLike, data: bytes | str | Writer, *, fsync: bool = False) -> Path:
    """Write `data` (bytes, text, or a function that writes a given path) beside `path`, then rename.

    The temporary name is hidden and unique per call, so concurrent writers of one target never
    share a temp file; the last rename wins whole. `fsync` flushes the bytes to disk before the
    rename (for files that must survive a power cut, not only a crash of this process).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        if callable(data):
            data(tmp)
        else:
            tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
