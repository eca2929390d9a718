"""Indexing throughput: a fresh index of a media folder, then a no-op incremental run.

    python scripts/bench_index.py FOLDER [--bundle stamp-scenes-small] [--batch-size 32]

Prints one JSON object: files per kind, seconds and files/s for the full run, seconds for the re-run.
For images/s end to end against decode alone and the model alone (the bundled model and a ViT-B-32
tower), and against the previous pipeline side by side, see scripts/bench_throughput.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from searchengine import open_index


def timed_index(index_dir: Path, folder: Path, bundle: str, batch_size: int) -> tuple[float, dict]:
    """Seconds for one `index` run (model loading excluded) and its report."""
    with open_index(index_dir, bundle) as idx:
        idx.bundle  # load the models before the clock starts
        start = time.perf_counter()
        report = idx.index([folder], batch_size=batch_size)
        return time.perf_counter() - start, report.to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--bundle", default="stamp-scenes-small")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        full_s, report = timed_index(Path(tmp), args.folder, args.bundle, args.batch_size)
        rerun_s, again = timed_index(Path(tmp), args.folder, args.bundle, args.batch_size)
        with open_index(Path(tmp)) as idx:
            files = idx.status().files
    total = sum(files.values())
    print(json.dumps({"files": files, "full_run_s": round(full_s, 2), "files_per_s": round(total / full_s, 1),
                      "rerun_s": round(rerun_s, 2), "rerun_embedded": again["embedded"],
                      "skipped": len(report["skipped"]), "cpus": os.cpu_count(), "machine": platform.processor()
                      or platform.machine(), "bundle": args.bundle}))


if __name__ == "__main__":
    main()
