#!/usr/bin/env python3
"""Write a held-out manifest: a second world's test scenes whose object combination no training world shows.

Example (the larger held-out set of docs/BENCHMARKS.md):
    python scripts/make_stamp_scenes.py --out data/ss-s1-2500 --seed 1 --scenes 2500 --objects 40 \\
        --size 128 --fractions 0.1 0 0.9 --jobs 2
    python scripts/make_heldout_manifest.py data/ss-s1-2500 --train data/ss-s0-18000/manifest.jsonl
    searchengine eval data/ss-s1-2500/heldout.jsonl --split test --no-cascade --json

The last line on stdout is a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stampscenes.heldout import write_heldout_manifest  # installed by scripts/setup.sh --dev (pip install -e scripts)


def main(argv: list[str] | None = None) -> int:
    """Parse options, write the manifest, print the summary."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("world", type=Path, help="folder of the other world (its manifest.jsonl is read)")
    ap.add_argument("--train", type=Path, nargs="+", required=True, help="manifests whose train splits the model saw")
    ap.add_argument("--name", default="heldout.jsonl", help="file name of the new manifest inside WORLD")
    args = ap.parse_args(argv)
    print(json.dumps(write_heldout_manifest(args.world, args.train, args.world / args.name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
