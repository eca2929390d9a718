"""Media written on the fly: a good corpus, tiny bundles, and large inputs for the memory trial.

The bad-input kinds live in badinput.py; both build on tests/media_factory.py and the tiny bundle of
tests/conftest.py, loaded here by file path so the script can use them outside pytest.
"""

from __future__ import annotations

import io
import shutil
import struct
import sys
import zlib
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parents[2]
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))  # media_factory and tiny_bundle, when run.py is used outside pytest

from media_factory import encode_audio, make_image, tone, write_wav  # noqa: E402

__all__ = ["encode_audio", "make_image", "tone", "write_wav", "build_bundles", "good_corpus", "grow_corpus",
           "large_photos", "bomb_png", "png_chunk"]


def build_bundles(directory: Path) -> tuple[Path, Path]:
    """Two tiny bundles with different weights: the index's, and the one a rebuild switches to."""
    from tiny_bundle import build_tiny_bundle as build  # tests/tiny_bundle.py
    first, second = Path(directory) / "tiny", Path(directory) / "other"
    if not (first / "bundle.json").exists():
        build(first)
    if not (second / "bundle.json").exists():
        build(second, name="other", seed=1)
    return first, second


def good_corpus(root: Path, images: int = 6, clips: int = 4, seed: int = 0) -> Path:
    """Nested images and clips in several formats, one duplicate pair, one broken file and a text file.

    The duplicate exercises shared contents, the broken file the skip records: a crash must lose
    neither. Small on purpose: a trial's cost is the engine's start, not the media.
    """
    formats = ["png", "jpg", "webp", "bmp", "png", "jpg"]
    for i in range(images):
        make_image(root / f"photos/{i % 2}/img{i}.{formats[i % len(formats)]}", seed * 100 + i)
    for i in range(clips):
        suffix = ".wav" if i % 2 == 0 else ".flac"
        write = write_wav if suffix == ".wav" else encode_audio
        write(root / f"voice/clip{i}{suffix}", tone(seed * 100 + i, 0.6 + 0.2 * i))
    shutil.copyfile(root / "photos/0/img0.png", root / "photos/copy-of-img0.png")
    (root / "photos/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.txt").write_text("not media")
    return root


def grow_corpus(root: Path, seed: int = 7) -> Path:
    """The second state of a corpus: new files, one photo rewritten, one clip deleted.

    Crash trials on this state hit an index that already has vectors and FAISS files on disk.
    """
    for i in range(4):
        make_image(root / f"new/img{i}.png", seed * 100 + i)
    write_wav(root / "new/said.wav", tone(seed, 1.3))
    make_image(root / "photos/1/img1.jpg", seed * 100 + 99)
    (root / "voice/clip1.flac").unlink()
    return root


def large_photos(root: Path, count: int = 24, side: int = 7000, fmt: str = "JPEG") -> list[Path]:
    """`count` distinct images of side x side pixels (~49 MP), made from one encode.

    Distinct bytes (a different trailer after the JPEG end marker or the PNG IEND chunk, which
    decoders ignore) so none is deduplicated by hash; encoding once keeps the setup to seconds. PNG
    matters as much as JPEG: a JPEG can be decoded at a reduced scale, a PNG only whole.
    """
    root.mkdir(parents=True, exist_ok=True)
    from PIL import Image
    import numpy as np

    blocks = np.random.default_rng(1).integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(blocks).resize((side, side), Image.NEAREST).save(buffer, format=fmt, quality=80, compress_level=1)
    body = buffer.getvalue()
    paths = []
    for i in range(count):
        path = root / f"big{i:02d}.{fmt.lower().replace('jpeg', 'jpg')}"
        path.write_bytes(body + f"trailer {i}".encode())
        paths.append(path)
    return paths


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, side: int = 9999) -> Path:
    """A side x side 1-bit black PNG: ~12 KB on disk, ~300 MB once decoded to RGB."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat)
                     + png_chunk(b"IEND", b""))
    return path
