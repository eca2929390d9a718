"""Where objects go in a scene, and the layout words ("top left", "to the left of") that describe it."""

from __future__ import annotations

import random
from dataclasses import dataclass

# Longest object side as a fraction of the image side, by number of instances in the scene:
# never below 0.3 so every object stays recognisable at 224 px.
SCALE_RANGE = {1: (0.45, 0.7), 2: (0.34, 0.5), 3: (0.3, 0.42)}
MIN_SCALE = 0.3
MAX_OVERLAP = 0.3  # of the smaller box: nothing gets more than partly hidden
SIDE_GAP = 0.25  # centre distance needed before saying "to the left of"
# Region edges: a centre below LOW is left/top, above HIGH right/bottom, within MID of 0.5 centre;
# anything in between is ambiguous and gets no position word at all.
LOW, HIGH, MID = 0.38, 0.62, 0.07


@dataclass(frozen=True)
class Placement:
    """One pasted instance: object id, centre and size as fractions of the image, flip and jitter."""

    obj_id: str
    cx: float
    cy: float
    w: float
    h: float
    flip: bool
    jitter: tuple[float, float, float]  # brightness, contrast, saturation factors

    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in image fractions."""
        return (self.cx - self.w / 2, self.cy - self.h / 2, self.cx + self.w / 2, self.cy + self.h / 2)


def overlap_ratio(a: Placement, b: Placement) -> float:
    """Intersection area over the smaller box's area."""
    ax0, ay0, ax1, ay1 = a.box()
    bx0, by0, bx1, by1 = b.box()
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    return inter / min(a.w * a.h, b.w * b.h)


def _size(aspect: float, scale: float) -> tuple[float, float]:
    """Width and height fractions for a longest side of `scale` and aspect = w / h."""
    return (scale, scale / aspect) if aspect >= 1 else (scale * aspect, scale)


def _place_one(obj_id: str, aspect: float, cell: tuple[int, int], scale: float, mirrorable: bool, rng: random.Random) -> Placement:
    """Put an object around a 3x3 grid cell, shifted so it stays fully inside the image."""
    w, h = _size(aspect, scale)
    cx = min(max((cell[0] + 0.5) / 3 + rng.uniform(-0.05, 0.05), w / 2), 1 - w / 2)
    cy = min(max((cell[1] + 0.5) / 3 + rng.uniform(-0.05, 0.05), h / 2), 1 - h / 2)
    jitter = (rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1), rng.uniform(0.85, 1.15))
    return Placement(obj_id, round(cx, 4), round(cy, 4), round(w, 4), round(h, 4), mirrorable and rng.random() < 0.5, jitter)


def place_objects(objs: list[tuple[str, float, bool]], rng: random.Random, tries: int = 40) -> list[Placement]:
    """Placements for (id, aspect, mirrorable) instances in distinct cells with little overlap."""
    lo, hi = SCALE_RANGE[min(len(objs), 3)]
    shrink = 1.0
    cells = [(c, r) for c in range(3) for r in range(3)]
    for attempt in range(tries):
        chosen = rng.sample(cells, len(objs))
        scales = [max(MIN_SCALE, rng.uniform(lo, hi) * shrink) for _ in objs]
        out = [_place_one(o[0], o[1], cell, s, o[2], rng) for o, cell, s in zip(objs, chosen, scales)]
        if all(overlap_ratio(a, b) <= MAX_OVERLAP for i, a in enumerate(out) for b in out[i + 1:]):
            return out
        shrink = max(0.6, shrink * 0.97)  # why: crowded attempts fail; smaller objects fit more easily
    return out  # the last try; rare and only mildly overlapping


def region(c: float) -> int | None:
    """0 (left/top), 1 (centre), 2 (right/bottom), or None when too close to a boundary to say."""
    if c < LOW:
        return 0
    if c > HIGH:
        return 2
    return 1 if abs(c - 0.5) <= MID else None


_POSITION_WORDS = {
    (0, 0): "at the top left", (1, 0): "at the top", (2, 0): "at the top right",
    (0, 1): "on the left", (1, 1): "in the middle", (2, 1): "on the right",
    (0, 2): "at the bottom left", (1, 2): "at the bottom", (2, 2): "at the bottom right",
    (0, None): "on the left", (2, None): "on the right", (None, 0): "at the top", (None, 2): "at the bottom",
}


def position_phrase(p: Placement) -> str | None:
    """Where a single object is ("at the top left"), or None when its position is ambiguous."""
    return _POSITION_WORDS.get((region(p.cx), region(p.cy)))


def side_word(p: Placement) -> str | None:
    """"on the left" / "on the right" / None for an object's horizontal side."""
    return {0: "on the left", 2: "on the right"}.get(region(p.cx))


def is_left_of(a: Placement, b: Placement) -> bool:
    """Whether a is clearly to the left of b."""
    return b.cx - a.cx >= SIDE_GAP


def is_above(a: Placement, b: Placement) -> bool:
    """Whether a is clearly above b and they are roughly in one column."""
    return b.cy - a.cy >= SIDE_GAP and abs(a.cx - b.cx) < SIDE_GAP


def side_by_side(a: Placement, b: Placement) -> bool:
    """Whether a and b are next to each other horizontally (distinct sides, similar height)."""
    return abs(a.cx - b.cx) >= SIDE_GAP and abs(a.cy - b.cy) < SIDE_GAP


def left_to_right(ps: list[Placement]) -> bool:
    """Whether the placements, in the given order, go clearly from left to right."""
    return all(is_left_of(a, b) for a, b in zip(ps, ps[1:]))
