"""Damage to the files of an index directory, found by walking it (the layout may gain folders).

Each file gets a class from its name, and each class the damages that make sense for it. What an
engine must do about each class is in EXPECT: a FAISS file is a cache of SQLite and must be rebuilt
without a word; anything else may be refused, but only with a typed error of one clear line.
"""

from __future__ import annotations

import random
import shutil
import struct
from pathlib import Path

REPAIR = "repair"  # opens without error and every invariant holds
TYPED_OR_REPAIR = "typed-or-repair"  # either that, or a SearchEngineError with a one-line message

GENERIC = ("truncate", "zero", "random")
MODES = {
    "faiss": GENERIC + ("wrong-dim", "wrong-type-flat", "wrong-metric", "wrong-type-hnsw"),
    "sqlite": GENERIC + ("garble-header", "garble-page"),
    "sqlite-aux": GENERIC,
    "lock": GENERIC + ("directory",),
    "other": GENERIC,
}
EXPECT = {"faiss": REPAIR, "sqlite": TYPED_OR_REPAIR, "sqlite-aux": TYPED_OR_REPAIR, "lock": TYPED_OR_REPAIR,
          "other": TYPED_OR_REPAIR}


def file_class(path: Path) -> str:
    name = path.name
    if name.endswith(".faiss"):
        return "faiss"
    if name.endswith((".sqlite-wal", ".sqlite-shm", ".sqlite-journal")):
        return "sqlite-aux"
    if name.endswith(".sqlite"):
        return "sqlite"
    if name == "write.lock":
        return "lock"
    return "other"


def index_files(index_dir: Path) -> list[Path]:
    """Every file of a closed index directory, relative to it, in a stable order."""
    return sorted(p.relative_to(index_dir) for p in Path(index_dir).rglob("*") if p.is_file())


def cases(index_dir: Path) -> list[tuple[Path, str]]:
    """(file, mode) for every damage that applies to every file found."""
    return [(rel, mode) for rel in index_files(index_dir) for mode in MODES[file_class(rel)]]


def sqlite_pages(path: Path) -> int:
    """Pages in a SQLite file (page size from the header; 65536 is stored as 1)."""
    data = path.read_bytes()
    size = struct.unpack(">H", data[16:18])[0] if len(data) >= 100 else 4096
    size = 65536 if size == 1 else size
    return max(1, len(data) // size)


def damage(path: Path, mode: str, *, seed: int = 0, dim: int = 16, page: int | None = None) -> str:
    """Apply one damage in place; returns a short description of what was done."""
    rng = random.Random(seed)
    size = path.stat().st_size
    if mode == "truncate":
        with open(path, "r+b") as handle:
            handle.truncate(size // 2)
        return f"cut to {size // 2} of {size} bytes"
    if mode == "zero":
        path.write_bytes(b"")
        return "emptied to 0 bytes"
    if mode == "random":
        path.write_bytes(rng.randbytes(max(size, 64)))
        return f"{max(size, 64)} random bytes"
    if mode == "directory":
        path.unlink()
        path.mkdir()
        return "replaced by a directory"
    if mode.startswith("garble"):
        return _garble_sqlite(path, mode, rng, page)
    return _write_faiss(path, mode, dim, rng)


def _garble_sqlite(path: Path, mode: str, rng: random.Random, page: int | None) -> str:
    data = bytearray(path.read_bytes())
    if mode == "garble-header":
        data[0:100] = rng.randbytes(100)
        path.write_bytes(bytes(data))
        return "first 100 bytes (the header) random"
    size = struct.unpack(">H", data[16:18])[0] or 4096
    size = 65536 if size == 1 else size
    pages = len(data) // size
    page = page if page is not None else rng.randrange(2, pages + 1) if pages >= 2 else 1
    start = (page - 1) * size + (100 if page == 1 else 0)
    data[start:page * size] = rng.randbytes(page * size - start)
    path.write_bytes(bytes(data))
    return f"page {page} of {pages} random"


def _write_faiss(path: Path, mode: str, dim: int, rng: random.Random) -> str:
    """A valid FAISS file of the wrong shape: what another tool or an older engine could leave."""
    import faiss
    import numpy as np

    vectors = np.random.default_rng(rng.randrange(1 << 30)).standard_normal((4, dim)).astype(np.float32)
    ids = np.arange(1, 5, dtype=np.int64)
    if mode == "wrong-dim":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim * 2))
        index.add_with_ids(np.hstack([vectors, vectors]), ids)
    elif mode == "wrong-type-flat":
        index = faiss.IndexFlatIP(dim)  # no id map: the engine's ids are lost
        index.add(vectors)
    elif mode == "wrong-metric":
        index = faiss.IndexIDMap2(faiss.IndexFlatL2(dim))  # right ids, distances instead of similarities
        index.add_with_ids(vectors, ids)
    elif mode == "wrong-type-hnsw":
        index = faiss.IndexHNSWFlat(dim, 8)
        index.add(vectors)
    else:
        raise ValueError(f"unknown damage {mode!r}")
    faiss.write_index(index, str(path))
    return f"a valid FAISS file: {type(index).__name__}, dim {index.d}"


def copy_index(source: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, symlinks=True)
    return target
