"""Indexing throughput side by side: end to end against decode alone and the model alone, per image tower.

    python scripts/bench_throughput.py [--photos /tmp/bench-photos] [--count 300] [--towers bundled,vitb32]
                                       [--precisions fp32,int8] [--json-out FILE]

For each tower (the bundled model, and a ViT-B-32 with random weights: open_clip's config, same FLOPs as
the real one) and precision, in one process and one after the other:
- model_only: pre-batched float32 tensors [32, 3, S, S] through the tower (encode_pixels), once with the
  index run's torch threads (searchengine/threads.py) and once with every core;
- decode_only: the pipeline's decode workers (JPEG draft decoding, reduce, the tower's exact resize, crop
  and normalisation) over the folder, no model;
- end_to_end: a fresh index of the folder through the library (walk, hash, decode, encode, SQLite, FAISS),
  model loading excluded.
Photos: scripts/bench_photos.py (Debian's wallpapers as full-resolution JPEGs). The load average before and
after each measurement is printed: other work on the machine slows every figure, ratios less so.

--today-rounds N: also "today against now" end to end, in fresh processes taking turns (today, now, today,
now, ...): "today" replays the previous pipeline (images preprocessed on the main thread inside the encode
step, 4 decode workers, torch on every core, OpenMP's default spinning waits) through the same library.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from searchengine import threads

LEGACY = "--legacy" in sys.argv  # replay the previous pipeline (see the module doc)
if not LEGACY:
    threads.prepare_environment()  # as the CLI does, before torch and FAISS load

import numpy as np
import torch
from bench_photos import make_photo_folder

from searchengine import open_index
from searchengine.bundles.bundle import load_bundle

VIT_DIR = Path(tempfile.gettempdir()) / "searchengine-bench-vitb32"


def vit_b32_bundle(directory: Path = VIT_DIR) -> Path:
    """A bundle folder holding open_clip's ViT-B-32 with random weights (and a tiny speech encoder)."""
    if (directory / "bundle.json").exists():
        return directory
    import open_clip

    from searchengine.bundles import clip
    from searchengine.bundles.bundle import save_bundle_dir
    from searchengine.bundles.speech import LearnedSpeechEncoder, SpeechEncoderConfig

    torch.manual_seed(0)
    cfg = open_clip.get_model_config("ViT-B-32")
    towers = clip.build_custom(cfg, "cpu")
    speech = LearnedSpeechEncoder(SpeechEncoderConfig(frontend=None, embed_dim=cfg["embed_dim"], width=32,
                                                      layers=1, heads=2))
    return save_bundle_dir(directory, "vitb32-random", cfg, towers, speech, half=False)


def load_note() -> float:
    """The 1-minute load average (other processes' work shows here)."""
    return round(os.getloadavg()[0], 2)


def model_only(bundle, images: int, torch_threads: int, batch: int = 32) -> float:
    """Images a second through the tower alone, on pre-batched tensors."""
    saved = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        pixels = np.random.default_rng(0).standard_normal((batch, 3, bundle.image_size, bundle.image_size),
                                                          dtype=np.float32)
        bundle.encode_pixels(pixels)  # warm-up
        rounds = max(1, images // batch)
        start = time.perf_counter()
        for _ in range(rounds):
            bundle.encode_pixels(pixels)
        return round(rounds * batch / (time.perf_counter() - start), 1)
    finally:
        torch.set_num_threads(saved)


def decode_only(bundle, photos: list[Path], workers: int) -> float:
    """Images a second through the pipeline's decode step (decode + the tower's preprocessing), no model."""
    from concurrent.futures import ThreadPoolExecutor

    from indexer.pipeline import decode
    from indexer.walk import Candidate
    from searchengine.types import Kind

    def one(path: Path):
        return decode("", [Candidate(str(path), Kind.IMAGE, 0, 0)], bundle.image_size, prepare=bundle.prepare_image)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(one, photos):
            pass
    return round(len(photos) / (time.perf_counter() - start), 1)


def end_to_end(bundle_ref: str, folder: Path, precision: str) -> dict:
    """A fresh index of `folder`: images a second, model loading excluded."""
    with tempfile.TemporaryDirectory() as tmp, open_index(Path(tmp), bundle_ref, precision=precision) as idx:
        _ = idx.bundle  # load before the clock starts
        start = time.perf_counter()
        report = idx.index([folder])
        seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "images_per_s": round(report.embedded / seconds, 1),
            "embedded": report.embedded}


def legacy_pipeline(bundle) -> None:
    """Make this process's index runs behave as before: PIL images to the encoder, 4 workers, torch on every core."""
    from contextlib import nullcontext

    from indexer import pipeline

    cores = threads.available_cores()
    plan = threads.ThreadPlan("index", cores, torch=cores, faiss=cores, decode=min(4, cores))
    pipeline.thread_role = lambda *_args, **_kw: nullcontext(plan)
    bundle.prepare_image = None  # decode() then hands over the PIL image, and encode_images preprocesses it


def one_run(ref: str, folder: Path, legacy: bool) -> dict:
    """One end-to-end run in this process (the child side of --today-rounds)."""
    bundle = load_bundle(ref, device="cpu")
    if legacy:
        legacy_pipeline(bundle)
    with tempfile.TemporaryDirectory() as tmp, open_index(Path(tmp), bundle) as idx:
        start = time.perf_counter()
        report = idx.index([folder])
        seconds = time.perf_counter() - start
    return {"legacy": legacy, "seconds": round(seconds, 2), "images_per_s": round(report.embedded / seconds, 1),
            "load": load_note()}


def today_against_now(ref: str, folder: Path, rounds: int) -> dict:
    """End-to-end images/s of the previous pipeline and this one, in fresh processes taking turns."""
    import subprocess

    runs: dict[str, list[float]] = {"today": [], "now": []}
    for _ in range(rounds):
        for label, flags in (("today", ["--legacy"]), ("now", [])):
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
            child = subprocess.run([sys.executable, __file__, "--one-run", ref, "--photos", str(folder), *flags],
                                   capture_output=True, text=True, env=env, check=True)
            runs[label].append(json.loads(child.stdout.strip().splitlines()[-1])["images_per_s"])
    today, now = statistics.median(runs["today"]), statistics.median(runs["now"])
    return {"runs": runs, "today_median": today, "now_median": now, "speedup": round(now / today, 2)}


def measure(name: str, ref: str, photos: list[Path], folder: Path, precision: str) -> dict:
    """Every figure of one tower at one precision."""
    plan = threads.plan_for("index")
    bundle = load_bundle(ref, device="cpu", precision=precision)
    sample = 256 if bundle.image_size <= 128 else 64
    out = {"tower": name, "precision": precision, "plan": plan.to_dict(), "load_before": load_note()}
    out["model_only_index_threads"] = model_only(bundle, sample, plan.torch)
    out["model_only_all_cores"] = model_only(bundle, sample, plan.budget)
    out["decode_only"] = decode_only(bundle, photos, plan.decode)
    out["end_to_end"] = end_to_end(ref, folder, precision)
    rate = out["end_to_end"]["images_per_s"]
    out["e2e_over_model_only"] = round(rate / out["model_only_all_cores"], 3)
    out["e2e_over_decode_only"] = round(rate / out["decode_only"], 3)
    out["load_after"] = load_note()
    print(json.dumps(out), file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path(tempfile.gettempdir()) / "searchengine-bench-photos")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--towers", default="bundled,vitb32")
    parser.add_argument("--precisions", default="fp32")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--today-rounds", type=int, default=0)
    parser.add_argument("--one-run", metavar="BUNDLE", help=argparse.SUPPRESS)
    parser.add_argument("--legacy", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_run:
        print(json.dumps(one_run(args.one_run, args.photos, args.legacy)))
        return 0
    photos = make_photo_folder(args.photos, args.count)
    refs = {"bundled": "stamp-scenes-small", "vitb32": None}
    results = []
    for name in args.towers.split(","):
        ref = refs[name] or str(vit_b32_bundle())
        for precision in args.precisions.split(","):
            results.append(measure(name, ref, photos, args.photos, precision))
    summary = {"cores": threads.available_cores(), "photos": len(photos), "results": results}
    if args.today_rounds:
        summary["today_against_now"] = {name: today_against_now(refs[name] or str(vit_b32_bundle()), args.photos,
                                                                args.today_rounds)
                                        for name in args.towers.split(",")}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
