"""How far the indexing pipeline's vectors are from the previous pipeline's and from full-resolution decoding.

    python scripts/bench_draft_cosine.py [--photos DIR] [--count 60] [--bundle stamp-scenes-small]

Per photo, three vectors of one tower: "now" (indexer.pipeline.decode with the bundle's prepare_image in
a worker thread, then encode_pixels on the stacked batch), "before" (load_image as decoding did, then
encode_images preprocessing on the calling thread, as the encode step did) and "full" (no JPEG draft,
no reduce: the whole photo decoded and resized once). Prints the mean and minimum cosine of now
against each.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from bench_photos import make_photo_folder

from indexer.pipeline import decode
from indexer.walk import Candidate
from searchengine.bundles.bundle import load_bundle
from searchengine.media import load_image
from searchengine.types import Kind


def stats(a: np.ndarray, b: np.ndarray) -> dict:
    cos = np.sum(a * b, axis=1)
    return {"mean": round(float(cos.mean()), 5), "min": round(float(cos.min()), 5)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path(tempfile.gettempdir()) / "searchengine-bench-photos")
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--bundle", default="stamp-scenes-small")
    args = parser.parse_args(argv)
    photos = make_photo_folder(args.photos, 300)[:args.count]
    bundle = load_bundle(args.bundle, device="cpu", precision="fp32")
    side = bundle.image_size

    def prepared(path: Path) -> np.ndarray:
        return decode("", [Candidate(str(path), Kind.IMAGE, 0, 0)], side, prepare=bundle.prepare_image).media

    with ThreadPoolExecutor(4) as pool:
        now = bundle.encode_pixels(np.stack(list(pool.map(prepared, photos))))
    before = np.concatenate([bundle.encode_images([load_image(p, min_side=side)]) for p in photos])
    full = np.concatenate([bundle.encode_images([load_image(p)]) for p in photos])
    print(json.dumps({"bundle": args.bundle, "photos": len(photos), "now_vs_before": stats(now, before),
                      "now_vs_full_resolution": stats(now, full)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
