"""The second training phase: the speech head on cached front-end features, against frozen towers.

The Whisper front end does not train (or only its top blocks do, from cached lower-block outputs),
so its features are computed once per clip and version and kept in out_dir/cache. The run object
(loop.Run) is handed in; this module never imports loop.py.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..bundles.clip import ClipTowers
from ..bundles.device import autocast
from ..bundles.speech import LearnedSpeechEncoder, SpeechEncoderConfig
from ..errors import SearchEngineError, TrainingError
from ..fileio import atomic_write
from .augment import augment_wave, time_mask
from .config import TrainConfig
from .data import FeatureBank, SplitData, epoch_batches, extract_features, load_images, load_waves
from .evaluate import both_ways
from .losses import INIT_LOGIT_SCALE, clamp_logit_scale, cosine_distill, info_nce
from .optim import adamw, cpu_state, decay_groups, descend, param_groups, seed_everything

if TYPE_CHECKING:
    from .loop import Run

PHASE = "speech"
CACHE_DIR = "cache"  # a sub-folder: bundle fingerprints hash only the top-level files


def train_speech(run: Run, towers: ClipTowers, model_cfg: dict, ckpt: dict | None):
    """(LearnedSpeechEncoder, its trainable state): the head trained on cached front-end features."""
    seed_everything(run.seed, "speech-init")
    encoder = build_encoder(run.config, towers, model_cfg["embed_dim"]).to(run.device)
    loop = SpeechLoop(run, towers, encoder)
    start = loop.restore(ckpt)
    if start < run.config.speech_epochs:
        loop.prepare()
        run.train_epochs(PHASE, loop, start)
    encoder.eval()
    return encoder, encoder.trainable_state_dict()


def cache_features(run: Run) -> dict:
    """Extract and cache the front-end features of the train (with its augmented copies) and dev clips only.

    The features depend on the clips and the front end, not on the towers or the head, so a
    recipe can make them while the towers train; the later speech run finds them in its cache.
    """
    try:
        encoder = LearnedSpeechEncoder(SpeechEncoderConfig(frontend=run.config.frontend, embed_dim=16,
                                                           trainable_layers=run.config.trainable_layers,
                                                           **run.config.speech_options)).to(run.device)
    except (SearchEngineError, TypeError) as exc:
        raise TrainingError(f"cannot build the speech encoder: {exc}") from exc
    rows = {"train": len(feature_bank(run, encoder, run.train, run.config.augment_copies))}
    if run.dev:
        rows["dev"] = len(feature_bank(run, encoder, run.dev, 0))
    return rows


def build_encoder(cfg: TrainConfig, towers: ClipTowers, embed_dim: int) -> LearnedSpeechEncoder:
    """A fresh speech encoder for the run's settings; a text pool starts as a copy of the text tower."""
    try:
        text_tower = towers.text_tower_shape() if "text" in cfg.pool.split("+") else None
        encoder = LearnedSpeechEncoder(SpeechEncoderConfig(frontend=cfg.frontend, embed_dim=embed_dim,
                                                           trainable_layers=cfg.trainable_layers, pool=cfg.pool,
                                                           pool_queries=cfg.pool_queries, text_tower=text_tower,
                                                           **cfg.speech_options))
        for pool, _ in encoder.heads:
            if hasattr(pool, "load_text_tower"):
                pool.load_text_tower(towers.text_tower_parts())
    except (SearchEngineError, TypeError) as exc:  # TypeError: an unknown key in speech_options
        raise TrainingError(f"cannot build the speech encoder: {exc}") from exc
    return encoder


class SpeechLoop:
    """InfoNCE of speech vectors against their images' frozen embeddings (+ distillation to the caption's)."""

    def __init__(self, run: Run, towers: ClipTowers, encoder: LearnedSpeechEncoder):
        self.run, self.towers, self.encoder, self.cfg = run, towers, encoder, run.config
        self.model = encoder
        # One temperature per head: each head is trained as if it were alone.
        self.scale = torch.nn.Parameter(torch.full((len(encoder.heads),), INIT_LOGIT_SCALE, device=encoder.device))
        self.base_lr = self.cfg.speech_lr
        self.optimizer = adamw(self._param_groups(), self.cfg.speech_lr)

    def _param_groups(self) -> list[dict]:
        """Head, temperature, and the fine-tuned Whisper blocks at a lower rate (they start pretrained)."""
        groups = self._head_groups() + [{"params": [self.scale], "weight_decay": 0.0}]
        backbone = param_groups(self.encoder.backbone, self.cfg.weight_decay)
        if not self.encoder.scratch:  # a scratch backbone is as new as the head: full rate
            backbone = [dict(g, lr_scale=self.cfg.backbone_lr_scale) for g in backbone]
        return [g for g in groups + backbone if g["params"]]

    def _head_groups(self) -> list[dict]:
        """Every head's parameters; a copy of the text tower (it starts trained) at text_lr_scale, 0: frozen."""
        heads = torch.nn.ModuleList([m for pool_proj in self.encoder.heads for m in pool_proj])
        copied = {f"{i}.{n}": p for i, (pool, _) in enumerate(self.encoder.heads)
                  for n, p in getattr(pool, "copied", dict)().items()}
        for param in copied.values():
            param.requires_grad_(self.cfg.text_lr_scale > 0)
        own = {id(p) for p in copied.values()}
        fresh = [(n, p) for n, p in heads.named_parameters() if id(p) not in own]
        scaled = decay_groups(copied.items(), self.cfg.weight_decay)
        return decay_groups(fresh, self.cfg.weight_decay) + [dict(g, lr_scale=self.cfg.text_lr_scale) for g in scaled]

    def restore(self, ckpt: dict | None) -> int:
        """Epochs already done: all when the checkpoint is past this phase."""
        if ckpt is None or ckpt["phase"] == "towers":
            return 0
        self.encoder.load_state_dict(ckpt["speech"], strict=False)
        if ckpt["phase"] == "done":
            return self.cfg.speech_epochs
        self.optimizer.load_state_dict(ckpt["speech_opt"])
        with torch.no_grad():
            self.scale.copy_(ckpt["speech_scale"])
        return ckpt["epoch"]

    def prepare(self) -> None:
        """Cache features; embed the train images and captions once with the frozen towers."""
        run = self.run
        self.bank = feature_bank(run, self.encoder, run.train, self.cfg.augment_copies)
        self.dev_bank = feature_bank(run, self.encoder, run.dev, 0) if run.dev else None
        run.stage(PHASE, "embedding images and captions with the towers")
        self.image_vecs = torch.from_numpy(self.towers.encode_images(load_images(run.train.images)))
        self.text_vecs = torch.from_numpy(self.towers.encode_texts(run.train.texts))
        self.image_of = torch.from_numpy(run.train.image_of)
        self.pairs = len(run.train.pairs)
        self.steps = len(epoch_batches(self.pairs, self.cfg.speech_batch_size, torch.Generator()))
        if self.dev_bank is not None:
            self.dev_image_vecs = self.towers.encode_images(load_images(run.dev.images))

    def batches(self, generator: torch.Generator) -> list[torch.Tensor]:
        """Bank rows: each clip once per epoch, in one of its versions (as recorded or augmented) at random."""
        version = torch.randint(0, len(self.bank) // self.pairs, (self.pairs,), generator=generator)
        return [batch + self.pairs * version[batch]
                for batch in epoch_batches(self.pairs, self.cfg.speech_batch_size, generator)]

    def step(self, rows: torch.Tensor, generator: torch.Generator) -> float:
        feats, lengths = self.bank.batch(rows)
        if self.cfg.time_mask:
            feats = time_mask(feats, lengths, generator, self.cfg.time_mask)
        pair = self.bank.pair[rows]
        image = self.image_of[pair]
        device = self.encoder.device
        with autocast(device):
            outputs = self.encoder.head_outputs(feats.to(device), lengths.to(device))
        image_vecs, text_vecs = self.image_vecs[image].to(device), self.text_vecs[pair].to(device)
        loss = sum(self._loss(speech, scale, image_vecs, image.to(device), text_vecs)
                   for speech, scale in zip(outputs, self.scale))
        value = descend(self.optimizer, loss)
        clamp_logit_scale(self.scale)
        return value

    def _loss(self, speech, scale, image_vecs, image, text_vecs) -> torch.Tensor:
        loss = info_nce(speech, image_vecs, scale.exp(), image)
        if self.cfg.distill_weight:
            loss = loss + self.cfg.distill_weight * cosine_distill(speech, text_vecs)
        return loss

    @torch.no_grad()
    def dev_metrics(self) -> dict:
        """Dev speech->image and image->speech R@1 of the head on un-augmented dev clips."""
        if self.dev_bank is None:
            return {}
        vecs = embed_bank(self.encoder, self.dev_bank)
        s2i, i2s = both_ways(vecs, self.dev_image_vecs, self.run.dev.image_of)
        return {"speech_to_image_R@1": s2i["R@1"], "speech_to_image_R@5": s2i["R@5"], "image_to_speech_R@1": i2s["R@1"]}

    def states(self) -> dict:
        """What the checkpoint keeps after a speech epoch (the towers too: a resume rebuilds from it)."""
        return {"clip": cpu_state(self.towers.model), "speech": self.encoder.trainable_state_dict(),
                "speech_opt": self.optimizer.state_dict(), "speech_scale": self.scale.detach().cpu()}


@torch.no_grad()
def embed_bank(encoder: LearnedSpeechEncoder, bank: FeatureBank, batch_size: int = 256) -> np.ndarray:
    """Head outputs for every row of a feature bank, in eval mode, as float32 numpy."""
    encoder.eval()
    out = []
    for start in range(0, len(bank), batch_size):
        feats, lengths = bank.batch(torch.arange(start, min(start + batch_size, len(bank))))
        with autocast(encoder.device):
            out.append(encoder.head(feats.to(encoder.device), lengths.to(encoder.device)).float().cpu().numpy())
    encoder.train()
    return np.concatenate(out)


# ----------------------------------------------------------------------------- feature cache


def feature_bank(run: Run, encoder: LearnedSpeechEncoder, data: SplitData, copies: int) -> FeatureBank:
    """Front-end features of a split's clips plus `copies` augmented versions.

    Each version is cached on its own, so an interrupted extraction keeps the versions it
    finished and a run with more copies reuses those of a run with fewer.
    """
    waves: list[np.ndarray] | None = None
    parts = []
    augment_first = data.name == "train" and run.config.augment_first > 0  # dev stays as recorded
    for version in range(copies + 1):
        path = _cache_path(run, encoder, data.name, version)
        part = _read_bank(path)
        if part is None:
            waves = waves if waves is not None else load_waves([p.audio for p in data.pairs])
            label = f"{data.name} features, version {version + 1}/{copies + 1}"
            part = _extract_version(run, encoder, waves, version, label, augment_first)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, functools.partial(torch.save, part.to_dict()))
        parts.append(part)
    return FeatureBank.concat(parts)


def _read_bank(path: Path) -> FeatureBank | None:
    if not path.is_file():
        return None
    try:
        return FeatureBank(**torch.load(path, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, EOFError, TypeError):
        return None  # a damaged cache file is rebuilt


def _extract_version(run: Run, encoder: LearnedSpeechEncoder, waves: list[np.ndarray], version: int,
                     label: str, split_augmented: bool = False) -> FeatureBank:
    """Version 0 is the clips as recorded (train: a share augment_first of them augmented); later versions
    are augmented copies."""
    augment, share = augmentation(run.config.augment), run.config.augment_first

    def augmented(i: int, wave: np.ndarray) -> np.ndarray:
        generator = _clip_generator(run.seed, i, version)
        if version == 0 and float(torch.rand((), generator=generator)) >= share:
            return wave  # this clip stays as recorded
        return augment(wave, generator)

    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        run.stage("features", label, done[0], len(waves))

    transform = augmented if version or split_augmented else None
    feats = extract_features(encoder, waves, progress=tick, transform=transform)
    return FeatureBank.from_list(feats, list(range(len(waves))))


def augmentation(name: str):
    """The waveform augmentation of augmented copies: "basic" (speed + white noise) or "capture" (robust.py)."""
    from .robust import AUGMENTATIONS

    if name not in AUGMENTATIONS:
        raise TrainingError(f"unknown augmentation {name!r}; choose from {', '.join(AUGMENTATIONS)}")
    return AUGMENTATIONS[name] or augment_wave


def _clip_generator(seed: int, clip: int, version: int) -> torch.Generator:
    """One generator per (clip, version): augmentations do not depend on processing order."""
    return torch.Generator().manual_seed(seed * 1_000_003 + clip * 131 + version)


def _cache_path(run: Run, encoder: LearnedSpeechEncoder, split: str, version: int) -> Path:
    # Everything that changes the features is in the key. Its names are part of the cache:
    # renaming one ("copy" is the version) would orphan every cached file.
    key = {"manifest": run.manifest_sha1, "split": split, "copy": version, "seed": run.seed,
           "frontend": run.config.frontend, "trainable_layers": run.config.trainable_layers,
           "max_seconds": encoder.config.max_seconds}
    if run.config.augment != "basic" and version:  # basic copies keep the keys they always had
        key["augment"] = run.config.augment
    if run.config.augment_first and split == "train" and not version:
        key.update(augment=run.config.augment, augment_first=run.config.augment_first)
    digest = json.dumps(key, sort_keys=True).encode()
    return run.out_dir / CACHE_DIR / f"features-{split}-{version}-{hashlib.sha1(digest).hexdigest()[:12]}.pt"
