#!/usr/bin/env python3
"""Query latency of a bundle on this machine: a 3-second voice query end to end, and the encoder alone.

End to end = Index.search(audio=<wav file>): decode the file, embed it, search FAISS, join SQLite.
The index holds the images of one split of a stamp-scenes manifest.

Example:
    python scripts/bench_query.py data/stamp-scenes/manifest.jsonl --bundle stamp-scenes-small --runs 20

Prints one JSON object with the p50 / p90 / mean milliseconds of each measurement.

The process runs under the engine's query thread policy (searchengine/threads.py: one torch and one FAISS
thread a search), as `search` and `serve` do; --threads N gives it another budget.
--busy FOLDER: also time the voice query and the speech encoder while `searchengine index FOLDER --rebuild`
runs again and again in another process (its own index, its own thread policy), and report each against
the quiet figures, measured the same way just before.
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

from searchengine import threads
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
    ap.add_argument("--threads", default=None, help="thread budget (default: every core)")
    ap.add_argument("--busy", type=Path, help="a media folder indexed over and over beside the queries")
    ap.add_argument("--no-policy", action="store_true",
                    help="leave torch and FAISS at their own defaults (every core, spinning waits): the old behaviour")
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


def busy_figures(a: argparse.Namespace, tmp: Path, voice_query, encoder_only, quiet: dict) -> dict:
    """The voice query and the encoder alone while an index run writes beside them, against quiet."""
    import os
    import signal
    import subprocess

    cli = [sys.executable, "-m", "searchengine", "index", str(a.busy), "--index", str(tmp / "busy-index"),
           "--bundle", a.bundle, "--no-transcribe", "--rebuild", "--json"]
    loop = subprocess.Popen(["/bin/sh", "-c", 'while true; do "$@" >/dev/null 2>&1; done', "sh", *cli],
                            start_new_session=True)
    try:
        time.sleep(15)  # the run has loaded its model and is decoding and writing
        out = interleaved(voice_query, encoder_only, a.runs)
    finally:
        os.killpg(loop.pid, signal.SIGTERM)
        loop.wait()
    out["voice_busy_over_quiet"] = round(out["voice_p50_ms"] / quiet["interleaved"]["voice_p50_ms"], 2)
    return out


def interleaved(voice_query, encoder_only, runs: int) -> dict:
    """p50 ms of the voice query and of the encoder alone, taking turns call by call (the same load for both)."""
    voice, encoder = [], []
    voice_query(), encoder_only()
    for _ in range(runs):
        for fn, times in ((voice_query, voice), (encoder_only, encoder)):
            start = time.perf_counter()
            fn()
            times.append(1000 * (time.perf_counter() - start))
    v, e = statistics.median(voice), statistics.median(encoder)
    return {"voice_p50_ms": round(v, 1), "encoder_p50_ms": round(e, 1), "voice_over_encoder": round(v / e, 2),
            "runs": runs}


def main(argv: list[str] | None = None) -> int:
    """Index the split's images, then time the queries."""
    import torch

    from searchengine.bundles.bundle import load_bundle
    from searchengine.index import open_index
    from searchengine.media import load_audio
    from searchengine.training.data import read_manifest, split_data

    a = parse_args(argv)
    data = split_data(read_manifest(a.manifest), a.split)
    if a.no_policy:
        plan = None
    else:
        plan = threads.apply("query", threads.parse_budget(a.threads))
    bundle = load_bundle(a.bundle, device=a.device)
    with tempfile.TemporaryDirectory() as tmp:
        wav = query_clip(a.manifest, a.split, a.seconds, Path(tmp) / "query.wav")
        samples = load_audio(wav).samples
        with open_index(Path(tmp) / "index", bundle, device=a.device) as idx:
            idx.index(data.images)
            result = {"bundle": a.bundle, "device": a.device, "torch_threads": torch.get_num_threads(),
                      "thread_plan": plan.to_dict() if plan else "torch and FAISS defaults",
                      "indexed_images": len(data.images), "query_seconds": a.seconds,
                      "end_to_end_search_audio": timed(lambda: idx.search(audio=wav, kind="image", k=10), a.runs),
                      "speech_encoder_only": timed(lambda: bundle.encode_speech([samples]), a.runs),
                      "text_query_end_to_end": timed(lambda: idx.search(text="a red apple", kind="image", k=10), a.runs)}
            result["interleaved"] = interleaved(lambda: idx.search(audio=wav, kind="image", k=10),
                                                lambda: bundle.encode_speech([samples]), a.runs)
            if a.busy:
                result["busy"] = busy_figures(a, Path(tmp), lambda: idx.search(audio=wav, kind="image", k=10),
                                              lambda: bundle.encode_speech([samples]), result)
        if a.cascade:
            cascade = bundle.cascade()
            result["cascade_encoder_only"] = timed(lambda: cascade.encode([samples]), a.runs)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
