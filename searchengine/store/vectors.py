"""VectorStore: the only module that imports faiss.

One exact inner-product index per media kind, ids = SQLite content ids. The CPU index is the
master copy (it is what gets saved); when FAISS sees a GPU, searches run on a GPU clone.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from ..fileio import atomic_write
from ..types import FLAT_INDEX


class UnreadableVectors(Exception):
    """A FAISS file that is truncated, random, of another type or dimension (rebuilt from SQLite)."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]


def gpu_count() -> int:
    """GPUs FAISS can use (0 with a CPU-only build)."""
    try:
        return faiss.get_num_gpus()
    except AttributeError:
        return 0


class VectorStore:
    """An id-mapped flat inner-product index, persisted atomically to one file."""

    def __init__(self, path: Path, dim: int, use_gpu: bool | None = None):
        self.path = path
        self.dim = dim
        self.use_gpu = gpu_count() > 0 if use_gpu is None else use_gpu
        self._gpu_index = None
        self._sample: tuple[np.ndarray, np.ndarray] | None = None  # (ids, vectors), until the vectors change
        self._signature: tuple[int, int] | None = None
        # Why the file on disk could not be used (it starts empty then; SQLite holds every vector).
        self.damaged: str | None = None
        self.index = self._empty()
        if path.exists():
            try:
                self.index = self._read()
            except UnreadableVectors as exc:
                self.damaged = str(exc)

    def _empty(self) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _read(self) -> faiss.Index:
        """The index in the file, or UnreadableVectors when it is not one this store wrote."""
        signature = self._file_signature()
        try:
            index = faiss.read_index(str(self.path))
        except (RuntimeError, MemoryError) as exc:  # faiss reports every format problem as RuntimeError
            raise UnreadableVectors(f"{self.path.name} is not a readable FAISS file ({_first_line(exc)})") from exc
        if not isinstance(index, faiss.IndexIDMap2) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise UnreadableVectors(f"{self.path.name} holds a {type(index).__name__}, not an id-mapped inner-product index")
        if index.d != self.dim:
            raise UnreadableVectors(f"{self.path.name} holds {index.d}-d vectors, expected {self.dim}")
        self._signature = signature
        return index

    def _file_signature(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    @property
    def count(self) -> int:
        """Vectors held."""
        return self.index.ntotal

    @property
    def description(self) -> str:
        """The index type, for status output."""
        where = "GPU" if self.use_gpu else "CPU"
        return f"{FLAT_INDEX} ({where})"

    def ids(self) -> np.ndarray:
        """Every id in the index."""
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray | list[int], vectors: np.ndarray) -> None:
        """Add vectors under the given ids."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        self.index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
        self._changed()

    def remove(self, ids: np.ndarray | list[int]) -> int:
        """Remove ids (unknown ids are ignored); returns how many went."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size == 0:
            return 0
        self._changed()
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))

    def _changed(self) -> None:
        """Forget what was derived from the old vectors: the GPU clone and the calibration sample."""
        self._gpu_index = None
        self._sample = None

    def search(self, queries: np.ndarray, k: int, among: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores [Q, k'], ids [Q, k']) best first, k' = min(k, count); `among`: only these ids.

        Searches restricted to some ids (filters) run on the CPU index with a FAISS id selector, so they
        still return k hits when k match; GPU flat indexes take no selector.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if among is None:
            k = min(k, self.count)
        else:
            among = np.ascontiguousarray(among, dtype=np.int64)
            k = min(k, self.count, among.size)
        if k == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if among is None:
            return self._searcher().search(queries, k)
        selector = faiss.IDSelectorBatch(among)
        scores, ids = self.index.search(queries, k, params=faiss.SearchParameters(sel=selector))
        return scores, np.where(scores > -1e30, ids, -1)  # fewer matches than k: FAISS pads with -inf

    def sample(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of up to `size` stored vectors: all of them in a smaller store, else a fixed-seed draw.

        Derived from the vectors themselves (the FAISS file holds them), and drawn again whenever they
        change, so the sample can never disagree with the store it describes.
        """
        if self._sample is None:
            count = self.count
            rows = np.arange(count) if count <= size else np.sort(np.random.default_rng(0).choice(count, size, False))
            flat = faiss.downcast_index(self.index.index)
            stored = faiss.rev_swig_ptr(flat.get_xb(), count * self.dim).reshape(count, self.dim) if count else \
                np.zeros((0, self.dim), np.float32)
            self._sample = (self.ids()[rows], np.array(stored[rows], dtype=np.float32))
        return self._sample

    def _searcher(self) -> faiss.Index:
        """The GPU clone when a GPU is usable, else the CPU index itself."""
        if not self.use_gpu:
            return self.index
        if self._gpu_index is None:
            resources = faiss.StandardGpuResources()
            self._gpu_index = (faiss.index_cpu_to_gpu(resources, 0, self.index), resources)
        return self._gpu_index[0]

    def save(self) -> None:
        """Write to a temporary file, fsync, then rename: a crash never leaves a half-written index.

        The index is serialised in memory and written by Python, not by faiss.write_index: FAISS only
        logs a failed write (a full disk made a 0-byte file that was then renamed into place), while
        Python raises, and atomic_write turns a full disk into StorageError.
        """
        atomic_write(self.path, faiss.serialize_index(self.index), fsync=True)
        self._signature = self._file_signature()
        self.damaged = None

    def reload_if_changed(self) -> bool:
        """Pick up a newer file written by another process (a reader beside an index run).

        A file that cannot be read is left for its writer to replace; the vectors in memory stay.
        """
        signature = self._file_signature()
        if signature is None or signature == self._signature:
            return False
        try:
            self.index = self._read()
        except UnreadableVectors:
            self._signature = signature  # do not retry the same bad file on every search
            return False
        self._changed()
        return True

    def file_bytes(self) -> int:
        """Size of the saved index file."""
        return self.path.stat().st_size if self.path.exists() else 0
