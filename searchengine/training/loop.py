"""Train a bundle: small CLIP towers from scratch (or frozen from a bundle), then the learned speech encoder.

Order matters: the towers train first on image-caption pairs; the speech encoder then learns to
land each spoken caption next to the (frozen) embedding of its image, optionally pulled towards
its caption's text embedding too. The Whisper front end never trains, so its outputs are
computed once per clip (plus a few augmented copies) and cached; only the head runs per epoch.

Every epoch ends with a checkpoint (out_dir/checkpoint.pt). Randomness is re-seeded from
(seed, phase, epoch) at the start of each epoch, so a resumed run repeats an uninterrupted one.

This module owns the run (data, checkpoint, history, progress); towers.py and speech.py hold the
two phases and are handed the run, so neither imports this module.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..bundles.bundle import save_bundle_dir
from ..bundles.device import pick_device
from ..bundles.registry import WHISPER_WEIGHTS
from ..errors import ArgumentError, TrainingError
from ..fileio import atomic_write
from ..types import Progress, ProgressEvent
from .config import TrainConfig, resolve_config
from .data import file_sha1, read_manifest, split_data
from .optim import cpu_state, lr_at, seed_everything, set_lr
from .speech import cache_features, train_speech
from .towers import train_towers

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


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


def cache_speech_features(manifest: str | Path, out_dir: str | Path, *, seed: int = 0, config: TrainConfig | None = None,
                          device: str | None = None, progress: Progress | None = None, **overrides) -> dict:
    """Only the speech run's feature cache in out_dir/cache (no towers, no head, no checkpoint).

    A later `train_bundle` into the same out_dir with the same manifest, seed, front end and
    augmentation reuses it. Returns the cached rows per split and the seconds taken.
    """
    config = resolve_config(config, overrides)
    run = Run(Path(manifest), Path(out_dir), config, seed, None, device, progress)
    began = time.perf_counter()
    rows = cache_features(run)
    return {"cache": str(Path(out_dir) / "cache"), "rows": rows, "seconds": round(time.perf_counter() - began, 1)}


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
        progress: called with ProgressEvents (steps, epochs with dev recall, stages).
        resume: continue from out_dir/checkpoint.pt when it exists (a finished run is not redone).

    Raises:
        TrainingError: bad settings, data or checkpoint (never a bare ValueError).
    """
    config = resolve_config(config, overrides)
    run = Run(Path(manifest), Path(out_dir), config, seed, from_bundle, device, progress)
    return run.execute(resume)


class EpochLoop(Protocol):
    """What a phase hands Run.train_epochs: its model, optimiser and how to run one batch."""

    model: torch.nn.Module  # put in train mode at the start of every epoch
    optimizer: torch.optim.Optimizer
    base_lr: float
    steps: int  # batches per epoch

    def batches(self, generator: torch.Generator) -> list[torch.Tensor]: ...

    def step(self, batch: torch.Tensor, generator: torch.Generator) -> float: ...

    def dev_metrics(self) -> dict: ...

    def states(self) -> dict: ...


class Run:
    """State of one training run: data, checkpoint, history; the phases report through its methods."""

    def __init__(self, manifest: Path, out_dir: Path, config: TrainConfig, seed: int, from_bundle, device,
                 progress: Progress | None):
        self.manifest, self.out_dir, self.config, self.seed = manifest, out_dir, config, seed
        self.from_bundle = str(from_bundle) if from_bundle is not None else None
        self.device = _checked_device(device)
        self._listener = progress or (lambda event: None)
        pairs = read_manifest(manifest)
        self.train = split_data(pairs, "train")
        self.dev = split_data(pairs, "dev") if any(p.split == "dev" for p in pairs) else None
        self.history: list[dict] = []
        self.prior_seconds = 0.0  # training time spent by earlier, interrupted calls
        self.started, self.running = time.perf_counter(), False
        self.manifest_sha1 = file_sha1(manifest)
        self.identity = {"config": dataclasses.asdict(config), "seed": seed, "from_bundle": self.from_bundle,
                         "manifest": self.manifest_sha1}

    # -- driver ---------------------------------------------------------------------------------

    def execute(self, resume: bool) -> TrainReport:
        """Towers, then speech, then the bundle files; each phase skips what the checkpoint holds."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        ckpt = self._load_checkpoint(resume)
        resumed = f"{ckpt['phase']}:{ckpt['epoch']}" if ckpt else None
        if ckpt and ckpt["phase"] == "done":
            return self._report(resumed)
        self.started, self.running = time.perf_counter(), True
        towers, model_cfg = train_towers(self, ckpt)
        encoder, head_state = train_speech(self, towers, model_cfg, ckpt)
        self._write_bundle(model_cfg, towers, encoder, head_state)
        self.prior_seconds, self.running = self.elapsed(), False
        return self._report(resumed)

    def elapsed(self) -> float:
        """Seconds of training so far, interrupted earlier calls included (a finished run reports its total)."""
        return self.prior_seconds + (time.perf_counter() - self.started if self.running else 0.0)

    def epochs(self, phase: str) -> int:
        """How many epochs a phase ("towers" or "speech") runs in all."""
        return self.config.tower_epochs if phase == "towers" else self.config.speech_epochs

    # -- what the phases call -------------------------------------------------------------------

    def train_epochs(self, phase: str, loop: EpochLoop, start: int) -> None:
        """Epochs `start`.. of a phase, each trained, scored on dev, checkpointed and reported."""
        for epoch in range(start, self.epochs(phase)):
            began = time.perf_counter()
            loss = self._train_epoch(phase, loop, epoch)
            metrics = loop.dev_metrics()
            self.epoch_done(phase, epoch, loss, metrics, time.perf_counter() - began, loop.states())

    def _train_epoch(self, phase: str, loop: EpochLoop, epoch: int) -> float:
        # Seeded from (seed, phase, epoch) alone, so resuming at this epoch replays it exactly.
        generator = seed_everything(self.seed, phase, epoch)
        loop.model.train()
        total, losses = loop.steps * self.epochs(phase), []
        for step, batch in enumerate(loop.batches(generator)):
            set_lr(loop.optimizer, lr_at(epoch * loop.steps + step, total, self.config.warmup_steps, loop.base_lr))
            losses.append(loop.step(batch, generator))
            self.progress(phase, epoch + 1, step + 1, loop.steps, losses[-1])
        return float(np.mean(losses))

    def epoch_done(self, phase: str, epoch: int, loss: float, metrics: dict, seconds: float, states: dict) -> None:
        """Record an epoch (0-based `epoch`), checkpoint it and report it."""
        self.history.append({"phase": phase, "epoch": epoch + 1, "loss": round(loss, 4), "metrics": metrics,
                             "seconds": round(seconds, 1)})
        self._save_checkpoint(phase, epoch + 1, states)
        self._listener(ProgressEvent(phase, kind="epoch", epoch=epoch + 1, epochs=self.epochs(phase), loss=loss,
                                     metrics=metrics))

    def progress(self, phase: str, epoch: int, done: int, total: int, loss: float) -> None:
        """Report a finished training step (1-based `epoch` and `done`)."""
        self._listener(ProgressEvent(phase, done, total, kind="step", epoch=epoch, epochs=self.epochs(phase),
                                     loss=loss))

    def stage(self, phase: str, message: str, done: int = 0, total: int = 0) -> None:
        """Report work outside the epochs (feature extraction, embedding), `done` of `total` so far."""
        self._listener(ProgressEvent(phase, done, total, kind="stage", message=message))

    # -- checkpoint and output ------------------------------------------------------------------

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
        # Through a temp file: an interrupted save never corrupts the last good checkpoint.
        atomic_write(self.checkpoint_path, lambda path: torch.save(ckpt, path))

    def _write_bundle(self, model_cfg: dict, towers, encoder, head_state: dict) -> None:
        # Only an installable Whisper can serve as the bundle's cascade; a folder front end may not travel.
        whisper = self.config.frontend if self.config.frontend in WHISPER_WEIGHTS else None
        # fp16 on disk like clip.pt: loading copies the weights back into float32 parameters.
        half_speech = copy.deepcopy(encoder).cpu().half()
        save_bundle_dir(self.out_dir, self.config.name, model_cfg, towers, half_speech, cascade_whisper=whisper, half=True)
        self._save_checkpoint("done", 0, {"clip": cpu_state(towers.model), "speech": head_state})

    def _report(self, resumed: str | None) -> TrainReport:
        counts = {"train_pairs": len(self.train.pairs), "train_images": len(self.train.images),
                  "dev_pairs": len(self.dev.pairs) if self.dev else 0, "dev_images": len(self.dev.images) if self.dev else 0}
        last = {}
        for entry in self.history:
            last.update(entry.get("metrics") or {})
        return TrainReport(self.out_dir, self.device, round(self.elapsed(), 1), counts, self.history, last, resumed)


def _checked_device(requested: str | None) -> str:
    """pick_device's answer, refused early (as TrainingError) when torch does not know the name."""
    try:
        return pick_device(requested)
    except ArgumentError as exc:
        raise TrainingError(str(exc)) from exc
