"""A generation: one complete copy of an index's stores (metadata + a FAISS file per kind).

An index directory holds the live generation, named by its CURRENT file (no file: the directory
itself, as every index made before generations), and at most one more: a rebuild under way. A
rebuild fills the next generation beside the live one and publishes it by rewriting CURRENT in
one atomic rename, so readers see the old index or the new one, never a mixture, and a rebuild
cut short leaves the live generation untouched.

The metadata of a generation is SQLite in its folder, or (an index opened with a database URL) a
schema of that server database: `<prefix>_g0` for the index directory itself, `<prefix>_g<N>` for
gen-N, where the prefix is `searchengine_<random id>` kept in the index directory's SCHEMA file.
The id, not the directory's path, names the schemas, so machines that mount a shared index directory
at different paths find the same ones, and two index directories can share one database.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import IndexStateError
from ..fileio import atomic_write
from ..types import VECTOR_STORES, BundleInfo
from .database import check_url, drop_schemas, generation_schemas, lock_key, schema_exists
from .metadata import MetadataStore
from .growth import EXACT, Layout
from .vectorlog import peek_index
from .vectorrows import VectorRows

if TYPE_CHECKING:
    from .vectors import VectorStore

DB_FILE = "metadata.sqlite"
CURRENT_FILE = "CURRENT"
PREFIX = "gen-"
GENERATION_NAME = re.compile(r"gen-[0-9]{1,9}")
SCHEMA_FILE = "SCHEMA"
log = logging.getLogger("searchengine")


def live_folder(index_dir: Path) -> Path:
    """The folder of the live generation."""
    try:
        raw = (index_dir / CURRENT_FILE).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return index_dir  # no rebuild yet (or not a folder: creating the index reports that)
    except OSError as exc:
        raise IndexStateError(f"cannot read {index_dir / CURRENT_FILE}: {exc}") from exc
    name = raw.decode("utf-8", "replace").strip()
    if GENERATION_NAME.fullmatch(name) and (index_dir / name).is_dir():
        return index_dir / name
    return _only_generation(index_dir, name)


def _only_generation(index_dir: Path, damaged: str) -> Path:
    """The live generation when CURRENT is damaged: the only one there is, or IndexStateError saying which."""
    found = sorted(p.name for p in index_dir.glob(f"{PREFIX}*") if p.is_dir() and GENERATION_NAME.fullmatch(p.name))
    if len(found) == 1:
        log.warning("%s is damaged (%r); using the only generation, %s", index_dir / CURRENT_FILE, damaged[:40], found[0])
        return index_dir / found[0]
    raise IndexStateError(f"{index_dir / CURRENT_FILE} is damaged ({damaged[:40]!r}): it must hold the name of the "
                          f"live generation, one of {', '.join(found) or '(none found)'} (the lower number, "
                          "unless a rebuild had finished)")


def next_folder(index_dir: Path) -> Path:
    """Where a rebuild of the live generation goes (gen-1 after the legacy folder, then gen-2, ...)."""
    live = live_folder(index_dir)
    number = int(live.name[len(PREFIX):]) + 1 if live != index_dir else 1
    return index_dir / f"{PREFIX}{number}"


@dataclass(frozen=True)
class Backend:
    """Where an index keeps its metadata: SQLite in each generation's folder (`url` None), or a
    schema per generation in the server database at `url`."""

    index_dir: Path | None = None
    url: str | None = None
    prefix: str = ""

    def schema(self, folder: Path) -> str:
        """The schema of the generation in `folder` (g0: the index directory itself)."""
        number = 0 if folder == self.index_dir else int(folder.name[len(PREFIX):])
        return f"{self.prefix}_g{number}"

    def open(self, folder: Path) -> MetadataStore:
        """The generation's metadata store, made (and migrated) when missing."""
        if self.url is None:
            return MetadataStore(folder / DB_FILE)
        return MetadataStore(url=self.url, schema=self.schema(folder))

    def holds(self, folder: Path) -> bool:
        """Whether the generation in `folder` has metadata yet (nothing is created to find out)."""
        if self.url is None:
            return (folder / DB_FILE).is_file()
        return folder.is_dir() and schema_exists(self.url, self.schema(folder))

    def lock_key(self) -> int:
        """The advisory lock every writer of this index takes on the server."""
        return lock_key(self.prefix)

    def drop(self, keep: list[Path]) -> None:
        """Drop the schemas of every generation but those in `keep` (SQLite files go with folders)."""
        if self.url is not None:
            wanted = {self.schema(folder) for folder in keep}
            drop_schemas(self.url, [s for s in generation_schemas(self.url, self.prefix) if s not in wanted])


def backend_for(index_dir: Path, url: str | None, create: bool = True) -> Backend:
    """The backend of the index in `index_dir`; a server database's index gets its id on creation.

    An index stays with the backend it was made with: SQLite files with a URL, or a SCHEMA file
    without one, is an IndexStateError rather than a second, empty index in the same folder.
    """
    marker = index_dir / SCHEMA_FILE
    if url is None:
        if marker.is_file():
            raise IndexStateError(f"index {index_dir} keeps its metadata in a database server: "
                                  "give its URL with --db or SEARCHENGINE_DB")
        return Backend(index_dir)
    url = check_url(url)
    if (live_folder(index_dir) / DB_FILE).is_file():
        raise IndexStateError(f"index {index_dir} keeps its metadata in SQLite in its folder; "
                              "open it without --db (or index into a new folder)")
    return Backend(index_dir, url, _schema_prefix(marker, create))


def _schema_prefix(marker: Path, create: bool) -> str:
    """Read the index's schema prefix, or (create) make one; two machines racing agree on one."""
    if not marker.is_file() and create:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            draft = marker.with_name(f".{SCHEMA_FILE}.{secrets.token_hex(4)}")
            draft.write_text(f"searchengine_{secrets.token_hex(6)}\n")
            try:
                os.link(draft, marker)  # fails when another process made it first: theirs wins
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        except OSError as exc:
            raise IndexStateError(f"cannot create {marker}: {exc}") from exc
    try:
        prefix = marker.read_text().strip()
    except FileNotFoundError:
        return ""  # no index here (open_index with create=False reports it)
    except OSError as exc:
        raise IndexStateError(f"cannot read {marker}: {exc}") from exc
    if not prefix.startswith("searchengine_") or len(prefix) > 50:
        raise IndexStateError(f"{marker} names no schema ({prefix[:40]!r})")
    return prefix


def publish(index_dir: Path, folder: Path, backend: Backend | None = None) -> None:
    """Make `folder` the live generation (one atomic rename), then remove every other one."""
    atomic_write(index_dir / CURRENT_FILE, folder.name + "\n", fsync=True)
    remove_stale(index_dir, backend=backend)


def remove_stale(index_dir: Path, keep: Path | None = None, backend: Backend | None = None) -> None:
    """Delete generations that are neither live nor `keep` (left by a crash after a publish), and temp files.

    Only a writer calls this, under the write lock: no other process is writing a temp file then.
    """
    live = live_folder(index_dir)
    if backend is not None:
        backend.drop([f for f in (live, keep) if f is not None])
    for folder in index_dir.glob(f"{PREFIX}*"):
        if folder.is_dir() and folder not in (live, keep):
            shutil.rmtree(folder, ignore_errors=True)
    if live != index_dir:  # the legacy generation's files at the top level
        for path in [*index_dir.glob(DB_FILE + "*"), *(index_dir / f"{name}.faiss{log}" for name in VECTOR_STORES
                                                         for log in ("", ".log"))]:
            path.unlink(missing_ok=True)
    for folder in (index_dir, live, keep):
        for leftover in (folder.glob(".*.tmp") if folder is not None and folder.is_dir() else ()):
            leftover.unlink(missing_ok=True)  # a temp file a killed writer never renamed


def discard(folder: Path, backend: Backend | None = None) -> None:
    """Delete one generation that is not live (an unfinished rebuild for another bundle)."""
    shutil.rmtree(folder)
    if backend is not None and backend.url is not None:
        drop_schemas(backend.url, [backend.schema(folder)])


class Generation:
    """The stores of one folder; the metadata database is the source of truth, FAISS is reconciled to it."""

    def __init__(self, folder: Path, backend: Backend | None = None, load_vectors: bool = True,
                 index_type: str | None = None):
        """load_vectors=False leaves the FAISS files unread (and FAISS unimported) until refresh() or
        record() needs them: reading status takes only the database. index_type: the index a writer
        grows the vector stores into (store/growth.py; a writer sets it with set_index_type); None,
        for readers, keeps whatever type the files hold."""
        self.folder = folder
        self.index_type = index_type
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise IndexStateError(f"cannot create index directory {folder}: {exc}") from exc
        self.metadata = (backend or Backend()).open(folder)
        self.vectors: dict[str, VectorStore] = {}
        self.stale = False  # FAISS in memory differs from the files: the next writer saves it
        recorded = self.metadata.bundle()
        if recorded is not None and load_vectors:
            self.open_vectors(recorded.dim)

    def open_vectors(self, dim: int) -> None:
        """Load FAISS (an unreadable file starts empty) and reconcile it with SQLite."""
        from .vectors import VectorStore  # FAISS loads with the first vectors, not with the metadata

        self.vectors = {name: VectorStore(self.folder / f"{name}.faiss", dim, index_type=self.index_type,
                                          exact_source=VectorRows(self.metadata, name).chunks)
                        for name in VECTOR_STORES}
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
            changed = reconcile_store(store, VectorRows(self.metadata, kind)) or changed
        return changed

    def record(self, info: BundleInfo) -> None:
        """Bind an empty generation to its bundle and make its (empty) vector stores."""
        if self.metadata.bundle() is None:
            self.metadata.set_bundle(info)
        if not self.vectors:  # new, or opened without its vectors
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

    def set_index_type(self, index_type: str) -> None:
        """A writer's index type setting: stores that should be of another type are converted now."""
        self.index_type = index_type
        for store in self.vectors.values():
            store.index_type = index_type
        if any([store.apply_index_type() for store in self.vectors.values()]):
            self.stale = True

    def save_if_stale(self) -> None:
        """Write the FAISS files when memory holds what they lack (after a repair or a crash)."""
        if self.stale:
            for store in self.vectors.values():
                store.save()
                # as at the end of a run: a repair that left a long log is folded now, not replayed by every
                # later open (10 k repaired rows at 1 M: a 1.5-s compaction once, or 0.3-2 s more on every open)
                store.fold()
            self.stale = False

    def describe_index(self) -> str:
        """The index type of the stores that hold vectors (read from the files' headers when not loaded)."""
        if self.vectors:
            types = {name: store.description for name, store in self.vectors.items() if store.count}
        else:
            heads = {name: peek_index(self.folder / f"{name}.faiss") for name in VECTOR_STORES}
            types = {name: Layout(head[0]).description for name, head in heads.items() if head and head[1]}
        if len(set(types.values())) > 1:
            return "; ".join(f"{name}: {kind}" for name, kind in types.items())
        return next(iter(types.values()), EXACT.description)

    def file_bytes(self) -> int:
        """Bytes of the FAISS files (bases and change logs)."""
        return sum(p.stat().st_size for p in [*self.folder.glob("*.faiss"), *self.folder.glob("*.faiss.log")])

    def close(self) -> None:
        self.metadata.close()


def reconcile_store(store: "VectorStore", rows: VectorRows) -> bool:
    """Bring one FAISS store in line with the database rows behind it; True when it changed.

    The work follows what a crash left undone, not the store's size: FAISS is the database's history
    up to some point (its log is replayed in order), and ids only grow, so the rows it lacks are the
    rows above its newest id; only when counts and id sums still disagree (a lost removal, a
    replaced file) is every id compared.
    """
    count, total = rows.summary()
    held = store.ids()
    if len(held) == count and int(held.sum()) == total:
        return False
    newest = int(held.max()) if len(held) else 0
    ids, vectors = rows.after(newest)
    if len(ids):
        store.add(ids, vectors)
        held = np.concatenate([held, ids])
    if len(held) == count and int(held.sum()) == total:
        return True
    wanted = rows.ids()
    store.remove(np.setdiff1d(held, wanted))
    missing = np.setdiff1d(wanted, store.ids())
    if len(missing):
        store.add(*rows.of(missing))
    return True
