#!/usr/bin/env python3
"""How much a bundle's learned speech recall drops when the test clips arrive as real recordings do.

Each condition rebuilds every test clip deterministically and scores speech -> image and
image -> speech recall against the same images:
  clean      the clips as synthesised;
  opus24     after a 24 kb/s Opus round trip (what a browser's MediaRecorder sends);
  reverb     in a synthetic room (RT60 0.5 s, direct path 3 dB over the reverberant tail);
  reverb+opus24  both, in that order (a room, then the browser).

Example:
    .venv/bin/python scripts/eval_robustness.py data/ss-all-s0-6000/manifest.jsonl --bundle stamp-scenes-small --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from searchengine.bundles.bundle import load_bundle
from searchengine.media import encode_audio, load_audio
from searchengine.training.data import load_images, load_waves, read_manifest, split_data
from searchengine.training.evaluate import both_ways
from searchengine.training.robust import room_impulse_response, convolve, match_peak

CONDITIONS = ("clean", "opus24", "reverb", "reverb+opus24")
RT60_S, DIRECT_RATIO_DB = 0.5, 3.0


def opus24(wave: np.ndarray) -> np.ndarray:
    """The clip after a 24 kb/s Opus encode and decode, at its own length."""
    decoded = load_audio(encode_audio(wave, "opus", 24000)).samples
    out = np.zeros_like(wave)
    out[: min(len(wave), len(decoded))] = decoded[: len(wave)]
    return out


def reverb(wave: np.ndarray, index: int) -> np.ndarray:
    """The clip in a fixed-size room whose tail is drawn from the clip's index (repeatable)."""
    rir = room_impulse_response(torch.Generator().manual_seed(index), RT60_S, DIRECT_RATIO_DB)
    dry = torch.from_numpy(np.asarray(wave, np.float32))
    return match_peak(convolve(dry, rir), dry).numpy()


def transformed(waves: list[np.ndarray], condition: str) -> list[np.ndarray]:
    """Every clip under one condition."""
    out = list(waves)
    if "reverb" in condition:
        out = [reverb(w, i) for i, w in enumerate(out)]
    if "opus24" in condition:
        out = [opus24(w) for w in out]
    return out


def evaluate(manifest: str, bundle_name: str, split: str, device: str | None) -> dict:
    """R@1/5/10 both ways per condition, and each condition's R@1 drop from clean."""
    bundle = load_bundle(bundle_name, device=device)
    data = split_data(read_manifest(manifest), split)
    image_vecs = bundle.encode_images(load_images(data.images))
    waves = load_waves([p.audio for p in data.pairs])
    report: dict = {"bundle": bundle_name, "split": split, "pairs": len(data.pairs), "images": len(data.images),
                    "conditions": {}}
    for condition in CONDITIONS:
        began = time.perf_counter()
        vecs = bundle.encode_speech(transformed(waves, condition))[0]
        s2i, i2s = both_ways(vecs, image_vecs, data.image_of)
        report["conditions"][condition] = {"speech_to_image": s2i, "image_to_speech": i2s,
                                           "seconds": round(time.perf_counter() - began, 1)}
    clean = report["conditions"]["clean"]
    report["drop_R@1"] = {c: {d: round(clean[d]["R@1"] - v[d]["R@1"], 4) for d in ("speech_to_image", "image_to_speech")}
                          for c, v in report["conditions"].items() if c != "clean"}
    return report


def table(report: dict) -> str:
    """One row per condition: R@1 / R@5 both ways and the R@1 drop."""
    rows = [f"{report['bundle']} on {report['split']}: {report['pairs']} clips, {report['images']} images",
            f"{'condition':15} {'s->i R@1':>9} {'R@5':>6} {'i->s R@1':>9} {'R@5':>6} {'drop s->i':>10} {'drop i->s':>10}"]
    for name, c in report["conditions"].items():
        drop = report["drop_R@1"].get(name, {"speech_to_image": 0.0, "image_to_speech": 0.0})
        rows.append(f"{name:15} {c['speech_to_image']['R@1']:9.3f} {c['speech_to_image']['R@5']:6.3f} "
                    f"{c['image_to_speech']['R@1']:9.3f} {c['image_to_speech']['R@5']:6.3f} "
                    f"{drop['speech_to_image']:10.3f} {drop['image_to_speech']:10.3f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest")
    ap.add_argument("--bundle", default="stamp-scenes-small")
    ap.add_argument("--split", default="test", choices=("train", "dev", "test"))
    ap.add_argument("--device", default=None)
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    a = ap.parse_args(argv)
    report = evaluate(a.manifest, a.bundle, a.split, a.device)
    print(json.dumps(report, indent=1) if a.json else table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
