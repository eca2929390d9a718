"""Render a planned scene: paste the stamp cut-outs onto the background and save a JPEG."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

from .backgrounds import render_background
from .layout import Placement
from .objects import load_object_image
from .scenes import ScenePlan

JPEG_QUALITY = 90


def _jittered(im: Image.Image, jitter: tuple[float, float, float]) -> Image.Image:
    """Mild brightness/contrast/saturation change of the RGB part, alpha untouched."""
    rgb, alpha = im.convert("RGB"), im.getchannel("A")
    brightness, contrast, saturation = jitter
    rgb = ImageEnhance.Brightness(rgb).enhance(brightness)
    rgb = ImageEnhance.Contrast(rgb).enhance(contrast)
    rgb = ImageEnhance.Color(rgb).enhance(saturation)
    rgb.putalpha(alpha)
    return rgb


def paste_object(canvas: Image.Image, stamp: Image.Image, p: Placement) -> None:
    """Paste one scaled, flipped, jittered stamp instance onto canvas in place."""
    size = canvas.width
    w, h = max(1, round(p.w * size)), max(1, round(p.h * size))
    obj = stamp.resize((w, h), Image.Resampling.LANCZOS)
    if p.flip:
        obj = ImageOps.mirror(obj)
    obj = _jittered(obj, p.jitter)
    canvas.paste(obj, (round(p.cx * size - w / 2), round(p.cy * size - h / 2)), obj)


def render_scene(plan: ScenePlan, size: int) -> Image.Image:
    """The scene as a size x size RGB image."""
    canvas = render_background(plan.background, size, plan.crop)
    for placement, source in zip(plan.placements, plan.sources):
        paste_object(canvas, load_object_image(source), placement)
    return canvas


def save_scene(plan: ScenePlan, size: int, out_dir: Path) -> Path:
    """Render and write the scene's JPEG under out_dir; returns its path."""
    path = out_dir / plan.image
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    render_scene(plan, size).save(partial, "JPEG", quality=JPEG_QUALITY)
    partial.replace(path)
    return path
