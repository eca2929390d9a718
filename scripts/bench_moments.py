"""Long recordings as moments: one generated memo of 30-60 minutes, searched by the photos it describes.

    python scripts/bench_moments.py [--data data/ss-s0-6000-test] [--captions 100] [--bundle PATH|NAME]

The memo: spoken captions of stamp-scenes test images (the data set's own TTS recordings) at known
times, each after a pause of 6-20 s, with room noise throughout and unrelated speech (espeak-ng
sentences about nothing in the pictures) in about half of the pauses. It is indexed alone with the
bundle, then each caption's image searches the recordings (`moments=True`, k=5): is the moment
holding its caption the top hit / in the top 5, and does the top right moment start within 2 s of
the caption's true start. Also: indexing seconds per audio hour (voice-activity detection and
encoding), the share of it the voice-activity detector takes (timed alone in the same run), and the
load average (the machine may be shared). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

from searchengine import open_index
from searchengine.media import load_audio

RATE = 16_000
UNRELATED = ("Remember to call the dentist on Tuesday morning.", "The meeting moved to half past three.",
             "I think the train was late again today.", "We should order more paper for the printer.",
             "My password needs to be changed next week.", "The weather forecast said it might rain.",
             "Please send me the report before Friday.", "I left my keys somewhere in the kitchen.")


def read_manifest(data: Path, count: int, seed: int) -> list[dict]:
    """`count` captions of distinct test images, a fixed random draw."""
    records = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    by_image: dict[str, dict] = {}
    for record in np.random.default_rng(seed).permutation(records).tolist():
        by_image.setdefault(record["image"], record)
    return list(by_image.values())[:count]


def espeak(text: str, folder: Path, voice: str) -> np.ndarray:
    wav = folder / "unrelated.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True, capture_output=True)
    return load_audio(wav).samples


def build_memo(data: Path, captions: list[dict], folder: Path, seed: int) -> tuple[np.ndarray, list[dict]]:
    """The memo's samples and, per caption, its image and true [start, end]."""
    rng = np.random.default_rng(seed)
    pieces, truth, at = [], [], 0.0

    def add(samples: np.ndarray) -> None:
        nonlocal at
        pieces.append(samples.astype(np.float32))
        at += samples.size / RATE

    for record in captions:
        pause = rng.uniform(6, 20)
        if rng.random() < 0.5:  # someone says something else in the pause
            before = rng.uniform(2, pause / 2)
            other = espeak(UNRELATED[rng.integers(len(UNRELATED))], folder, rng.choice(["en", "en-us", "en+f3"]))
            add(np.zeros(int(before * RATE)))
            add(0.7 * other / max(1e-6, np.abs(other).max()))
            add(np.zeros(int(max(2.0, pause - before - other.size / RATE) * RATE)))
        else:
            add(np.zeros(int(pause * RATE)))
        said = load_audio(data / record["audio"]).samples
        truth.append({"image": str(data / record["image"]), "text": record["text"], "start": at,
                      "end": at + said.size / RATE})
        add(0.8 * said / max(1e-6, np.abs(said).max()))
    add(np.zeros(int(8 * RATE)))
    memo = np.concatenate(pieces)
    memo += (rng.standard_normal(memo.size) * 0.004).astype(np.float32)  # room noise throughout
    return memo, truth


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def overlaps(hit, caption: dict) -> bool:
    """Whether a hit's moment holds most of the caption."""
    inside = min(hit.end, caption["end"]) - max(hit.start, caption["start"])
    return inside >= 0.5 * (caption["end"] - caption["start"])


def score(idx, truth: list[dict]) -> dict:
    """Top-1 / top-5 of the right moment, and how many top right moments start within 2 s of the truth."""
    top1 = top5 = near = 0
    errors = []
    for caption in truth:
        hits = idx.search(image=caption["image"], kind="audio", k=5, moments=True).hits
        right = [i for i, hit in enumerate(hits) if overlaps(hit, caption)]
        top1 += bool(right and right[0] == 0)
        top5 += bool(right)
        if right:
            error = abs(hits[right[0]].start - caption["start"])
            errors.append(error)
            near += error <= 2.0
    n = len(truth)
    return {"top1": top1 / n, "top5": top5 / n, "start_within_2s": near / n,
            "median_start_error_s": float(np.median(errors)) if errors else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/ss-s0-6000-test"))
    parser.add_argument("--captions", type=int, default=100)
    parser.add_argument("--bundle", default="stamp-scenes-small")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "memos"
        folder.mkdir()
        memo, truth = build_memo(args.data, read_manifest(args.data, args.captions, args.seed), Path(tmp), args.seed)
        write_wav(folder / "memo.wav", memo)
        hours = memo.size / RATE / 3600
        with open_index(Path(tmp) / "index", args.bundle) as idx:
            idx.bundle  # models load before the clock starts
            from searchengine.moments import speech_regions

            speech_regions(memo[:RATE])  # and the voice-activity detector
            start = time.perf_counter()
            idx.index([folder], transcribe=False)
            seconds = time.perf_counter() - start
            moments = idx.status().vectors.get("moment", 0)
            found = score(idx, truth)
            start = time.perf_counter()
            speech_regions(memo)  # the detector alone, in the same run: its share of the indexing time
            vad_seconds = time.perf_counter() - start
    print(json.dumps({
        "memo_minutes": round(hours * 60, 1), "captions": len(truth), "moments": moments,
        **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in found.items()},
        "index_seconds": round(seconds, 1), "index_seconds_per_audio_hour": round(seconds / hours, 1),
        "times_realtime": round(hours * 3600 / seconds, 1), "vad_share_of_index_time": round(vad_seconds / seconds, 2),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "bundle": args.bundle, "cpus": os.cpu_count(), "machine": platform.machine(),
    }, indent=2))


if __name__ == "__main__":
    main()
