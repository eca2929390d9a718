"""Build the whole stamp-scenes world: plan, render images and speech in a process pool, write the manifest."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import splits
from .backgrounds import list_backgrounds
from .compose import save_scene
from .objects import STAMPS_ROOT, StampObject, discover_objects, select_objects
from .scenes import ScenePlan, plan_singles, plan_world
from .voices import Voice, all_voices, filter_voices, installed, synthesize, voice_pools

MANIFEST = "manifest.jsonl"
WORLD = "world.json"


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides the world's content (plus jobs, which only decides speed)."""

    out: Path
    seed: int = 0
    scenes: int = 3000
    objects: int | None = None
    object_seed: int = 0
    captions_per_image: int = 2
    size: int = 224
    jobs: int = 2
    voices: tuple[str, ...] = ()
    train_voices: int = 1
    single_share: float | None = None  # share of single-object scenes (default: scenes.INSTANCE_WEIGHTS)
    wide_voices: bool = False  # espeak's named variants too, and a speaking rate and pitch per clip
    singles: bool = False  # one single-object test scene per object instead (scenes is ignored)
    fractions: tuple[float, float, float] = splits.DEFAULT_FRACTIONS


@dataclass
class SceneTiming:
    """Seconds one worker spent on a scene's image and on each clip, by engine."""

    image_s: float = 0.0
    tts_s: list[tuple[str, float]] = field(default_factory=list)


def render_task(args: tuple[ScenePlan, int, str, dict[str, Voice]]) -> SceneTiming:
    """Worker: write one scene's JPEG and its spoken captions, skipping files an earlier run finished.

    Every file is written under a temporary name and renamed, so one that exists is complete.
    """
    plan, size, out, voices = args
    timing, t0 = SceneTiming(), time.perf_counter()
    if not (Path(out) / plan.image).exists():
        save_scene(plan, size, Path(out))
    timing.image_s = time.perf_counter() - t0
    for clip in plan.clips:
        if (Path(out) / clip.audio).exists():
            continue
        voice, t0 = voices[clip.voice], time.perf_counter()
        synthesize(voice, clip.text, Path(out) / clip.audio, clip.rate, clip.pitch)
        timing.tts_s.append((voice.engine, time.perf_counter() - t0))
    return timing


def manifest_lines(plans: list[ScenePlan]) -> list[dict]:
    """One manifest record per spoken caption, in scene then caption order."""
    return [
        {"image": p.image, "audio": c.audio, "text": c.text, "voice": c.voice, "split": p.split,
         "objects": p.object_ids, "background": p.background.id, **_prosody_fields(c)}
        for p in plans for c in p.clips
    ]


def _prosody_fields(clip) -> dict:
    """rate / pitch of a clip, only when it has them (older worlds' manifests stay as they were)."""
    return {"rate": clip.rate, "pitch": clip.pitch} if clip.rate != 1.0 or clip.pitch else {}


def write_manifest(plans: list[ScenePlan], out: Path) -> Path:
    """Write manifest.jsonl (one JSON object per line) and return its path."""
    path = out / MANIFEST
    with path.open("w", encoding="utf-8") as f:
        for rec in manifest_lines(plans):
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def _counts(plans: list[ScenePlan]) -> dict:
    """Scene, clip, instance-count and combination statistics per split."""
    out: dict = {s: {"scenes": 0, "clips": 0, "instances_per_scene": Counter(), "combinations": set()} for s in splits.SPLITS}
    for p in plans:
        c = out[p.split]
        c["scenes"] += 1
        c["clips"] += len(p.clips)
        c["instances_per_scene"][len(p.placements)] += 1
        if len(p.placements) > 1:
            c["combinations"].add(splits.combo_key(p.object_ids))
    for c in out.values():
        c["instances_per_scene"] = dict(sorted(c["instances_per_scene"].items()))
        c["combinations"] = len(c["combinations"])
    return out


def world_record(cfg: BuildConfig, objs: list[StampObject], plans: list[ScenePlan], voices: list[Voice]) -> dict:
    """The world.json content: seed, config, objects, backgrounds, voices per split, counts."""
    used_bgs = {p.background.id: p.background for p in plans}
    voices_used: dict[str, set[str]] = defaultdict(set)
    for p in plans:
        voices_used[p.split].update(c.voice for c in p.clips)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k not in ("out", "jobs")}
    return {
        "seed": cfg.seed, "config": config, "stamps_root": str(STAMPS_ROOT),
        "objects": [asdict(o) for o in objs],
        "backgrounds": [{"id": b.id, "kind": b.kind, "source": b.source, "phrase": b.phrase} for b in sorted(used_bgs.values(), key=lambda b: b.id)],
        "voice_pools": {s: [v.id for v in vs] for s, vs in voice_pools(voices).items()},
        "voices_used": {s: sorted(voices_used[s]) for s in splits.SPLITS},
        "counts": _counts(plans),
    }


def prepare(cfg: BuildConfig) -> tuple[list[StampObject], list[Voice], list[ScenePlan]]:
    """Objects, voices and scene plans for a config, without writing anything."""
    if cfg.train_voices < 1:
        raise ValueError("--train-voices must be at least 1")
    objs = select_objects(discover_objects(), cfg.objects, cfg.object_seed)
    voices = installed(filter_voices(all_voices(cfg.wide_voices), list(cfg.voices)))
    pools = voice_pools(voices)
    if not pools["train"] or not pools["test"]:
        raise ValueError("need both train and held-out voices (check --voices and that espeak-ng/flite/festival and sox are installed)")
    if cfg.singles:
        return objs, voices, plan_singles(objs, list_backgrounds(), voices, cfg.captions_per_image, cfg.seed,
                                          cfg.wide_voices)
    plans = plan_world(objs, list_backgrounds(), voices, cfg.scenes, cfg.captions_per_image, cfg.seed, cfg.fractions,
                       cfg.train_voices, cfg.single_share, cfg.wide_voices)
    return objs, voices, plans


def _run_tasks(tasks: list, jobs: int, log: Callable[[str], None]) -> list[SceneTiming]:
    """Run render tasks inline or in a process pool, logging progress about every 5%."""
    step, done, out = max(1, len(tasks) // 20), 0, []
    if jobs <= 1:
        results = map(render_task, tasks)
    else:
        pool = ProcessPoolExecutor(max_workers=jobs)
        results = pool.map(render_task, tasks, chunksize=4)
    for timing in results:
        out.append(timing)
        done += 1
        if done % step == 0 or done == len(tasks):
            log(f"rendered {done}/{len(tasks)} scenes")
    if jobs > 1:
        pool.shutdown()
    return out


def _timing_summary(timings: list[SceneTiming], wall: float) -> dict:
    """Mean seconds per scene image and per clip by engine, plus wall time."""
    by_engine: dict[str, list[float]] = defaultdict(list)
    for t in timings:
        for engine, secs in t.tts_s:
            by_engine[engine].append(secs)
    return {
        "wall_s": round(wall, 2),
        "wall_s_per_scene": round(wall / max(1, len(timings)), 4),
        "image_s_per_scene": round(sum(t.image_s for t in timings) / max(1, len(timings)), 4),
        "tts_s_per_clip": {e: round(sum(v) / len(v), 4) for e, v in sorted(by_engine.items())},
    }


def build(cfg: BuildConfig, log: Callable[[str], None] = lambda _msg: None) -> dict:
    """Build the world into cfg.out and return a summary (counts and timings)."""
    t0 = time.perf_counter()
    objs, voices, plans = prepare(cfg)
    log(f"planned {len(plans)} scenes with {len(objs)} objects and {len(voices)} voices")
    for sub in ("images", "audio"):
        (cfg.out / sub).mkdir(parents=True, exist_ok=True)
    by_id = {v.id: v for v in voices}
    timings = _run_tasks([(p, cfg.size, str(cfg.out), by_id) for p in plans], cfg.jobs, log)
    write_manifest(plans, cfg.out)
    world = world_record(cfg, objs, plans, voices)
    (cfg.out / WORLD).write_text(json.dumps(world, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    counts = {s: {"scenes": c["scenes"], "clips": c["clips"]} for s, c in world["counts"].items()}
    return {"out": str(cfg.out), "objects": len(objs), "counts": counts, **_timing_summary(timings, time.perf_counter() - t0)}
