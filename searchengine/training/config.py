"""The hyperparameters of a training run, and the checks that turn bad ones into TrainingError early.

Plain data (no torch): the CLI and the checkpoint identity both read it.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

from ..bundles.registry import DEFAULT_WHISPER
from ..errors import TrainingError

# ModifiedResNet towers (list `layers`): convolutions learn object identity from a few thousand
# images better than a ViT of the same cost. Width 16 at 96 px trains at ~0.6 s per 128 images on
# 2 CPU cores (width 32: 1.3 s, 112 px: no better on dev) and leaves a 3x3 grid for left/right.
# The text tower is mostly its 49408-token embedding: width 64 keeps it at 6 MB in fp16.
DEFAULT_MODEL_CFG: dict = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 96, "layers": [1, 1, 1, 1], "width": 16, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


@dataclass
class TrainConfig:
    """Hyperparameters; everything here must match for a checkpoint to be resumed."""

    model_cfg: dict = field(default_factory=lambda: copy.deepcopy(DEFAULT_MODEL_CFG))
    tower_epochs: int = 30
    speech_epochs: int = 30
    batch_size: int = 128
    caption_views: int = 2
    speech_batch_size: int = 256
    lr: float = 1e-3
    speech_lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    frontend: str | None = DEFAULT_WHISPER
    trainable_layers: int = 0
    backbone_lr_scale: float = 0.1
    pool: str = "attention"
    pool_queries: int = 16
    # The text pool's copy of the text tower learns at this fraction of the head's rate (0: frozen).
    # On the stamp-scenes world 0.1 underfit (dev speech->image R@1 0.467); 1.0 reached 0.488.
    text_lr_scale: float = 1.0
    speech_options: dict = field(default_factory=dict)  # other SpeechEncoderConfig fields (scratch sizes)
    augment_copies: int = 2
    # What an augmented copy is: "basic" (speed 0.9-1.1 + white noise) or "capture" (room, noise,
    # band-limit, level/clipping, Opus/MP3 round trip, silence and breaths: training/robust.py).
    augment: str = "basic"
    # Share of the clips whose as-recorded version is replaced by an augmented one: robustness
    # without the cost of a second feature pass when the front end is the slow part.
    augment_first: float = 0.0
    # Start the towers from this bundle's weights (same architecture) instead of at random.
    init_from: str | None = None
    distill_weight: float = 1.0
    time_mask: float = 0.15
    name: str = "stamp-scenes-small"
    # Cut the text token table to the rows the train captions use (+ <unk>): 49408 rows are most of
    # a small bundle's bytes, and rows no caption trains stay random anyway.
    prune_tokens: bool = True


_INTS = ("tower_epochs", "speech_epochs", "batch_size", "caption_views", "speech_batch_size", "warmup_steps",
         "trainable_layers", "pool_queries", "augment_copies")
_FLOATS = ("lr", "speech_lr", "weight_decay", "backbone_lr_scale", "text_lr_scale", "distill_weight", "time_mask",
           "augment_first")


def resolve_config(config: TrainConfig | None, overrides: dict) -> TrainConfig:
    """`config` (default TrainConfig()) with single fields replaced, checked; TrainingError when unusable."""
    try:
        config = dataclasses.replace(config or TrainConfig(), **overrides)
    except (TypeError, ValueError) as exc:  # an unknown field name
        raise TrainingError(f"bad training setting: {exc}") from exc
    _check_config(config)
    return config


def _check_config(config: TrainConfig) -> None:
    """Reject settings that would only fail later, deep inside training (or as a bare TypeError there)."""
    wrong_type = [n for n in _INTS if not _is_int(getattr(config, n))]
    wrong_type += [n for n in _FLOATS if not _is_int(getattr(config, n)) and not isinstance(getattr(config, n), float)]
    if wrong_type:
        raise TrainingError(f"these settings must be numbers: {', '.join(wrong_type)}")
    if config.caption_views < 1:
        raise TrainingError("caption_views must be at least 1")
    if min(config.tower_epochs, config.speech_epochs, config.augment_copies) < 0:
        raise TrainingError("epochs and augment_copies must not be negative")
    if min(config.batch_size, config.speech_batch_size) < 2:
        raise TrainingError("contrastive batches need at least 2 pairs")
    if config.augment not in ("basic", "capture"):
        raise TrainingError(f"augment must be basic or capture, not {config.augment!r}")
    if not 0 <= config.augment_first <= 1:
        raise TrainingError("augment_first must be in [0, 1]")
    if config.distill_weight < 0 or not 0 <= config.time_mask < 1:
        raise TrainingError("distill_weight must be >= 0 and time_mask in [0, 1)")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python, not to us
