"""Compare what the walk found with the store: what to embed, link, touch, remove and report."""

from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from searchengine.store.metadata import FileState
from searchengine.types import Kind, Offline, Skipped

from .walk import Candidate, Problem, Walk, content_hash, under

# A content is one body of one kind: identical bytes under a .jpg and a .wav name are two.
ContentKey = tuple[str, Kind]


@dataclass
class Plan:
    """What an index run has to do, decided before any decoding."""

    embed: dict[ContentKey, list[Candidate]] = field(default_factory=dict)  # new content -> its paths
    link: list[tuple[Candidate, str]] = field(default_factory=list)  # path -> already embedded content
    touched: list[Candidate] = field(default_factory=list)  # same bytes, new mtime
    removed: list[str] = field(default_factory=list)  # indexed paths gone from a walked root
    forgotten: list[str] = field(default_factory=list)  # skip records of paths gone from disk
    updated_paths: set[str] = field(default_factory=set)
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)  # still bad since an earlier run, or unreadable now
    new_skips: list[tuple[str, str, int, int]] = field(default_factory=list)
    offline: list[Offline] = field(default_factory=list)

    @property
    def embed_count(self) -> int:
        """Distinct contents to decode and encode."""
        return len(self.embed)



@dataclass(frozen=True)
class StoreView:
    """What the plan needs to know of the store, read once before planning."""

    states: dict[str, FileState]
    skip_states: dict[str, tuple[int, int]]
    skip_reasons: dict[str, str]
    known_keys: Callable[[list[tuple[str, str]]], set[tuple[str, str]]]


def make_plan(found: Walk, store: StoreView, prune: bool = False, hash_workers: int = 1) -> Plan:
    """(size, mtime) first, then the content hash; removals only where the walk looked (or with prune).

    hash_workers: files hashed side by side (hashlib and file reads release the GIL, so a first run over a
    large folder is not one core reading one file at a time).
    """
    plan = Plan()
    _plan_removals(plan, found, store, prune)
    for problem in found.problems:
        _plan_problem(plan, problem)
    pending: dict[ContentKey, list[Candidate]] = defaultdict(list)
    changed = [c for c in found.candidates if not _settled(plan, c, store)]
    for cand, digest in zip(changed, _hashes(changed, hash_workers)):
        _plan_changed(plan, cand, digest, store, pending)
    known = store.known_keys([(digest, kind.value) for digest, kind in pending])
    for (digest, kind), cands in pending.items():
        if (digest, kind.value) in known:
            plan.link.extend((c, digest) for c in cands)
        else:
            plan.embed[(digest, kind)] = cands
    return plan


def _plan_removals(plan: Plan, found: Walk, store: StoreView, prune: bool) -> None:
    """Paths gone from disk leave the index only inside roots walked now: an unplugged drive keeps its files."""
    seen = {c.path for c in found.candidates} | {p.path for p in found.problems}

    def gone(path: str) -> bool:
        return path not in seen and (prune or under(path, found.walked)) and not os.path.lexists(path)

    plan.removed = [p for p in store.states if gone(p)]
    plan.forgotten = [p for p in store.skip_states if gone(p)]
    for root in found.missing:
        kept = sum(1 for p in store.states if under(p, [root]) and p not in plan.removed)
        if kept:
            plan.offline.append(Offline(root, kept))
        elif not any(under(p, [root]) for p in plan.removed):
            plan.skipped.append(Skipped(root, "no such file or directory"))


def _plan_problem(plan: Plan, problem: Problem) -> None:
    plan.skipped.append(Skipped(problem.path, problem.reason))
    plan.new_skips.append((problem.path, problem.reason, problem.size, problem.mtime_ns))


def _settled(plan: Plan, cand: Candidate, store: StoreView) -> bool:
    """Whether (size, mtime) alone decide the path: unchanged since indexed, or still the file skipped before."""
    state = store.states.get(cand.path)
    if state is not None and (state.size, state.mtime_ns) == (cand.size, cand.mtime_ns):
        plan.unchanged += 1
        return True
    if store.skip_states.get(cand.path) == (cand.size, cand.mtime_ns):
        plan.skipped.append(Skipped(cand.path, store.skip_reasons[cand.path]))
        return True
    return False


def _hashes(cands: list[Candidate], workers: int) -> list[str | OSError]:
    """Each candidate's content hash, or the OSError that stopped reading it; in the candidates' order."""
    def one(cand: Candidate) -> str | OSError:
        try:
            return content_hash(cand.path)
        except OSError as exc:
            return exc

    if workers <= 1 or len(cands) < 2:
        return [one(c) for c in cands]
    with ThreadPoolExecutor(min(workers, len(cands)), thread_name_prefix="hash") as pool:
        return list(pool.map(one, cands))


def _plan_changed(plan: Plan, cand: Candidate, digest: str | OSError, store: StoreView, pending) -> None:
    if isinstance(digest, FileNotFoundError):
        return  # deleted since the walk: the next run removes it if it was indexed
    if isinstance(digest, OSError):
        reason = f"unreadable: {digest.strerror or digest}"
        plan.skipped.append(Skipped(cand.path, reason))
        plan.new_skips.append((cand.path, reason, cand.size, cand.mtime_ns))
        return
    state = store.states.get(cand.path)
    if state is not None and state.content_hash == digest:
        plan.touched.append(cand)
        plan.unchanged += 1
        return
    if state is not None:
        plan.updated_paths.add(cand.path)
    pending[(digest, cand.kind)].append(cand)
