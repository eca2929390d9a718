"""Plan every scene of the world up front, deterministically from the seed (no pixels, no audio)."""

from __future__ import annotations

import dataclasses
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
    rate: float = 1.0  # speaking rate after synthesis (1.0: as the engine spoke)
    pitch: int = 0  # pitch shift in cents


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


def instance_weights(single_share: float | None) -> dict[int, float]:
    """INSTANCE_WEIGHTS, or with single-object scenes at `single_share` and the rest in proportion."""
    if single_share is None:
        return INSTANCE_WEIGHTS
    rest = sum(w for k, w in INSTANCE_WEIGHTS.items() if k > 1)
    return {k: single_share if k == 1 else (1 - single_share) * w / rest for k, w in INSTANCE_WEIGHTS.items()}


def _pick_ids(objs: list[StampObject], rng: random.Random, weights: dict[int, float] = INSTANCE_WEIGHTS) -> list[str]:
    """Object ids for one scene, following an instance-count pattern; repeats only of countables."""
    k = rng.choices(list(weights), weights=list(weights.values()))[0]
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


def _draft_scene(objs: dict[str, StampObject], bgs: list[Background], n_captions: int, rng: random.Random,
                 weights: dict[int, float] = INSTANCE_WEIGHTS, only: str | None = None) -> _Draft:
    """Objects, layout, background and caption texts of one scene (of the object `only`, when given)."""
    ids = [only] if only else _pick_ids(list(objs.values()), rng, weights)
    rng.shuffle(ids)  # paste order decides which instance lies on top
    placements = place_objects([(i, _aspect(objs[i]), objs[i].mirrorable) for i in ids], rng)
    bg, crop = _pick_background(bgs, rng)
    if any(objs[i].variants[1:] for i in ids):  # objects with other names: each caption names them anew
        texts = captions.make_named_captions(placements, {i: objs[i].names for i in ids}, bg.phrase, n_captions, rng)
    else:
        text = captions.scene_text(placements, {k: o.phrase for k, o in objs.items()}, bg.phrase)
        texts = captions.make_captions(text, n_captions, rng)
    return _Draft(ids, bg, crop, placements, texts)


def plan_world(
    objs: list[StampObject], bgs: list[Background], voices: list[Voice], n_scenes: int, n_captions: int,
    seed: int, fractions: tuple[float, float, float] = splits.DEFAULT_FRACTIONS, train_voices: int = 1,
    single_share: float | None = None, prosody: bool = False,
) -> list[ScenePlan]:
    """All scene plans: drafts and splits from one random stream, voices from a second one.

    train_voices > 1 has every train caption spoken again by other train voices, drawn from a third
    stream, so the first voice of each caption (and the whole dev/test side) stays as with 1.
    single_share sets the share of single-object scenes; prosody draws a speaking rate and pitch
    shift per clip from a fourth stream.
    """
    rng = random.Random(f"stampscenes:{seed}:scenes")
    by_id = {o.id: o for o in sorted(objs, key=lambda o: o.id)}
    assigner = splits.SplitAssigner(random.Random(f"stampscenes:{seed}:splits"), fractions)
    weights = instance_weights(single_share)
    drafts = [_draft_scene(by_id, bgs, n_captions, rng, weights) for _ in range(n_scenes)]
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
    return with_prosody(plans, random.Random(f"stampscenes:{seed}:prosody")) if prosody else plans


# Speaking rate and pitch drawn per clip: people speak 20 % slower or faster than a TTS default,
# and higher or lower by up to three semitones.
RATE_RANGE = (0.8, 1.25)
PITCH_RANGE_CENTS = (-300, 300)


def with_prosody(plans: list[ScenePlan], rng: random.Random) -> list[ScenePlan]:
    """The plans with every clip given a speaking rate and pitch shift."""
    def vary(clip: Clip) -> Clip:
        rate = round(rng.uniform(*RATE_RANGE), 2)
        return dataclasses.replace(clip, rate=1.0 if rate == 1.0 else rate, pitch=rng.randint(*PITCH_RANGE_CENTS))
    return [dataclasses.replace(p, clips=tuple(vary(c) for c in p.clips)) for p in plans]


def plan_singles(objs: list[StampObject], bgs: list[Background], voices: list[Voice], n_captions: int, seed: int,
                 prosody: bool = False) -> list[ScenePlan]:
    """One single-object test scene per object (a gallery of the whole vocabulary), spoken by held-out voices.

    Like a folder of single-object photos: each object once, so a query must tell every object
    from every other. All scenes are in the test split; the voices are the held-out ones.
    """
    rng = random.Random(f"stampscenes:{seed}:singles")
    by_id = {o.id: o for o in sorted(objs, key=lambda o: o.id)}
    vrng, pool = random.Random(f"stampscenes:{seed}:singles-voices"), voice_pools(voices)["test"]
    plans = []
    for i, obj_id in enumerate(by_id):
        d = _draft_scene(by_id, bgs, n_captions, rng, only=obj_id)
        clips = tuple(Clip(t, pick_voice(pool, vrng).id, f"audio/{i:06d}_{k}.wav") for k, t in enumerate(d.texts))
        plans.append(ScenePlan(i, "test", f"images/{i:06d}.jpg", d.background, d.crop, tuple(d.placements),
                               (by_id[obj_id].source,), clips))
    return with_prosody(plans, random.Random(f"stampscenes:{seed}:prosody")) if prosody else plans


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
