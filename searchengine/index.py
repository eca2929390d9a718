"""The Index facade: a bundle + FAISS vectors + SQLite metadata in one directory."""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import platformdirs

from .bundles import Bundle, default_bundle_name, load_bundle
from .errors import BundleMismatch, IndexStateError, SearchEngineError
from .media import AudioSource, ImageSource
from .search import encode_query, kinds_for, search_stores
from .store.metadata import MetadataStore
from .store.vectors import VectorStore
from .types import BundleInfo, Hit, IndexReport, IndexStatus, Kind

INDEX_ENV = "SEARCHENGINE_INDEX"
DB_FILE = "metadata.sqlite"


def default_index_dir() -> Path:
    """SEARCHENGINE_INDEX when set, else a folder in the per-user data directory."""
    env = os.environ.get(INDEX_ENV)
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("searchengine")) / "index"


def open_index(path: str | Path | None = None, bundle: str | Path | Bundle | None = None, *,
               device: str | None = None, rebuild: bool = False, clip_weights: str | None = None,
               whisper_model: str | None = None, create: bool = True) -> "Index":
    """Open (or create) the index at `path`.

    Args:
        path: index directory; default `default_index_dir()`.
        bundle: bundle name, bundle folder or a loaded Bundle. An existing index uses the bundle it
            was built with; naming another raises BundleMismatch unless `rebuild` is true.
        device: where models run ("cpu", "cuda"); default CUDA when present.
        rebuild: forget every embedding so the next `index()` re-embeds with the given bundle.
        clip_weights, whisper_model: local weight files for pretrained bundles.
        create: when false, a directory without an index raises IndexStateError instead of becoming one.
    """
    path = Path(path).expanduser() if path else default_index_dir()
    if not create and not (path / DB_FILE).is_file():
        raise IndexStateError(f"no index at {path} (create one with `searchengine index FOLDER --index {path}`)")
    return Index(path, bundle, device=device, rebuild=rebuild, clip_weights=clip_weights,
                 whisper_model=whisper_model)


class Index:
    """Index media folders and search them by audio, image or text."""

    def __init__(self, path: Path, bundle=None, *, device=None, rebuild=False, clip_weights=None,
                 whisper_model=None):
        self.path = path.expanduser().absolute()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise IndexStateError(f"cannot create index directory {self.path}: {exc}") from exc
        self.metadata = MetadataStore(self.path / DB_FILE)
        self._load_kwargs = {"device": device, "clip_weights": clip_weights, "whisper_model": whisper_model}
        self._bundle: Bundle | None = bundle if isinstance(bundle, Bundle) else None
        self._bundle_ref = None if isinstance(bundle, Bundle) else bundle
        self._lock = threading.RLock()  # server threads share the bundle and the vector stores
        self._bind_bundle(rebuild)
        self.vectors: dict[str, VectorStore] = {}
        recorded = self.metadata.bundle()
        if recorded is not None:
            self._open_vectors(recorded.dim)

    # --- bundle binding -------------------------------------------------------
    def _bind_bundle(self, rebuild: bool) -> None:
        """Refuse a different bundle than the recorded one; a rebuild starts over (same bundle by default)."""
        recorded = self.metadata.bundle()
        if recorded is None:
            return
        if rebuild:
            if self._bundle is None and self._bundle_ref is None:
                self._bundle_ref = recorded.source
            self._reset()
            return
        asked = self._bundle.info if self._bundle else self._bundle_ref
        if asked is not None and not self._same_bundle(recorded, asked):
            raise BundleMismatch(f"index {self.path} was built with bundle '{recorded.name}' "
                                 f"({recorded.source}); it cannot be searched or extended with "
                                 f"'{getattr(asked, 'name', asked)}'. Run `searchengine index --rebuild` to re-embed.")

    def _same_bundle(self, recorded: BundleInfo, asked) -> bool:
        if isinstance(asked, BundleInfo):
            return asked.fingerprint == recorded.fingerprint
        asked_path = Path(asked).expanduser()
        source = str(asked_path.resolve()) if asked_path.exists() else str(asked)
        if source != recorded.source:
            return False
        return self.bundle.fingerprint == recorded.fingerprint  # same name: were the weights changed?

    def _reset(self) -> None:
        self.metadata.clear()
        for kind in ("image", "audio"):
            (self.path / f"{kind}.faiss").unlink(missing_ok=True)

    @property
    def bundle(self) -> Bundle:
        """The bundle, loaded on first use (status and media lookups never load models)."""
        with self._lock:
            if self._bundle is None:
                self._bundle = self._load_bundle()
            return self._bundle

    def _load_bundle(self) -> Bundle:
        recorded = self.metadata.bundle()
        ref = self._bundle_ref or (recorded.source if recorded else default_bundle_name())
        bundle = load_bundle(ref, **self._load_kwargs)
        if recorded is not None and recorded.fingerprint != bundle.fingerprint:
            raise BundleMismatch(f"the weights of bundle '{recorded.name}' changed since index {self.path} "
                                 "was built. Run `searchengine index --rebuild` to re-embed.")
        return bundle

    # --- vectors --------------------------------------------------------------
    def _open_vectors(self, dim: int) -> None:
        """Load FAISS and reconcile it with SQLite, which is the source of truth."""
        try:
            self.vectors = {k: VectorStore(self.path / f"{k}.faiss", dim) for k in ("image", "audio")}
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
    def index(self, paths: list[str | Path], *, progress=None, batch_size: int = 32) -> IndexReport:
        """Index (or re-index incrementally) the media under `paths`."""
        from indexer import index_paths  # the write path builds on this package, not the reverse

        bundle = self.bundle  # fails at once when weights are missing
        with self._writer_lock():
            self._ensure_recorded(bundle)
            if self._reconcile():
                for store in self.vectors.values():
                    store.save()
            return index_paths(self.metadata, self.vectors, bundle, [Path(p) for p in paths],
                               progress=progress, batch_size=batch_size)

    def _ensure_recorded(self, bundle: Bundle) -> None:
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

    def search(self, *, audio: AudioSource | None = None, image: ImageSource | None = None,
               text: str | None = None, kind: str | Kind = "any", k: int = 10) -> list[Hit]:
        """Hits best first for one query (a path, bytes, PIL image or waveform, or text)."""
        return self.search_with_transcript(audio=audio, image=image, text=text, kind=kind, k=k)[0]

    def search_with_transcript(self, *, audio: AudioSource | None = None, image: ImageSource | None = None,
                               text: str | None = None, kind: str | Kind = "any",
                               k: int = 10) -> tuple[list[Hit], str | None]:
        """Hits best first, and the transcript of a spoken query when the bundle makes one (cascade)."""
        kinds = kinds_for(kind)
        with self._lock:
            self._refresh()
        if not self.vectors:
            return [], None
        query, transcript = encode_query(self.bundle, audio=audio, image=image, text=text)
        with self._lock:
            return search_stores(query, self.vectors, self.metadata, kinds, k), transcript

    def _refresh(self) -> None:
        """Pick up vectors another process saved since we loaded ours (or since the index was empty)."""
        if not self.vectors:
            recorded = self.metadata.bundle()
            if recorded is not None:
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
        found = self.metadata.file_by_id(file_id)
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


def _db_bytes(db_path: Path) -> int:
    return sum(p.stat().st_size for p in db_path.parent.glob(db_path.name + "*") if p.is_file())
