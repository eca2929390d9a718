"""The bad-input corpus: one builder per kind of hostile file, each with what a run must make of it.

Each kind gets its own folder (with one good photo and one good clip beside it, which must be indexed
whatever the bad file does), so one kind that hangs or crashes a run cannot hide another's outcome.
Expectations per target path:
  indexed  it is searchable afterwards
  skipped  it is recorded as skipped, with a reason
  either   indexed or skipped: never silently dropped
  any      no requirement beyond the run finishing cleanly (a folder, a file that is gone)
"""

from __future__ import annotations

import io
import os
import random
import shutil
import struct
import wave
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .corpus import bomb_png, make_image, png_chunk, tone, write_wav

KINDS: dict[str, "object"] = {}


@dataclass
class Case:
    """A built kind: what to expect of each target, hooks for the child, and how risky it is."""

    targets: dict[str, str]
    hooks: list[dict] = field(default_factory=list)
    hazard: bool = False  # may block a run forever (FIFOs, devices): always run in a child with a timeout
    mutates: bool = False  # the input changes during the run: judged against a clean run of the final input


def kind(name: str, hazard: bool = False):
    def register(build):
        KINDS[name] = (build, hazard)
        return build
    return register


def build(name: str, folder: Path) -> Case:
    """Write the good neighbours and the bad file(s) of one kind into `folder`."""
    builder, hazard = KINDS[name]
    folder.mkdir(parents=True, exist_ok=True)
    make_image(folder / "good.png", 11)
    write_wav(folder / "good.wav", tone(11, 0.8))
    case = builder(folder)
    case.hazard = case.hazard or hazard
    case.targets.update({str(folder / "good.png"): "indexed", str(folder / "good.wav"): "indexed"})
    return case


def _jpeg(seed: int = 3, size=(320, 240)) -> bytes:
    from PIL import Image
    import numpy as np

    out = io.BytesIO()
    blocks = np.random.default_rng(seed).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    Image.fromarray(blocks).resize(size, Image.NEAREST).save(out, format="JPEG")
    return out.getvalue()


def _wav_bytes(seconds: float = 1.0, seed: int = 5) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((tone(seed, seconds) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def _one(folder: Path, name: str, data: bytes, expect: str) -> Case:
    (folder / name).write_bytes(data)
    return Case({str(folder / name): expect})


# --- damaged and empty files ---------------------------------------------------
@kind("truncated-jpeg")
def _(f):
    data = _jpeg()
    return _one(f, "cut.jpg", data[: len(data) // 2], "skipped")


@kind("truncated-png")
def _(f):
    data = make_image(f / "full.png", 4, size=(200, 160)).read_bytes()
    (f / "full.png").unlink()
    return _one(f, "cut.png", data[: len(data) // 2], "skipped")


@kind("zero-byte-image")
def _(f):
    return _one(f, "empty.jpg", b"", "skipped")


@kind("zero-byte-audio")
def _(f):
    return _one(f, "empty.wav", b"", "skipped")


@kind("random-bytes-image")
def _(f):
    return _one(f, "noise.png", random.Random(1).randbytes(8192), "skipped")


@kind("random-bytes-audio")
def _(f):
    return _one(f, "noise.mp3", random.Random(2).randbytes(8192), "either")


# --- wrong extensions, both ways -----------------------------------------------
@kind("image-named-audio")
def _(f):
    return _one(f, "photo.wav", _jpeg(7), "skipped")


@kind("audio-named-image")
def _(f):
    return _one(f, "clip.jpg", _wav_bytes(), "skipped")


@kind("jpeg-named-png")
def _(f):
    return _one(f, "really-a-jpeg.png", _jpeg(8), "either")


# --- decompression bombs and huge headers -----------------------------------------
@kind("bomb-9999x9999-png")
def _(f):
    bomb_png(f / "bomb.png")
    return Case({str(f / "bomb.png"): "either"})


@kind("huge-dimensions-header")
def _(f):
    header = struct.pack(">IIBBBBB", 65535, 65535, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) \
        + png_chunk(b"IEND", b"")
    return _one(f, "claims-4gp.png", data, "skipped")


@kind("ztxt-bomb-png")
def _(f):
    png = make_image(f / "base.png", 9).read_bytes()
    (f / "base.png").unlink()
    bomb = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"A" * (64 << 20), 9))
    return _one(f, "text-bomb.png", png[:33] + bomb + png[33:], "either")


@kind("huge-jpeg-header")
def _(f):
    data = _jpeg(10)
    comment = b"\xff\xfe" + struct.pack(">H", 65535) + b"x" * 65533
    return _one(f, "long-header.jpg", data[:2] + comment * 40 + data[2:], "either")


@kind("gif-huge-screen")
def _(f):
    gif = bytearray(b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00")
    gif += b"\x2c" + struct.pack("<HHHH", 0, 0, 1, 1) + b"\x00" + b"\x02\x02\x44\x01\x00" + b"\x3b"
    return _one(f, "wide.gif", bytes(gif), "either")


# --- odd audio ---------------------------------------------------------------
@kind("wav-zero-frames")
def _(f):
    return _one(f, "silent.wav", _wav_bytes(0.0), "skipped")


@kind("wav-one-sample")
def _(f):
    return _one(f, "blip.wav", _wav_bytes(1 / 16000), "either")


@kind("wav-truncated")
def _(f):
    data = _wav_bytes(2.0)  # the header still says 2 s
    return _one(f, "cut.wav", data[: 44 + 4000], "either")


@kind("wav-huge-declared-size")
def _(f):
    data = bytearray(_wav_bytes(1.0))
    data[4:8] = struct.pack("<I", 0xFFFFFFFF)
    data[40:44] = struct.pack("<I", 0xFFFFFFF0)
    return _one(f, "claims-4gb.wav", bytes(data), "either")


# --- things that are not regular files ----------------------------------------------
@kind("fifo", hazard=True)
def _(f):
    os.mkfifo(f / "pipe.wav")
    os.mkfifo(f / "pipe.jpg")
    return Case({str(f / "pipe.wav"): "skipped", str(f / "pipe.jpg"): "skipped"})


@kind("device-links", hazard=True)
def _(f):
    os.symlink("/dev/zero", f / "zero.jpg")
    os.symlink("/dev/urandom", f / "random.wav")
    return Case({str(f / "zero.jpg"): "skipped", str(f / "random.wav"): "skipped"})


@kind("symlink-loops", hazard=True)
def _(f):
    os.symlink("self.png", f / "self.png")
    os.symlink("pong.jpg", f / "ping.jpg")
    os.symlink("ping.jpg", f / "pong.jpg")
    os.symlink("..", f / "up")  # a folder loop: must not be walked forever, nor index anything twice
    return Case({str(f / "self.png"): "skipped", str(f / "ping.jpg"): "skipped", str(f / "pong.jpg"): "skipped"})


@kind("dangling-link")
def _(f):
    os.symlink("nowhere/gone.png", f / "gone.png")
    return Case({str(f / "gone.png"): "skipped"})


@kind("folder-named-like-media")
def _(f):
    make_image(f / "album.jpg" / "inner.png", 12)
    return Case({str(f / "album.jpg/inner.png"): "indexed"})


# --- names ---------------------------------------------------------------------
@kind("unicode-names")
def _(f):
    names = ["naïve café 写真 🎧.png", "line\nbreak.jpg", "tab\tand 'quotes\".png", "-dash-first.png",
             "x" * 240 + ".png"]
    for i, name in enumerate(names):
        make_image(f / name, 20 + i, fmt="PNG" if name.endswith(".png") else "JPEG")
    return Case({str(f / n): "indexed" for n in names})


@kind("undecodable-name")
def _(f):
    raw = os.fsencode(f) + b"/bad-\xff\xfe-bytes.png"
    with open(raw, "wb") as out:
        out.write(make_image(f / "tmp.png", 30).read_bytes())
    (f / "tmp.png").unlink()
    return Case({os.fsdecode(raw): "either"})


# --- identical bytes under an image name and an audio name -------------------------------
@kind("twin-audio-bytes")
def _(f):
    data = _wav_bytes(0.9, seed=40)
    (f / "twin.wav").write_bytes(data)
    (f / "twin.jpg").write_bytes(data)
    return Case({str(f / "twin.wav"): "indexed", str(f / "twin.jpg"): "skipped"})


@kind("twin-image-bytes")
def _(f):
    data = make_image(f / "twin.png", 41).read_bytes()
    (f / "twin.wav").write_bytes(data)
    return Case({str(f / "twin.png"): "indexed", str(f / "twin.wav"): "skipped"})


# --- files changing and vanishing mid-run (hooks placed in the child) ------------------
def _mutation(f: Path, name: str, target: str, when: str, action: str) -> Case:
    path = make_image(f / name, 50)
    other = make_image(f.parent / f"{f.name}-replacement.png", 51)
    hook = {"target": target, "when": when, "match": name, "action": action, "path": str(path), "source": str(other)}
    return Case({str(path): "any"}, hooks=[hook], mutates=True)


@kind("vanishes-before-hash")
def _(f):
    return _mutation(f, "fleeting.png", "indexer.walk:content_hash", "before", "vanish")


@kind("vanishes-before-decode")
def _(f):
    return _mutation(f, "fleeting.png", "searchengine.media:load_image", "before", "vanish")


@kind("changes-after-hash")
def _(f):
    return _mutation(f, "shifty.png", "indexer.walk:content_hash", "after", "change")


def remove(folder: Path) -> None:
    """Delete a kind's folder (FIFOs and links included) so a rerun of the script starts clean."""
    shutil.rmtree(folder, ignore_errors=True)
