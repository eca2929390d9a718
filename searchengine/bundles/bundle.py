"""A bundle: image, text and speech encoders that share one embedding space."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .. import settings, threads
from ..errors import BundleError, WeightsMissing
from ..fileio import atomic_write
from ..types import BundleInfo
from . import clip
from .cascade import CascadeSpeechEncoder, Transcriber
from .registry import DEFAULT_WHISPER, HF_HUB_PREFIX, BundleSpec
from .weights import BUNDLE_FILE, clip_state, resolve_ref


class LearnedSpeech:
    """Adapter giving the learned encoder the cascade's (vectors, transcripts) shape."""

    kind = "learned"

    def __init__(self, encoder):
        self.encoder = encoder
        self.float_encoder = encoder  # the weights as loaded (int8 runs a quantised copy)

    def use_precision(self, precision: str) -> None:
        """Run a copy quantised for int8, else the loaded encoder, at `precision`."""
        from .precision import prepare

        self.encoder = prepare(self.float_encoder, precision)
        self.encoder.precision = precision

    def encode(self, clips: list[np.ndarray]) -> tuple[np.ndarray, list[str | None]]:
        """([N, D] unit vectors, no transcripts)."""
        return self.encoder.encode(clips), [None] * len(clips)


@dataclass
class Bundle:
    """Encoders of one shared space; every encode_* returns L2-normalised float32 [N, D]."""

    name: str
    source: str
    towers: clip.ClipTowers
    speech: LearnedSpeech | CascadeSpeechEncoder
    fingerprint: str
    cascade_whisper: str | None = None

    @property
    def dim(self) -> int:
        """Dimension of the shared space."""
        return self.towers.dim

    @property
    def image_size(self) -> int:
        """The side of the square the image tower reads (decoders may shrink images towards it)."""
        return self.towers.image_size

    @property
    def speech_seconds(self) -> float | None:
        """How much of a recording the speech encoder hears; None when it hears all of it (the cascade)."""
        encoder = getattr(self.speech, "encoder", None)
        return encoder.config.max_seconds if encoder is not None else None

    @property
    def info(self) -> BundleInfo:
        """What an index records about its bundle."""
        return BundleInfo(self.name, self.source, self.dim, self.fingerprint)

    @property
    def precision(self) -> str:
        """The arithmetic the encoders run in: fp32, bf16 or int8 (bundles/precision.py)."""
        return self.towers.precision

    def use_precision(self, precision: str | None) -> None:
        """Run every torch encoder at `precision` (None: the device's default); Whisper transcription keeps its own."""
        self.towers.use_precision(precision)
        if isinstance(self.speech, LearnedSpeech):
            self.speech.use_precision(self.towers.precision)

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        """Embed RGB images."""
        return self.towers.encode_images(images)

    def prepare_image(self, image: Image.Image) -> np.ndarray:
        """The image tower's input for a decoded image, float32 [3, S, S]; safe to run in decode workers."""
        return self.towers.prepare_image(image)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Embed a batch of prepare_image outputs, float32 [N, 3, S, S]."""
        return self.towers.encode_pixels(pixels)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Embed text (captions, typed queries, transcripts)."""
        return self.towers.encode_texts(texts)

    def encode_speech(self, clips: list[np.ndarray]) -> tuple[np.ndarray, list[str | None]]:
        """Embed 16 kHz mono clips; transcripts are filled in by the cascade only."""
        return self.speech.encode(clips)

    def index_whisper(self, transcribe: bool | None = None) -> str | None:
        """The Whisper that writes down recordings at index time beside a learned encoder, or None.

        The cascade transcribes as it encodes (None here). transcribe=None: this bundle's cascade
        Whisper when its weights are installed (nothing downloads); True: WeightsMissing when they
        are not; False: never.
        """
        if self.speech.kind == "cascade" or transcribe is False:
            return None
        name = self.cascade_whisper or DEFAULT_WHISPER
        from .whisper import locate_whisper  # the weight packages and caches, no model load

        try:
            locate_whisper(name)
        except WeightsMissing:
            if transcribe:
                raise
            return None
        return name

    def transcriber(self, whisper: str) -> Transcriber:
        """A loaded Whisper on this bundle's device."""
        return Transcriber(whisper, self.towers.device)

    def cascade(self, whisper: str | None = None) -> CascadeSpeechEncoder:
        """A cascade speech encoder over this bundle's text tower (for comparisons in eval)."""
        if isinstance(self.speech, CascadeSpeechEncoder) and whisper is None:
            return self.speech
        name = whisper or self.cascade_whisper or DEFAULT_WHISPER
        return CascadeSpeechEncoder(Transcriber(name, self.towers.device), self.encode_texts)


def resolve_bundle(name_or_path: str | Path) -> tuple[BundleSpec | None, Path | None]:
    """(registry spec, bundle folder) for a name (registered or clip:...) or a path; either may be None, never both.

    A registered name wins over a folder of the same name; BundleNotFound when neither exists.
    """
    return resolve_ref(name_or_path)


def load_bundle(name_or_path: str | Path, device: str | None = None, clip_weights: str | None = None,
                whisper_model: str | None = None, precision: str | None = None) -> Bundle:
    """Load a registered bundle by name, a bundle named by its parts (clip:MODEL/TAG+whisper:SIZE), or a folder.

    Args:
        name_or_path: a name from `list_bundles()`, a clip:... name, or a folder holding bundle.json.
        device: "cpu", "cuda", ...; default: the device setting, else CUDA when available.
        clip_weights: local open_clip checkpoint (else the clip_weights setting: SEARCHENGINE_CLIP_WEIGHTS or
            the config file; else the pretrained tag, from the cache or the hub).
        whisper_model: local CTranslate2 Whisper folder or model name (else the whisper_model setting).
        precision: fp32, bf16 or int8 (else the precision setting, else bf16 on CUDA and fp32 on the CPU).
    """
    spec, directory = resolve_bundle(name_or_path)
    if directory is not None:
        bundle = load_bundle_dir(directory, device, source=spec.name if spec else str(directory))
    else:
        bundle = _load_pretrained(spec, device, clip_weights, whisper_model)
    bundle.use_precision(settings.value("precision", precision))
    threads.ensure()  # torch has just started its pools at every core: size them as this process's role says
    return bundle


def _load_pretrained(spec: BundleSpec, device: str | None, clip_weights: str | None,
                     whisper_model: str | None) -> Bundle:
    """open_clip towers + cascade; reports every missing weight file in one error."""
    weights = settings.resolve("clip_weights", clip_weights)
    if spec.clip_model.startswith(HF_HUB_PREFIX):  # the repo brings its own weights
        weights = settings.Resolved("clip_weights", None, "default")
    clip_source = weights.value or spec.clip_pretrained
    whisper_source = settings.value("whisper_model", whisper_model) or spec.whisper
    problems: list[str] = []
    towers = transcriber = None
    try:
        if weights.value and not Path(weights.value).expanduser().is_file():  # never mistake a typo for a tag
            raise WeightsMissing(f"open_clip checkpoint: {clip_state(spec.clip_model, None, weights).hint}")
        towers = clip.load_pretrained(spec.clip_model, clip_source, device)
    except WeightsMissing as exc:
        problems.append(str(exc))
    try:
        transcriber = Transcriber(whisper_source, device)
    except WeightsMissing as exc:
        problems.append(str(exc))
    if problems:
        raise WeightsMissing(f"bundle '{spec.name}' needs weights that are not available:\n- " + "\n- ".join(problems))
    fingerprint = _fingerprint([spec.clip_model, clip_source or "", transcriber.source])
    return Bundle(spec.name, spec.name, towers, CascadeSpeechEncoder(transcriber, towers.encode_texts), fingerprint)


def load_bundle_dir(directory: Path, device: str | None = None, source: str | None = None) -> Bundle:
    """Load a bundle folder written by `train` (bundle.json + weights)."""
    config = read_bundle_config(directory)
    towers = _load_dir_towers(directory, config, device)
    speech_cfg = config.get("speech", {})
    if speech_cfg.get("type") == "cascade":
        speech = CascadeSpeechEncoder(Transcriber(speech_cfg["whisper"], towers.device), towers.encode_texts)
    else:
        from .speech import LearnedSpeechEncoder  # torch speech stack only for learned bundles

        speech = LearnedSpeech(LearnedSpeechEncoder.load(directory, towers.device))
    return Bundle(config.get("name", directory.name), source or str(directory), towers, speech,
                  _fingerprint_dir(directory), config.get("cascade_whisper"))


def read_bundle_config(directory: Path) -> dict:
    """The parsed bundle.json of a bundle folder."""
    try:
        return json.loads((directory / BUNDLE_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"unreadable bundle at {directory}: {exc}") from exc


def _load_dir_towers(directory: Path, config: dict, device: str | None) -> clip.ClipTowers:
    clip_cfg = config["clip"]
    if "model_cfg" in clip_cfg:
        return clip.load_custom(clip_cfg["model_cfg"], directory / clip_cfg["weights"], device)
    pretrained = clip_cfg["pretrained"]
    local = directory / pretrained
    return clip.load_pretrained(clip_cfg["model_name"], str(local) if local.exists() else pretrained, device)


def _fingerprint(parts: list[str]) -> str:
    """Hash of the weight identities; local files contribute their content (sampled when huge)."""
    digest = hashlib.sha256()
    for part in parts:
        path = Path(part)
        digest.update(file_digest(path).encode() if path.is_file() else part.encode())
    return digest.hexdigest()


def _fingerprint_dir(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in {".json", ".pt"}):
        digest.update(path.name.encode() + file_digest(path).encode())
    return digest.hexdigest()


def file_digest(path: Path, sample: int = 4 << 20) -> str:
    """sha256 of a file; files over 3×`sample` hash size + head, middle and tail (fast for big checkpoints)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        if size <= 3 * sample:
            digest.update(handle.read())
            return digest.hexdigest()
        for offset in (0, size // 2, size - sample):
            handle.seek(offset)
            digest.update(handle.read(sample))
    return digest.hexdigest()


def save_bundle_dir(directory: Path, name: str, model_cfg: dict, towers: clip.ClipTowers, speech_encoder,
                    cascade_whisper: str | None = None, half: bool = True) -> Path:
    """Write a bundle folder: bundle.json, clip.pt (fp16 by default: half the size, same rankings), speech.*."""
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in towers.model.state_dict().items()}
    atomic_write(directory / "clip.pt", lambda p: torch.save(state, p))
    speech_encoder.save(directory)
    config = {"format": 1, "name": name, "embed_dim": model_cfg["embed_dim"],
              "clip": {"model_cfg": model_cfg, "weights": "clip.pt"}, "speech": {"type": "learned"},
              "cascade_whisper": cascade_whisper}
    atomic_write(directory / BUNDLE_FILE, json.dumps(config, indent=2) + "\n")
    return directory
