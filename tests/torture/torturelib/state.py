"""The invariants checked after every trial, in one place.

After a crash, a full disk or a damaged file, an index must (1) open, (2) hold in FAISS exactly the
content ids SQLite holds, each with SQLite's vector, searchable by inner product, (3) finish a re-run
that writes its FAISS files again, and (4) end equal to a clean run of the same input: the same
indexed paths (none lost, none extra), each with the same kind and vector within 1e-5, and the same
skipped paths. Every check returns a list of problems (empty: the trial passed), never raises.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

KINDS = ("image", "audio")
ATOL = 1e-5
_bundles: dict[str, object] = {}


def loaded_bundle(path: Path):
    """One loaded Bundle per folder for the whole process: in-process checks skip the model load."""
    key = str(path)
    if key not in _bundles:
        from searchengine.bundles.bundle import load_bundle

        _bundles[key] = load_bundle(key, device="cpu")
    return _bundles[key]


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}"


@dataclass
class Snapshot:
    """What an index holds, by path: comparable across index directories."""

    bundle: str | None
    indexed: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)  # path -> (kind, vector)
    skipped: set[str] = field(default_factory=set)
    contents: int = 0  # distinct embedded contents

    def paths(self, kind: str | None = None) -> set[str]:
        return {p for p, (k, _) in self.indexed.items() if kind is None or k == kind}


def snapshot(idx) -> Snapshot:
    """Read every path's kind and vector from SQLite (the source of truth) and the skipped paths."""
    meta = idx.metadata
    recorded = meta.bundle()
    snap = Snapshot(recorded.name if recorded else None)
    for kind in KINDS:
        ids, vecs = meta.vectors(kind)
        if len(ids) == 0:
            continue
        stored = meta.lookup([int(i) for i in ids])
        snap.contents += len(ids)
        for cid, vec in zip(ids, vecs):
            for path in (p.path for p in stored[int(cid)].paths):
                snap.indexed[path] = (kind, np.asarray(vec, dtype=np.float32))
    snap.skipped = {s.path for s in idx.status().skipped}
    return snap


def compare(got: Snapshot, want: Snapshot) -> list[str]:
    """Differences between an index after a trial and a clean run of the same input."""
    problems = []
    if got.bundle != want.bundle:
        problems.append(f"bundle is {got.bundle!r}, a clean run records {want.bundle!r}")
    lost, extra = want.paths() - got.paths(), got.paths() - want.paths()
    if lost:
        problems.append(f"lost {len(lost)} indexed path(s), e.g. {sorted(lost)[:3]}")
    if extra:
        problems.append(f"{len(extra)} path(s) a clean run does not index, e.g. {sorted(extra)[:3]}")
    wrong_kind, wrong_vector = [], []
    for path in sorted(want.paths() & got.paths()):
        (kind_got, vec_got), (kind_want, vec_want) = got.indexed[path], want.indexed[path]
        if kind_got != kind_want:
            wrong_kind.append(f"{path} ({kind_got}, not {kind_want})")
        elif vec_got.shape != vec_want.shape or not np.allclose(vec_got, vec_want, atol=ATOL):
            wrong_vector.append(path)
    if wrong_kind:
        problems.append(f"{len(wrong_kind)} path(s) indexed as the wrong kind, e.g. {wrong_kind[:2]}")
    if wrong_vector:
        problems.append(f"{len(wrong_vector)} path(s) with another vector than a clean run's, e.g. {wrong_vector[:2]}")
    if got.skipped != want.skipped:
        problems.append(f"skipped paths differ: extra {sorted(got.skipped - want.skipped)[:3]}, "
                        f"missing {sorted(want.skipped - got.skipped)[:3]}")
    if got.contents != want.contents:
        problems.append(f"{got.contents} contents embedded, a clean run has {want.contents} (duplicates?)")
    return problems


def check_vectors(idx) -> list[str]:
    """FAISS ids == SQLite content ids for each kind; FAISS holds SQLite's vectors; search ranks by them."""
    problems = []
    for kind, store in idx.vectors.items():
        faiss_ids = [int(i) for i in store.ids()]
        sqlite_ids = idx.metadata.content_ids(kind)
        if len(faiss_ids) != len(set(faiss_ids)):
            problems.append(f"{kind}: FAISS holds duplicate ids")
        if set(faiss_ids) != sqlite_ids:
            problems.append(f"{kind}: FAISS ids != SQLite ids (FAISS only: {sorted(set(faiss_ids) - sqlite_ids)[:5]}, "
                            f"SQLite only: {sorted(sqlite_ids - set(faiss_ids))[:5]})")
            continue
        problems += _vectors_match(kind, store, *idx.metadata.vectors(kind))
    return problems


def _vectors_match(kind: str, store, ids: np.ndarray, vecs) -> list[str]:
    if len(ids) == 0:
        return []
    scores, found = store.search(vecs, 1)
    if not np.allclose(scores[:, 0], np.sum(vecs * vecs, axis=1), atol=1e-4):
        return [f"{kind}: a stored vector is not its own best inner-product match (wrong vectors or metric)"]
    for cid, vec in zip(ids, vecs):
        if not np.allclose(store.index.reconstruct(int(cid)), vec, atol=ATOL):
            return [f"{kind}: FAISS vector of content {cid} differs from SQLite's"]
    return []


def check_saved(idx) -> list[str]:
    """After a successful run, each FAISS store on disk (its base file plus the change log that continues
    it, as a fresh reader loads them, with no repair from SQLite) holds exactly SQLite's ids."""
    from searchengine.store.vectors import VectorStore

    problems = []
    for kind, store in idx.vectors.items():
        want = idx.metadata.content_ids(kind)
        if not store.path.exists():
            if want:
                problems.append(f"{kind}: {store.path.name} missing after a successful run")
            continue
        fresh = VectorStore(store.path, store.dim, use_gpu=False)  # index_type None: reads, never retrains
        if fresh.damaged:
            problems.append(f"{kind}: {store.path.name} unreadable after a successful run: {fresh.damaged}")
            continue
        on_disk = {int(i) for i in fresh.ids()}
        if on_disk != want:
            problems.append(f"{kind}: {store.path.name} and its log on disk are stale after a successful run "
                            f"({len(on_disk)} ids, SQLite {len(want)}, {len(on_disk ^ want)} differ)")
    return problems


def check_trial(index_dir: Path, roots: list[Path], bundle, reference: Snapshot, *, rerun: bool = True) -> list[str]:
    """The invariants, in order; stops at the first step that cannot go on (an index that won't open)."""
    from searchengine import open_index

    try:
        idx = open_index(index_dir, bundle)
    except Exception as exc:  # noqa: BLE001
        return [f"index does not open: {describe(exc)}"]
    try:
        problems = guarded("after open", check_vectors, idx)
        if rerun:
            try:
                idx.index([str(r) for r in roots])
            except Exception as exc:  # noqa: BLE001
                return problems + [f"re-run failed: {describe(exc)}"]
            problems += guarded("after re-run", check_vectors, idx) + guarded("on disk", check_saved, idx)
        return problems + guarded("state", lambda i: compare(snapshot(i), reference), idx)
    finally:
        idx.close()


def guarded(step: str, check, *args) -> list[str]:
    """A check that raises (a FAISS index of the wrong type has no id map) is a problem, not a crash."""
    try:
        return [f"{step}: {p}" for p in check(*args)]
    except Exception as exc:  # noqa: BLE001
        return [f"{step}: check raised {describe(exc)}"]


def clean_reference(roots: list[Path], bundle, workdir: Path) -> Snapshot:
    """Index the input once into a fresh directory and snapshot it: what every trial must end equal to."""
    from searchengine import open_index

    shutil.rmtree(workdir, ignore_errors=True)
    with open_index(workdir, bundle) as idx:
        idx.index([str(r) for r in roots])
        return snapshot(idx)


def leftover_temp_files(index_dir: Path) -> list[str]:
    """Hidden temp files a crash left behind (reported: they cost disk space, not correctness)."""
    return sorted(str(p.relative_to(index_dir)) for p in Path(index_dir).rglob(".*.tmp"))
