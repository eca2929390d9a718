"""The stamp-scenes world over the whole vocabulary: other names per object, single-object galleries,
wider voices and per-clip speaking rate and pitch (scripts/stampscenes)."""

from __future__ import annotations

import random
import shutil
import wave
from pathlib import Path

import pytest

from stampscenes import captions, objects, phrases, scenes, voices
from stampscenes.backgrounds import list_backgrounds
from stampscenes.build import manifest_lines
from stampscenes.layout import Placement
from stampscenes.scenes import plan_world

needs_stamps = pytest.mark.skipif(not objects.STAMPS_ROOT.is_dir(), reason="tuxpaint-stamps-default not installed")
needs_tts = pytest.mark.skipif(not all(shutil.which(b) for b in ("espeak-ng", "sox")), reason="espeak-ng/sox not installed")


def at(obj_id: str, cx: float, cy: float, size: float = 0.3) -> Placement:
    """A placement at a given centre."""
    return Placement(obj_id, cx, cy, size, size, False, (1.0, 1.0, 1.0))


def frames(path: Path) -> int:
    with wave.open(str(path)) as w:
        return w.getnframes()


def test_name_variants_give_plain_described_and_everyday_names() -> None:
    assert phrases.name_variants("a brown hen", "hen") == ("a brown hen", "a hen")
    assert phrases.name_variants("a seville orange", "orange", "A Seville orange, also called a bitter orange.") == (
        "a seville orange", "an orange", "a bitter orange")
    assert "a drake" in phrases.name_variants("a duck", "duck")  # the names de-duplication merged
    assert "a hippo" in phrases.name_variants("a hippopotamus", "hippopotamus")
    assert phrases.name_variants("a garlic bulb", "bulb") == ("a garlic bulb",)  # "a bulb" is the lightbulb
    assert phrases.name_variants("some broccoli", "broccoli") == ("some broccoli",)


def test_named_captions_use_one_name_of_each_object() -> None:
    names = {"hen": ("a brown hen", "a hen"), "truck": ("a fire truck",)}
    placements = [at("hen", 0.2, 0.5), at("truck", 0.8, 0.5)]
    seen = set()
    for seed in range(40):
        for text in captions.make_named_captions(placements, names, "on the grass", 2, random.Random(seed)):
            assert "fire truck" in text and ("brown hen" in text or " hen" in text)
            seen.add("brown hen" in text)
    assert seen == {True, False}  # both the stamp phrase and the plain name are spoken


@needs_stamps
def test_every_object_has_its_phrase_first_among_its_names() -> None:
    objs = objects.discover_objects()
    assert len(objs) >= 200 and all(o.names[0] == o.phrase for o in objs)
    assert sum(len(o.names) > 1 for o in objs) >= 60
    assert all(len(n.split()) <= phrases.MAX_WORDS for o in objs for n in o.names)


@needs_stamps
def test_single_share_and_prosody() -> None:
    objs = objects.select_objects(objects.discover_objects(), 30)
    world = {"objs": objs, "bgs": list_backgrounds(), "voices": voices.all_voices(), "n_scenes": 300, "n_captions": 2}
    plain = plan_world(**world, seed=4)
    singles = plan_world(**world, seed=4, single_share=0.6)
    share = sum(len(p.placements) == 1 for p in singles) / len(singles)
    assert 0.5 < share < 0.7 and sum(len(p.placements) == 1 for p in plain) / len(plain) < 0.45
    varied = plan_world(**world, seed=4, prosody=True)
    plain_lines, varied_lines = manifest_lines(plain), manifest_lines(varied)
    assert all("rate" not in r for r in plain_lines)
    strip = [{k: v for k, v in r.items() if k not in ("rate", "pitch")} for r in varied_lines]
    assert strip == plain_lines  # prosody changes no image, caption or voice
    rates = [r["rate"] for r in varied_lines]
    assert min(rates) >= 0.8 and max(rates) <= 1.25 and len(set(rates)) > 10
    assert all(-300 <= r["pitch"] <= 300 for r in varied_lines)


@needs_stamps
def test_singles_gallery_has_each_object_once_spoken_by_held_out_voices() -> None:
    objs = objects.select_objects(objects.discover_objects(), 25)
    plans = scenes.plan_singles(objs, list_backgrounds(), voices.all_voices(wide=True), 2, seed=1)
    assert sorted(p.object_ids[0] for p in plans) == sorted(o.id for o in objs)
    assert all(len(p.placements) == 1 and p.split == "test" for p in plans)
    held = {v.id for v in voices.all_voices(wide=True) if v.held_out}
    assert {c.voice for p in plans for c in p.clips} <= held


def test_wide_voices_add_variants_on_both_sides_of_the_speaker_split() -> None:
    narrow, wide = voices.all_voices(), voices.all_voices(wide=True)
    assert set(narrow) < set(wide) and len(wide) > 5 * len(narrow)
    pools = voices.voice_pools(wide)
    assert "espeak:en-gb-scotland+Annie" in {v.id for v in pools["test"]}
    assert "espeak:en-us+Annie" in {v.id for v in pools["train"]}
    assert not {v.speaker for v in pools["train"]} & {v.speaker for v in pools["test"]}


@needs_tts
def test_synthesis_rate_and_pitch(tmp_path: Path) -> None:
    voice = {v.id: v for v in voices.all_voices()}["espeak:en-us+f2"]
    lengths = {}
    for rate in (0.8, 1.0, 1.25):
        out = tmp_path / f"{rate}.wav"
        voices.synthesize(voice, "a brown hen next to a fire truck", out, rate=rate, pitch_cents=200 if rate != 1.0 else 0)
        lengths[rate] = frames(out)
    assert lengths[0.8] > lengths[1.0] * 1.15 and lengths[1.25] < lengths[1.0] * 0.9
