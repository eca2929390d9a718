"""The Index facade: a bundle + FAISS vectors in one directory + metadata in SQLite there or in PostgreSQL."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from . import settings
from .binding import BundleBinding, check_first_bundle
from .bundles.registry import default_bundle_name
from .errors import ArgumentError, IndexStateError, PathNotFound, SearchEngineError
from .store.database import advisory_lock, schema_exists
from .store.generation import (Backend, Generation, backend_for, discard, live_folder, next_folder, publish,
                               remove_stale)
from .store.growth import check_index_type
from .store.metadata import MetadataStore
from .types import MOMENT_STORE, TRANSCRIPT_STORE, IndexReport, IndexStatus, Kind, Progress, SearchResult

if TYPE_CHECKING:
    from .store.vectors import VectorStore  # FAISS loads with the first vectors, not with this module

INDEX_ENV = settings.SETTINGS["index"].env
OPTIONAL_STORES = (TRANSCRIPT_STORE, MOMENT_STORE)  # status lists them only when they hold vectors
DB_ENV = settings.SETTINGS["db"].env


def default_index_dir() -> Path:
    """SEARCHENGINE_INDEX when set, else the config file's `index`, else a folder in the per-user data directory."""
    return Path(settings.value("index")).expanduser()


def open_index(path: str | Path | None = None, bundle=None, *, device: str | None = None, rebuild: bool = False,
               clip_weights: str | None = None, whisper_model: str | None = None, create: bool = True,
               db: str | None = None, load_vectors: bool = True, precision: str | None = None) -> "Index":
    """Open (or create) the index at `path`. Opening never loads a model: the first index or search does.

    Every argument left out comes from the settings (environment, then the config file; see
    `searchengine config`).

    Args:
        path: index directory; default `default_index_dir()`.
        bundle: bundle name (registered, or clip:MODEL/TAG+whisper:SIZE), bundle folder or a loaded Bundle.
            An existing index uses the bundle it was built with; naming another raises BundleMismatch
            unless `rebuild` is true. A new index gets the bundle setting (default clip-whisper).
        device: where models run ("cpu", "cuda"); default the device setting, else CUDA when present.
        rebuild: forget every embedding so the next `index()` re-embeds with the given bundle.
        clip_weights, whisper_model: local weight files for pretrained bundles.
        create: when false, a directory without an index raises IndexStateError instead of becoming one.
        db: SQLAlchemy URL of a PostgreSQL database for the metadata (postgresql+psycopg://...);
            default the db setting, else SQLite in the index directory. FAISS files stay in `path`.
        load_vectors: False opens the database only (no FAISS): status() answers from it at once, and
            the first search or index run reads the vector files.
        precision: the encoders' arithmetic, fp32, bf16 or int8 (bundles/precision.py); default the
            precision setting, else bf16 on CUDA and fp32 on the CPU.

    A new index is created only when its bundle's weights are here (or can be fetched, for a bundle
    named on purpose): otherwise WeightsMissing says what is missing, and nothing is written.
    """
    if not isinstance(path, (str, os.PathLike, type(None))):
        raise ArgumentError(f"an index path must be a string or a path, not {type(path).__name__}")
    path = Path(path).expanduser() if path else default_index_dir()
    db = settings.value("db", db)
    backend = backend_for(path, db, create=False)
    if not backend.holds(live_folder(path)):
        if not create:
            raise IndexStateError(f"no index at {path} (create one with `searchengine index FOLDER --index {path}`)")
        if backend.url:  # an unreachable server is said first: it is the problem whatever the bundle
            schema_exists(backend.url, "public")
        if path.is_dir() or not path.exists():  # anything else is refused by the store, with its own message
            check_first_bundle(bundle, clip_weights, whisper_model)
    load_kwargs = {"device": settings.value("device", device), "clip_weights": clip_weights,
                   "whisper_model": whisper_model, "precision": settings.value("precision", precision)}
    return Index(path, bundle, rebuild=rebuild, db=db, load_vectors=load_vectors, **load_kwargs)


class Index:
    """Index media folders and search them by audio, image or text."""

    def __init__(self, path: Path, bundle=None, *, rebuild: bool = False, db: str | None = None,
                 load_vectors: bool = True, **load_kwargs):
        self.path = path.expanduser().absolute()
        self._lock = threading.RLock()  # server threads share the bundle and the vector stores
        self.backend: Backend = backend_for(self.path, db)
        self.gen = Generation(live_folder(self.path), self.backend, load_vectors)
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
              prune: bool = False, ray=None, transcribe: bool | None = None,
              moments_after: float | None = None, index_type: str | None = None) -> IndexReport:
        """Index (or re-index incrementally) the media under `paths`; `progress` gets ProgressEvents.

        prune: also forget indexed files whose folder was not found (an unplugged drive keeps its
        entries otherwise).
        ray: decode and encode on Ray: "local" (or True) starts a Ray instance here, "auto" or
        "ray://head:10001" joins a cluster; `indexer.distributed.RayOptions` sets more. This process
        still walks, plans and writes, so the index is the same as a local run's.
        transcribe: also write down recordings with Whisper when the bundle's speech encoder is a
        learned one (None: when the Whisper weights are installed; the cascade always transcribes).
        moments_after: recordings longer than this many seconds are indexed as moments, speech regions
        found and embedded on their own (default: the moments_after setting, else 25; searchengine/moments.py).
        index_type: the vector index the stores grow into: "auto" (exact, then IVF-SQ8 from 50,000
        vectors; store/growth.py), "flat" or "ivf"; default the index_type setting, else auto.
        """
        from .moments import moments_after as threshold

        roots = _as_paths(paths)
        options = {"progress": progress, "batch_size": batch_size, "prune": prune,
                   "ray": _ray_options(ray, self._load_kwargs), "transcribe": settings.switch("transcribe", transcribe),
                   "moments_after": threshold(moments_after),
                   "index_type": check_index_type(settings.value("index_type", index_type))}
        self._check_roots(roots)
        if self._rebuild_ref is not None:
            return self._rebuild(roots, **options)
        bundle = self.bundle  # fails at once when weights are missing
        with self._writer_lock():
            remove_stale(self.path, keep=next_folder(self.path), backend=self.backend)
            return _fill(self.gen, bundle, roots, **options)

    def _check_roots(self, roots: list[Path]) -> None:
        """PathNotFound for a missing root the index holds nothing from (a typo); an unplugged drive is
        fine: its files stay indexed and the report lists it as offline."""
        missing = [str(root.expanduser().absolute()) for root in roots if not os.path.lexists(root.expanduser())]
        if not missing:
            return
        held = self.metadata.file_states()
        from indexer.walk import under  # the write path's own rule for "inside a root"

        unknown = [root for root in missing if not any(under(path, [root]) for path in held)]
        if unknown:
            raise PathNotFound("no such file or folder: " + ", ".join(unknown))

    def _rebuild(self, roots, **options) -> IndexReport:
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
            report = _fill(target, bundle, roots, **options)
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
    def search(self, *, audio=None, image=None, text: str | None = None, kind: str | Kind = "any", k: int = 10,
               offset: int = 0, min_score: float | None = None, under=None, since=None, until=None, types=None,
               exclude_query: bool = False, moments: bool = False) -> SearchResult:
        """Hits best first for one query (a path, bytes, PIL image or waveform, or text), and what was heard.

        Hits are ranked by their calibrated score (comparable across images and recordings; `cosine`
        keeps the raw similarity). offset, k: the page of hits. min_score: leave out hits scoring below
        it (types.DEFAULT_MIN_SCORE is the documented threshold). under: folders; since, until:
        dates (YYYY-MM-DD, a whole day), ISO timestamps or datetimes bounding when a photo was taken
        (else the file's mtime); types: file types ("jpg", "wav"). A query file that is itself indexed
        is marked `is_query`, or left out with `exclude_query`; `query_paths` names its copies.
        `transcript` is set when the bundle transcribes a spoken query (the cascade). A recording's hit
        carries the `start` and `end` (seconds) of its best matching moment; `moments` lists every
        matching moment of a recording instead.
        """
        from .search import encode_query, one_query, query_digest, query_paths, search_options, search_stores

        field, value = one_query(audio=audio, image=image, text=text)
        options = search_options(kind, k, offset, min_score, exclude_query, under=under, since=since, until=until,
                                 types=types, moments=moments)
        with self._lock:
            self._refresh()
        if not self.vectors:
            return SearchResult([], offset=options.offset)
        query, transcript = encode_query(self.bundle, audio=audio, image=image, text=text)
        digest = query_digest(field, value)
        with self._lock:
            own = self.metadata.content_id(digest, field) if digest and field in options.kinds else None
            result = search_stores(query, self.vectors, self.metadata, options, own, typed=field == "text")
            return dataclasses.replace(result, transcript=transcript, query_paths=query_paths(self.metadata, own))

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
        stores, bundle = self.vectors, self.metadata.bundle()
        counts = {k: s.count for k, s in stores.items()} if stores else self.metadata.vector_counts()
        index_type = self.gen.describe_index() if bundle else "none (empty index)"
        return IndexStatus(
            path=str(self.path), bundle=bundle, files=self.metadata.file_counts(),
            vectors={k: n for k, n in counts.items() if k not in OPTIONAL_STORES or n} if bundle else {},
            index_type=index_type,
            index_bytes=self.gen.file_bytes() + _db_bytes(self.metadata.path),
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
    gen.set_index_type(options.pop("index_type", "auto"))
    gen.save_if_stale()
    return index_paths(gen.metadata, gen.vectors, bundle, roots, **options)


def _ray_options(ray, load_kwargs: dict):
    """A run's Ray settings (None for a local run), telling workers to load the bundle as this index does."""
    if ray is None or ray is False:
        return None
    from indexer.distributed import ray_options  # Ray itself loads only when the run starts it

    return ray_options(ray, load_kwargs)


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
    """Skip records of files deleted since are not news (the next index run forgets them for good).

    A name that is not UTF-8 is recorded as shown (with U+FFFD): it cannot be looked up, so it stays."""
    return [s for s in skipped if "\ufffd" in s.path or os.path.lexists(s.path)]


def _db_bytes(db_path: Path | None) -> int:
    """The SQLite file and its WAL; nothing for a server database (its size is the server's business)."""
    if db_path is None:
        return 0
    return sum(p.stat().st_size for p in db_path.parent.glob(db_path.name + "*") if p.is_file())
