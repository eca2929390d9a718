"""The GPU path in one run: which builds load, the image tower in bf16, indexing end to end, FAISS at 1 M and 10 M.

    python scripts/gpu_check.py                 # on a CUDA machine (about 5-8 minutes on one H200)
    python scripts/gpu_check.py --cpu-smoke     # every step at toy sizes on the CPU (a minute)

Sections, each timed, each recorded even when it fails (its error is kept and the run goes on):
1. builds: torch and its CUDA, the GPU and its bf16 support, which FAISS module loaded (faiss-cpu or a
   GPU build, and how many GPUs it sees), and the CUDA libraries mapped into this one process after
   both initialised (torch's CUDA 13 wheels next to a CUDA 12 FAISS build show up here).
2. tower: ViT-B-32 (open_clip, random weights: the real model's FLOPs) in the engine's bf16 path
   (ClipTowers.encode_pixels), images/s at batch 256, its FLOPs per image counted by torch, and the
   achieved rate against the card's dense bf16 tensor rate (a table by name, and a measured matmul).
3. indexing: synthetic 12-megapixel JPEGs (or --photos DIR); decode alone (the pipeline's decode workers,
   16 a machine of 16 cores), encode alone (pre-batched tensors) and end to end (open_index().index()).
4. faiss: exact inner-product search of unit vectors, 512-d, at 1 M and 10 M rows (GpuIndexFlatIP when
   FAISS sees a GPU, else torch matmul + topk on the GPU, recorded as such): single-query p50 and
   queries/s at 1,024 a batch, k = 10.
Writes gpu_check.json into $OUT (or --out) and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

from searchengine import threads

threads.prepare_environment()

import numpy as np
import torch

# Dense bf16 tensor-core rates (TFLOP/s, without sparsity) from the vendors' data sheets.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 756.0, "A100": 312.0,
                    "L40S": 362.0, "L4": 121.0, "A10": 125.0, "RTX 4090": 165.0}
SMOKE_CLIP = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                                              "patch_size": 16},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}


def section(results: dict, name: str, fn, *args) -> None:
    """Run one section; keep its figures, or its error, and how long it took."""
    start = time.perf_counter()
    try:
        results[name] = fn(*args)
    except Exception as exc:  # noqa: BLE001 - a failed section is a result too
        results[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}
    results[name + "_seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps({name: results[name]}, default=str), file=sys.stderr, flush=True)


def builds(device: str) -> dict:
    """torch, CUDA, the GPU, FAISS, and the CUDA libraries this process mapped."""
    import faiss

    out = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "cuda_available": torch.cuda.is_available(), "faiss": faiss.__version__, "faiss_module": faiss.__file__,
           "faiss_gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        out.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                   capability=f"{props.major}.{props.minor}", bf16=torch.cuda.is_bf16_supported())
        torch.zeros(1, device="cuda")  # initialise torch's CUDA before listing libraries
    out["cuda_libraries"] = mapped_cuda_libraries()
    return out


def mapped_cuda_libraries() -> list[str]:
    """Paths of CUDA runtime/BLAS/FAISS libraries mapped into this process (Linux)."""
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    names = ("libcudart", "libcublas", "libfaiss", "libnvrtc", "libcuvs", "libgomp")
    return sorted({line.split()[-1] for line in maps if any(n in line for n in names)})


def image_tower(device: str, smoke: bool):
    """The engine's ClipTowers for ViT-B-32 with random weights (a tiny tower for the smoke run)."""
    import open_clip

    from searchengine.bundles import clip

    cfg = SMOKE_CLIP if smoke else open_clip.get_model_config("ViT-B-32")
    return clip.build_custom(cfg, device), cfg


def tower(device: str, smoke: bool) -> dict:
    """Images/s of the image tower in the engine's GPU path, against the card's tensor rate."""
    from torch.utils.flop_counter import FlopCounterMode

    towers, _ = image_tower(device, smoke)
    towers.use_precision("bf16")
    side, batch = towers.image_size, 8 if smoke else 256
    pixels = np.random.default_rng(0).standard_normal((batch, 3, side, side), dtype=np.float32)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        towers.model.encode_image(torch.from_numpy(pixels[:1]).to(device))
    flops_per_image = counter.get_total_flops()
    rate = timed_rate(lambda: towers.encode_pixels(pixels), batch, device, rounds=2 if smoke else 20)
    out = {"precision": towers.precision, "batch": batch, "images_per_s": round(rate, 1),
           "flops_per_image": int(flops_per_image), "gflops_per_image": round(flops_per_image / 1e9, 3),
           "achieved_tflops": round(rate * flops_per_image / 1e12, 2)}
    if device == "cuda":
        out["matmul_bf16_tflops"] = matmul_tflops()
        name = torch.cuda.get_device_properties(0).name
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        out.update(datasheet_bf16_tflops=peak, share_of_datasheet=round(out["achieved_tflops"] / peak, 3) if peak else None,
                   share_of_matmul=round(out["achieved_tflops"] / out["matmul_bf16_tflops"], 3))
    return out


def timed_rate(fn, items: int, device: str, rounds: int) -> float:
    """items a second over `rounds` calls of fn after one warm-up (synchronised on CUDA)."""
    fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    sync(device)
    return rounds * items / (time.perf_counter() - start)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_tflops(n: int = 8192, rounds: int = 20) -> float:
    """The card's measured dense bf16 matmul rate (what a model can hope for)."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    seconds = 1 / timed_rate(lambda: a @ b, 1, "cuda", rounds)
    return round(2 * n**3 / seconds / 1e12, 1)


def make_photos(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """`count` distinct camera-sized JPEGs (smooth gradients plus noise, quality 90)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, size[0], dtype=np.float32)[None, :, None] * np.ones((size[1], 1, 3), np.float32)
    paths = []
    for i in range(count):
        path = folder / f"photo_{i:05d}.jpg"
        if not path.exists():
            noise = rng.integers(0, 48, (size[1] // 8, size[0] // 8, 3)).repeat(8, 0).repeat(8, 1)
            pixels = np.clip(base * ((i % 7 + 1) / 7) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def indexing(device: str, smoke: bool, photos_dir: Path | None, work: Path) -> dict:
    """Decode alone, encode alone and end to end, images/s, on the same photos and tower."""
    from concurrent.futures import ThreadPoolExecutor

    from indexer.pipeline import decode
    from indexer.walk import Candidate
    from searchengine.bundles.bundle import load_bundle, save_bundle_dir
    from searchengine.bundles.speech import LearnedSpeechEncoder, SpeechEncoderConfig
    from searchengine.index import open_index
    from searchengine.types import Kind

    folder = photos_dir or work / "photos"
    photos = sorted(folder.glob("*.jpg")) if photos_dir else make_photos(folder, 12 if smoke else 2000,
                                                                          (640, 480) if smoke else (4000, 3000))
    towers, cfg = image_tower("cpu", smoke)
    speech = LearnedSpeechEncoder(SpeechEncoderConfig(frontend=None, embed_dim=cfg["embed_dim"], width=32, layers=1,
                                                      heads=2))
    bundle_dir = save_bundle_dir(work / "bundle", "gpu-check", cfg, towers, speech, half=False)
    bundle = load_bundle(bundle_dir, device=device)
    plan = threads.plan_for("index")

    def one(path: Path):
        return decode("", [Candidate(str(path), Kind.IMAGE, 0, 0)], bundle.image_size, prepare=bundle.prepare_image)

    start = time.perf_counter()
    with ThreadPoolExecutor(plan.decode) as pool:
        prepared = [d.media for d in pool.map(one, photos)]
    decode_rate = len(photos) / (time.perf_counter() - start)
    batch = 8 if smoke else 256
    pixels = np.stack((prepared * (batch // len(prepared) + 1))[:batch])
    encode_rate = timed_rate(lambda: bundle.encode_pixels(pixels), batch, device, rounds=2 if smoke else 10)
    with open_index(work / "index", bundle) as idx:
        start = time.perf_counter()
        report = idx.index([folder], batch_size=batch)
        e2e = report.embedded / (time.perf_counter() - start)
    return {"photos": len(photos), "decode_workers": plan.decode, "decode_only_images_per_s": round(decode_rate, 1),
            "encode_only_images_per_s": round(encode_rate, 1), "end_to_end_images_per_s": round(e2e, 1),
            "e2e_over_decode": round(e2e / decode_rate, 3), "e2e_over_encode": round(e2e / encode_rate, 3),
            "precision": bundle.precision}


def faiss_search(device: str, smoke: bool) -> dict:
    """Exact search at each size: FAISS on the GPU when it sees one, else torch on the GPU (or FAISS on the CPU)."""
    import faiss

    sizes = (5_000, 10_000) if smoke else (1_000_000, 10_000_000)
    gpu_faiss = device == "cuda" and getattr(faiss, "get_num_gpus", lambda: 0)() > 0
    out = {"engine": "faiss-gpu" if gpu_faiss else ("torch-cuda" if device == "cuda" else "faiss-cpu"), "sizes": {}}
    for rows in sizes:
        base = unit_rows(rows, 512, device)
        queries = unit_rows(1024, 512, device, seed=1)
        out["sizes"][rows] = search_figures(build_search(base, gpu_faiss, device), queries, device)
        del base
        if device == "cuda":
            torch.cuda.empty_cache()
    return out


def search_figures(search, queries, device: str) -> dict:
    """Single-query p50 (50 queries one by one) and queries/s at 1,024 a batch, k = 10."""
    single = [timed_once(lambda q=queries[i:i + 1]: search(q, 10), device) for i in range(50)]
    batch_rate = timed_rate(lambda: search(queries, 10), len(queries), device, rounds=3)
    return {"single_query_p50_ms": round(1000 * statistics.median(single), 3),
            "batch_1024_queries_per_s": round(batch_rate, 1)}


def unit_rows(rows: int, dim: int, device: str, seed: int = 0):
    """Random unit vectors, made in 1 M-row chunks on the device (10 M × 512 is 20 GB)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    chunks = []
    for start in range(0, rows, 1_000_000):
        chunk = torch.randn(min(1_000_000, rows - start), dim, device=device, generator=gen)
        chunks.append(torch.nn.functional.normalize(chunk, dim=1))
    return torch.cat(chunks)


def build_search(base, gpu_faiss: bool, device: str):
    """A function (queries, k) -> (scores, ids) over `base`."""
    import faiss

    if device == "cuda" and not gpu_faiss:
        def torch_search(q, k):
            return torch.topk(q @ base.T, k, dim=1)
        return torch_search
    host = base.cpu().numpy() if device == "cuda" else base.numpy()
    index = faiss.IndexFlatIP(host.shape[1])
    if gpu_faiss:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    for start in range(0, len(host), 1_000_000):
        index.add(host[start:start + 1_000_000])
    return lambda q, k: index.search(q.cpu().numpy() if hasattr(q, "cpu") else q, k)


def timed_once(fn, device: str) -> float:
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="every step at toy sizes on the CPU")
    parser.add_argument("--photos", type=Path, help="a folder of JPEGs to index instead of synthetic ones")
    parser.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    parser.add_argument("--skip", default="", help="sections to leave out, comma-separated (tower,indexing,faiss)")
    args = parser.parse_args(argv)
    device = "cpu" if args.cpu_smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --cpu-smoke on a machine without one", file=sys.stderr)
        return 1
    results: dict = {"device": device, "smoke": args.cpu_smoke, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    skip = set(filter(None, args.skip.split(",")))
    section(results, "builds", builds, device)
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn, extra in (("tower", tower, ()), ("indexing", indexing, (args.photos, Path(tmp))),
                                ("faiss", faiss_search, ())):
            if name not in skip:
                section(results, name, fn, device, args.cpu_smoke, *extra)
    results["builds"]["cuda_libraries_after"] = mapped_cuda_libraries()
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(text + "\n")
    return 0 if not any(isinstance(v, dict) and "error" in v for v in results.values()) else 2


if __name__ == "__main__":
    sys.exit(main())
