#!/usr/bin/env python3
"""Calibrated scores on the shipped bundle's test split: the --min-score threshold and mixed-kind ranking.

Builds (once) the test split of the world the shipped bundle was trained on, without its train
and dev scenes, indexes its 299 photos and 598 spoken captions in one index, and asks:

- real queries: each true caption typed (text -> image, and text -> any: its photo or one of its
  recordings) and each spoken caption (speech -> image); R@5 counts a query when an answer is among
  the first five hits *and* scores at least the threshold;
- nonsense queries: "asdkjh qwe" and random letter strings; one is answered when any hit passes;
- as a detector of "there is a good match" (kind any, the default): precision and recall of "the
  best hit passes", real text queries against the nonsense ones;
- mixed lists (kind any, text): the rank of the right photo when the scene's own recordings are left
  out of the list, and of the right recording when its photo is, ranked by raw cosine and by
  calibrated score.

Example:
    python scripts/bench_min_score.py --world data/ss-s0-6000-test

Prints Markdown tables, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import string
import sys
from pathlib import Path


THRESHOLDS = (None, -1.0, -0.5, -0.3, 0.0, 0.3, 0.5, 1.0)
FIXED_NONSENSE = ("asdkjh qwe", "qwerty uiop", "zxcv bnm", "lorem ipsum dolor", "xkcd fhqwhgads", "aaaa bbbb")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, default=Path("data/ss-s0-6000-test"),
                    help="folder of the test split (built here when it has no manifest.jsonl yet)")
    ap.add_argument("--bundle", default="stamp-scenes-small")
    ap.add_argument("--nonsense", type=int, default=300, help="random letter-string queries besides the fixed ones")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes for building the split")
    ap.add_argument("--device", default="cpu")
    return ap.parse_args(argv)


def build_test_split(out: Path, jobs: int) -> None:
    """Render only the test scenes of the shipped bundle's world (docs/BENCHMARKS.md: seed 0, 6000 scenes)."""
    from stampscenes.build import BuildConfig, _run_tasks, prepare, write_manifest

    cfg = BuildConfig(out=out, seed=0, scenes=6000, objects=40, size=128, jobs=jobs, fractions=(0.9, 0.05, 0.05))
    _objs, voices, plans = prepare(cfg)
    test = [p for p in plans if p.split == "test"]
    for sub in ("images", "audio"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    by_id = {v.id: v for v in voices}
    _run_tasks([(p, cfg.size, str(out), by_id) for p in test], jobs, lambda msg: print(msg, file=sys.stderr))
    write_manifest(test, out)


def nonsense_queries(count: int, seed: int = 0) -> list[str]:
    """The fixed nonsense strings and `count` random ones of 1-4 letter "words"."""
    rng = random.Random(seed)
    made = [" ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 8)))
                     for _ in range(rng.randint(1, 4))) for _ in range(count)]
    return list(FIXED_NONSENSE) + made


def ranked(idx, kind: str, k: int, **query) -> list:
    """Hits of one query with no threshold."""
    return list(idx.search(**query, kind=kind, k=k))


def recall_at_5(runs: list[tuple[list, str | set[str]]], threshold: float) -> float:
    """Share of queries with a wanted path in the first five hits with a score >= threshold."""
    found = sum(any(h.path in ({want} if isinstance(want, str) else want) and h.score >= threshold for h in hits[:5])
                for hits, want in runs)
    return found / len(runs)


def answered(runs: list[list], threshold: float) -> float:
    """Share of queries with at least one hit passing the threshold."""
    return sum(bool(hits) and hits[0].score >= threshold for hits in runs) / len(runs)


def mixed_rank(hits: list, want: set[str], hide: set[str], key) -> int:
    """1-based rank of the first wanted path in a list without `hide`, ordered by `key`; 99 when absent."""
    kept = sorted((h for h in hits if h.path not in hide), key=key, reverse=True)
    return next((rank for rank, h in enumerate(kept, 1) if h.path in want), 99)


def main(argv: list[str] | None = None) -> int:
    """Build, index, query, and print the tables."""
    a = parse_args(argv)
    if not (a.world / "manifest.jsonl").is_file():
        build_test_split(a.world, a.jobs)
    from searchengine import open_index

    records = [json.loads(line) for line in (a.world / "manifest.jsonl").read_text().splitlines()]
    path = {rel: str((a.world / rel).absolute()) for r in records for rel in (r["image"], r["audio"])}
    with open_index(a.world / "index", a.bundle, device=a.device) as idx:
        idx.index([a.world / "images", a.world / "audio"])
        text = [(ranked(idx, "image", 5, text=r["text"]), path[r["image"]]) for r in records]
        speech = [(ranked(idx, "image", 5, audio=path[r["audio"]]), path[r["image"]]) for r in records]
        nonsense = nonsense_queries(a.nonsense)
        junk = [ranked(idx, "image", 5, text=q) for q in nonsense]
        junk_any = [ranked(idx, "any", 5, text=q) for q in nonsense]
        mixed = [(r, ranked(idx, "any", 60, text=r["text"])) for r in records]
    clips_of: dict[str, set[str]] = {}
    for r in records:
        clips_of.setdefault(path[r["image"]], set()).add(path[r["audio"]])
    text_any = [(h, {path[r["image"]]} | clips_of[path[r["image"]]]) for r, h in mixed]
    rows = []
    for t in THRESHOLDS:
        t = -math.inf if t is None else t
        tp = sum(bool(h) and h[0].score >= t for h, _ in text_any)
        fp = sum(bool(h) and h[0].score >= t for h in junk_any)
        rows.append({"threshold": t, "text_r5": recall_at_5(text, t), "speech_r5": recall_at_5(speech, t),
                     "text_any_r5": recall_at_5(text_any, t), "nonsense_answered": answered(junk, t),
                     "nonsense_any_answered": answered(junk_any, t),
                     "asdkjh_answered": bool(junk_any[0] and junk_any[0][0].score >= t),
                     "precision": tp / max(1, tp + fp), "recall": tp / len(text_any)})
    image_answer = {name: [mixed_rank(h, {path[r["image"]]}, clips_of[path[r["image"]]], key) for r, h in mixed]
                    for name, key in (("cosine", lambda h: h.cosine), ("calibrated", lambda h: h.score))}
    audio_answer = {name: [mixed_rank(h, clips_of[path[r["image"]]], {path[r["image"]]}, key) for r, h in mixed]
                    for name, key in (("cosine", lambda h: h.cosine), ("calibrated", lambda h: h.score))}
    print_tables(rows, image_answer, audio_answer, len(text), len(junk))
    print(json.dumps({"thresholds": [{**r, "threshold": None if r["threshold"] == -math.inf else r["threshold"]}
                                     for r in rows], "queries": len(text), "nonsense": len(junk),
                      "mixed": {k: {"image_answer_r1": _share(v, 1), "image_answer_r5": _share(v, 5),
                                    "audio_answer_r1": _share(audio_answer[k], 1),
                                    "audio_answer_r5": _share(audio_answer[k], 5)} for k, v in image_answer.items()}}))
    return 0


def _share(ranks: list[int], k: int) -> float:
    return round(sum(r <= k for r in ranks) / len(ranks), 3)


def print_tables(rows: list[dict], image_answer: dict, audio_answer: dict, real: int, junk: int) -> None:
    """The two Markdown tables of docs/BENCHMARKS.md."""
    print(f"| --min-score | text → image R@5 | speech → image R@5 | text → any R@5 | nonsense answered, "
          f"image / any ({junk}) | \"asdkjh qwe\" answered (any) | precision / recall ({real} real text queries, "
          "any) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {'none' if r['threshold'] == -math.inf else format(r['threshold'], 'g')} | {r['text_r5']:.3f} | "
              f"{r['speech_r5']:.3f} | {r['text_any_r5']:.3f} | {r['nonsense_answered']:.3f} / "
              f"{r['nonsense_any_answered']:.3f} | {'yes' if r['asdkjh_answered'] else 'no'} | "
              f"{r['precision']:.3f} / {r['recall']:.3f} |")
    print()
    print("| ranked by | right photo R@1 / R@5 (its recordings left out) "
          "| right recording R@1 / R@5 (its photo left out) |")
    print("|---|---|---|")
    for name in ("cosine", "calibrated"):
        print(f"| {name} | {_share(image_answer[name], 1):.3f} / {_share(image_answer[name], 5):.3f} | "
              f"{_share(audio_answer[name], 1):.3f} / {_share(audio_answer[name], 5):.3f} |")


if __name__ == "__main__":
    raise SystemExit(main())
