"""VectorStore: the only module that imports faiss.

One inner-product index per vector store, ids = metadata row ids. It grows with the collection
(store/growth.py has the rule): exact (`IDMap2,Flat`) while small, then an inverted file with 8-bit
codes (`IVF<n>,SQ8`), retrained as it grows. On disk it is a base file plus an append-only change log
(store/vectorlog.py), so saving after a batch costs the batch; the base is rewritten (compaction) when
the index type changes, when the log has grown to an eighth of the base, or at the end of a run while that is
cheap. The CPU index is the master copy; when FAISS sees a GPU, exact searches run on a GPU clone.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Iterable

import faiss
import numpy as np

from ..fileio import atomic_write
from .growth import EXACT, Layout, check_index_type, wanted_layout
from .vectorlog import ADD, ADD_ASSIGNED, HEADER_BYTES, REMOVE, Change, ChangeLog, base_trailer, new_epoch, read_epoch

# Exact vectors of a store, in chunks of (ids, vectors): the metadata database's copy, used to train
# and fill a new approximate index without the quantisation error of the codes it replaces.
ExactSource = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]
CHEAP_BASE_BYTES = 64 << 20  # a base this small is rewritten at the end of every run (tens of ms)
LOG_SHARE = 8  # a log past 1/8 of its base is folded into a new base
EXACT_FILTER_ROWS = 20_000  # a filtered search of an IVF among this few ids scores them all exactly


class UnreadableVectors(Exception):
    """A FAISS file that is truncated, random, of another type or dimension (rebuilt from SQLite)."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]


def set_threads(n: int) -> None:
    """FAISS's OpenMP threads for searches run from this thread (searchengine.threads decides how many)."""
    faiss.omp_set_num_threads(max(1, int(n)))


def get_threads() -> int:
    """FAISS's OpenMP threads for this thread."""
    return faiss.omp_get_max_threads()


def gpu_count() -> int:
    """GPUs FAISS can use (0 with a CPU-only build)."""
    try:
        return faiss.get_num_gpus()
    except AttributeError:
        return 0


def _layout_of(index: faiss.Index) -> Layout:
    return Layout(index.nlist) if isinstance(index, faiss.IndexIVF) else EXACT


class VectorStore:
    """An id-mapped inner-product index (exact or IVF), persisted as a base file plus a change log."""

    def __init__(self, path: Path, dim: int, use_gpu: bool | None = None, index_type: str | None = None,
                 exact_source: ExactSource | None = None):
        """index_type: what the store grows into as vectors come and go (store/growth.py: auto, flat,
        ivf); None keeps the type the file has (a reader: reconciling must never start a training)."""
        self.path, self.dim = path, dim
        self.use_gpu = gpu_count() > 0 if use_gpu is None else use_gpu
        self.index_type = None if index_type is None else check_index_type(index_type)
        self.exact_source = exact_source
        self.log, self._gpu_index = ChangeLog(path.with_name(path.name + ".log"), dim), None
        self._sample: tuple[np.ndarray, np.ndarray] | None = None  # (ids, vectors), until the vectors change
        self._signature: tuple[int, int] | None = None
        self._pending: list[Change] = []  # changes since the last save
        self._rewrite = False  # the base must be written again (new type, or no usable base)
        # Why the file on disk could not be used (it starts empty then; SQLite holds every vector).
        self.damaged: str | None = None
        self.index = self._empty(EXACT)
        if path.exists():
            try:
                self.index = self._read()
            except UnreadableVectors as exc:
                self.damaged = str(exc)

    # --- the index ----------------------------------------------------------
    def _empty(self, layout: Layout) -> faiss.Index:
        if layout.exact:
            return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        index = faiss.index_factory(self.dim, layout.factory, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10  # k-means: 10 rounds reach the recall of 25 on these sizes, at 40 % of the time
        return index

    @property
    def layout(self) -> Layout:
        return _layout_of(self.index)

    @property
    def count(self) -> int:
        """Vectors held."""
        return self.index.ntotal

    @property
    def description(self) -> str:
        """The index type and its search parameters, for status output."""
        layout = self.layout
        return layout.description + (" (GPU)" if self.use_gpu and layout.exact else "")

    def ids(self) -> np.ndarray:
        """Every id in the index."""
        if self.layout.exact:
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        lists = self.index.invlists
        parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                 for i in range(self.index.nlist) if lists.list_size(i)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these ids (decoded from 8-bit codes in an IVF)."""
        out = np.zeros((len(ids), self.dim), np.float32)
        for row, key in enumerate(np.asarray(ids, dtype=np.int64)):
            out[row] = self.index.reconstruct(int(key))
        return out

    def add(self, ids: np.ndarray | list[int], vectors: np.ndarray) -> None:
        """Add vectors under the given ids; the index changes type when its size calls for it."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self._wants(self.count + len(ids)) != self.layout:
            self.retype(self.count + len(ids), extra=(ids, vectors))
            return
        if self.layout.exact:
            self.index.add_with_ids(vectors, ids)
            self._pending.append(Change(ADD, ids, vectors))
        else:  # logged with their lists, so replaying the log at open skips the coarse quantiser
            _, lists = self.index.quantizer.search(vectors, 1)
            lists = np.ascontiguousarray(lists.reshape(-1), dtype=np.int64)
            self._add_assigned(ids, vectors, lists)
            self._pending.append(Change(ADD_ASSIGNED, ids, vectors, lists))
        self._changed()

    def _add_assigned(self, ids: np.ndarray, vectors: np.ndarray, lists: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.index.add_core(len(ids), faiss.swig_ptr(vectors), faiss.swig_ptr(ids), faiss.swig_ptr(lists))

    def remove(self, ids: np.ndarray | list[int]) -> int:
        """Remove ids (unknown ids are ignored); returns how many went."""
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if ids.size == 0:
            return 0
        self._changed()
        if self.layout.exact:
            removed = int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))
        else:  # the IVF's id hashtable removes by an explicit array (and skips ids it does not hold)
            removed = int(self.index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))))
        self._pending.append(Change(REMOVE, ids))
        if self._wants(self.count) != self.layout:
            self.retype(self.count)
        return removed

    def _wants(self, count: int) -> Layout:
        """The layout for `count` vectors under this store's index type (its own, for a reader)."""
        return self.layout if self.index_type is None else wanted_layout(count, self.layout, self.index_type)

    def retype(self, count: int | None = None, extra: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Rebuild the index in the layout its size (plus `extra`'s rows) calls for, training it if approximate.

        The vectors come from `exact_source` (the metadata database, which commits before FAISS changes,
        so it already holds `extra`, the rows being added) when it holds exactly the index's ids plus
        `extra`'s, else from this index itself (decoded) plus `extra`.
        """
        count = self.count if count is None else count
        target = self._wants(count)
        ids, vectors = self._all_vectors(extra)
        index = self._empty(target)
        if not target.exact:
            rows = np.random.default_rng(0).permutation(len(ids))[:target.train_points]
            index.train(vectors[np.sort(rows)])
            index.set_direct_map_type(faiss.DirectMap.Hashtable)  # lookups and removals by id
        index.add_with_ids(vectors, ids)
        self.index, self._pending, self._rewrite = index, [], True
        self._changed()

    def _all_vectors(self, extra: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the index plus `extra`: the exact source's copy when it holds exactly those ids."""
        held = self.ids()
        wanted = held if extra is None else np.concatenate([held, extra[0]])
        if self.exact_source is not None and len(held):
            chunks = list(self.exact_source())
            ids = np.concatenate([c[0] for c in chunks]) if chunks else np.zeros(0, np.int64)
            if len(ids) == len(wanted) and np.array_equal(np.sort(ids), np.sort(wanted)):
                return ids, np.concatenate([c[1] for c in chunks]).astype(np.float32)
        # no source, or it disagrees (mid-reconcile): the index's own (decoded) vectors
        vectors = self.vectors_of(held) if len(held) else np.zeros((0, self.dim), np.float32)
        if extra is None:
            return held, vectors
        return wanted, np.concatenate([vectors, extra[1]])

    def apply_index_type(self) -> bool:
        """Change type now when the setting asks for another than the store has (an override on an
        existing index); True when it changed."""
        if self._wants(self.count) == self.layout:
            return False
        self.retype()
        return True

    def _changed(self) -> None:
        """Forget what was derived from the old vectors: the GPU clone and the calibration sample."""
        self._gpu_index = None
        self._sample = None

    # --- searching ----------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, among: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores [Q, k'], ids [Q, k']) best first, k' = min(k, count); `among`: only these ids.

        Searches restricted to some ids (filters) run on the CPU index with a FAISS id selector, so they
        still return k hits when k match; GPU flat indexes take no selector. On an IVF, a filter that
        leaves few ids scores them all, and a wider one visits more lists the fewer ids it leaves.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if among is None:
            k = min(k, self.count)
        else:
            among = np.ascontiguousarray(among, dtype=np.int64)
            k = min(k, self.count, among.size)
        if k == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        layout = self.layout
        if among is None:
            if layout.exact:
                return self._searcher().search(queries, k)
            return self.index.search(queries, k, params=faiss.SearchParametersIVF(nprobe=layout.nprobe))
        if not layout.exact and among.size <= EXACT_FILTER_ROWS:
            return self._score_among(queries, k, among)
        selector = faiss.IDSelectorBatch(among)
        if layout.exact:
            params = faiss.SearchParameters(sel=selector)
        else:
            wider = layout.nprobe * max(1, self.count // max(1, among.size))
            params = faiss.SearchParametersIVF(sel=selector, nprobe=min(layout.nlist, wider))
        scores, ids = self.index.search(queries, k, params=params)
        return scores, np.where(scores > -1e30, ids, -1)  # fewer matches than k: FAISS pads with -inf

    def _score_among(self, queries: np.ndarray, k: int, among: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score every id in `among` (those the index holds) against each query: best k first."""
        ids, vectors = self._held_vectors(among)
        if len(ids) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        scores = queries @ vectors.T
        k = min(k, len(ids))
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, best, axis=1).astype(np.float32), ids[best]

    def _held_vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) for those of `ids` the index holds."""
        kept, rows = [], []
        for key in ids:
            try:
                rows.append(self.index.reconstruct(int(key)))
            except RuntimeError:  # not in the index (removed since the filter was read)
                continue
            kept.append(int(key))
        if not kept:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        return np.array(kept, np.int64), np.stack(rows)

    def sample(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of up to `size` stored vectors: all of them in a smaller store, else a fixed-seed draw.

        Derived from the vectors themselves (the FAISS file holds them), and drawn again whenever they
        change, so the sample can never disagree with the store it describes.
        """
        if self._sample is None:
            count = self.count
            rows = np.arange(count) if count <= size else np.sort(np.random.default_rng(0).choice(count, size, False))
            if self.layout.exact:
                flat = faiss.downcast_index(self.index.index)
                stored = faiss.rev_swig_ptr(flat.get_xb(), count * self.dim).reshape(count, self.dim) if count else \
                    np.zeros((0, self.dim), np.float32)
                self._sample = (self.ids()[rows], np.array(stored[rows], dtype=np.float32))
            else:
                ids = self.ids()[rows]
                self._sample = (ids, self.vectors_of(ids))
        return self._sample

    def _searcher(self) -> faiss.Index:
        """The GPU clone when a GPU is usable, else the CPU index itself."""
        if not self.use_gpu:
            return self.index
        if self._gpu_index is None:
            resources = faiss.StandardGpuResources()
            self._gpu_index = (faiss.index_cpu_to_gpu(resources, 0, self.index), resources)
        return self._gpu_index[0]

    # --- the files ----------------------------------------------------------
    def _read(self) -> faiss.Index:
        """The base file's index plus its log, or UnreadableVectors when the base is not one this store wrote."""
        signature = self._file_signature()
        try:
            index = faiss.read_index(str(self.path))
        except (RuntimeError, MemoryError) as exc:  # faiss reports every format problem as RuntimeError
            raise UnreadableVectors(f"{self.path.name} is not a readable FAISS file ({_first_line(exc)})") from exc
        flat = isinstance(index, faiss.IndexIDMap2) and isinstance(faiss.downcast_index(index.index), faiss.IndexFlat)
        if not (flat or isinstance(index, faiss.IndexIVFScalarQuantizer)) \
                or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise UnreadableVectors(f"{self.path.name} holds a {type(index).__name__}, not an id-mapped inner-product index")
        if index.d != self.dim:
            raise UnreadableVectors(f"{self.path.name} holds {index.d}-d vectors, expected {self.dim}")
        if not flat:
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
        self._signature = signature
        epoch = read_epoch(self.path)
        self._rewrite = epoch is None  # a base without an epoch cannot anchor a log
        self.index, self._pending = index, []  # memory is the files again: nothing is unsaved
        self._replay(self.log.read(epoch))
        return self.index

    def _replay(self, changes: list[Change]) -> None:
        """Apply logged changes to the index in memory (they are on disk already: not pending)."""
        for change in changes:
            if change.op == ADD_ASSIGNED and not self.layout.exact and change.lists.max(initial=-1) < self.index.nlist:
                self._add_assigned(change.ids, change.vectors, change.lists)
            elif change.op in (ADD, ADD_ASSIGNED):
                self.index.add_with_ids(np.ascontiguousarray(change.vectors, dtype=np.float32), change.ids)
            elif self.layout.exact:
                self.index.remove_ids(faiss.IDSelectorBatch(change.ids))
            else:
                self.index.remove_ids(faiss.IDSelectorArray(len(change.ids), faiss.swig_ptr(change.ids)))
        if changes:
            self._changed()

    def _file_signature(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def save(self) -> None:
        """Make the files hold what memory holds: append the changes since the last save to the log
        (cost: those changes), or write a new base when the log cannot carry them or has grown past
        LOG_SHARE of the base (so opening never replays much)."""
        if self._rewrite or self.damaged or self.log.epoch is None or not self.path.exists() \
                or self.log.size() > self.file_bytes(base_only=True) // LOG_SHARE:
            self.compact()
        elif self._pending:
            self.log.append(self._pending)
            self._pending = []

    def fold(self) -> None:
        """At the end of a run (after save): fold the log into the base when that is cheap (a small
        store) or the log is no longer small next to it, so a clean close leaves little to replay."""
        base = self.file_bytes(base_only=True)
        worth = base < CHEAP_BASE_BYTES or self.log.size() > base // (4 * LOG_SHARE)
        if self.log.size() > HEADER_BYTES and worth:
            self.compact()

    def compact(self) -> None:
        """Write a new base (temp file, fsync, rename), then start an empty log that continues it."""
        epoch = new_epoch()
        atomic_write(self.path, functools.partial(_write_base, self.index, epoch), fsync=True, size_hint=self.file_bytes())
        self.log.start(epoch)  # a crash before this leaves the old log, whose epoch no longer matches: ignored
        self._signature = self._file_signature()
        self._pending, self._rewrite, self.damaged = [], False, None

    def reload_if_changed(self) -> bool:
        """Pick up what another process wrote: a new base, or records appended to the log.

        A file that cannot be read is left for its writer to replace; the vectors in memory stay.
        """
        signature = self._file_signature()
        if signature is None:
            return False
        if signature == self._signature:
            more = self.log.read_more()
            if more is not None:
                self._replay(more)
                return bool(more)
        try:
            self.index = self._read()
        except UnreadableVectors:
            self._signature = signature  # do not retry the same bad file on every search
            return False
        self._changed()
        return True

    def file_bytes(self, base_only: bool = False) -> int:
        """Size of the saved base file, and of its log unless `base_only`."""
        base = self.path.stat().st_size if self.path.exists() else 0
        return base if base_only else base + self.log.size()


def _write_base(index: faiss.Index, epoch: bytes, path: Path) -> None:
    """The index's bytes, then the epoch trailer, streamed through a Python file: FAISS's own file writer
    only logs a failed write (a full disk once left a 0-byte base; Python raises, atomic_write makes that a
    StorageError), and serialising in memory first took 6.8 s and two copies at 1 M x 512 (streamed: 0.6 s)."""
    with open(path, "wb") as out:
        faiss.write_index(index, faiss.PyCallbackIOWriter(out.write))  # out.write's OSError comes through
        out.write(base_trailer(epoch))
