"""A generation: one complete copy of an index's stores (SQLite + a FAISS file per kind) in one folder.

An index directory holds the live generation, named by its CURRENT file (no file: the directory
itself, as every index made before generations), and at most one more: a rebuild under way. A
rebuild fills the next generation beside the live one and publishes it by rewriting CURRENT in
one atomic rename, so readers see the old index or the new one, never a mixture, and a rebuild
cut short leaves the live generation untouched.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from ..errors import IndexStateError
from ..fileio import atomic_write
from ..types import BundleInfo, Kind
from .metadata import MetadataStore
from .vectors import VectorStore

DB_FILE = "metadata.sqlite"
CURRENT_FILE = "CURRENT"
PREFIX = "gen-"
log = logging.getLogger("searchengine")


def live_folder(index_dir: Path) -> Path:
    """The folder of the live generation."""
    try:
        name = (index_dir / CURRENT_FILE).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return index_dir  # no rebuild yet (or not a folder: creating the index reports that)
    except OSError as exc:
        raise IndexStateError(f"cannot read {index_dir / CURRENT_FILE}: {exc}") from exc
    if not name.startswith(PREFIX) or "/" in name:
        raise IndexStateError(f"{index_dir / CURRENT_FILE} names no generation ({name[:40]!r})")
    return index_dir / name


def next_folder(index_dir: Path) -> Path:
    """Where a rebuild of the live generation goes (gen-1 after the legacy folder, then gen-2, ...)."""
    live = live_folder(index_dir)
    number = int(live.name[len(PREFIX):]) + 1 if live != index_dir else 1
    return index_dir / f"{PREFIX}{number}"


def publish(index_dir: Path, folder: Path) -> None:
    """Make `folder` the live generation (one atomic rename), then remove every other one."""
    atomic_write(index_dir / CURRENT_FILE, folder.name + "\n", fsync=True)
    remove_stale(index_dir)


def remove_stale(index_dir: Path, keep: Path | None = None) -> None:
    """Delete generations that are neither live nor `keep` (left by a crash after a publish)."""
    live = live_folder(index_dir)
    for folder in index_dir.glob(f"{PREFIX}*"):
        if folder.is_dir() and folder not in (live, keep):
            shutil.rmtree(folder, ignore_errors=True)
    if live != index_dir:  # the legacy generation's files at the top level
        for path in [*index_dir.glob(DB_FILE + "*"), *(index_dir / f"{k.value}.faiss" for k in Kind)]:
            path.unlink(missing_ok=True)


class Generation:
    """The stores of one folder; SQLite is the source of truth, FAISS is reconciled to it."""

    def __init__(self, folder: Path):
        self.folder = folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise IndexStateError(f"cannot create index directory {folder}: {exc}") from exc
        self.metadata = MetadataStore(folder / DB_FILE)
        self.vectors: dict[str, VectorStore] = {}
        self.stale = False  # FAISS in memory differs from the files: the next writer saves it
        recorded = self.metadata.bundle()
        if recorded is not None:
            self.open_vectors(recorded.dim)

    def open_vectors(self, dim: int) -> None:
        """Load FAISS (an unreadable file starts empty) and reconcile it with SQLite."""
        self.vectors = {k.value: VectorStore(self.folder / f"{k.value}.faiss", dim) for k in Kind}
        for store in self.vectors.values():
            if store.damaged:
                log.warning("rebuilding %s from the metadata database: %s", store.path, store.damaged)
        changed = self.reconcile()
        unsaved = any(s.damaged or (s.count and not s.path.exists()) for s in self.vectors.values())
        self.stale = changed or unsaved

    def reconcile(self) -> bool:
        """Add vectors SQLite has and FAISS lacks, drop ids SQLite no longer has (crash leftovers)."""
        changed = False
        for kind, store in self.vectors.items():
            in_faiss = set(store.ids().tolist())
            in_sqlite = self.metadata.content_ids(kind)
            if in_faiss == in_sqlite:
                continue
            store.remove(sorted(in_faiss - in_sqlite))
            missing = in_sqlite - in_faiss
            if missing:
                ids, vecs = self.metadata.vectors(kind)
                mask = np.isin(ids, list(missing))
                store.add(ids[mask], vecs[mask])
            changed = True
        return changed

    def record(self, info: BundleInfo) -> None:
        """Bind an empty generation to its bundle and make its (empty) vector stores."""
        if self.metadata.bundle() is None:
            self.metadata.set_bundle(info)
            self.open_vectors(info.dim)

    def refresh(self) -> None:
        """Pick up what another process wrote since we looked (new vectors, or a first bundle)."""
        if not self.vectors:
            recorded = self.metadata.bundle()
            if recorded is not None:
                self.open_vectors(recorded.dim)
            return
        if any([store.reload_if_changed() for store in self.vectors.values()]):
            self.reconcile()

    def save_if_stale(self) -> None:
        """Write the FAISS files when memory holds what they lack (after a repair or a crash)."""
        if self.stale:
            for store in self.vectors.values():
                store.save()
            self.stale = False

    def close(self) -> None:
        self.metadata.close()
