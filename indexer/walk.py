"""Find media under the given roots and decide what changed since the last run."""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from searchengine.media import kind_of_path
from searchengine.store.metadata import FileState
from searchengine.types import Kind, Skipped


@dataclass(frozen=True)
class Candidate:
    """A media file found on disk."""

    path: str
    kind: Kind
    size: int
    mtime_ns: int


@dataclass
class Plan:
    """What an index run has to do, decided before any decoding."""

    embed: dict[str, list[Candidate]] = field(default_factory=dict)  # new content hash -> its paths
    link: list[tuple[Candidate, str]] = field(default_factory=list)  # path -> already embedded content
    touched: list[Candidate] = field(default_factory=list)  # same bytes, new mtime
    removed: list[str] = field(default_factory=list)
    updated_paths: set[str] = field(default_factory=set)
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)  # still bad since an earlier run, or unreadable now
    new_skips: list[tuple[str, str, int, int]] = field(default_factory=list)

    @property
    def embed_count(self) -> int:
        """Distinct contents to decode and encode."""
        return len(self.embed)


def walk(roots: list[Path]) -> tuple[list[Candidate], list[Skipped]]:
    """Every image and audio file under the roots (recursive); roots that do not exist are reported."""
    found: dict[str, Candidate] = {}
    problems: list[Skipped] = []
    for root in roots:
        root = Path(root).expanduser().absolute()
        if root.is_dir():
            for path in _files_under(root):
                _add_candidate(found, path)
        elif root.is_file():
            if not _add_candidate(found, root):
                problems.append(Skipped(str(root), f"unsupported file type '{root.suffix or '(none)'}'"))
        else:
            problems.append(Skipped(str(root), "no such file or directory"))
    return sorted(found.values(), key=lambda c: c.path), problems


def _files_under(root: Path):
    """Files below root in a stable order; directory symlinks are not followed (no loops)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _add_candidate(found: dict[str, Candidate], path: Path) -> bool:
    kind = kind_of_path(path)
    if kind is None:
        return False
    try:
        st = path.stat()
    except OSError:
        return False
    found[str(path)] = Candidate(str(path), kind, st.st_size, st.st_mtime_ns)
    return True


def content_hash(path: str) -> str:
    """sha256 of the file's bytes: identical files share one embedding."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_plan(candidates: list[Candidate], problems: list[Skipped], states: dict[str, FileState],
              skip_states: dict[str, tuple[int, int]], skip_reasons: dict[str, str],
              known_hashes) -> Plan:
    """Compare what is on disk with the store: (size, mtime) first, then the content hash."""
    plan = Plan(skipped=list(problems))
    seen = {c.path for c in candidates}
    plan.removed = [p for p in states if p not in seen and not os.path.exists(p)]
    pending: dict[str, list[Candidate]] = defaultdict(list)
    for cand in candidates:
        _plan_one(plan, cand, states.get(cand.path), skip_states, skip_reasons, pending)
    known = known_hashes(list(pending))
    for digest, cands in pending.items():
        if digest in known:
            plan.link.extend((c, digest) for c in cands)
        else:
            plan.embed[digest] = cands
    return plan


def _plan_one(plan: Plan, cand: Candidate, state: FileState | None, skip_states, skip_reasons, pending) -> None:
    if state is not None and (state.size, state.mtime_ns) == (cand.size, cand.mtime_ns):
        plan.unchanged += 1
        return
    if skip_states.get(cand.path) == (cand.size, cand.mtime_ns):
        plan.skipped.append(Skipped(cand.path, skip_reasons[cand.path]))
        return
    try:
        digest = content_hash(cand.path)
    except OSError as exc:
        reason = f"unreadable: {exc.strerror or exc}"
        plan.skipped.append(Skipped(cand.path, reason))
        plan.new_skips.append((cand.path, reason, cand.size, cand.mtime_ns))
        return
    if state is not None and state.content_hash == digest:
        plan.touched.append(cand)
        plan.unchanged += 1
        return
    if state is not None:
        plan.updated_paths.add(cand.path)
    pending[digest].append(cand)
