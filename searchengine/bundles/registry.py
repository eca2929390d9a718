"""The bundle registry as plain data: name -> what to load (open_clip's pretrained.py style)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BundleSpec:
    """How to assemble a named bundle.

    Either `directory` (a bundle folder shipped inside the package) or an open_clip model and
    pretrained tag with a Whisper model for the cascade speech path.
    """

    name: str
    description: str
    directory: str | None = None
    clip_model: str | None = None
    clip_pretrained: str | None = None
    whisper: str | None = None


_BUNDLES: dict[str, BundleSpec] = {
    "clip-whisper": BundleSpec(
        name="clip-whisper",
        description="open_clip ViT-B-32 (laion2b_s34b_b79k) for images and text; speech by cascade: "
                    "faster-whisper base transcribes, the CLIP text tower embeds. For real photo libraries.",
        clip_model="ViT-B-32",
        clip_pretrained="laion2b_s34b_b79k",
        whisper="base",
    ),
    "stamp-scenes-small": BundleSpec(
        name="stamp-scenes-small",
        description="Small bundle trained on the stamp-scenes world and shipped in the package: tiny CLIP "
                    "towers + learned speech encoder on Whisper base's encoder (attention and text-tower heads, "
                    "averaged). Works offline.",
        directory="bundled/stamp-scenes-small",
    ),
}

DEFAULT_BUNDLE = "clip-whisper"
CLIP_WEIGHTS_ENV = "SEARCHENGINE_CLIP_WEIGHTS"
WHISPER_MODEL_ENV = "SEARCHENGINE_WHISPER_MODEL"
BUNDLE_ENV = "SEARCHENGINE_BUNDLE"


def list_bundles() -> list[BundleSpec]:
    """Every registered bundle."""
    return list(_BUNDLES.values())


def get_bundle_spec(name: str) -> BundleSpec | None:
    """The spec registered under `name`, or None."""
    return _BUNDLES.get(name)


def default_bundle_name() -> str:
    """SEARCHENGINE_BUNDLE when set, else the registry default."""
    return os.environ.get(BUNDLE_ENV) or DEFAULT_BUNDLE


def packaged_directory(spec: BundleSpec) -> Path | None:
    """Absolute path of a bundle folder shipped inside the package."""
    if spec.directory is None:
        return None
    return Path(__file__).resolve().parents[1] / spec.directory
