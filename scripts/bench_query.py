#!/usr/bin/env python3
"""Query latency of a bundle on this machine: a 3-second voice query end to end, and the encoder alone.

End to end = Index.search(audio=<wav file>): decode the file, embed it, search FAISS, join SQLite.
The index holds the images of one split of a stamp-scenes manifest.

Example:
    python scripts/bench_query.py data/stamp-scenes/manifest.jsonl --bundle stamp-scenes-small --runs 20

Prints one JSON object with the p50 / p90 / mean milliseconds of each measurement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from searchengine.types import SAMPLE_RATE


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest", type=Path, help="manifest.jsonl whose split's images are indexed and clips queried")
    ap.add_argument("--bundle", default="stamp-scenes-small", help="bundle name or folder")
    ap.add_argument("--split", default="test")
    ap.add_argument("--runs", type=int, default=20, help="timed repetitions of each measurement")
    ap.add_argument("--seconds", type=float, default=3.0, help="query length: a test clip padded or cut to this")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cascade", action="store_true", help="also time the Whisper cascade's encoder")
    return ap.parse_args(argv)


def timed(fn, runs: int) -> dict:
    """Milliseconds of `runs` calls after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return {"p50_ms": round(statistics.median(times), 1), "p90_ms": round(float(np.percentile(times, 90)), 1),
            "mean_ms": round(statistics.fmean(times), 1), "runs": runs}


def query_clip(manifest: Path, split: str, seconds: float, out: Path) -> Path:
    """The split's first spoken caption, zero-padded or cut to `seconds`, written as a 16-bit WAV."""
    import wave

    from searchengine.media import load_audio
    from searchengine.training.data import read_manifest, split_data

    pair = split_data(read_manifest(manifest), split).pairs[0]
    samples = load_audio(pair.audio).samples
    target = int(seconds * SAMPLE_RATE)
    samples = np.pad(samples, (0, max(0, target - samples.size)))[:target]
    with wave.open(str(out), "wb") as handle:
        handle.setnchannels(1), handle.setsampwidth(2), handle.setframerate(SAMPLE_RATE)
        handle.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out


def main(argv: list[str] | None = None) -> int:
    """Index the split's images, then time the queries."""
    import torch

    from searchengine.bundles.bundle import load_bundle
    from searchengine.index import open_index
    from searchengine.media import load_audio
    from searchengine.training.data import read_manifest, split_data

    a = parse_args(argv)
    data = split_data(read_manifest(a.manifest), a.split)
    bundle = load_bundle(a.bundle, device=a.device)
    with tempfile.TemporaryDirectory() as tmp:
        wav = query_clip(a.manifest, a.split, a.seconds, Path(tmp) / "query.wav")
        samples = load_audio(wav).samples
        with open_index(Path(tmp) / "index", bundle, device=a.device) as idx:
            idx.index(data.images)
            result = {"bundle": a.bundle, "device": a.device, "torch_threads": torch.get_num_threads(),
                      "indexed_images": len(data.images), "query_seconds": a.seconds,
                      "end_to_end_search_audio": timed(lambda: idx.search(audio=wav, kind="image", k=10), a.runs),
                      "speech_encoder_only": timed(lambda: bundle.encode_speech([samples]), a.runs),
                      "text_query_end_to_end": timed(lambda: idx.search(text="a red apple", kind="image", k=10), a.runs)}
        if a.cascade:
            cascade = bundle.cascade()
            result["cascade_encoder_only"] = timed(lambda: cascade.encode([samples]), a.runs)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
