"""Calibrated scores: one query's cosines against images and against recordings made comparable.

Why: a query's cosine similarities to the photos and to the recordings live on different scales
(a typed query sits nearer to recordings whose speech the encoder learned to read as text, or
whose transcripts it embeds as text, than to any photo), so ranking a mixed list by raw cosine
lets one kind crowd out the other; and a raw cosine cannot say "no good match".

What: the calibrated score of a hit says how far its cosine stands above what this query scores
by chance *in that hit's store* (one store per kind), in standard deviations:

1. The query's score distribution in the store is measured on a fixed sample of the store's own
   vectors (all of them up to SAMPLE_SIZE: `VectorStore.sample`): one matrix product per search.
2. A hit with cosine x, against the m other sampled vectors (the hit itself left out when it is in
   the sample, so a strong match does not widen its own yardstick), mean mu, deviation s:
       t = (x - mu) / (s * sqrt(1 + 1/m))      Student's t of a new draw, m - 1 degrees of freedom
       z = the standard normal quantile with the same upper tail probability as t
   A store of 5 items cannot vouch for a hit as strongly as one of 5,000 (few degrees of freedom,
   heavy tails); a hit with fewer than MIN_OTHERS others to compare with gets z = 0.
3. Among N unrelated files, the best one stands out by chance: by chance_best(N) standard
   deviations, the median of the largest of N normal draws (2.8 for 300 files, 3.7 for 10,000).
       score = z - chance_best(N)              N = the files of that kind in the store
   So 0 is what the best unrelated file of a store reaches half the time, whatever its size and
   kind: a hit above 0 stands out further than chance explains. Most files score well below 0.

The scores rank a mixed list and serve --min-score; on the shipped bundle's test split this
ranks the right photo first more often than raw cosines do, and 0 answers most nonsense with
nothing (docs/BENCHMARKS.md, "Calibrated scores"). Only numpy and the standard library here.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

SAMPLE_SIZE = 1024
HILL_FROM = 100  # degrees of freedom from which Hill's closed form replaces the tail integral
MIN_OTHERS = 2  # a standard deviation needs two values to compare a hit with
_SMALLEST_TAIL = 1e-300  # beyond this the normal quantile is ~37: far past any threshold
_NORMAL = NormalDist()


def calibrated_scores(cosines: np.ndarray, ids: np.ndarray, sample_cosines: np.ndarray, sample_ids: np.ndarray,
                      store_size: int) -> np.ndarray:
    """Calibrated scores of hits (`cosines`, `ids`) in a store of `store_size` vectors, given the
    query's cosines to a sample of them."""
    return standing_out(cosines, ids, sample_cosines, sample_ids) - chance_best(store_size)


def chance_best(n: int) -> float:
    """The median of the largest of n standard normal draws: how far the best of n unrelated files
    stands out by chance (0 for one file)."""
    return _NORMAL.inv_cdf(0.5 ** (1 / max(1, n)))


def standing_out(cosines: np.ndarray, ids: np.ndarray, sample_cosines: np.ndarray,
                 sample_ids: np.ndarray) -> np.ndarray:
    """z of each hit against the sample (step 2 of the module's description)."""
    cosines = np.asarray(cosines, dtype=np.float64)
    sample = np.asarray(sample_cosines, dtype=np.float64)
    n, total, squares = sample.size, sample.sum(), np.square(sample).sum()
    in_sample = members(ids, sample_ids)
    # The sums without the hit's own cosine where the hit is one of the sampled vectors.
    m = np.where(in_sample, n - 1, n).astype(np.float64)
    measurable = m >= MIN_OTHERS
    m = np.where(measurable, m, MIN_OTHERS)  # placeholders, scored 0 below
    mean = (total - np.where(in_sample, cosines, 0.0)) / m
    variance = (squares - np.where(in_sample, cosines ** 2, 0.0) - m * mean ** 2) / (m - 1)
    spread = np.sqrt(np.maximum(variance, 1e-12)) * np.sqrt(1 + 1 / m)
    return np.where(measurable, t_to_normal((cosines - mean) / spread, m - 1), 0.0)


def members(values, pool) -> np.ndarray:
    """np.isin(values, pool) for the few ids of a page of hits: by binary search (np.isin hashes both arrays
    first, 0.2 ms a call, as much as the index takes to answer a query)."""
    values, pool = np.asarray(values), np.sort(np.asarray(pool).ravel())
    if pool.size == 0:
        return np.zeros(values.shape, dtype=bool)
    return pool[np.searchsorted(pool, values).clip(max=pool.size - 1)] == values


def t_to_normal(t: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """The standard normal deviate with the same upper tail probability as Student's t with `dof`."""
    t, dof = np.broadcast_arrays(np.asarray(t, dtype=np.float64), np.asarray(dof, dtype=np.float64))
    out = _hill(t, dof)  # every store of more than HILL_FROM vectors: all of a search's hits at once
    for i in np.flatnonzero(dof.ravel() < HILL_FROM):
        out.flat[i] = _normal_upper_quantile(t_upper_tail(float(t.flat[i]), float(dof.flat[i])))
    return out


def _hill(t: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """Hill's normal deviate for Student's t (Algorithm 395, 1970), vectorised: from 100 degrees of freedom
    within 3e-9 of the exact value for |t| <= 12 (and closer than the tail integral beyond), at a 20th of its
    time, which was a third of a search's own work."""
    a = np.maximum(dof, 1.0) - 0.5
    b = 48 * a * a
    z = np.sqrt(a * np.log1p(t * t / np.maximum(dof, 1.0)))
    z = z + (z ** 3 + 3 * z) / b - (4 * z ** 7 + 33 * z ** 5 + 240 * z ** 3 + 855 * z) / (10 * b * (b + 0.8 * z ** 4 + 100))
    return np.sign(t) * z


def t_upper_tail(t: float, dof: float) -> float:
    """P(T > t) for Student's t with `dof` degrees of freedom (through the incomplete beta function)."""
    half = 0.5 * regularized_beta(dof / (dof + t * t), dof / 2, 0.5)
    return half if t >= 0 else 1.0 - half


def _normal_upper_quantile(p: float) -> float:
    """z with P(Z > z) = p: computed from the smaller tail so that tiny p keep their precision."""
    p = min(max(p, _SMALLEST_TAIL), 1.0 - 1e-16)
    return -_NORMAL.inv_cdf(p) if p < 0.5 else _NORMAL.inv_cdf(1.0 - p)


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) by Lentz's continued fraction, on the side of x where it converges fast."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float, steps: int = 500, eps: float = 1e-15) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, steps + 1):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h
