"""Spoken-style captions generated from a scene's objects, their layout and its background."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from . import layout
from .layout import Placement
from .phrases import counted_phrase, join_list

PHOTO_WORDS = ("a photo of", "a picture of", "an image of")


@dataclass(frozen=True)
class Group:
    """All instances of one object in a scene."""

    phrase: str
    placements: tuple[Placement, ...]

    @property
    def count(self) -> int:
        """How many instances."""
        return len(self.placements)

    @property
    def np(self) -> str:
        """The counted noun phrase: "a duck", "two ducks"."""
        return counted_phrase(self.phrase, self.count)


@dataclass(frozen=True)
class SceneText:
    """What a caption may talk about: object groups sorted left to right, and the background phrase."""

    groups: tuple[Group, ...]
    bg: str | None


def scene_text(placements: list[Placement], phrases: dict[str, str], bg: str | None) -> SceneText:
    """Group placements by object, ordered by each group's leftmost instance."""
    by_id: dict[str, list[Placement]] = {}
    for p in placements:
        by_id.setdefault(p.obj_id, []).append(p)
    groups = sorted((Group(phrases[k], tuple(v)) for k, v in by_id.items()), key=lambda g: min(p.cx for p in g.placements))
    return SceneText(tuple(groups), bg)


def _shuffled(s: SceneText, rng: random.Random) -> list[Group]:
    """The groups in random order, for lists where order carries no meaning."""
    groups = list(s.groups)
    rng.shuffle(groups)
    return groups


def _listing(s: SceneText, rng: random.Random) -> str:
    """All objects as one list in random order: "two ducks and a brown hen"."""
    return join_list([g.np for g in _shuffled(s, rng)])


def _singles(s: SceneText) -> list[Placement] | None:
    """The placements when every object appears exactly once, else None."""
    return [g.placements[0] for g in s.groups] if all(g.count == 1 for g in s.groups) else None


def t_bare(s: SceneText, rng: random.Random) -> str | None:
    """"a brown hen and a fire truck"."""
    return _listing(s, rng)


def t_photo(s: SceneText, rng: random.Random) -> str | None:
    """"a photo of two ducks"."""
    return f"{rng.choice(PHOTO_WORDS)} {_listing(s, rng)}"


def t_there(s: SceneText, rng: random.Random) -> str | None:
    """"there are two ducks and a hen": the verb agrees with the first item, as in speech."""
    groups = _shuffled(s, rng)
    verb = "are" if groups[0].count > 1 else "is"
    return f"there {verb} {join_list([g.np for g in groups])}"


def t_bg(s: SceneText, rng: random.Random) -> str | None:
    """"two ducks on a beach"."""
    return f"{_listing(s, rng)} {s.bg}" if s.bg else None


def t_photo_bg(s: SceneText, rng: random.Random) -> str | None:
    """"a photo of a red apple on a blue background"."""
    return f"{rng.choice(PHOTO_WORDS)} {_listing(s, rng)} {s.bg}" if s.bg else None


def t_position(s: SceneText, rng: random.Random) -> str | None:
    """"there is a red apple at the top left" (one object only)."""
    if len(s.groups) != 1 or s.groups[0].count != 1:
        return None
    where = layout.position_phrase(s.groups[0].placements[0])
    if where is None:
        return None
    return f"{rng.choice(('there is ', ''))}{s.groups[0].np} {where}"


def t_left_of(s: SceneText, rng: random.Random) -> str | None:
    """"a brown hen to the left of a fire truck" or the mirrored "... to the right of ..."."""
    ps = _singles(s)
    if ps is None or len(ps) != 2 or not layout.is_left_of(ps[0], ps[1]):
        return None
    a, b = s.groups[0].np, s.groups[1].np
    return f"{a} to the left of {b}" if rng.random() < 0.5 else f"{b} to the right of {a}"


def t_next_to(s: SceneText, rng: random.Random) -> str | None:
    """"a brown hen next to a fire truck" (side by side, either order)."""
    ps = _singles(s)
    if ps is None or len(ps) != 2 or not layout.side_by_side(ps[0], ps[1]):
        return None
    a, b = rng.sample([g.np for g in s.groups], 2)
    return f"{a} next to {b}"


def t_above(s: SceneText, rng: random.Random) -> str | None:
    """"a kettle above a duck" or "a duck below a kettle"."""
    ps = _singles(s)
    if ps is None or len(ps) != 2:
        return None
    order = [0, 1] if ps[0].cy < ps[1].cy else [1, 0]
    top, bottom = (s.groups[i].np for i in order)
    if not layout.is_above(ps[order[0]], ps[order[1]]):
        return None
    return f"{top} above {bottom}" if rng.random() < 0.5 else f"{bottom} below {top}"


def t_sides(s: SceneText, rng: random.Random) -> str | None:
    """"a brown hen on the left and a fire truck on the right"."""
    ps = _singles(s)
    if ps is None or len(ps) != 2:
        return None
    sides = [layout.side_word(p) for p in ps]
    if None in sides or sides[0] == sides[1]:
        return None
    parts = [f"{g.np} {w}" for g, w in zip(s.groups, sides)]
    rng.shuffle(parts)
    return " and ".join(parts)


def t_left_to_right(s: SceneText, rng: random.Random) -> str | None:
    """"from left to right, a hen, a duck and a kettle"."""
    ps = _singles(s)
    if ps is None or len(ps) < 3 or not layout.left_to_right(ps):
        return None
    return "from left to right, " + join_list([g.np for g in s.groups])


TEMPLATES: tuple[Callable[[SceneText, random.Random], str | None], ...] = (
    t_bare, t_photo, t_there, t_bg, t_photo_bg, t_position, t_left_of, t_next_to, t_above,
    t_sides, t_left_to_right,
)
# Layout templates are rarer than listings by nature; weight them up so they are not drowned out.
_WEIGHTS = {t_position: 2.0, t_left_of: 2.0, t_next_to: 1.5, t_above: 2.0, t_sides: 1.5, t_left_to_right: 2.0}


def _weighted_order(funcs: list, rng: random.Random) -> list:
    """Templates in a random order biased by their weights (Efraimidis-Spirakis keys)."""
    keyed = [(rng.random() ** (1.0 / _WEIGHTS.get(f, 1.0)), i) for i, f in enumerate(funcs)]
    return [funcs[i] for _, i in sorted(keyed, reverse=True)]


def make_captions(s: SceneText, n: int, rng: random.Random) -> list[str]:
    """n distinct captions for a scene (repeating only if the scene allows fewer phrasings)."""
    out: list[str] = []
    for t in _weighted_order(list(TEMPLATES), rng):
        text = t(s, rng)
        if text is not None and text not in out:
            out.append(text)
        if len(out) == n:
            return out
    return [out[i % len(out)] for i in range(n)]


# How often a caption names an object by its stamp phrase; otherwise by one of its other names.
PHRASE_SHARE = 0.5


def pick_names(names: dict[str, tuple[str, ...]], rng: random.Random) -> dict[str, str]:
    """One name per object: its phrase (PHRASE_SHARE of the time) or one of its other names."""
    return {k: v[0] if len(v) == 1 or rng.random() < PHRASE_SHARE else rng.choice(v[1:]) for k, v in sorted(names.items())}


def make_named_captions(placements: list[Placement], names: dict[str, tuple[str, ...]], bg: str | None, n: int,
                        rng: random.Random) -> list[str]:
    """n distinct captions, each naming the objects anew ("a brown hen", then "a hen")."""
    out: list[str] = []
    for _ in range(4 * n):
        s = scene_text(placements, pick_names(names, rng), bg)
        fresh = [t for t in make_captions(s, n, rng) if t not in out]
        if fresh:
            out.append(fresh[0])
        if len(out) == n:
            return out
    return [out[i % len(out)] for i in range(n)]
