"""The Index facade: a bundle + FAISS vectors in one directory + metadata in SQLite there or in PostgreSQL."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import platformdirs

from .bundles.registry import bundle_source, default_bundle_name
from .errors import ArgumentError, BundleMismatch, IndexStateError, PathNotFound, SearchEngineError
from .store.database import advisory_lock
from .store.generation import (Backend, Generation, backend_for, discard, live_folder, next_folder, publish,
                               remove_stale)
from .store.metadata import MetadataStore
from .store.vectors import VectorStore
from .types import BundleInfo, IndexReport, IndexStatus, Kind, Progress, SearchResult, kinds_for

INDEX_ENV = "SEARCHENGINE_INDEX"
DB_ENV = "SEARCHENGINE_DB"


def default_index_dir() -> Path:
    """SEARCHENGINE_INDEX when set, else a folder in the per-user data directory."""
    env = os.environ.get(INDEX_ENV)
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("searchengine")) / "index"


def open_index(path: str | Path | None = None, bundle=None, *, device: str | None = None, rebuild: bool = False,
               clip_weights: str | None = None, whisper_model: str | None = None, create: bool = True,
               db: str | None = None) -> "Index":
    """Open (or create) the index at `path`. Opening never loads a model: the first index or search does.

    Args:
        path: index directory; default `default_index_dir()`.
        bundle: bundle name, bundle folder or a loaded Bundle. An existing index uses the bundle it
            was built with; naming another raises BundleMismatch unless `rebuild` is true.
        device: where models run ("cpu", "cuda"); default SEARCHENGINE_DEVICE, else CUDA when present.
        rebuild: forget every embedding so the next `index()` re-embeds with the given bundle.
        clip_weights, whisper_model: local weight files for pretrained bundles.
        create: when false, a directory without an index raises IndexStateError instead of becoming one.
        db: SQLAlchemy URL of a PostgreSQL database for the metadata (postgresql+psycopg://...);
            default SEARCHENGINE_DB, else SQLite in the index directory. FAISS files stay in `path`.
    """
    if not isinstance(path, (str, os.PathLike, type(None))):
        raise ArgumentError(f"an index path must be a string or a path, not {type(path).__name__}")
    path = Path(path).expanduser() if path else default_index_dir()
    db = db or os.environ.get(DB_ENV) or None
    if not create and not backend_for(path, db, create=False).holds(live_folder(path)):
        raise IndexStateError(f"no index at {path} (create one with `searchengine index FOLDER --index {path}`)")
    load_kwargs = {"device": device, "clip_weights": clip_weights, "whisper_model": whisper_model}
    return Index(path, bundle, rebuild=rebuild, db=db, **load_kwargs)


class BundleBinding:
    """Which bundle an index uses: checked by name at open, loaded once on first use, its weights checked once."""

    def __init__(self, index_path: Path, recorded: Callable[[], BundleInfo | None], requested, load_kwargs: dict):
        self.index_path, self.recorded, self.load_kwargs = index_path, recorded, load_kwargs
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
            recorded = self.recorded()
            self.loaded = _load(self.ref or (recorded.source if recorded else default_bundle_name()), self.load_kwargs)
            self._check_weights(recorded, self.loaded.info)
        return self.loaded

    def bind(self, bundle) -> None:
        """Use this loaded bundle from now on (the one a rebuild just published)."""
        self.ref, self.loaded = None, bundle

    def follow_rebuild(self) -> None:
        """Another process published a rebuild: an index opened without a bundle follows it."""
        if self.ref is None:
            self.loaded = None
        self.check(self.recorded())

    def _check_weights(self, recorded: BundleInfo | None, asked: BundleInfo) -> None:
        if recorded is not None and asked.fingerprint != recorded.fingerprint:
            raise BundleMismatch(f"index {self.index_path} was built with bundle '{recorded.name}' "
                                 f"({recorded.source}) and other weights than '{asked.name}' has now. "
                                 "Run `searchengine index --rebuild` to re-embed.")


class Index:
    """Index media folders and search them by audio, image or text."""

    def __init__(self, path: Path, bundle=None, *, rebuild: bool = False, db: str | None = None, **load_kwargs):
        self.path = path.expanduser().absolute()
        self._lock = threading.RLock()  # server threads share the bundle and the vector stores
        self.backend: Backend = backend_for(self.path, db)
        self.gen = Generation(live_folder(self.path), self.backend)
        self._load_kwargs = load_kwargs
        recorded = self.metadata.bundle()
        # A rebuild re-embeds into a new generation with the requested bundle (by default the
        # recorded one); until it is published, this index searches the live one as it is.
        self._rebuild_ref = (bundle or (recorded and recorded.source) or default_bundle_name()) if rebuild else None
        self._binding = BundleBinding(self.path, lambda: self.metadata.bundle(), None if rebuild else bundle, load_kwargs)
        self._binding.check(recorded)
        self._repair_files()

    @property
    def metadata(self) -> MetadataStore:
        """The live generation's metadata store."""
        return self.gen.metadata

    @property
    def vectors(self) -> dict[str, VectorStore]:
        """The live generation's vector stores, by kind."""
        return self.gen.vectors

    def _repair_files(self) -> None:
        """Rewrite FAISS files repaired from SQLite now, unless an index run is writing (it will)."""
        if self.gen.stale:
            with self._writer_lock(optional=True) as locked:
                if locked:
                    self.gen.save_if_stale()

    @property
    def bundle(self):
        """The bundle, loaded on first use (status and media lookups never load models)."""
        with self._lock:
            return self._binding.bundle()

    def load_models(self) -> None:
        """Load the bundle now when the index has one (a server's first search should not wait for it)."""
        if self.metadata.bundle() is not None:
            _ = self.bundle

    # --- writing --------------------------------------------------------------
    def index(self, paths, *, progress: Progress | None = None, batch_size: int = 32,
              prune: bool = False) -> IndexReport:
        """Index (or re-index incrementally) the media under `paths`; `progress` gets ProgressEvents.

        prune: also forget indexed files whose folder was not found (an unplugged drive keeps its
        entries otherwise).
        """
        roots = _as_paths(paths)
        self._check_roots(roots)
        if self._rebuild_ref is not None:
            return self._rebuild(roots, progress, batch_size, prune)
        bundle = self.bundle  # fails at once when weights are missing
        with self._writer_lock():
            remove_stale(self.path, keep=next_folder(self.path), backend=self.backend)
            return _fill(self.gen, bundle, roots, progress=progress, batch_size=batch_size, prune=prune)

    def _check_roots(self, roots: list[Path]) -> None:
        """PathNotFound for a missing root the index holds nothing from (a typo); an unplugged drive is
        fine: its files stay indexed and the report lists it as offline."""
        missing = [str(root.expanduser().absolute()) for root in roots if not os.path.lexists(root.expanduser())]
        if not missing:
            return
        held = self.metadata.file_states()
        unknown = [root for root in missing if not any(_is_under(path, root) for path in held)]
        if unknown:
            raise PathNotFound("no such file or folder: " + ", ".join(unknown))

    def _rebuild(self, roots, progress, batch_size: int, prune: bool) -> IndexReport:
        """Embed everything again into the next generation, then publish it in one rename."""
        ref = self._rebuild_ref
        loaded = not isinstance(ref, (str, os.PathLike))  # the caller passed a Bundle it built
        bundle = ref if loaded else _load(ref, self._load_kwargs)  # before touching anything
        with self._writer_lock():
            target = Generation(next_folder(self.path), self.backend)
            if target.metadata.bundle() not in (None, bundle.info):  # an unfinished rebuild for another bundle
                target.close()
                discard(target.folder, self.backend)
                target = Generation(target.folder, self.backend)
            report = _fill(target, bundle, roots, progress=progress, batch_size=batch_size, prune=prune)
            old, self.gen = self.gen, target
            old.close()
            publish(self.path, target.folder, self.backend)
        self._rebuild_ref = None
        self._binding.bind(bundle)
        return report

    @contextmanager
    def _writer_lock(self, optional: bool = False):
        """One index run at a time per index (searches need no lock).

        Yields True once held. When another process holds it: IndexStateError, or with `optional`
        (work that can wait for the next writer) False. SQLite's index takes a flock on a file in
        its folder; a PostgreSQL one an advisory lock on the server, which every machine sees.
        """
        url = self.backend.url
        with advisory_lock(url, self.backend.lock_key()) if url else self._file_lock(optional) as held:
            if not held and not optional:
                raise IndexStateError(f"another index run is writing to {self.path}")
            yield held

    @contextmanager
    def _file_lock(self, optional: bool):
        try:
            handle = open(self.path / "write.lock", "a")
        except OSError as exc:
            if optional:  # e.g. a read-only index: searching it must still work
                yield False
                return
            raise IndexStateError(f"cannot use the lock file {self.path / 'write.lock'} ({exc.strerror}); "
                                  "remove it if it is not a regular file") from exc
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True

    # --- reading --------------------------------------------------------------
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
        """Follow a rebuild another process published, and pick up vectors it saved since we looked."""
        if live_folder(self.path) != self.gen.folder:
            old, self.gen = self.gen, Generation(live_folder(self.path), self.backend)
            old.close()
            self._binding.follow_rebuild()
        had_vectors = bool(self.vectors)
        self.gen.refresh()
        if self.vectors and not had_vectors:
            self._binding.check(self.metadata.bundle())

    def status(self) -> IndexStatus:
        """Counts per kind, bundle, index type and size, skipped files and warnings."""
        stores = self.vectors
        return IndexStatus(
            path=str(self.path), bundle=self.metadata.bundle(), files=self.metadata.file_counts(),
            vectors={k: s.count for k, s in stores.items()},
            index_type=next(iter(stores.values())).description if stores else "none (empty index)",
            index_bytes=sum(s.file_bytes() for s in stores.values()) + _db_bytes(self.metadata.path),
            skipped=_still_on_disk(self.metadata.skipped()), warnings=self.metadata.warnings(), rebuild=self._pending_rebuild())

    def _pending_rebuild(self) -> dict | None:
        """The unfinished rebuild beside the live generation, if any (`index --rebuild` resumes it)."""
        folder = next_folder(self.path)
        if not self.backend.holds(folder):
            return None
        pending = self.backend.open(folder)  # its metadata only: status need not load its vectors
        try:
            info = pending.bundle()
            return {"bundle": info.name if info else None, "files": sum(pending.file_counts().values())}
        finally:
            pending.close()

    def media(self, file_id: int) -> tuple[Path, str]:
        """(path, kind) of an indexed file id; raises SearchEngineError for unknown ids."""
        found = self.metadata.file_by_id(file_id) if isinstance(file_id, int) else None
        if found is None:
            raise SearchEngineError(f"no indexed file with id {file_id}")
        return Path(found[0]), found[1]

    def close(self) -> None:
        """Release the database."""
        self.gen.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fill(gen: Generation, bundle, roots: list[Path], **options) -> IndexReport:
    """Bind a generation to its bundle, write FAISS files it repaired, and index the roots into it."""
    from indexer import index_paths  # the write path builds on this package, not the reverse

    gen.record(bundle.info)
    gen.save_if_stale()
    return index_paths(gen.metadata, gen.vectors, bundle, roots, **options)


def _load(ref, load_kwargs: dict):
    from .bundles.bundle import load_bundle

    return load_bundle(ref, **load_kwargs)


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


def _still_on_disk(skipped: list) -> list:
    """Skip records of files deleted since are not news (the next index run forgets them for good)."""
    return [s for s in skipped if os.path.lexists(s.path)]


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _db_bytes(db_path: Path | None) -> int:
    """The SQLite file and its WAL; nothing for a server database (its size is the server's business)."""
    if db_path is None:
        return 0
    return sum(p.stat().st_size for p in db_path.parent.glob(db_path.name + "*") if p.is_file())
