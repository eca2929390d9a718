"""Which FAISS index a vector store should be at its size: the rule, in one place (numbers only, no FAISS).

Following FAISS's own guidelines ("Guidelines to choose an index"):
- below EXACT_LIMIT vectors the store stays exact (`IDMap2,Flat`): a query scans everything, which
  costs under ~5 ms at 50 k x 512 on one core, and nothing needs training;
- from EXACT_LIMIT on it is an inverted file with 8-bit scalar-quantised codes (`IVF<nlist>,SQ8`, a
  quarter of the float bytes), nlist = the power of two nearest 4 sqrt(N) (the guidelines' 4-16 sqrt(N)),
  trained by k-means on 40 points per list (FAISS asks for at least 39); from HNSW_FROM lists on the
  coarse quantiser is an HNSW graph (`IVF<nlist>_HNSW32,SQ8`), as the guidelines advise for 1-10 M
  vectors, so assigning a vector to its list does not scan every centroid;
- it is trained again (with the nlist its size calls for) when it has grown past 4x the size its nlist
  suits, (nlist / 4)^2, or shrunk below a quarter of it: 1024 lists serve 50 k-262 k vectors, 2048 up
  to 1 M, 4096 up to 4 M; it goes back to exact below EXACT_LIMIT / 2 (so a store at the threshold
  does not flip at every batch).

Searches probe `nprobe_for(nlist)` lists; docs/BENCHMARKS.md has the recall@10 this buys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ArgumentError

EXACT_LIMIT = 50_000
HNSW_FROM = 8192  # lists
TRAIN_POINTS_PER_LIST = 40
GROWTH_FACTOR = 4
INDEX_TYPES = ("auto", "flat", "ivf")  # auto: the rule above; flat: always exact; ivf: approximate from the first vectors


@dataclass(frozen=True)
class Layout:
    """A store's index type: exact (nlist 0) or an IVF with nlist lists."""

    nlist: int = 0

    @property
    def exact(self) -> bool:
        return self.nlist == 0

    @property
    def hnsw_quantizer(self) -> bool:
        return self.nlist >= HNSW_FROM

    @property
    def factory(self) -> str:
        """The FAISS index_factory string (what `status` shows)."""
        if self.exact:
            return "IDMap2,Flat"
        return f"IVF{self.nlist}{'_HNSW32' if self.hnsw_quantizer else ''},SQ8"

    @property
    def description(self) -> str:
        """What `status` shows: the type and its search parameters."""
        if self.exact:
            return f"{self.factory} inner product, exact"
        return f"{self.factory} inner product, nprobe {self.nprobe}"

    @property
    def nprobe(self) -> int:
        return nprobe_for(self.nlist)

    @property
    def suits(self) -> int:
        """The size this many lists suit best: nlist = 4 sqrt(N)."""
        return (self.nlist // 4) ** 2 if self.nlist >= 4 else 1

    @property
    def train_points(self) -> int:
        return self.nlist * TRAIN_POINTS_PER_LIST


EXACT = Layout(0)


def check_index_type(value: str | None) -> str:
    """The index type setting, checked ("auto" when unset)."""
    value = (value or "auto").strip().lower()
    if value not in INDEX_TYPES:
        raise ArgumentError(f"index type must be one of {', '.join(INDEX_TYPES)}, not {value!r}")
    return value


def nlist_for(count: int) -> int:
    """Lists for `count` vectors: the power of two nearest 4 sqrt(count), with 39+ training points each."""
    if count < 1:
        return 1
    nlist = 2 ** round(math.log2(max(1.0, 4 * math.sqrt(count))))
    while nlist > 1 and count < nlist * 39:
        nlist //= 2
    return nlist


def nprobe_for(nlist: int) -> int:
    """Lists a search visits: sqrt(nlist) / 2, at least 16 (16, 23, 32, 64 for 1,024-16,384 lists).

    Measured (docs/BENCHMARKS.md): recall@10 against exact was the same from nprobe 8 to 64 at 100 k
    and at 1 M (0.98, 0.967: the 8-bit codes, not unvisited lists, bound it), so nprobe grows slower than
    nlist and a query scans a shrinking share of a growing store.
    """
    return min(nlist, max(16, round(math.sqrt(nlist) / 2)))


def wanted_layout(count: int, current: Layout, index_type: str = "auto") -> Layout:
    """The layout a store of `count` vectors should have, given the one it has (for hysteresis)."""
    if index_type == "flat" or count == 0:
        return EXACT
    if index_type == "auto":
        if current.exact and count < EXACT_LIMIT:
            return EXACT
        if not current.exact and count < EXACT_LIMIT // 2:
            return EXACT
    if not current.exact and current.suits // GROWTH_FACTOR < count < current.suits * GROWTH_FACTOR:
        return current  # within a factor of 4 of the size its lists suit: keep it
    return Layout(nlist_for(count))
