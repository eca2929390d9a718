"""Tests for the stamp-scenes world builder (scripts/stampscenes and scripts/make_stamp_scenes.py)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stampscenes import captions, heldout, layout, objects, phrases, splits, voices
from stampscenes.backgrounds import list_backgrounds
from stampscenes.build import BuildConfig, manifest_lines, prepare
from stampscenes.layout import Placement
from stampscenes.scenes import plan_world

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

HAVE_STAMPS = objects.STAMPS_ROOT.is_dir()
HAVE_TTS = all(shutil.which(b) for b in ("espeak-ng", "flite", "sox"))
needs_stamps = pytest.mark.skipif(not HAVE_STAMPS, reason="tuxpaint-stamps-default not installed")
needs_tts = pytest.mark.skipif(not HAVE_TTS, reason="espeak-ng/flite/sox not installed")

VOCAB = {"hen": "a brown hen", "truck": "a fire truck", "duck": "a duck", "kettle": "an electric kettle", "apple": "a red apple"}


def at(obj_id: str, cx: float, cy: float, size: float = 0.3) -> Placement:
    """A placement at a given centre."""
    return Placement(obj_id, cx, cy, size, size, False, (1.0, 1.0, 1.0))


def all_captions(placements: list[Placement], bg: str | None = None, n: int = 6, seeds: int = 60) -> set[str]:
    """Every caption the generator produces for a scene over many random draws."""
    s = captions.scene_text(placements, VOCAB, bg)
    return {c for seed in range(seeds) for c in captions.make_captions(s, n, random.Random(seed))}


def mentioned(text: str) -> set[str]:
    """Which VOCAB objects a caption names (singular or plural head)."""
    out = set()
    for k, ph in VOCAB.items():
        head = phrases.head_noun(ph)
        if f" {head} " in f" {text} " or f" {phrases.pluralise_word(head)} " in f" {text} ":
            out.add(k)
    return out


# ---- phrases -----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("A brown hen.", "a brown hen"),
    ("An albino peahen (a female peafowl, or peacock).", "an albino peahen"),
    ("A Seville orange, also called a bitter orange.", "a seville orange"),
    ("A ripe, red tomato!", "a ripe red tomato"),
    ("An hippopotamus.", "a hippopotamus"),
    ("A very small pumpkin.", "a pumpkin"),
    ("A \u201cFuji\u201d apple.", "a fuji apple"),
    ("A knight\u2019s helmet.", "a knight's helmet"),
    ("Mercury\u2014the planet closest to the Sun.", None),
    ("Remember to flush the toilet and wash your hands with soap!", None),
    ("A tough APC like this M-3 Bradley Fighting Vehicle gets you to battle.", None),
    ("", None),
])
def test_normalise_caption(raw: str, expected: str | None) -> None:
    assert phrases.normalise_caption(raw) == expected


@pytest.mark.parametrize("phrase, count, expected", [
    ("a duck", 2, "two ducks"),
    ("a pair of pliers", 3, "three pairs of pliers"),
    ("a bunch of grapes", 2, "two bunches of grapes"),
    ("a mouse", 2, "two mice"),
    ("a fireman", 2, "two firemen"),
    ("a fox", 3, "three foxes"),
    ("a clownfish", 2, "two clownfish"),
    ("a strawberry", 2, "two strawberries"),
    ("an eggplant with fruit", 2, "two eggplants with fruit"),
    ("a brown hen", 1, "a brown hen"),
])
def test_counted_phrase(phrase: str, count: int, expected: str) -> None:
    assert phrases.counted_phrase(phrase, count) == expected


def test_object_names_group_near_duplicates() -> None:
    assert phrases.object_name("a pair of cherries") == "cherries"
    assert phrases.object_name("a sea lion") == "sea lion"
    assert phrases.object_name("a lion") == "lion"
    assert phrases.object_name("a drake") == phrases.object_name("a duck") == "duck"
    assert phrases.object_name("an avocado fruit") == "avocado"
    assert phrases.head_noun("a pair of cherries") == "pair"
    assert not phrases.is_countable("some broccoli") and phrases.is_countable("an owl")


# ---- objects -----------------------------------------------------------------------------------


def test_texture_heuristic_separates_flat_art_from_photo_noise() -> None:
    rng = np.random.default_rng(0)
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[8:56, 8:56] = (200, 30, 30, 255)  # flat clip-art fill
    flat, colours, pixels = objects.texture_stats(rgba)
    assert flat > 0.9 and not objects.is_photo_texture(flat, colours, pixels)
    rgba[..., :3] = rng.integers(0, 256, (64, 64, 3))  # photo-like texture everywhere
    assert objects.is_photo_texture(*objects.texture_stats(rgba))


@needs_stamps
def test_discover_objects_keeps_photos_and_drops_clip_art() -> None:
    objs = objects.discover_objects()
    by_source = {o.source: o for o in objs}
    assert 150 <= len(objs) <= 300
    assert by_source["animals/birds/hen.png"].phrase == "a brown hen"
    assert not any("cartoon" in o.source or o.source.startswith("symbols/") for o in objs)
    names = [o.name for o in objs]
    assert len(names) == len(set(names)) and names.count("dog") == 1
    assert len({o.id for o in objs}) == len(objs)
    assert all(len(o.phrase.split()) <= phrases.MAX_WORDS for o in objs)


@needs_stamps
def test_select_objects_is_deterministic_and_spread() -> None:
    objs = objects.discover_objects()
    a = objects.select_objects(objs, 30, seed=0)
    assert [o.id for o in a] == [o.id for o in objects.select_objects(list(reversed(objs)), 30, seed=0)]
    assert len({o.id for o in a}) == 30
    assert {o.id for o in a} != {o.id for o in objects.select_objects(objs, 30, seed=1)}
    assert len({o.category for o in a}) >= 5


# ---- layout and captions -----------------------------------------------------------------------


def test_placements_stay_inside_large_and_mostly_visible() -> None:
    for seed in range(300):
        rng = random.Random(seed)
        k = rng.choice([1, 2, 3])
        ps = layout.place_objects([(f"o{i}", rng.choice([0.3, 1.0, 2.5]), True) for i in range(k)], rng)
        for p in ps:
            x0, y0, x1, y1 = p.box()
            assert min(x0, y0) >= -1e-3 and max(x1, y1) <= 1 + 1e-3  # 4-decimal rounding
            assert max(p.w, p.h) >= layout.MIN_SCALE - 1e-6
        assert all(layout.overlap_ratio(a, b) <= layout.MAX_OVERLAP for i, a in enumerate(ps) for b in ps[i + 1:])


def test_captions_mention_exactly_the_scene_objects() -> None:
    for scene in ([at("hen", 0.2, 0.5), at("truck", 0.8, 0.5)], [at("duck", 0.2, 0.2), at("duck", 0.8, 0.8), at("apple", 0.5, 0.5)]):
        ids = {p.obj_id for p in scene}
        for text in all_captions(scene, bg="on a beach"):
            assert mentioned(text) == ids, text


def test_counts_use_number_words_and_plurals() -> None:
    texts = all_captions([at("duck", 0.2, 0.2), at("duck", 0.8, 0.8)])
    assert all("two ducks" in t and "a duck" not in t for t in texts)
    assert "there are two ducks" in texts
    texts = all_captions([at("duck", 0.2, 0.2), at("duck", 0.5, 0.5), at("hen", 0.8, 0.8)])
    assert all("two ducks" in t and "a brown hen" in t for t in texts)


def test_left_right_words_match_positions() -> None:
    texts = all_captions([at("truck", 0.8, 0.5), at("hen", 0.2, 0.5)])
    rel = {t for t in texts if "left" in t or "right" in t}
    assert rel, texts
    allowed = {"a brown hen to the left of a fire truck", "a fire truck to the right of a brown hen",
               "a brown hen on the left and a fire truck on the right", "a fire truck on the right and a brown hen on the left"}
    assert rel <= allowed and not any("above" in t or "below" in t for t in texts)


def test_above_below_words_match_positions() -> None:
    texts = all_captions([at("duck", 0.5, 0.8), at("kettle", 0.5, 0.2)])
    rel = {t for t in texts if "above" in t or "below" in t}
    assert rel and rel <= {"an electric kettle above a duck", "a duck below an electric kettle"}
    assert not any("left" in t or "right" in t or "next to" in t for t in texts)


def test_single_object_position_words() -> None:
    texts = all_captions([at("apple", 0.2, 0.2)])
    assert "there is a red apple at the top left" in texts or "a red apple at the top left" in texts
    assert not any(w in t for t in texts for w in ("right", "bottom", "middle"))
    assert not any("left" in t or "right" in t for t in all_captions([at("apple", 0.42, 0.43)]))


def test_left_to_right_listing_and_background_words() -> None:
    texts = all_captions([at("kettle", 0.85, 0.5), at("hen", 0.15, 0.5), at("apple", 0.5, 0.5)])
    lr = [t for t in texts if t.startswith("from left to right")]
    assert lr == ["from left to right, a brown hen, a red apple and an electric kettle"]
    assert not any("background" in t or " on a " in t for t in texts)
    with_bg = all_captions([at("hen", 0.5, 0.5)], bg="on a blue background")
    assert any(t.endswith("on a blue background") for t in with_bg)


def test_make_captions_are_distinct() -> None:
    s = captions.scene_text([at("hen", 0.2, 0.5), at("truck", 0.8, 0.5)], VOCAB, "on the grass")
    got = captions.make_captions(s, 4, random.Random(3))
    assert len(got) == 4 and len(set(got)) == 4


# ---- voices and splits -------------------------------------------------------------------------


def test_voice_pools_hold_out_whole_speakers() -> None:
    pools = voices.voice_pools(voices.all_voices())
    train_speakers = {v.speaker for v in pools["train"]}
    assert not train_speakers & {v.speaker for v in pools["test"] + pools["dev"]}
    test_ids = {v.id for v in pools["test"]}
    assert {"festival:cmu_us_slt_arctic_hts", "flite:slt", "flite:rms", "espeak:en-gb-scotland+m3"} <= test_ids
    assert {"festival:kal_diphone", "flite:awb", "espeak:en-us+f2"} <= {v.id for v in pools["train"]}
    fast = voices.filter_voices(voices.all_voices(), ["espeak", "flite:*"])
    assert {v.engine for v in fast} == {"espeak", "flite"}


def test_split_assigner_holds_out_combinations() -> None:
    rng = random.Random(0)
    ids = [f"o{i}" for i in range(8)]
    combos = [splits.combo_key(rng.sample(ids, rng.choice([1, 2, 3]))) for _ in range(400)]
    assigner = splits.SplitAssigner(random.Random(1))
    result = splits.ensure_objects_seen(combos, [assigner.assign(c) for c in combos])
    train = {c for c, s in zip(combos, result) if s == "train"}
    held = {c for c, s in zip(combos, result) if s != "train" and len(c) > 1}
    assert held and not held & train
    assert {o for c, s in zip(combos, result) if s != "train" for o in c} <= {o for c in train for o in c}


def test_ensure_objects_seen_moves_whole_combinations() -> None:
    combos = [("a",), ("a", "b"), ("a", "b"), ("c",)]
    assert splits.ensure_objects_seen(combos, ["train", "test", "test", "dev"]) == ["train"] * 4


@needs_stamps
def test_planned_world_respects_split_rules_and_is_deterministic() -> None:
    objs = objects.select_objects(objects.discover_objects(), 12)
    world = {"objs": objs, "bgs": list_backgrounds(), "voices": voices.all_voices(), "n_scenes": 400, "n_captions": 2}
    plans = plan_world(**world, seed=5)
    by_split: dict[str, list] = {s: [p for p in plans if p.split == s] for s in splits.SPLITS}
    assert all(by_split.values())
    train_voices = {c.voice for p in by_split["train"] for c in p.clips}
    held_voices = {c.voice for s in ("dev", "test") for p in by_split[s] for c in p.clips}
    assert held_voices and not train_voices & held_voices
    train_combos = {splits.combo_key(p.object_ids) for p in by_split["train"]}
    test_multi = {splits.combo_key(p.object_ids) for p in by_split["test"] if len(p.placements) > 1}
    assert test_multi and not test_multi & train_combos
    assert {o for p in by_split["test"] for o in p.object_ids} <= {o for c in train_combos for o in c}
    assert manifest_lines(plans) == manifest_lines(plan_world(**world, seed=5))
    assert manifest_lines(plans) != manifest_lines(plan_world(**world, seed=6))


@needs_stamps
def test_more_train_voices_add_speakers_and_leave_the_rest_alone() -> None:
    objs = objects.select_objects(objects.discover_objects(), 12)
    world = {"objs": objs, "bgs": list_backgrounds(), "voices": voices.all_voices(), "n_scenes": 200, "n_captions": 2}
    one, three = manifest_lines(plan_world(**world, seed=5)), manifest_lines(plan_world(**world, seed=5, train_voices=3))
    assert [r for r in three if "_v" not in r["audio"]] == one  # first voices, dev and test unchanged
    extra = [r for r in three if "_v" in r["audio"]]
    assert len(extra) == 2 * sum(r["split"] == "train" for r in one) and {r["split"] for r in extra} == {"train"}
    by_text: dict[tuple[str, str], set[str]] = {}
    for r in three:
        by_text.setdefault((r["image"], r["text"]), set()).add(r["voice"])
    train_pool = {v.id for v in voices.voice_pools(voices.all_voices())["train"]}
    assert all(len(v) == 3 and v <= train_pool for (img, _), v in by_text.items()
               if any(r["image"] == img and r["split"] == "train" for r in one))


# ---- synthesis and the end-to-end build --------------------------------------------------------


def read_wav(path: Path) -> tuple[int, int, int, int]:
    """(rate, channels, sample width, frames) of a WAV file."""
    with wave.open(str(path)) as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()


@needs_tts
@pytest.mark.parametrize("voice_id", ["espeak:en-029+f3", "flite:kal", "festival:ked_diphone"])
def test_synthesize_writes_16k_mono(tmp_path: Path, voice_id: str) -> None:
    if voice_id.startswith("festival") and not shutil.which("text2wave"):
        pytest.skip("festival not installed")
    voice = {v.id: v for v in voices.all_voices()}[voice_id]
    out = tmp_path / "x.wav"
    voices.synthesize(voice, "a brown hen next to a fire truck", out)
    rate, channels, width, frames = read_wav(out)
    assert (rate, channels, width) == (16000, 1, 2) and frames > 16000 * 0.5


@needs_stamps
@needs_tts
def test_end_to_end_build(tmp_path: Path) -> None:
    out = tmp_path / "world"
    args = ["--out", str(out), "--seed", "3", "--scenes", "6", "--objects", "10", "--captions-per-image", "1",
            "--size", "128", "--jobs", "2", "--voices", "espeak", "flite"]
    proc = subprocess.run([sys.executable, str(SCRIPTS / "make_stamp_scenes.py"), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sum(c["scenes"] for c in summary["counts"].values()) == 6
    recs = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(recs) == 6
    for r in recs:
        assert {"image", "audio", "text", "voice", "split"} <= set(r)
        assert r["split"] in splits.SPLITS and r["voice"].split(":")[0] in ("espeak", "flite")
        assert not Path(r["image"]).is_absolute() and (out / r["image"]).is_file()
        assert read_wav(out / r["audio"])[:3] == (16000, 1, 2)
        with Image.open(out / r["image"]) as im:
            assert im.format == "JPEG" and im.size == (128, 128)
    world = json.loads((out / "world.json").read_text())
    assert world["seed"] == 3 and len(world["objects"]) == 10
    assert {r["voice"] for r in recs if r["split"] == "train"} <= set(world["voice_pools"]["train"])
    cfg = BuildConfig(out=out, seed=3, scenes=6, objects=10, captions_per_image=1, size=128, voices=("espeak", "flite"))
    assert manifest_lines(prepare(cfg)[2]) == recs
    # A second run over the same folder keeps the finished files and only adds what is new.
    kept = out / recs[0]["audio"]
    stamp = kept.stat().st_mtime_ns
    proc = subprocess.run([sys.executable, str(SCRIPTS / "make_stamp_scenes.py"), *args, "--train-voices", "2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    more = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert kept.stat().st_mtime_ns == stamp and len(more) == 6 + sum(r["split"] == "train" for r in recs)
    assert all((out / r["audio"]).is_file() for r in more) and not list(out.rglob("*.partial*"))


# ---- a held-out manifest from a second world ---------------------------------------------------


def _record(image: str, objs: list[str], split: str) -> dict:
    return {"image": f"images/{image}.jpg", "audio": f"audio/{image}_0.wav", "text": " and ".join(objs),
            "voice": "flite:slt", "split": split, "objects": objs}


def _write_manifest(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_heldout_manifest_drops_combinations_seen_in_any_train_split(tmp_path: Path) -> None:
    train_a = _write_manifest(tmp_path / "a" / "manifest.jsonl", [
        _record("0", ["hen", "duck"], "train"), _record("1", ["kettle", "apple"], "test")])
    train_b = _write_manifest(tmp_path / "b" / "manifest.jsonl", [_record("0", ["truck", "hen", "hen"], "train")])
    world = tmp_path / "other"
    _write_manifest(world / "manifest.jsonl", [
        _record("0", ["duck", "hen"], "test"),           # seen in a's train (order does not matter)
        _record("1", ["hen", "truck", "hen"], "test"),   # seen in b's train (repeats count)
        _record("2", ["hen", "truck"], "test"),          # a different multiset: unseen
        _record("3", ["kettle", "apple"], "test"),       # only in a's test split: unseen by training
        _record("4", ["hen"], "test"),                    # single objects are always kept
        _record("5", ["apple", "duck"], "train"),        # not a test scene
    ])
    summary = heldout.write_heldout_manifest(world, [train_a, train_b], world / "heldout.jsonl")
    kept = heldout.read_records(world / "heldout.jsonl")
    assert [r["image"] for r in kept] == ["images/2.jpg", "images/3.jpg", "images/4.jpg"]
    assert summary["clips"] == 3 and summary["images"] == 3 and summary["train_combinations"] == 2


def test_heldout_manifest_must_sit_beside_the_world_media(tmp_path: Path) -> None:
    world = tmp_path / "other"
    _write_manifest(world / "manifest.jsonl", [_record("0", ["hen"], "test")])
    with pytest.raises(ValueError, match="world's folder"):
        heldout.write_heldout_manifest(world, [], tmp_path / "elsewhere.jsonl")

