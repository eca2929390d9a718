"""Real photos for the indexing benchmarks: the desktop wallpapers Debian ships, as camera-sized JPEGs.

    python scripts/bench_photos.py OUT_DIR [--count 300]

Reads every JPEG/PNG under /usr/share/backgrounds and /usr/share/wallpapers (Debian's `mate-backgrounds`
and `plasma-workspace-wallpapers`: ~100 distinct photos and artworks, 1280 to 5640 pixels wide) and writes
`count` distinct JPEG files (quality 92, full resolution; the n-th pass over the sources crops 2 % more
off each edge, so every file holds other bytes and the engine embeds each one). Writes nothing for a file
already there, so a second call is free.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from PIL import Image

SOURCES = (Path("/usr/share/backgrounds"), Path("/usr/share/wallpapers"))


def source_photos() -> list[Path]:
    """Distinct (by content) JPEG and PNG files of the wallpaper packages, in a stable order."""
    seen, out = set(), []
    for root in SOURCES:
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() not in {".jpg", ".jpeg", ".png"} or not path.is_file():
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest not in seen:
                seen.add(digest)
                out.append(path)
    return out


def make_photo_folder(out: Path, count: int = 300) -> list[Path]:
    """`count` distinct full-resolution JPEGs in `out` (see the module doc); their paths."""
    sources = source_photos()
    if not sources:
        raise SystemExit("no wallpapers found: apt-get install mate-backgrounds plasma-workspace-wallpapers")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for n in range(count):
        target = out / f"photo_{n:04d}.jpg"
        if not target.exists():
            _write_variant(sources[n % len(sources)], n // len(sources), target)
        written.append(target)
    return written


def _write_variant(source: Path, round_: int, target: Path) -> None:
    with Image.open(source) as img:
        rgb = img.convert("RGB")
    margin = 0.02 * round_
    w, h = rgb.size
    box = (int(w * margin), int(h * margin), w - int(w * margin), h - int(h * margin))
    rgb.crop(box).save(target, format="JPEG", quality=92)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    print(len(make_photo_folder(args.out, args.count)))


if __name__ == "__main__":
    main()
