"""The two training phases of train.py: CLIP towers on image-caption pairs, then the speech head.

Both are plain loops over epochs: re-seed, shuffle, step, evaluate on dev, checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from .errors import SearchEngineError, TrainingError
from .evaluate import both_ways
from .train import (TrainEvent, _cpu_state, _set_lr, decay_groups, file_sha1, lr_at, param_groups,
                    seed_everything)
from .train_data import (FeatureBank, SplitData, augment_wave, clamp_logit_scale, cosine_distill, epoch_batches,
                         extract_features, info_nce, load_images, load_waves, time_mask)

INIT_LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's starting temperature


def _adamw(groups: list[dict], lr: float) -> torch.optim.AdamW:
    # beta2 0.98 and eps 1e-6 as in CLIP: steadier with the large gradients of a learnable temperature.
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


def _autocast(device: str):
    from .bundles.device import autocast

    return autocast(device)


# ----------------------------------------------------------------------------- towers


def train_towers(run, ckpt: dict | None):
    """(ClipTowers, model_cfg): trained here, restored from the checkpoint, or frozen from a bundle."""
    from .bundles import clip

    if run.from_bundle is not None:
        return _frozen_towers(run.from_bundle, run.device)
    seed_everything(run.seed, "towers-init")
    towers = clip.build_custom(run.config.model_cfg, run.device)
    start = 0
    if ckpt is not None:
        towers.model.load_state_dict(ckpt["clip"])
        start = ckpt["epoch"] if ckpt["phase"] == "towers" else run.config.tower_epochs
    if start < run.config.tower_epochs:
        _TowerLoop(run, towers, ckpt if ckpt and ckpt["phase"] == "towers" else None).train(start)
    towers.model.eval()
    return towers, run.config.model_cfg


def _frozen_towers(name: str, device: str):
    """Towers and model config of an existing custom-config bundle (--from-bundle)."""
    from .bundles.bundle import load_bundle, read_bundle_config
    from .bundles.registry import get_bundle_spec, packaged_directory

    spec = get_bundle_spec(name)
    directory = packaged_directory(spec) if spec is not None else Path(name).expanduser()
    try:
        config = read_bundle_config(directory) if directory is not None else {}
        model_cfg = config.get("clip", {}).get("model_cfg")
        if model_cfg is None:
            raise TrainingError(f"--from-bundle {name}: only bundle folders with custom towers can be reused")
        towers = load_bundle(name, device=device).towers
    except TrainingError:
        raise
    except SearchEngineError as exc:
        raise TrainingError(f"--from-bundle {name}: {exc}") from exc
    for param in towers.model.parameters():
        param.requires_grad_(False)
    return towers, model_cfg


class _TowerLoop:
    """Symmetric InfoNCE between augmented images and one of their captions, an image once per epoch."""

    def __init__(self, run, towers, ckpt: dict | None):
        from .bundles import clip

        self.run, self.towers, self.cfg = run, towers, run.config
        self.model = towers.model
        self.images = load_images(run.train.images)
        self.transform = clip.train_transform(self.cfg.model_cfg)
        self.tokens = towers.tokenizer(run.train.texts)
        # Identical captions of different images are positives of each other, not negatives.
        self.text_ids = torch.as_tensor(np.unique(run.train.texts, return_inverse=True)[1])
        self.captions_of = run.train.captions_of()
        self.steps = len(epoch_batches(len(self.images), self.cfg.batch_size, torch.Generator()))
        self.opt = _adamw(param_groups(self.model, self.cfg.weight_decay), self.cfg.lr)
        if ckpt is not None:
            self.opt.load_state_dict(ckpt["clip_opt"])
        self.dev_images = load_images(run.dev.images) if run.dev else None

    def train(self, start: int) -> None:
        for epoch in range(start, self.cfg.tower_epochs):
            began = time.perf_counter()
            loss = self._epoch(epoch)
            metrics = self._dev_metrics()
            states = {"clip": _cpu_state(self.model), "clip_opt": self.opt.state_dict()}
            self.run._epoch_done("towers", epoch, loss, metrics, time.perf_counter() - began, states)

    def _epoch(self, epoch: int) -> float:
        generator = seed_everything(self.run.seed, "towers", epoch)
        self.model.train()
        losses = []
        for step, batch in enumerate(epoch_batches(len(self.images), self.cfg.batch_size, generator)):
            total = self.steps * self.cfg.tower_epochs
            _set_lr(self.opt, lr_at(epoch * self.steps + step, total, self.cfg.warmup_steps, self.cfg.lr))
            losses.append(self._step(batch, generator))
            self.run.progress(TrainEvent("step", "towers", epoch + 1, self.cfg.tower_epochs, step + 1, self.steps,
                                         loss=losses[-1]))
        return float(np.mean(losses))

    def _step(self, batch: torch.Tensor, generator: torch.Generator) -> float:
        views = [self._pick_captions(int(i), generator) for i in batch]
        pixels = torch.stack([self.transform(self.images[int(i)]) for i in batch]).to(self.towers.device)
        with _autocast(self.towers.device):
            image = self.model.encode_image(pixels, normalize=True)
            losses = [self._caption_loss(image, [v[k] for v in views]) for k in range(self.cfg.caption_views)]
        loss = torch.stack(losses).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        clamp_logit_scale(self.model.logit_scale)
        return float(loss.detach())

    def _caption_loss(self, image: torch.Tensor, picks: list[int]) -> torch.Tensor:
        text = self.model.encode_text(self.tokens[picks].to(image.device), normalize=True)
        return info_nce(image, text, self.model.logit_scale.exp(), self.text_ids[picks].to(image.device))

    def _pick_captions(self, image: int, generator: torch.Generator) -> list[int]:
        """`caption_views` of the image's captions in random order (cycling when it has fewer).

        Several captions per image forward pass: the text side is cheap, and each extra view gives
        the image tower another gradient for the price of one.
        """
        options = self.captions_of[image]
        order = torch.randperm(len(options), generator=generator).tolist()
        return [options[order[k % len(order)]] for k in range(self.cfg.caption_views)]

    def _dev_metrics(self) -> dict:
        """Dev text->image and image->text recall (eval transforms, eval mode)."""
        if self.dev_images is None:
            return {}
        self.model.eval()
        image_vecs = self.towers.encode_images(self.dev_images)
        t2i, i2t = both_ways(self.towers.encode_texts(self.run.dev.texts), image_vecs, self.run.dev.image_of)
        return {"text_to_image_R@1": t2i["R@1"], "text_to_image_R@5": t2i["R@5"], "image_to_text_R@1": i2t["R@1"]}


# ----------------------------------------------------------------------------- speech


def train_speech(run, towers, model_cfg: dict, ckpt: dict | None):
    """(LearnedSpeechEncoder, its trainable state): the head trained on cached front-end features."""
    from .bundles.speech import LearnedSpeechEncoder, SpeechEncoderConfig

    cfg = run.config
    seed_everything(run.seed, "speech-init")
    try:
        text_tower = towers.text_tower_shape() if "text" in cfg.pool.split("+") else None
        encoder = LearnedSpeechEncoder(SpeechEncoderConfig(frontend=cfg.frontend, embed_dim=model_cfg["embed_dim"],
                                                           trainable_layers=cfg.trainable_layers, pool=cfg.pool,
                                                           pool_queries=cfg.pool_queries, text_tower=text_tower,
                                                           **cfg.speech_options))
        for pool, _ in encoder.heads:
            if hasattr(pool, "load_text_tower"):
                pool.load_text_tower(towers.text_tower_parts())
    except (SearchEngineError, ValueError, TypeError) as exc:
        raise TrainingError(f"cannot build the speech encoder: {exc}") from exc
    encoder = encoder.to(run.device)
    loop = _SpeechLoop(run, towers, encoder)
    start = loop.restore(ckpt)
    if start < cfg.speech_epochs:
        loop.prepare()
        loop.train(start)
    encoder.eval()
    return encoder, encoder.trainable_state_dict()


class _SpeechLoop:
    """InfoNCE of speech vectors against their images' frozen embeddings (+ distillation to the caption's)."""

    def __init__(self, run, towers, encoder):
        self.run, self.towers, self.encoder, self.cfg = run, towers, encoder, run.config
        # One temperature per head: each head is trained as if it were alone.
        self.scale = torch.nn.Parameter(torch.full((len(encoder.heads),), INIT_LOGIT_SCALE, device=encoder.device))
        self.opt = _adamw(self._param_groups(), self.cfg.speech_lr)

    def _param_groups(self) -> list[dict]:
        """Head, temperature, and the fine-tuned Whisper blocks at a lower rate (they start pretrained)."""
        groups = self._head_groups() + [{"params": [self.scale], "weight_decay": 0.0}]
        if not self.encoder.scratch:
            scale = self.cfg.backbone_lr_scale
            groups += [dict(g, lr_scale=scale) for g in param_groups(self.encoder.backbone, self.cfg.weight_decay)]
        else:
            groups += param_groups(self.encoder.backbone, self.cfg.weight_decay)
        return [g for g in groups if g["params"]]

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
        self.opt.load_state_dict(ckpt["speech_opt"])
        with torch.no_grad():
            self.scale.copy_(ckpt["speech_scale"])
        return ckpt["epoch"]

    def prepare(self) -> None:
        """Cache features; embed the train images and captions once with the frozen towers."""
        self.bank = feature_bank(self.run, self.encoder, self.run.train, self.cfg.augment_copies)
        self.dev_bank = feature_bank(self.run, self.encoder, self.run.dev, 0) if self.run.dev else None
        self.run._stage("speech", "embedding images and captions with the towers")
        self.image_vecs = torch.from_numpy(self.towers.encode_images(load_images(self.run.train.images)))
        self.text_vecs = torch.from_numpy(self.towers.encode_texts(self.run.train.texts))
        self.image_of = torch.from_numpy(self.run.train.image_of)
        self.pairs = len(self.run.train.pairs)
        self.steps = len(epoch_batches(self.pairs, self.cfg.speech_batch_size, torch.Generator()))
        if self.dev_bank is not None:
            self.dev_image_vecs = self.towers.encode_images(load_images(self.run.dev.images))

    def train(self, start: int) -> None:
        for epoch in range(start, self.cfg.speech_epochs):
            began = time.perf_counter()
            loss = self._epoch(epoch)
            metrics = self._dev_metrics()
            states = {"clip": _cpu_state(self.towers.model), "speech": self.encoder.trainable_state_dict(),
                      "speech_opt": self.opt.state_dict(), "speech_scale": self.scale.detach().cpu()}
            self.run._epoch_done("speech", epoch, loss, metrics, time.perf_counter() - began, states)

    def _epoch(self, epoch: int) -> float:
        generator = seed_everything(self.run.seed, "speech", epoch)
        self.encoder.train()
        losses = []
        # Each clip once per epoch, in one of its versions (as recorded or an augmented copy) at random.
        version = torch.randint(0, len(self.bank) // self.pairs, (self.pairs,), generator=generator)
        for step, batch in enumerate(epoch_batches(self.pairs, self.cfg.speech_batch_size, generator)):
            rows = batch + self.pairs * version[batch]
            total = self.steps * self.cfg.speech_epochs
            _set_lr(self.opt, lr_at(epoch * self.steps + step, total, self.cfg.warmup_steps, self.cfg.speech_lr))
            losses.append(self._step(rows, generator))
            self.run.progress(TrainEvent("step", "speech", epoch + 1, self.cfg.speech_epochs, step + 1, self.steps,
                                         loss=losses[-1]))
        return float(np.mean(losses))

    def _step(self, rows: torch.Tensor, generator: torch.Generator) -> float:
        feats, lengths = self.bank.batch(rows)
        if self.cfg.time_mask:
            feats = time_mask(feats, lengths, generator, self.cfg.time_mask)
        pair = self.bank.pair[rows]
        image = self.image_of[pair]
        device = self.encoder.device
        with _autocast(str(device)):
            outputs = self.encoder.head_outputs(feats.to(device), lengths.to(device))
        image_vecs, text_vecs = self.image_vecs[image].to(device), self.text_vecs[pair].to(device)
        loss = sum(self._loss(speech, scale, image_vecs, image.to(device), text_vecs)
                   for speech, scale in zip(outputs, self.scale))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        clamp_logit_scale(self.scale)
        return float(loss.detach())

    def _loss(self, speech, scale, image_vecs, image, text_vecs) -> torch.Tensor:
        loss = info_nce(speech, image_vecs, scale.exp(), image)
        if self.cfg.distill_weight:
            loss = loss + self.cfg.distill_weight * cosine_distill(speech, text_vecs)
        return loss

    @torch.no_grad()
    def _dev_metrics(self) -> dict:
        """Dev speech->image and image->speech R@1 of the head on un-augmented dev clips."""
        if self.dev_bank is None:
            return {}
        vecs = embed_bank(self.encoder, self.dev_bank)
        s2i, i2s = both_ways(vecs, self.dev_image_vecs, self.run.dev.image_of)
        return {"speech_to_image_R@1": s2i["R@1"], "speech_to_image_R@5": s2i["R@5"], "image_to_speech_R@1": i2s["R@1"]}


@torch.no_grad()
def embed_bank(encoder, bank: FeatureBank, batch_size: int = 256) -> np.ndarray:
    """Head outputs for every row of a feature bank, in eval mode, as float32 numpy."""
    encoder.eval()
    out = []
    for start in range(0, len(bank), batch_size):
        feats, lengths = bank.batch(torch.arange(start, min(start + batch_size, len(bank))))
        with _autocast(str(encoder.device)):
            out.append(encoder.head(feats.to(encoder.device), lengths.to(encoder.device)).float().cpu().numpy())
    encoder.train()
    return np.concatenate(out)


# ----------------------------------------------------------------------------- feature cache


def feature_bank(run, encoder, data: SplitData, copies: int) -> FeatureBank:
    """Front-end features of a split's clips plus `copies` augmented versions.

    Each version is cached on its own, so an interrupted extraction keeps the versions it
    finished and a run with more copies reuses those of a run with fewer.
    """
    waves: list[np.ndarray] | None = None
    parts = []
    for copy in range(copies + 1):
        path = _cache_path(run, encoder, data.name, copy)
        part = _read_bank(path)
        if part is None:
            waves = waves if waves is not None else load_waves([p.audio for p in data.pairs])
            part = _extract_version(run, encoder, waves, copy, f"{data.name} features, version {copy + 1}/{copies + 1}")
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(part.to_dict(), path)
        parts.append(part)
    return FeatureBank.concat(parts)


def _read_bank(path: Path) -> FeatureBank | None:
    if not path.is_file():
        return None
    try:
        return FeatureBank(**torch.load(path, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, EOFError, TypeError):
        return None  # a damaged cache file is rebuilt


def _extract_version(run, encoder, waves: list[np.ndarray], copy: int, label: str) -> FeatureBank:
    """Version 0 is the clips as recorded; later versions are augmented copies."""
    def augmented(i: int, wave: np.ndarray) -> np.ndarray:
        return augment_wave(wave, _clip_generator(run.seed, i, copy))

    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        run._stage("features", label, done[0], len(waves))

    feats = extract_features(encoder, waves, progress=tick, transform=augmented if copy else None)
    return FeatureBank.from_list(feats, list(range(len(waves))))


def _clip_generator(seed: int, clip: int, copy: int) -> torch.Generator:
    """One generator per (clip, copy): augmentations do not depend on processing order."""
    return torch.Generator().manual_seed(seed * 1_000_003 + clip * 131 + copy)


def _cache_path(run, encoder, split: str, copy: int) -> Path:
    key = {"manifest": file_sha1(run.manifest), "split": split, "copy": copy, "seed": run.seed,
           "frontend": run.config.frontend, "trainable_layers": run.config.trainable_layers,
           "max_seconds": encoder.config.max_seconds}
    digest = json.dumps(key, sort_keys=True).encode()
    return run.out_dir / "cache" / f"features-{split}-{copy}-{hashlib.sha1(digest).hexdigest()[:12]}.pt"
