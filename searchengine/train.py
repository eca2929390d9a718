"""Train a bundle: small CLIP towers from scratch (or frozen from a bundle), then the learned speech encoder.

Order matters: the towers train first on image-caption pairs; the speech encoder then learns to
land each spoken caption next to the (frozen) embedding of its image, optionally pulled towards
its caption's text embedding too. The Whisper front end never trains, so its outputs are
computed once per clip (plus a few augmented copies) and cached; only the head runs per epoch.

Every epoch ends with a checkpoint (out_dir/checkpoint.pt). Randomness is re-seeded from
(seed, phase, epoch) at the start of each epoch, so a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import TrainingError
from .train_data import read_manifest, split_data

CHECKPOINT = "checkpoint.pt"
CACHE_DIR = "cache"  # a sub-folder: bundle fingerprints hash only the top-level files
CHECKPOINT_FORMAT = 1

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
    frontend: str | None = "tiny.en"
    trainable_layers: int = 0
    backbone_lr_scale: float = 0.1
    pool: str = "attention"
    pool_queries: int = 16
    # The text pool's copy of the text tower learns at this fraction of the head's rate (0: frozen).
    # On the stamp-scenes world 0.1 underfit (dev speech->image R@1 0.467); 1.0 reached 0.488.
    text_lr_scale: float = 1.0
    speech_options: dict = field(default_factory=dict)  # other SpeechEncoderConfig fields (scratch sizes)
    augment_copies: int = 2
    distill_weight: float = 1.0
    time_mask: float = 0.15
    name: str = "stamp-scenes-small"


@dataclass
class TrainEvent:
    """One progress report: kind is "step", "epoch" (with dev metrics) or "stage" (with a message)."""

    kind: str
    phase: str
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float | None = None
    metrics: dict | None = None
    message: str = ""


@dataclass
class TrainReport:
    """What a training run did and where the bundle is."""

    bundle_dir: Path
    device: str
    seconds: float
    counts: dict
    history: list[dict]
    dev: dict
    resumed_from: str | None = None

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["bundle_dir"] = str(self.bundle_dir)
        return data


Progress = Callable[[TrainEvent], None]


def train_bundle(manifest: str | Path, out_dir: str | Path, *, from_bundle: str | Path | None = None, seed: int = 0,
                 config: TrainConfig | None = None, device: str | None = None, progress: Progress | None = None,
                 resume: bool = True, **overrides) -> TrainReport:
    """Train a bundle on a manifest's train split and write it to `out_dir` (loadable by load_bundle).

    Args:
        manifest: manifest.jsonl of image / audio / text / split records.
        out_dir: bundle folder to write; also holds checkpoint.pt and the feature cache.
        from_bundle: keep this bundle's towers frozen and train only the speech encoder.
        seed: seeds every random generator; the same seed and config give the same weights.
        config: hyperparameters (TrainConfig); keyword `overrides` replace single fields of it.
        device: "cpu", "cuda", ...; default CUDA when present (bf16 autocast there).
        progress: called with TrainEvent objects (steps, epochs with dev recall, stages).
        resume: continue from out_dir/checkpoint.pt when it exists (a finished run is not redone).
    """
    config = dataclasses.replace(config or TrainConfig(), **overrides)
    _check_config(config)
    run = _Run(Path(manifest), Path(out_dir), config, seed, from_bundle, device, progress)
    return run.execute(resume)


def _check_config(config: TrainConfig) -> None:
    """Reject settings that would only fail later, deep inside training."""
    if config.caption_views < 1:
        raise TrainingError("caption_views must be at least 1")
    if min(config.tower_epochs, config.speech_epochs, config.augment_copies) < 0:
        raise TrainingError("epochs and augment_copies must not be negative")
    if min(config.batch_size, config.speech_batch_size) < 2:
        raise TrainingError("contrastive batches need at least 2 pairs")
    if config.distill_weight < 0 or not 0 <= config.time_mask < 1:
        raise TrainingError("distill_weight must be >= 0 and time_mask in [0, 1)")


# ----------------------------------------------------------------------------- helpers


def seed_everything(seed: int, *parts) -> torch.Generator:
    """Seed random, numpy and torch from (seed, *parts); return a torch generator on the same seed."""
    digest = hashlib.sha256(json.dumps([seed, *parts]).encode()).digest()
    value = int.from_bytes(digest[:8], "little") % (2**63)
    random.seed(value)
    np.random.seed(value % (2**32))
    torch.manual_seed(value)
    return torch.Generator().manual_seed(value)


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up then cosine decay to zero; a pure function of the step, so resuming needs no state."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """open_clip's split: no decay on gains, biases, norms and the temperature."""
    return decay_groups(model.named_parameters(), weight_decay)


def decay_groups(named, weight_decay: float) -> list[dict]:
    """param_groups for (name, parameter) pairs."""
    decay, rest = [], []
    for name, param in named:
        if not param.requires_grad:
            continue
        flat = param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (rest if flat else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's rate, scaled by the group's own "lr_scale" (pretrained blocks learn slower)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def _atomic_save(obj, path: Path) -> None:
    """torch.save through a temp file: an interrupted save never corrupts the last checkpoint."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def file_sha1(path: Path) -> str:
    """Content hash of a (small) file, to tie caches and checkpoints to one manifest."""
    return hashlib.sha1(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- the run


class _Run:
    """State of one training run: data, models, checkpoint, history."""

    def __init__(self, manifest: Path, out_dir: Path, config: TrainConfig, seed: int, from_bundle, device, progress):
        from .bundles.device import pick_device

        self.manifest, self.out_dir, self.config, self.seed = manifest, out_dir, config, seed
        self.from_bundle = str(from_bundle) if from_bundle is not None else None
        self.device = pick_device(device)
        self.progress = progress or (lambda event: None)
        pairs = read_manifest(manifest)
        self.train = split_data(pairs, "train")
        self.dev = split_data(pairs, "dev") if any(p.split == "dev" for p in pairs) else None
        self.history: list[dict] = []
        self.prior_seconds = 0.0  # training time spent by earlier, interrupted calls
        self.started, self.running = time.perf_counter(), False
        self.identity = {"config": dataclasses.asdict(config), "seed": seed, "from_bundle": self.from_bundle,
                         "manifest": file_sha1(manifest)}

    # -- checkpoint ---------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds of training so far, interrupted earlier calls included (a finished run reports its total)."""
        return self.prior_seconds + (time.perf_counter() - self.started if self.running else 0.0)

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT

    def _load_checkpoint(self, resume: bool) -> dict | None:
        """The checkpoint to continue from, or None; refuses one written for other settings."""
        if not resume or not self.checkpoint_path.is_file():
            return None
        try:
            ckpt = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        except (OSError, RuntimeError, EOFError) as exc:
            raise TrainingError(f"unreadable checkpoint {self.checkpoint_path}: {exc}") from exc
        if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("identity") != self.identity:
            raise TrainingError(f"{self.checkpoint_path} was written for other data or settings; "
                                "train into another folder or pass resume=False (--no-resume)")
        self.history, self.prior_seconds = ckpt["history"], ckpt["elapsed"]
        return ckpt

    def _save_checkpoint(self, phase: str, epoch: int, states: dict) -> None:
        ckpt = {"format": CHECKPOINT_FORMAT, "identity": self.identity, "phase": phase, "epoch": epoch,
                "history": self.history, "elapsed": self.elapsed(), **states}
        _atomic_save(ckpt, self.checkpoint_path)

    # -- driver ---------------------------------------------------------------------------------

    def execute(self, resume: bool) -> TrainReport:
        """Towers, then speech, then the bundle files; each phase skips what the checkpoint holds."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        ckpt = self._load_checkpoint(resume)
        resumed = f"{ckpt['phase']}:{ckpt['epoch']}" if ckpt else None
        if ckpt and ckpt["phase"] == "done":
            return self._report(resumed)
        self.started, self.running = time.perf_counter(), True
        towers, model_cfg = self._towers(ckpt)
        encoder, head_state = self._speech(towers, model_cfg, ckpt)
        self._write_bundle(model_cfg, towers, encoder, head_state)
        self.prior_seconds, self.running = self.elapsed(), False
        return self._report(resumed)

    def _report(self, resumed: str | None) -> TrainReport:
        counts = {"train_pairs": len(self.train.pairs), "train_images": len(self.train.images),
                  "dev_pairs": len(self.dev.pairs) if self.dev else 0, "dev_images": len(self.dev.images) if self.dev else 0}
        last = {}
        for entry in self.history:
            last.update(entry.get("metrics") or {})
        return TrainReport(self.out_dir, self.device, round(self.elapsed(), 1), counts, self.history, last, resumed)

    def _write_bundle(self, model_cfg: dict, towers, encoder, head_state: dict) -> None:
        from .bundles.bundle import save_bundle_dir

        whisper = self.config.frontend if self.config.frontend in ("tiny.en", "base") else None
        # fp16 on disk like clip.pt: loading copies the weights back into float32 parameters.
        half_speech = copy.deepcopy(encoder).cpu().half()
        save_bundle_dir(self.out_dir, self.config.name, model_cfg, towers, half_speech, cascade_whisper=whisper, half=True)
        self._save_checkpoint("done", 0, {"clip": _cpu_state(towers.model), "speech": head_state})

    def _epoch_done(self, phase: str, epoch: int, loss: float, metrics: dict, seconds: float, states: dict) -> None:
        """Record an epoch, checkpoint it and report it."""
        self.history.append({"phase": phase, "epoch": epoch + 1, "loss": round(loss, 4), "metrics": metrics,
                             "seconds": round(seconds, 1)})
        self._save_checkpoint(phase, epoch + 1, states)
        self.progress(TrainEvent("epoch", phase, epoch + 1, self._epochs(phase), loss=loss, metrics=metrics))

    def _epochs(self, phase: str) -> int:
        return self.config.tower_epochs if phase == "towers" else self.config.speech_epochs

    def _stage(self, phase: str, message: str, step: int = 0, steps: int = 0) -> None:
        self.progress(TrainEvent("stage", phase, step=step, steps=steps, message=message))

    # -- phases (bodies in train_loops.py) ----------------------------------------------------------

    def _towers(self, ckpt: dict | None):
        from .train_loops import train_towers

        return train_towers(self, ckpt)

    def _speech(self, towers, model_cfg: dict, ckpt: dict | None):
        from .train_loops import train_speech

        return train_speech(self, towers, model_cfg, ckpt)


def _cpu_state(module: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
