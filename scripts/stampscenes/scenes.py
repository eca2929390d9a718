"""Plan every scene of the world up front, deterministically from the seed (no pixels, no audio)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from . import captions, splits
from .backgrounds import KIND_WEIGHTS, Background, BackgroundCrop
from .layout import Placement, place_objects
from .objects import StampObject, load_object_image
from .voices import Voice, pick_voice, voice_pools

# Instances per scene and, for 2-3 instances, how often some object repeats ("two ducks").
INSTANCE_WEIGHTS = {1: 0.35, 2: 0.4, 3: 0.25}
PATTERNS = {1: [((0,), 1.0)], 2: [((0, 0), 0.25), ((0, 1), 0.75)], 3: [((0, 0, 0), 0.1), ((0, 0, 1), 0.25), ((0, 1, 2), 0.65)]}


@dataclass(frozen=True)
class Clip:
    """One spoken caption: its text, voice id and audio path relative to the output folder."""

    text: str
    voice: str
    audio: str


@dataclass(frozen=True)
class ScenePlan:
    """Everything needed to render one scene and write its manifest lines."""

    index: int
    split: str
    image: str
    background: Background
    crop: BackgroundCrop
    placements: tuple[Placement, ...]
    sources: tuple[str, ...]  # stamp path per placement
    clips: tuple[Clip, ...]

    @property
    def object_ids(self) -> list[str]:
        """Object id per placement."""
        return [p.obj_id for p in self.placements]


def _pick_ids(objs: list[StampObject], rng: random.Random) -> list[str]:
    """Object ids for one scene, following an instance-count pattern; repeats only of countables."""
    k = rng.choices(list(INSTANCE_WEIGHTS), weights=list(INSTANCE_WEIGHTS.values()))[0]
    countable = [o for o in objs if o.countable]
    # Tiny vocabularies cannot fill every pattern: keep those with enough (countable) objects.
    pats = [(p, w) for p, w in PATTERNS[k] if len(set(p)) <= len(objs) and (countable or len(set(p)) == len(p))]
    pattern = rng.choices([p for p, _ in pats], weights=[w for _, w in pats])[0] if pats else (0,)
    distinct = len(set(pattern))
    first = rng.choice(countable if distinct < len(pattern) else objs)
    rest = rng.sample([o for o in objs if o.id != first.id], distinct - 1)
    chosen = [first, *rest]
    return [chosen[i].id for i in pattern]


def _pick_background(bgs: list[Background], rng: random.Random) -> tuple[Background, BackgroundCrop]:
    """A background by kind weights, and where to crop it."""
    kinds = sorted({b.kind for b in bgs})
    kind = rng.choices(kinds, weights=[KIND_WEIGHTS[k] for k in kinds])[0]
    bg = rng.choice([b for b in bgs if b.kind == kind])
    crop = BackgroundCrop(round(rng.uniform(0.5, 1.0), 4), round(rng.random(), 4), round(rng.random(), 4), rng.random() < 0.5, rng.randrange(2**31))
    return bg, crop


def _aspect(obj: StampObject) -> float:
    """Width over height of the cropped stamp."""
    w, h = load_object_image(obj.source).size
    return w / h


@dataclass(frozen=True)
class _Draft:
    """A scene before its split is final and its voices are drawn."""

    ids: list[str]
    background: Background
    crop: BackgroundCrop
    placements: list[Placement]
    texts: list[str]


def _draft_scene(objs: dict[str, StampObject], bgs: list[Background], n_captions: int, rng: random.Random) -> _Draft:
    """Objects, layout, background and caption texts of one scene."""
    ids = _pick_ids(list(objs.values()), rng)
    rng.shuffle(ids)  # paste order decides which instance lies on top
    placements = place_objects([(i, _aspect(objs[i]), objs[i].mirrorable) for i in ids], rng)
    bg, crop = _pick_background(bgs, rng)
    text = captions.scene_text(placements, {k: o.phrase for k, o in objs.items()}, bg.phrase)
    return _Draft(ids, bg, crop, placements, captions.make_captions(text, n_captions, rng))


def plan_world(
    objs: list[StampObject], bgs: list[Background], voices: list[Voice], n_scenes: int, n_captions: int,
    seed: int, fractions: tuple[float, float, float] = splits.DEFAULT_FRACTIONS, train_voices: int = 1,
) -> list[ScenePlan]:
    """All scene plans: drafts and splits from one random stream, voices from a second one.

    train_voices > 1 has every train caption spoken again by other train voices, drawn from a third
    stream, so the first voice of each caption (and the whole dev/test side) stays as with 1.
    """
    rng = random.Random(f"stampscenes:{seed}:scenes")
    by_id = {o.id: o for o in sorted(objs, key=lambda o: o.id)}
    assigner = splits.SplitAssigner(random.Random(f"stampscenes:{seed}:splits"), fractions)
    drafts = [_draft_scene(by_id, bgs, n_captions, rng) for _ in range(n_scenes)]
    combos = [splits.combo_key(d.ids) for d in drafts]
    split_of = splits.ensure_objects_seen(combos, [assigner.assign(c) for c in combos])
    # A separate stream for voices: changing the voice list must not change images or captions.
    vrng, pools = random.Random(f"stampscenes:{seed}:voices"), voice_pools(voices)
    xrng = random.Random(f"stampscenes:{seed}:more-voices")
    plans = []
    for i, (d, split) in enumerate(zip(drafts, split_of)):
        clips = tuple(Clip(t, pick_voice(pools[split], vrng).id, f"audio/{i:06d}_{k}.wav") for k, t in enumerate(d.texts))
        if split == "train" and train_voices > 1:
            clips += _more_voices(clips, train_voices, pools[split], xrng)
        sources = tuple(by_id[p.obj_id].source for p in d.placements)
        plans.append(ScenePlan(i, split, f"images/{i:06d}.jpg", d.background, d.crop, tuple(d.placements), sources, clips))
    return plans


def _more_voices(clips: tuple[Clip, ...], n_voices: int, pool: list[Voice], rng: random.Random) -> tuple[Clip, ...]:
    """Each caption again in up to n_voices - 1 further voices of the pool, each unlike its others."""
    extra = []
    for clip in clips:
        used = {clip.voice}
        for j in range(1, min(n_voices, len(pool))):
            voice = pick_voice([v for v in pool if v.id not in used], rng)
            used.add(voice.id)
            extra.append(Clip(clip.text, voice.id, clip.audio.replace(".wav", f"_v{j}.wav")))
    return tuple(extra)
