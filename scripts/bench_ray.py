"""The write side of a distributed run: how fast one writer commits rows, and how busy Ray workers keep it.

    python scripts/bench_ray.py writer [--db URL] [--dim 512] [--batch 32] [--rows 5000] [--prefill 0 20000]
    python scripts/bench_ray.py index FOLDER [--bundle stamp-scenes-small] [--workers 2] [--batch-size 32]

`writer` commits synthetic rows (a random unit vector and one path per content) through the engine's
Writer into an index already holding `--prefill` rows, in SQLite or in the PostgreSQL database `--db`
names, and prints rows/s per prefill. `index` indexes FOLDER twice, locally and with `--ray` on a local
Ray instance, and prints for each run the seconds, the files/s of the embedding stage, and the seconds
the driver spent in the Writer (so how many more workers one writer could take). One JSON object each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from indexer.writer import Writer
from searchengine.store.generation import Generation, backend_for
from searchengine.store.metadata import FileLink, NewContent
from searchengine.types import BundleInfo


def synthetic_batch(start: int, size: int, dim: int, rng: np.random.Generator) -> tuple[list, list]:
    """`size` new image contents, each under one path, numbered from `start`."""
    vectors = rng.standard_normal((size, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    contents = [NewContent(f"{start + i:064x}", "image", vectors[i], width=640, height=480) for i in range(size)]
    links = [FileLink(f"/photos/{start + i:09}.jpg", c.content_hash, "image", 100_000, 0) for i, c in enumerate(contents)]
    return contents, links


def writer_rate(folder: Path, db: str | None, dim: int, batch: int, rows: int, prefill: list[int]) -> tuple[list, dict]:
    """rows/s of Writer.write at each prefill level (the index grows from one level to the next), and bytes per row."""
    gen = Generation(folder, backend_for(folder, db))
    gen.record(BundleInfo("bench", "bench", dim, "bench"))
    writer, rng, held, results = Writer(gen.metadata, gen.vectors, save_every=1e9), np.random.default_rng(0), 0, []
    for level in prefill:
        while held < level:  # large batches: filling is not what is measured
            step = min(5000, level - held)
            writer.write(*synthetic_batch(held, step, dim, rng))
            held += step
        start = time.perf_counter()
        for first in range(held, held + rows, batch):
            writer.write(*synthetic_batch(first, min(batch, held + rows - first), dim, rng))
        seconds = time.perf_counter() - start
        held += rows
        results.append({"prefill": level, "rows": rows, "batch": batch, "seconds": round(seconds, 2),
                        "rows_per_s": round(rows / seconds, 1)})
    writer.flush()
    sizes = {"faiss_bytes_per_row": round(gen.vectors["image"].file_bytes() / held),
             "metadata_bytes_per_row": round(metadata_bytes(gen.metadata) / held)}
    gen.close()
    return results, sizes


def metadata_bytes(metadata) -> int:
    """The metadata's size on disk: SQLite's files, or the tables and indexes of its PostgreSQL schema."""
    if metadata.path is not None:
        return sum(p.stat().st_size for p in metadata.path.parent.glob(metadata.path.name + "*") if p.is_file())
    with metadata.engine.connect() as conn:
        query = ("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                 "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'")
        return int(conn.exec_driver_sql(query).scalar())


def timed_run(folder: Path, index_dir: Path, bundle: str, batch_size: int, ray) -> dict:
    """One index run: wall seconds, embedding-stage files/s, and the driver's seconds inside Writer.write."""
    from searchengine import open_index

    spent = {"writer_s": 0.0, "writes": 0}
    real_write = Writer.write

    def timed_write(self, *args, **kwargs):
        begin = time.perf_counter()
        try:
            return real_write(self, *args, **kwargs)
        finally:
            spent["writer_s"] += time.perf_counter() - begin
            spent["writes"] += 1

    stage: dict[str, float] = {}

    def progress(event) -> None:
        if event.stage == "embedding":
            stage.setdefault("first", time.perf_counter())
            stage["last"] = time.perf_counter()

    Writer.write = timed_write
    try:
        with open_index(index_dir, bundle) as idx:
            _ = idx.bundle  # the driver's model loads before the clock starts
            start = time.perf_counter()
            report = idx.index([folder], batch_size=batch_size, ray=ray, progress=progress)
            wall = time.perf_counter() - start
    finally:
        Writer.write = real_write
    embedding_s = stage.get("last", 0) - stage.get("first", 0)
    return {"wall_s": round(wall, 2), "embedded": report.embedded, "embedding_stage_s": round(embedding_s, 2),
            "files_per_s": round(report.embedded / embedding_s, 1) if embedding_s else None,
            "writer_s": round(spent["writer_s"], 2), "writes": spent["writes"],
            "writer_busy": round(spent["writer_s"] / embedding_s, 3) if embedding_s else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("writer")
    w.add_argument("--db", default=None, help="PostgreSQL URL (default: SQLite in a temporary folder)")
    w.add_argument("--dim", type=int, default=512)
    w.add_argument("--batch", type=int, default=32)
    w.add_argument("--rows", type=int, default=5000)
    w.add_argument("--prefill", type=int, nargs="+", default=[0, 20000])
    i = sub.add_parser("index")
    i.add_argument("folder", type=Path)
    i.add_argument("--bundle", default="stamp-scenes-small")
    i.add_argument("--workers", type=int, default=2)
    i.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    machine = {"cpus": os.cpu_count(), "machine": platform.machine()}
    with tempfile.TemporaryDirectory() as tmp:
        if args.command == "writer":
            levels, sizes = writer_rate(Path(tmp), args.db, args.dim, args.batch, args.rows, args.prefill)
            out = {"backend": "postgresql" if args.db else "sqlite", "levels": levels, **sizes}
        else:
            from indexer.distributed import RayOptions

            out = {"local": timed_run(args.folder, Path(tmp) / "local", args.bundle, args.batch_size, None),
                   "ray": timed_run(args.folder, Path(tmp) / "ray", args.bundle, args.batch_size,
                                    RayOptions(workers=args.workers))}
    print(json.dumps({**machine, **out}))


if __name__ == "__main__":
    main()
