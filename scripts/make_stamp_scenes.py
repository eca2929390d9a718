#!/usr/bin/env python3
"""Build the stamp-scenes world: composited photos of tuxpaint stamp objects paired with spoken captions.

Example:
    python scripts/make_stamp_scenes.py --out data/stampscenes --seed 0 --scenes 3000 --objects 40

Progress goes to stderr; the last line on stdout is a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stampscenes.build import BuildConfig, build  # installed by scripts/setup.sh --dev (pip install -e scripts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder (images/, audio/, manifest.jsonl, world.json)")
    ap.add_argument("--seed", type=int, default=0, help="world seed: scenes, captions, splits and voices")
    ap.add_argument("--scenes", type=int, default=3000, help="number of images")
    ap.add_argument("--objects", type=int, default=None, help="use a fixed subset of N objects (default: all usable photo stamps)")
    ap.add_argument("--object-seed", type=int, default=0, help="which subset --objects picks; independent of --seed so worlds share a vocabulary")
    ap.add_argument("--captions-per-image", type=int, default=2, help="spoken captions per image")
    ap.add_argument("--size", type=int, default=224, help="square image side in pixels")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes for rendering and speech synthesis")
    ap.add_argument("--voices", nargs="*", default=[], help="restrict voices: engine names or id globs, e.g. espeak flite 'festival:kal*'")
    ap.add_argument("--train-voices", type=int, default=1, help="voices speaking each train caption (dev/test keep one)")
    ap.add_argument("--single-share", type=float, default=None, help="share of single-object scenes (default 0.35)")
    ap.add_argument("--wide-voices", action="store_true",
                    help="espeak's named variants as voices too, and a random speaking rate and pitch per clip")
    ap.add_argument("--singles", action="store_true",
                    help="a single-object gallery: one test scene per object, spoken by held-out voices")
    ap.add_argument("--fractions", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "DEV", "TEST"), help="split fractions")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the build and print its summary as JSON."""
    a = parse_args(argv)
    cfg = BuildConfig(
        out=a.out, seed=a.seed, scenes=a.scenes, objects=a.objects, object_seed=a.object_seed,
        captions_per_image=a.captions_per_image, size=a.size, jobs=a.jobs, voices=tuple(a.voices),
        train_voices=a.train_voices, fractions=tuple(a.fractions), single_share=a.single_share,
        wide_voices=a.wide_voices, singles=a.singles,
    )
    try:
        summary = build(cfg, log=lambda msg: print(f"[stampscenes] {msg}", file=sys.stderr, flush=True))
    except ValueError as err:  # a configuration the world cannot be built from
        print(f"make_stamp_scenes: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
