"""What int8 (and bf16) cost and buy on the CPU: recall on a test split, cosine to fp32, encoder speed side by side.

    python scripts/bench_precision.py data/ss-s0-6000-test/manifest.jsonl [--bundle stamp-scenes-small]
                                      [--precisions fp32,int8] [--runs 20] [--threads 1]

For each precision, the bundle's vectors of the split (images, captions as text, spoken captions) give
Recall@1/5/10 the way `searchengine eval` counts it (speech → image, image → speech, text → image), and their
cosine to the fp32 vectors of the same inputs. Speed: one 3-second clip through the speech encoder, one typed
query through the text tower, and a batch of 32 prepared images through the image tower, in milliseconds
(p50 of --runs), with the precisions taking turns call by call so both see the same machine load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from searchengine import threads

threads.prepare_environment()

import numpy as np
import torch

from searchengine.bundles.bundle import load_bundle
from searchengine.training.data import (
    load_images,
    load_waves,
    read_manifest,
    split_data,
)
from searchengine.training.evaluate import both_ways


def vectors(bundle, data, images, waves) -> dict[str, np.ndarray]:
    """The split's image, text and speech vectors at this bundle's precision."""
    side = bundle.image_size
    pixels = np.stack([bundle.prepare_image(img) for img in images]) if side else None
    return {"image": np.concatenate([bundle.encode_pixels(pixels[i:i + 64]) for i in range(0, len(pixels), 64)]),
            "text": bundle.encode_texts(data.texts), "speech": bundle.encode_speech(waves)[0]}


def recall(vecs: dict[str, np.ndarray], data) -> dict:
    s2i, i2s = both_ways(vecs["speech"], vecs["image"], data.image_of)
    t2i, _ = both_ways(vecs["text"], vecs["image"], data.image_of)
    return {"speech_to_image": s2i, "image_to_speech": i2s, "text_to_image": t2i}


def cosines(vecs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict:
    """Per modality: mean and minimum cosine between these vectors and the fp32 ones."""
    out = {}
    for key, mine in vecs.items():
        cos = np.sum(mine * reference[key], axis=1)
        out[key] = {"mean": round(float(cos.mean()), 4), "min": round(float(cos.min()), 4)}
    return out


def interleaved_ms(calls: dict[str, callable], runs: int) -> dict[str, float]:
    """p50 milliseconds of each call, the calls taking turns (one warm-up each)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for fn in calls.values():
        fn()
    for _ in range(runs):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: round(statistics.median(t), 2) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--bundle", default="stamp-scenes-small")
    parser.add_argument("--split", default="test")
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads while timing (1: the query policy)")
    args = parser.parse_args(argv)
    data = split_data(read_manifest(args.manifest), args.split)
    images, waves = load_images(data.images), load_waves([p.audio for p in data.pairs])
    bundles = {p: load_bundle(args.bundle, device="cpu", precision=p) for p in args.precisions.split(",")}
    torch.set_num_threads(threads.available_cores())
    vecs = {p: vectors(b, data, images, waves) for p, b in bundles.items()}
    reference = vecs.get("fp32") or next(iter(vecs.values()))
    out = {"bundle": args.bundle, "split": args.split, "pairs": len(data.pairs), "images": len(data.images),
           "quality": {p: {"recall": recall(v, data), "cosine_to_fp32": cosines(v, reference)} for p, v in vecs.items()}}
    torch.set_num_threads(args.threads)
    clip = np.pad(waves[0], (0, max(0, 48000 - waves[0].size)))[:48000]
    pixels = np.stack([bundles[next(iter(bundles))].prepare_image(img) for img in images[:32]])
    speed = {}
    for what, call in (("speech_3s_ms", lambda b: b.encode_speech([clip])), ("text_ms", lambda b: b.encode_texts(["a dog"])),
                       ("images_32_ms", lambda b: b.encode_pixels(pixels))):
        speed[what] = interleaved_ms({p: (lambda b=b, call=call: call(b)) for p, b in bundles.items()}, args.runs)
    out["speed"] = {"torch_threads": args.threads, **speed, "load": round(__import__("os").getloadavg()[0], 2)}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
