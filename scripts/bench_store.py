"""The store layer at scale: building through the real Writer, appending, opening, searching, bytes.

    python scripts/bench_store.py [--sizes 10000,100000,1000000] [--dim 512] [--batch 32] [--queries 200]
                                  [--threads 2] [--folder DIR] [--nprobes 8,16,32,64]

Rows are synthetic contents (one path each) whose vectors are unit vectors around 4,096 random centres
with noise (embeddings cluster; uniform random vectors do not, and would understate an IVF's recall).
They go through indexer.writer.Writer in batches of `--batch`, into SQLite and FAISS, exactly as an
index run writes them (model time excluded). Printed as one JSON object:

- build: seconds per 10 k rows at each size (the median of the 3 blocks of 10 k rows ending there; the
  first block is written into 3 fresh stores), and each index type change (training) with its seconds;
- at the largest size: appending 10 k more rows (rows/s), opening after a clean close and after a
  crash that lost the last 10 k rows' FAISS changes (seconds), single-query p50 on `--threads` threads
  for raw FAISS and for the engine's search_stores (calibration and metadata join included) on the same
  index, recall@10 against exact search for each nprobe, and bytes on disk per vector.
"""

from __future__ import annotations

import os

# numpy's OpenBLAS would otherwise start a thread per core for the engine's 1024 x D calibration
# product: under load that one call took 12 ms instead of 0.1 (the thread policy is the engine's own
# business; this bench measures the store).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import functools
import gc
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from indexer.writer import GATHER_ROWS, Writer
from searchengine.search import SearchOptions, search_stores
from searchengine.store.generation import Generation
from searchengine.store.metadata import FileLink, NewContent
from searchengine.types import BundleInfo

CENTRES = 4096
BLOCK = 10_000
REPEATS = 3  # blocks of BLOCK rows timed at each size


@functools.lru_cache(maxsize=1)
def _centres(dim: int) -> np.ndarray:
    return np.random.default_rng(12345).standard_normal((CENTRES, dim)).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _block(block: int, dim: int) -> np.ndarray:
    """Rows block*BLOCK .. +BLOCK of the synthetic collection (each block has its own seed)."""
    rng = np.random.default_rng(block)
    x = _centres(dim)[rng.integers(0, CENTRES, BLOCK)] + 0.6 * rng.standard_normal((BLOCK, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def vectors(start: int, size: int, dim: int) -> np.ndarray:
    """Rows start..start+size of the synthetic collection (the same rows whatever the chunking)."""
    out = np.empty((size, dim), np.float32)
    row = start
    while row < start + size:
        block = row // BLOCK
        hi = min(start + size, (block + 1) * BLOCK)
        out[row - start:hi - start] = _block(block, dim)[row - block * BLOCK:hi - block * BLOCK]
        row = hi
    return out


def batch(start: int, size: int, dim: int) -> tuple[list, list]:
    vecs = vectors(start, size, dim)
    contents = [NewContent(f"{start + i:064x}", "image", vecs[i], width=640, height=480) for i in range(size)]
    links = [FileLink(f"/photos/{start + i:09}.jpg", c.content_hash, "image", 100_000, 0) for i, c in enumerate(contents)]
    return contents, links


def open_generation(folder: Path, dim: int) -> Generation:
    gen = Generation(folder)
    gen.record(BundleInfo("bench", "bench", dim, "bench"))
    gen.set_index_type("auto")  # as an index run does: the stores grow into IVF past the threshold
    return gen


def write_rows(writer: Writer, held: int, rows: int, dim: int, size: int, types: list) -> float:
    """Write `rows` rows in batches of `size`; seconds in the writer (making up the rows, the model's part,
    left out); index type changes (and their seconds) to `types`."""
    store = writer.vectors["image"]
    seconds = 0.0
    for first in range(held, held + rows, size):
        rows_made = batch(first, min(size, held + rows - first), dim)
        before, t0 = store.layout, time.perf_counter()
        writer.write(*rows_made)
        seconds += time.perf_counter() - t0
        if store.layout != before:
            types.append({"at": first, "to": store.layout.factory, "seconds": round(time.perf_counter() - t0, 2)})
    return seconds


def build(folder: Path, sizes: list[int], dim: int, size: int, queries: int, nprobes: list[int]) -> tuple:
    """Seconds per 10 k rows at each size (the median of the REPEATS blocks ending there: one 1-s block
    swung by 1.5x between runs on a quiet machine), the index type changes, and search figures at each size."""
    gen = open_generation(folder, dim)
    writer = Writer(gen.metadata, gen.vectors, commit_rows=GATHER_ROWS)
    held, per_10k, types, searches = 0, {}, [], {}
    for target in sizes:
        first = max(held, target - REPEATS * BLOCK)
        if first > held:
            write_rows(writer, held, first - held, dim, size, types)
        blocks = [write_rows(writer, start, BLOCK, dim, size, types) for start in range(first, target, BLOCK)]
        if first == 0:  # the first rows of a store: the same rows into fresh stores, for the other repeats
            blocks += [first_block_seconds(dim, size) for _ in range(REPEATS - len(blocks))]
        per_10k[target] = {"median": round(statistics.median(blocks), 2), "blocks": [round(b, 2) for b in blocks]}
        held = target
        writer.commit()
        searches[target] = search_figures(gen, held, dim, queries, nprobes)
    writer.flush()
    gen.close()
    return per_10k, types, searches


def first_block_seconds(dim: int, size: int) -> float:
    """Seconds to write the first BLOCK rows into a new store."""
    with tempfile.TemporaryDirectory(prefix="bench-store-first-") as scratch:
        gen = open_generation(Path(scratch), dim)
        seconds = write_rows(Writer(gen.metadata, gen.vectors, commit_rows=GATHER_ROWS), 0, BLOCK, dim, size, [])
        gen.close()
    return seconds


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def timed_open(folder: Path) -> tuple[Generation, float]:
    gc.collect()
    start = time.perf_counter()
    gen = Generation(folder)
    gen.save_if_stale()  # what opening for a run does after a repair
    return gen, time.perf_counter() - start


def p50_ms(fn, queries: np.ndarray) -> float:
    times = []
    for q in queries:
        start = time.perf_counter()
        fn(q[None])
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1e3, 3)


def exact_top10(queries: np.ndarray, held: int, dim: int) -> np.ndarray:
    """The true 10 nearest row numbers (content id - 1) of each query, by brute force in blocks."""
    best_s = np.full((len(queries), 10), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 10), np.int64)
    for start in range(0, held, 100_000):
        block = vectors(start, min(100_000, held - start), dim)
        scores = queries @ block.T
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        all_s = np.concatenate([best_s, np.take_along_axis(scores, top, 1)], 1)
        all_i = np.concatenate([best_i, top + start], 1)
        keep = np.argsort(-all_s, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(all_s, keep, 1), np.take_along_axis(all_i, keep, 1)
    return best_i + 1  # content ids start at 1


def search_figures(gen: Generation, held: int, dim: int, n: int, nprobes: list[int]) -> dict:
    store = gen.vectors["image"]
    queries = vectors(held + 10 * BLOCK, n, dim)  # rows never indexed, from the same clusters
    truth = exact_top10(queries, held, dim)
    layout, out = store.layout, {"index": store.description}
    options = SearchOptions(kinds=("image",), k=10)
    store.sample(1024)  # the calibration sample is drawn once per change, not per query
    out["engine_p50_ms"] = p50_ms(lambda q: search_stores(q, gen.vectors, gen.metadata, options), queries)
    if layout.exact:
        out["raw_p50_ms"] = p50_ms(lambda q: store.index.search(q, 11), queries)
        out["engine_over_raw"] = round(out["engine_p50_ms"] / out["raw_p50_ms"], 2)
        return out
    out["raw_p50_ms"] = p50_ms(lambda q: store.index.search(q, 11, params=faiss.SearchParametersIVF(
        nprobe=layout.nprobe)), queries)
    out["engine_over_raw"] = round(out["engine_p50_ms"] / out["raw_p50_ms"], 2)
    exact = faiss.IndexFlatIP(dim)  # the exact scan over the same rows, for its p50
    exact.add(vectors(0, held, dim))
    out["exact_flat_p50_ms"] = p50_ms(lambda q: exact.search(q, 10), queries[:50])
    exact.reset()  # its memory back before the sweep
    sweep = []
    for nprobe in nprobes:
        params = faiss.SearchParametersIVF(nprobe=nprobe)
        _, found = store.index.search(queries, 10, params=params)
        recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
        sweep.append({"nprobe": nprobe, "recall_at_10": round(float(recall), 4),
                      "p50_ms": p50_ms(lambda q: store.index.search(q, 10, params=params), queries[:100])})
    out["nprobe_sweep"] = sweep
    return out


def at_largest(folder: Path, held: int, dim: int, size: int) -> dict:
    out = {}
    gen, out["open_clean_s"] = timed_open(folder)
    gen.set_index_type("auto")
    writer = Writer(gen.metadata, gen.vectors, commit_rows=GATHER_ROWS)
    seconds = write_rows(writer, held, BLOCK, dim, size, [])
    seconds += timed(writer.flush)  # the end of a run: the last rows committed, FAISS saved
    out["append_10k_rows_per_s"] = round(BLOCK / seconds)
    held += BLOCK
    writer = Writer(gen.metadata, gen.vectors)  # the same, one transaction per batch (a small run's way)
    seconds = write_rows(writer, held, BLOCK, dim, size, [])
    seconds += timed(writer.flush)
    out["append_10k_rows_per_s_one_commit_per_batch"] = round(BLOCK / seconds)
    held += BLOCK
    writer = Writer(gen.metadata, gen.vectors, save_every=1e9, commit_rows=GATHER_ROWS)
    write_rows(writer, held, BLOCK, dim, size, [])
    writer.commit()  # committed to SQLite, never saved to FAISS: a crash
    held += BLOCK
    gen.close()
    del gen, writer
    gen, out["open_after_crash_s"] = timed_open(folder)
    assert gen.vectors["image"].count == held, (gen.vectors["image"].count, held)
    gen.close()
    gen, out["open_clean_again_s"] = timed_open(folder)
    out["bytes"] = bytes_per_vector(gen, folder, held)
    gen.close()
    return out


def bytes_per_vector(gen: Generation, folder: Path, held: int) -> dict:
    store = gen.vectors["image"]
    index = store.index if not store.layout.exact else store.index.index
    code = index.sa_code_size() if hasattr(index, "sa_code_size") else 4 * store.dim
    sqlite = sum(p.stat().st_size for p in folder.glob("metadata.sqlite*"))
    faiss_bytes = store.file_bytes()
    return {"code_bytes": code, "faiss_bytes_per_vector": round(faiss_bytes / held),
            "sqlite_bytes_per_vector": round(sqlite / held), "vector_blob_bytes": 4 * store.dim,
            "total_per_vector": round((faiss_bytes + sqlite) / held)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--nprobes", default="8,16,32,64")
    parser.add_argument("--folder", type=Path, default=None, help="where the index goes (default: a temp folder)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    faiss.omp_set_num_threads(args.threads)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench-store-"))
    started = time.time()
    nprobes = [int(n) for n in args.nprobes.split(",")]
    per_10k, types, searches = build(folder, sizes, args.dim, args.batch, args.queries, nprobes)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "dim": args.dim, "batch": args.batch,
              "threads": args.threads, "seconds_per_10k_rows_at": per_10k, "index_type_changes": types,
              "linearity": round(per_10k[sizes[-1]]["median"] / per_10k[sizes[0]]["median"], 2), "search_at": searches}
    result.update(at_largest(folder, sizes[-1], args.dim, args.batch))
    result["wall_s"] = round(time.time() - started)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
