"""The Index facade: a bundle + FAISS vectors + SQLite metadata in one directory."""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import platformdirs

from .bundles.registry import bundle_source, default_bundle_name
from .errors import ArgumentError, BundleMismatch, IndexStateError, SearchEngineError
from .store.metadata import MetadataStore
from .store.vectors import VectorStore
from .types import BundleInfo, IndexReport, IndexStatus, Kind, Progress, SearchResult, kinds_for

INDEX_ENV = "SEARCHENGINE_INDEX"
DB_FILE = "metadata.sqlite"


def default_index_dir() -> Path:
    """SEARCHENGINE_INDEX when set, else a folder in the per-user data directory."""
    env = os.environ.get(INDEX_ENV)
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("searchengine")) / "index"


def open_index(path: str | Path | None = None, bundle=None, *, device: str | None = None, rebuild: bool = False,
               clip_weights: str | None = None, whisper_model: str | None = None, create: bool = True) -> "Index":
    """Open (or create) the index at `path`. Opening never loads a model: the first index or search does.

    Args:
        path: index directory; default `default_index_dir()`.
        bundle: bundle name, bundle folder or a loaded Bundle. An existing index uses the bundle it
            was built with; naming another raises BundleMismatch unless `rebuild` is true.
        device: where models run ("cpu", "cuda"); default SEARCHENGINE_DEVICE, else CUDA when present.
        rebuild: forget every embedding so the next `index()` re-embeds with the given bundle.
        clip_weights, whisper_model: local weight files for pretrained bundles.
        create: when false, a directory without an index raises IndexStateError instead of becoming one.
    """
    if not isinstance(path, (str, os.PathLike, type(None))):
        raise ArgumentError(f"an index path must be a string or a path, not {type(path).__name__}")
    path = Path(path).expanduser() if path else default_index_dir()
    if not create and not (path / DB_FILE).is_file():
        raise IndexStateError(f"no index at {path} (create one with `searchengine index FOLDER --index {path}`)")
    load_kwargs = {"device": device, "clip_weights": clip_weights, "whisper_model": whisper_model}
    return Index(path, bundle, rebuild=rebuild, **load_kwargs)


class BundleBinding:
    """Which bundle an index uses: checked by name at open, loaded once on first use, its weights checked once."""

    def __init__(self, index_path: Path, metadata: MetadataStore, requested, load_kwargs: dict):
        self.index_path, self.metadata, self.load_kwargs = index_path, metadata, load_kwargs
        is_ref = requested is None or isinstance(requested, (str, os.PathLike))
        self.ref = requested if is_ref else None  # a name or folder, loaded on first use
        self.loaded = None if is_ref else requested  # a Bundle the caller built

    def check(self, recorded: BundleInfo | None) -> None:
        """BundleMismatch when the caller asked for another bundle than the recorded one (no model loads)."""
        if recorded is None:
            return
        if self.loaded is not None:
            self._check_weights(recorded, self.loaded.info)
        elif self.ref is not None and bundle_source(self.ref) != recorded.source:
            raise BundleMismatch(f"index {self.index_path} was built with bundle '{recorded.name}' "
                                 f"({recorded.source}); it cannot be searched or extended with '{self.ref}'. "
                                 "Run `searchengine index --rebuild` to re-embed.")

    def bundle(self):
        """The loaded bundle (loading it the first time), verified against the index's record."""
        if self.loaded is None:
            from .bundles.bundle import load_bundle

            recorded = self.metadata.bundle()
            ref = self.ref or (recorded.source if recorded else default_bundle_name())
            self.loaded = load_bundle(ref, **self.load_kwargs)
            self._check_weights(recorded, self.loaded.info)
        return self.loaded

    def _check_weights(self, recorded: BundleInfo | None, asked: BundleInfo) -> None:
        if recorded is not None and asked.fingerprint != recorded.fingerprint:
            raise BundleMismatch(f"index {self.index_path} was built with bundle '{recorded.name}' "
                                 f"({recorded.source}) and other weights than '{asked.name}' has now. "
                                 "Run `searchengine index --rebuild` to re-embed.")

    def start_over(self) -> None:
        """A rebuild re-embeds with the requested bundle, by default the recorded one."""
        recorded = self.metadata.bundle()
        if self.ref is None and self.loaded is None and recorded is not None:
            self.ref = recorded.source


class Index:
    """Index media folders and search them by audio, image or text."""

    def __init__(self, path: Path, bundle=None, *, rebuild: bool = False, **load_kwargs):
        self.path = path.expanduser().absolute()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise IndexStateError(f"cannot create index directory {self.path}: {exc}") from exc
        self.metadata = MetadataStore(self.path / DB_FILE)
        self._lock = threading.RLock()  # server threads share the bundle and the vector stores
        self._binding = BundleBinding(self.path, self.metadata, bundle, load_kwargs)
        if rebuild:
            self._binding.start_over()
            self._reset()
        self._binding.check(self.metadata.bundle())
        self.vectors: dict[str, VectorStore] = {}
        recorded = self.metadata.bundle()
        if recorded is not None:
            self._open_vectors(recorded.dim)

    def _reset(self) -> None:
        self.metadata.clear()
        for kind in Kind:
            (self.path / f"{kind.value}.faiss").unlink(missing_ok=True)

    @property
    def bundle(self):
        """The bundle, loaded on first use (status and media lookups never load models)."""
        with self._lock:
            return self._binding.bundle()

    def load_models(self) -> None:
        """Load the bundle now when the index has one (a server's first search should not wait for it)."""
        if self.metadata.bundle() is not None:
            _ = self.bundle

    # --- vectors --------------------------------------------------------------
    def _open_vectors(self, dim: int) -> None:
        """Load FAISS and reconcile it with SQLite, which is the source of truth."""
        try:
            self.vectors = {k.value: VectorStore(self.path / f"{k.value}.faiss", dim) for k in Kind}
        except (RuntimeError, ValueError) as exc:
            raise IndexStateError(f"unreadable vector index in {self.path}: {exc}") from exc
        self._reconcile()

    def _reconcile(self) -> bool:
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

    # --- public API -----------------------------------------------------------
    def index(self, paths: list[str | Path], *, progress: Progress | None = None, batch_size: int = 32) -> IndexReport:
        """Index (or re-index incrementally) the media under `paths`; `progress` gets ProgressEvents."""
        from indexer import index_paths  # the write path builds on this package, not the reverse

        roots = _as_paths(paths)
        bundle = self.bundle  # fails at once when weights are missing
        with self._writer_lock():
            self._ensure_recorded(bundle)
            if self._reconcile():
                for store in self.vectors.values():
                    store.save()
            return index_paths(self.metadata, self.vectors, bundle, roots, progress=progress, batch_size=batch_size)

    def _ensure_recorded(self, bundle) -> None:
        if self.metadata.bundle() is None:
            self.metadata.set_bundle(bundle.info)
            self._open_vectors(bundle.dim)

    @contextmanager
    def _writer_lock(self):
        """One index run at a time per index directory (searches need no lock)."""
        with open(self.path / "write.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise IndexStateError(f"another index run is writing to {self.path}") from exc
            yield

    def search(self, *, audio=None, image=None, text: str | None = None, kind: str | Kind = "any",
               k: int = 10) -> SearchResult:
        """Hits best first for one query (a path, bytes, PIL image or waveform, or text), and what was heard.

        `transcript` is set when the bundle transcribes a spoken query (the cascade).
        """
        from .search import check_k, encode_query, one_query, search_stores

        one_query(audio=audio, image=image, text=text)
        kinds, k = kinds_for(kind), check_k(k)
        with self._lock:
            self._refresh()
        if not self.vectors:
            return SearchResult([])
        query, transcript = encode_query(self.bundle, audio=audio, image=image, text=text)
        with self._lock:
            return SearchResult(search_stores(query, self.vectors, self.metadata, kinds, k), transcript)

    def _refresh(self) -> None:
        """Pick up vectors another process saved since we loaded ours (or since the index was empty)."""
        if not self.vectors:
            recorded = self.metadata.bundle()
            if recorded is not None:
                self._binding.check(recorded)
                self._open_vectors(recorded.dim)
            return
        if any([store.reload_if_changed() for store in self.vectors.values()]):
            self._reconcile()

    def status(self) -> IndexStatus:
        """Counts per kind, bundle, index type and size, skipped files."""
        stores = self.vectors
        return IndexStatus(
            path=str(self.path), bundle=self.metadata.bundle(), files=self.metadata.file_counts(),
            vectors={k: s.count for k, s in stores.items()},
            index_type=next(iter(stores.values())).description if stores else "none (empty index)",
            index_bytes=sum(s.file_bytes() for s in stores.values()) + _db_bytes(self.metadata.path),
            skipped=self.metadata.skipped())

    def media(self, file_id: int) -> tuple[Path, str]:
        """(path, kind) of an indexed file id; raises SearchEngineError for unknown ids."""
        found = self.metadata.file_by_id(file_id) if isinstance(file_id, int) else None
        if found is None:
            raise SearchEngineError(f"no indexed file with id {file_id}")
        return Path(found[0]), found[1]

    def close(self) -> None:
        """Release the database."""
        self.metadata.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _as_paths(paths) -> list[Path]:
    """The roots to index as Paths (one path alone is one root); ArgumentError for anything else."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    try:
        roots = list(paths)
    except TypeError:
        roots = [None]
    if not all(isinstance(p, (str, os.PathLike)) for p in roots):
        raise ArgumentError("index() takes folders or files as paths, e.g. index(['~/Pictures', '~/Recordings'])")
    return [Path(p) for p in roots]


def _db_bytes(db_path: Path) -> int:
    return sum(p.stat().st_size for p in db_path.parent.glob(db_path.name + "*") if p.is_file())
