"""The learned speech encoder: spoken caption -> one L2-normalised vector in the shared space.

log-mel -> Whisper encoder (pretrained, mostly frozen) or a small from-scratch transformer ->
a pooling head (see pooling.py) -> projection -> L2 normalisation. With several heads on the same
frames (pool "attention+text"), each is trained on its own loss and the encoder returns their
normalised mean: heads of different shapes make different mistakes, so the mean beats either.

The split into `frozen_features` and `head` exists for training speed: the frozen part of the
encoder is deterministic, so a trainer can run it once per clip, cache the result and then train
only the head (and the top Whisper blocks) for many epochs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BundleError, MediaError
from ..fileio import atomic_write
from ..types import SAMPLE_RATE
from .device import pick_device
from .features import log_mel
from .pooling import POOLS, build_pool
from .precision import autocast as precision_autocast
from .precision import resolve_precision
from .registry import DEFAULT_WHISPER
from .whisper import WhisperEncoder, load_whisper_encoder

CONFIG_FILE = "speech.json"
WEIGHTS_FILE = "speech.pt"
FORMAT = "searchengine.speech/1"
FRAMES_PER_SECOND = 100  # log-mel frame rate (10 ms hop)
WHISPER_MAX_SECONDS = 30.0  # Whisper has 1500 positions at 50 per second


@dataclasses.dataclass
class SpeechEncoderConfig:
    """Everything needed to rebuild the encoder; the weights of a saved bundle fill it in.

    frontend: a name in registry.WHISPER_WEIGHTS, a directory with a CTranslate2 Whisper model, or
    None for the from-scratch baseline whose size is width/layers/heads (ignored otherwise).
    Invalid settings raise BundleError.
    """

    frontend: str | None = DEFAULT_WHISPER
    embed_dim: int = 512
    trainable_layers: int = 0
    pool: str = "attention"
    pool_queries: int = 1
    max_seconds: float = 30.0
    width: int = 256
    layers: int = 4
    heads: int = 4
    text_tower: dict | None = None  # shape of the CLIP text transformer the "text" pool copies

    def __post_init__(self):
        problem = self._problem()
        if problem:
            raise BundleError(f"invalid speech encoder settings: {problem}")

    def _problem(self) -> str | None:
        kinds = self.pool_kinds
        if any(kind not in POOLS for kind in kinds) or len(set(kinds)) != len(kinds):
            return f"pool must be one of {sorted(POOLS)} or several joined by '+', each once; not {self.pool!r}"
        if self.embed_dim < 1 or self.trainable_layers < 0 or self.max_seconds <= 0:
            return "embed_dim must be >= 1, trainable_layers >= 0, max_seconds > 0"
        if self.pool_queries < 1 or (self.pool == "mean" and self.pool_queries != 1):
            return "pool_queries must be >= 1, and 1 for mean pooling"
        if "text" in kinds and not self.text_tower:
            return "the text pool needs text_tower: the width, heads, layers and context_length"
        if self.frontend is not None and self.max_seconds > WHISPER_MAX_SECONDS:
            return f"Whisper front ends take at most {WHISPER_MAX_SECONDS:g} s"
        if self.frontend is None and (self.heads < 1 or self.width % self.heads):
            return "width must be a multiple of heads"
        return None

    @property
    def pool_kinds(self) -> list[str]:
        return self.pool.split("+")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SpeechEncoderConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise BundleError(f"unknown speech encoder settings: {sorted(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise BundleError(f"invalid speech encoder settings: {exc}") from exc


def _scratch_backbone(config: SpeechEncoderConfig) -> WhisperEncoder:
    # Same shape of network as Whisper (conv subsampling + pre-LN transformer), random weights.
    n_ctx = int(config.max_seconds * FRAMES_PER_SECOND) // 2 + 1
    return WhisperEncoder(config.width, config.heads, config.layers, n_ctx=n_ctx)


def _as_wave(wave) -> torch.Tensor:
    wave = torch.as_tensor(np.asarray(wave, dtype=np.float32) if not torch.is_tensor(wave) else wave)
    if wave.dim() != 1:
        raise MediaError(f"expected 1-D 16 kHz mono waveforms, got shape {tuple(wave.shape)}")
    return wave.float()


class LearnedSpeechEncoder(nn.Module):
    """Speech -> shared-space vector. See the module docstring for the pipeline."""

    precision: str | None = None  # fp32, bf16 or int8 (bundles/precision.py); None: the device's default

    def __init__(self, config: SpeechEncoderConfig, backbone: WhisperEncoder | None = None):
        super().__init__()
        self.config = config
        self.scratch = config.frontend is None
        if backbone is None:
            backbone = _scratch_backbone(config) if self.scratch else load_whisper_encoder(config.frontend)
        if not self.scratch and config.trainable_layers > backbone.n_layers:
            raise BundleError(f"trainable_layers={config.trainable_layers} but the encoder has {backbone.n_layers}")
        self.backbone = backbone
        self.n_frozen = 0 if self.scratch else backbone.n_layers - config.trainable_layers
        first, *others = [self._build_head(kind, backbone.d_model) for kind in config.pool_kinds]
        self.pool, self.proj = first["pool"], first["proj"]  # the names single-head bundles were saved with
        self.extra_heads = nn.ModuleList(others)
        for name, param in self.named_parameters():
            param.requires_grad_(not self._is_frozen(name))

    # ------------------------------------------------------------------ structure

    def _build_head(self, kind: str, dim: int) -> nn.ModuleDict:
        config = self.config
        pool = build_pool(kind, dim, config.pool_queries, config.text_tower, config.embed_dim)
        # The text pool ends in the text tower's own projection into the shared space.
        proj = nn.Identity() if pool.projects else nn.Linear(pool.out_features, config.embed_dim)
        return nn.ModuleDict({"pool": pool, "proj": proj})

    @property
    def heads(self) -> list[tuple[nn.Module, nn.Module]]:
        """(pool, projection) of every head, the first one first."""
        return [(self.pool, self.proj)] + [(h["pool"], h["proj"]) for h in self.extra_heads]

    @property
    def feature_dim(self) -> int:
        """Width of the encoder's hidden states (what frozen_features returns for Whisper)."""
        return self.backbone.d_model

    @property
    def max_frames(self) -> int:
        return int(self.config.max_seconds * FRAMES_PER_SECOND)

    def _frozen_prefixes(self) -> tuple[str, ...]:
        if self.scratch:
            return ()
        prefixes = ["backbone.conv1.", "backbone.conv2."]
        prefixes += [f"backbone.blocks.{i}." for i in range(self.n_frozen)]
        if self.config.trainable_layers == 0:
            prefixes.append("backbone.ln_post.")
        return tuple(prefixes)

    def _is_frozen(self, name: str) -> bool:
        return name.startswith(self._frozen_prefixes())  # startswith(()) is False: scratch trains all

    def _runs_top(self) -> bool:
        """Whether head() runs encoder blocks (and ln_post) itself."""
        return self.scratch or self.config.trainable_layers > 0

    # ------------------------------------------------------------------ forward passes

    def frozen_features(self, mel: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The part that never trains: ([B, T', feature_dim], lengths in T' frames). Cache it per clip.

        For the from-scratch baseline nothing is frozen: this returns the log-mel as [B, T, 80].
        """
        if self.scratch:
            return mel.transpose(1, 2), lengths
        with torch.no_grad():
            x, out_lengths = self.backbone.embed(mel, lengths)
            x = self.backbone.run_blocks(x, out_lengths, 0, self.n_frozen)
            if not self._runs_top():
                x = self.backbone.ln_post(x)
        return x, out_lengths

    def head(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Trainable part: frozen_features' output -> [B, embed_dim] unit vectors (float32)."""
        outputs = self.head_outputs(features, lengths)
        return outputs[0] if len(outputs) == 1 else F.normalize(torch.stack(outputs).sum(0), dim=-1)

    def head_outputs(self, features: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Each head's own [B, embed_dim] unit vectors (training gives every head its own loss)."""
        x, lengths = features, lengths
        if self.scratch:
            x, lengths = self.backbone.embed(features.transpose(1, 2), lengths)
        if self._runs_top():
            x = self.backbone.ln_post(self.backbone.run_blocks(x, lengths, self.n_frozen))
        return [F.normalize(proj(pool(x, lengths)).float(), dim=-1) for pool, proj in self.heads]

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """mel [B, 80, T] (zero-padded), lengths [B] in mel frames -> [B, embed_dim] unit vectors."""
        return self.head(*self.frozen_features(mel, lengths))

    # ------------------------------------------------------------------ inference

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _embed_batch(self, clips: list[torch.Tensor]) -> torch.Tensor:
        mel, lengths = log_mel(clips, self.device)
        mel, lengths = mel[..., : self.max_frames], lengths.clamp(max=self.max_frames)
        with precision_autocast(self.device, self.precision or resolve_precision(None, str(self.device))):
            return self(mel, lengths)

    @torch.no_grad()
    def encode(self, waveforms, batch_size: int = 16) -> np.ndarray:
        """16 kHz mono clips (1-D tensors or arrays, any lengths) -> float32 [N, embed_dim], unit rows.

        Clips are sorted by length so each batch carries little padding; clips longer than
        max_seconds are cut.
        """
        max_samples = int(self.config.max_seconds * SAMPLE_RATE)
        clips = [_as_wave(w)[:max_samples] for w in waveforms]
        out = np.zeros((len(clips), self.config.embed_dim), dtype=np.float32)
        order = sorted(range(len(clips)), key=lambda i: clips[i].numel())
        was_training = self.training
        self.eval()
        try:
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                out[idx] = self._embed_batch([clips[i] for i in idx]).float().cpu().numpy()
        finally:
            self.train(was_training)
        return out

    # ------------------------------------------------------------------ persistence

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights that are not the pretrained frozen front end (all of them for the scratch model)."""
        frozen = self._frozen_prefixes()
        return {k: v.detach().cpu().clone() for k, v in self.state_dict().items() if not k.startswith(frozen)}

    def save(self, directory: str | os.PathLike) -> Path:
        """Write speech.json + speech.pt into a bundle directory; the front end is named, not copied."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "config": self.config.to_dict(), "backbone": self.backbone.dims()}
        atomic_write(directory / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
        atomic_write(directory / WEIGHTS_FILE, lambda p: torch.save(self.trainable_state_dict(), p))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | torch.device | None = None) -> "LearnedSpeechEncoder":
        """Rebuild from a bundle directory, reloading the frozen front end from its weight package."""
        directory = Path(directory)
        meta = _read_meta(directory)
        model = cls(SpeechEncoderConfig.from_dict(meta["config"]))
        if model.backbone.dims() != meta.get("backbone", model.backbone.dims()):
            raise BundleError(f"{directory}: front end {model.config.frontend!r} does not match the saved head")
        model._load_trainable(directory / WEIGHTS_FILE)
        return model.to(pick_device(device)).eval()

    def _load_trainable(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError) as exc:
            raise BundleError(f"cannot read {path}: {exc}") from exc
        expected = self.trainable_state_dict().keys()
        if set(state) != set(expected):
            raise BundleError(f"{path} holds {len(state)} tensors, expected {len(expected)} for this config")
        try:
            self.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatch
            raise BundleError(f"{path} does not fit this config: {exc}") from exc


def _read_meta(directory: Path) -> dict:
    try:
        meta = json.loads((directory / CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{directory}: no readable {CONFIG_FILE}: {exc}") from exc
    if meta.get("format") != FORMAT or "config" not in meta:
        raise BundleError(f"{directory / CONFIG_FILE} is not a {FORMAT} file")
    return meta
