"""A second held-out set from another world: its test scenes whose combination no training world shows.

A world built with another seed draws its own splits, so its test split may repeat object
combinations that the training world put in train. Keeping only the scenes whose multi-object
combination is absent from every given train split restores the rule of the training world's own
test split (single-object scenes stay: every object is seen in train by design), which gives a
held-out set many times larger than one world's test split, for measurements with less noise.
"""

from __future__ import annotations

import json
from pathlib import Path

from .splits import combo_key


def read_records(manifest: Path) -> list[dict]:
    """The JSON records of a manifest.jsonl, in order."""
    return [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]


def train_combinations(records: list[dict]) -> set[tuple[str, ...]]:
    """Object combinations of the train records."""
    return {combo_key(r["objects"]) for r in records if r["split"] == "train"}


def unseen_test_records(records: list[dict], seen: set[tuple[str, ...]]) -> list[dict]:
    """Test records whose scene is a single object or a combination outside `seen`."""
    return [r for r in records
            if r["split"] == "test" and (len(r["objects"]) == 1 or combo_key(r["objects"]) not in seen)]


def write_heldout_manifest(world: Path, train_manifests: list[Path], out: Path) -> dict:
    """Write the held-out records of `world` to `out` (in the world's folder, so paths stay valid)."""
    if out.resolve().parent != world.resolve():
        raise ValueError("the held-out manifest must sit in the world's folder, beside its images/ and audio/")
    seen = set().union(*(train_combinations(read_records(m)) for m in train_manifests))
    kept = unseen_test_records(read_records(world / "manifest.jsonl"), seen)
    out.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    return {"out": str(out), "clips": len(kept), "images": len({r["image"] for r in kept}),
            "train_combinations": len(seen)}
