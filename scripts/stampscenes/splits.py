"""Train/dev/test assignment: multi-object combinations are held out whole; objects are all seen in train.

A scene's *combination* is the sorted multiset of its object ids ("duck", "duck", "hen").  A scene
with one instance may go to any split, but each object's first such scene goes to train.  A scene
with two or more instances takes the split its combination got when first drawn, so a dev/test
combination never shows up in train.  A final pass moves any dev/test scene with an object that
train never shows (possible in tiny builds) into train, together with every scene of its combination.
"""

from __future__ import annotations

import random

SPLITS = ("train", "dev", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)

Combo = tuple[str, ...]


def combo_key(obj_ids: list[str]) -> Combo:
    """The combination of a scene: its object ids with repeats, sorted."""
    return tuple(sorted(obj_ids))


class SplitAssigner:
    """Draws splits scene by scene, remembering combinations and objects already in train."""

    def __init__(self, rng: random.Random, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> None:
        """Use rng for draws, with train/dev/test fractions."""
        self.rng = rng
        self.fractions = fractions
        self.combos: dict[Combo, str] = {}
        self.train_singles: set[str] = set()

    def _draw(self) -> str:
        """A split drawn by the fractions."""
        return self.rng.choices(SPLITS, weights=self.fractions)[0]

    def assign(self, combo: Combo) -> str:
        """The split for a new scene with this combination."""
        if len(combo) > 1:
            return self.combos.setdefault(combo, self._draw())
        split = "train" if combo[0] not in self.train_singles else self._draw()
        if split == "train":
            self.train_singles.add(combo[0])
        return split


def ensure_objects_seen(combos: list[Combo], splits: list[str]) -> list[str]:
    """Splits with every dev/test scene whose objects train lacks moved (with its combination) to train."""
    out = list(splits)
    seen = {o for c, s in zip(combos, out) if s == "train" for o in c}
    for i, (combo, split) in enumerate(zip(combos, out)):
        if split == "train" or set(combo) <= seen:
            continue
        for j, other in enumerate(combos):
            if j == i or (len(combo) > 1 and other == combo):
                out[j] = "train"
        seen.update(combo)
    return out
