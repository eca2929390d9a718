"""Scene backgrounds: real photos from Debian wallpaper packages and scikit-image, plus plain colours."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Real photographs only, each with the place phrase a caption may use (None: say nothing about it).
# Flower close-ups, cups and boats are left out because they would show an unnamed object that is
# also a stamp category; the KDE/MATE abstract renders are not photos.
PHOTO_BACKGROUNDS: dict[str, str | None] = {
    "/usr/share/backgrounds/mate/nature/Aqua.jpg": "on water",
    "/usr/share/backgrounds/mate/nature/Blinds.jpg": "on a green leaf",
    "/usr/share/backgrounds/mate/nature/Dune.jpg": "on a beach",
    "/usr/share/backgrounds/mate/nature/GreenMeadow.jpg": "on the grass",
    "/usr/share/backgrounds/mate/nature/RainDrops.jpg": "on green leaves",
    "/usr/share/backgrounds/mate/nature/Storm.jpg": "under a stormy sky",
    "/usr/share/backgrounds/mate/nature/Wood.jpg": None,
    "/usr/share/wallpapers/BytheWater/contents/images/1280x1024.jpg": "on a wooden pier",
    "/usr/share/wallpapers/ColdRipple/contents/images/1280x1024.jpg": "by a foggy lake",
    "/usr/share/wallpapers/DarkestHour/contents/images/1280x1024.jpg": "by a lake at night",
    "/usr/share/wallpapers/FallenLeaf/contents/images/1280x1024.jpg": "on autumn leaves",
    "/usr/share/wallpapers/Grey/contents/images/1280x1024.jpg": "in front of a building",
    "/usr/share/wallpapers/Kite/contents/images/1280x1024.jpg": "in the sky",
    "/usr/share/wallpapers/OneStandsOut/contents/images/1280x1024.jpg": "on moss",
    "/usr/share/wallpapers/Path/contents/images/1280x1024.jpg": "in a forest",
    "/usr/share/wallpapers/summer_1am/contents/images/1280x1024.jpg": "by a lake at dusk",
}
SKIMAGE_BACKGROUNDS: dict[str, str | None] = {
    "brick": "on a brick wall",
    "grass": "on the grass",
    "gravel": "on gravel",
    "hubble_deep_field": "in space",
    "moon": "on the moon",
}
PLAIN_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 40, 40), "green": (60, 150, 60), "blue": (50, 90, 200), "yellow": (235, 210, 60),
    "white": (245, 245, 245), "black": (20, 20, 20), "grey": (128, 128, 128),
    "orange": (240, 140, 40), "purple": (120, 60, 160), "pink": (240, 150, 190),
}
# How often each kind of background is drawn: mostly photos, since the target is real pictures.
KIND_WEIGHTS = {"photo": 0.6, "skimage": 0.15, "colour": 0.25}


@dataclass(frozen=True)
class Background:
    """One background source and the phrase captions may use for it."""

    id: str
    kind: str
    source: str
    phrase: str | None
    rgb: tuple[int, int, int] | None = None


def _photo_id(path: str) -> str:
    """Short id for a photo file: its wallpaper folder or file stem."""
    p = Path(path)
    return "photo:" + (p.parents[2].name if "wallpapers" in p.parts else p.stem)


def _skimage_loads(name: str) -> bool:
    """Whether the scikit-image sample loads offline (some need a download)."""
    try:
        _skimage_array(name)
        return True
    except Exception:  # noqa: BLE001 - any failure (missing pooch, no network) means "skip it"
        return False


def list_backgrounds() -> list[Background]:
    """All backgrounds available on this machine, in a fixed order."""
    out = [Background(_photo_id(p), "photo", p, ph) for p, ph in PHOTO_BACKGROUNDS.items() if Path(p).exists()]
    out += [Background(f"skimage:{n}", "skimage", n, ph) for n, ph in SKIMAGE_BACKGROUNDS.items() if _skimage_loads(n)]
    out += [Background(f"colour:{c}", "colour", c, f"on a {c} background", rgb) for c, rgb in PLAIN_COLOURS.items()]
    return out


def _skimage_array(name: str) -> np.ndarray:
    """A scikit-image sample as an HxWx3 uint8 array."""
    import skimage.data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = np.asarray(getattr(skimage.data, name)())
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return arr[..., :3].astype(np.uint8)


@lru_cache(maxsize=64)
def load_source(bg: Background, max_side: int = 1024) -> Image.Image:
    """The background's full picture, downscaled to at most max_side (cached per process)."""
    if bg.kind == "skimage":
        im = Image.fromarray(_skimage_array(bg.source))
    else:
        im = Image.open(bg.source)
        im.draft("RGB", (max_side, max_side))  # JPEG decodes at reduced scale: much faster
        im = im.convert("RGB")
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return im


@dataclass(frozen=True)
class BackgroundCrop:
    """Where to cut the square: side as a fraction of the short side, offsets in [0, 1], flip."""

    zoom: float
    fx: float
    fy: float
    flip: bool
    noise_seed: int


def _plain(bg: Background, size: int, crop: BackgroundCrop) -> Image.Image:
    """A plain colour with a faint gradient and grain, so it does not look synthetic-flat."""
    rng = np.random.default_rng(crop.noise_seed)
    ramp = np.linspace(-12, 12, size)[:, None, None] * (crop.fx - 0.5) * 2
    arr = np.asarray(bg.rgb, np.float32)[None, None, :] + ramp + rng.normal(0, 3, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def render_background(bg: Background, size: int, crop: BackgroundCrop) -> Image.Image:
    """A size x size RGB background cut from the source as the crop says."""
    if bg.kind == "colour":
        return _plain(bg, size, crop)
    src = load_source(bg)
    side = max(16, int(min(src.size) * crop.zoom))
    x0 = int((src.width - side) * crop.fx)
    y0 = int((src.height - side) * crop.fy)
    im = src.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.Resampling.LANCZOS)
    return ImageOps.mirror(im) if crop.flip else im
