"""The one thread policy: torch intra-op threads, FAISS OpenMP threads and decode workers, sized to the cores.

torch and FAISS each start an OpenMP pool as wide as the machine, and an index run adds decode threads:
left alone, a 2-core machine runs 8 busy threads, and OpenMP threads that lose their core stall every
barrier of a model's forward pass (measured: a tiny image tower ran 10 × slower beside 4 decode threads).
So every entry point picks a role and this module sizes the pools for it:

- ``query`` (the CLI's search, the server, a library Index): one torch thread and one FAISS thread per
  search. A single query is too small to split well, and a server gets its parallelism from running
  searches side by side (``--max-searches``), so one search never wakes threads it cannot use.
- ``index`` (an index run): decode workers on every core (Pillow and FFmpeg release the GIL), the model
  on half of them (at least one) and FAISS (adding, training an IVF between batches) on the same half.
  Between batches `ModelThreads` gives the model every core while decoding keeps up with it.

`budget` (``--threads N``, the ``threads`` setting) caps the cores a process uses; by default the cores
this process may run on. OpenMP threads that wait are told to sleep rather than spin
(OMP_WAIT_POLICY=PASSIVE, unless already set), so an idle pool leaves its cores to the others; that is
read when the OpenMP runtime loads, so `prepare_environment` runs before torch or FAISS are imported.
Only the standard library is imported here: torch and FAISS are touched only when already loaded.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import ArgumentError

ROLES = ("query", "index")
MAX_DECODE_WORKERS = 16  # beyond this, files are read faster than any CPU encoder takes them


@dataclass(frozen=True)
class ThreadPlan:
    """How many threads each pool may run for one role."""

    role: str
    budget: int
    torch: int
    faiss: int
    decode: int

    def to_dict(self) -> dict:
        return {"role": self.role, "budget": self.budget, "torch": self.torch, "faiss": self.faiss,
                "decode": self.decode}


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def parse_budget(raw: str | int | None) -> int | None:
    """A thread budget from a flag or setting: a positive integer, or None / "auto" for every core."""
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "auto")):
        return None
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ArgumentError(f"threads must be a positive whole number or auto, not {raw!r}") from None
    if value < 1:
        raise ArgumentError(f"threads must be at least 1, not {value}")
    return value


def plan_for(role: str, budget: int | None = None) -> ThreadPlan:
    """The pool sizes for `role` within `budget` cores (default: the cores available)."""
    if role not in ROLES:
        raise ArgumentError(f"unknown thread role {role!r} (known: {', '.join(ROLES)})")
    cores = budget or available_cores()
    if role == "query":
        return ThreadPlan(role, cores, torch=1, faiss=1, decode=1)
    half = max(1, cores // 2)
    return ThreadPlan(role, cores, torch=half, faiss=half, decode=min(MAX_DECODE_WORKERS, cores))


def prepare_environment() -> None:
    """Tell OpenMP runtimes not loaded yet to let waiting threads sleep (a user's own environment wins).

    OMP_NUM_THREADS is left alone on purpose: CTranslate2 (the cascade's Whisper) reads it too, and a
    transcription wants more than the one thread a query's model gets. torch's count reaches every
    thread (it applies it per thread); FAISS's is set per thread by `apply`, and a single query's FAISS
    search runs on one thread anyway (FAISS splits across queries).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def apply(role: str, budget: int | None = None) -> ThreadPlan:
    """Size the torch and FAISS pools of this process for `role`; returns the plan (its decode count is advice)."""
    plan = plan_for(role, budget)
    prepare_environment()
    _set_pools(plan.torch, plan.faiss)
    global _current
    _current = plan
    return plan


def current() -> ThreadPlan | None:
    """The plan last applied in this process, or None."""
    return _current


@contextmanager
def role(name: str, budget: int | None = None):
    """Run a block under `name`'s plan, then put back the pools as they were (an index run inside a server)."""
    before = _current
    saved = _pool_sizes()
    try:
        yield apply(name, budget or (before.budget if before else None))
    finally:
        _set_pools(*saved)
        _restore(before)


def _restore(plan: ThreadPlan | None) -> None:
    global _current
    _current = plan


def _pool_sizes() -> tuple[int | None, int | None]:
    """(torch threads, FAISS threads) now, None for a library not loaded."""
    torch = sys.modules.get("torch")
    vectors = sys.modules.get("searchengine.store.vectors")
    return (torch.get_num_threads() if torch else None,
            vectors.get_threads() if vectors and hasattr(vectors, "get_threads") else None)


def _set_pools(torch_threads: int | None, faiss_threads: int | None) -> None:
    """Resize the pools of the libraries already imported; those imported later read `_current` (see ensure)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch_threads:
        torch.set_num_threads(torch_threads)
    vectors = sys.modules.get("searchengine.store.vectors")
    if vectors is not None and faiss_threads and hasattr(vectors, "set_threads"):
        vectors.set_threads(faiss_threads)


class ModelThreads:
    """An index run's torch threads, set between batches by what the encoder waited for.

    While decoding keeps up (the next batch is ready when the model finishes one) the model gets the
    whole budget; while the encoder waits on the decoders, it gets the plan's share and the other
    cores decode. A tiny tower is decode-bound, a ViT on a CPU model-bound: one rule serves both.
    """

    DECODE_BOUND = 0.25  # waiting on decodes for more than this share of the encode time

    def __init__(self, plan: ThreadPlan):
        self.plan, self.waited = plan, 0.0

    def waited_for_decode(self, seconds: float) -> None:
        """Count time the encoder spent waiting for a decode to finish."""
        self.waited += seconds

    def after_batch(self, encode_seconds: float) -> int:
        """Size torch's pool for the next batch; returns the thread count chosen."""
        decode_bound = self.waited > self.DECODE_BOUND * encode_seconds
        count = self.plan.torch if decode_bound else self.plan.budget
        _set_pools(count, None)
        self.waited = 0.0
        return count


def ensure() -> None:
    """Apply the current plan again (call after loading torch or FAISS, which start at every core)."""
    if _current is not None:
        _set_pools(_current.torch, _current.faiss)


_current: ThreadPlan | None = None
