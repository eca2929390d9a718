"""The first training phase: CLIP image/text towers on image-caption pairs, or frozen from a bundle.

The run object (loop.Run) is handed in; this module never imports loop.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..bundles import clip
from ..bundles.bundle import load_bundle, read_bundle_config, resolve_bundle
from ..bundles.device import autocast
from ..errors import SearchEngineError, TrainingError
from .data import epoch_batches, load_images
from .evaluate import both_ways
from .losses import clamp_logit_scale, info_nce
from .optim import adamw, cpu_state, descend, param_groups, seed_everything

if TYPE_CHECKING:
    from .loop import Run

PHASE = "towers"


def train_towers(run: Run, ckpt: dict | None) -> tuple[clip.ClipTowers, dict]:
    """(ClipTowers, model_cfg): trained here, restored from the checkpoint, or frozen from a bundle."""
    if run.from_bundle is not None:
        return frozen_towers(run.from_bundle, run.device)
    seed_everything(run.seed, "towers-init")
    towers, model_cfg = clip.build_custom(run.config.model_cfg, run.device), run.config.model_cfg
    if ckpt is not None and ckpt["phase"] != PHASE:  # finished towers, saved after pruning
        towers, model_cfg = _pruned(run, towers, model_cfg)
        towers.model.load_state_dict(ckpt["clip"])
        towers.model.eval()
        return towers, model_cfg
    start = 0
    if ckpt is not None:
        towers.model.load_state_dict(ckpt["clip"])
        start = ckpt["epoch"]
    elif run.config.init_from:
        _start_from(towers, run.config.init_from)
    if start < run.config.tower_epochs:
        loop = TowerLoop(run, towers, ckpt)
        run.train_epochs(PHASE, loop, start)
    towers, model_cfg = _pruned(run, towers, model_cfg)
    towers.model.eval()
    return towers, model_cfg


def _start_from(towers: clip.ClipTowers, name: str) -> None:
    """Copy a bundle's tower weights in (a token table pruned there is spread back to its token ids)."""
    try:
        source = load_bundle(name, device="cpu").towers
    except SearchEngineError as exc:
        raise TrainingError(f"--init-from {name}: {exc}") from exc
    state = {k: v.float() for k, v in source.model.state_dict().items()}
    table = state.get("token_embedding.weight")
    target = towers.model.token_embedding.weight
    if table is not None and table.shape != target.shape and hasattr(source.tokenizer, "token_ids"):
        full = target.detach().cpu().clone()
        for row, token in enumerate(source.tokenizer.token_ids):
            if token >= 0:
                full[token] = table[row]
        state["token_embedding.weight"] = full
    try:
        towers.model.load_state_dict(state)
    except RuntimeError as exc:  # another architecture
        raise TrainingError(f"--init-from {name}: its towers do not fit this model config: "
                            f"{str(exc).splitlines()[0]}") from exc


def _pruned(run: Run, towers: clip.ClipTowers, model_cfg: dict) -> tuple[clip.ClipTowers, dict]:
    """The towers with the token table cut to the train captions' tokens (+ <unk>) when the run asks."""
    if not run.config.prune_tokens:
        return towers, model_cfg
    return clip.prune_token_table(towers, model_cfg, run.train.texts)


def frozen_towers(name: str, device: str) -> tuple[clip.ClipTowers, dict]:
    """Towers and model config of an existing custom-config bundle (--from-bundle)."""
    try:
        _, directory = resolve_bundle(name)
        model_cfg = read_bundle_config(directory).get("clip", {}).get("model_cfg") if directory else None
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


class TowerLoop:
    """Symmetric InfoNCE between augmented images and one of their captions, an image once per epoch."""

    def __init__(self, run: Run, towers: clip.ClipTowers, ckpt: dict | None):
        self.run, self.towers, self.cfg = run, towers, run.config
        self.model = towers.model
        self.images = load_images(run.train.images)
        self.transform = clip.train_transform(self.cfg.model_cfg)
        self.tokens = towers.tokenizer(run.train.texts)
        # Identical captions of different images are positives of each other, not negatives.
        self.text_ids = torch.as_tensor(np.unique(run.train.texts, return_inverse=True)[1])
        self.captions_of = run.train.captions_of()
        self.steps = len(self.batches(torch.Generator()))
        self.base_lr = self.cfg.lr
        self.optimizer = adamw(param_groups(self.model, self.cfg.weight_decay), self.cfg.lr)
        if ckpt is not None:
            self.optimizer.load_state_dict(ckpt["clip_opt"])
        self.dev_images = load_images(run.dev.images) if run.dev else None

    def batches(self, generator: torch.Generator) -> list[torch.Tensor]:
        """Image indices, shuffled: every image once per epoch."""
        return epoch_batches(len(self.images), self.cfg.batch_size, generator)

    def step(self, batch: torch.Tensor, generator: torch.Generator) -> float:
        views = [self._pick_captions(int(i), generator) for i in batch]
        pixels = torch.stack([self.transform(self.images[int(i)]) for i in batch]).to(self.towers.device)
        with autocast(self.towers.device):
            image = self.model.encode_image(pixels, normalize=True)
            losses = [self._caption_loss(image, [v[k] for v in views]) for k in range(self.cfg.caption_views)]
        loss = descend(self.optimizer, torch.stack(losses).mean())
        clamp_logit_scale(self.model.logit_scale)
        return loss

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

    def dev_metrics(self) -> dict:
        """Dev text->image and image->text recall (eval transforms, eval mode)."""
        if self.dev_images is None:
            return {}
        self.model.eval()
        image_vecs = self.towers.encode_images(self.dev_images)
        t2i, i2t = both_ways(self.towers.encode_texts(self.run.dev.texts), image_vecs, self.run.dev.image_of)
        return {"text_to_image_R@1": t2i["R@1"], "text_to_image_R@5": t2i["R@5"], "image_to_text_R@1": i2t["R@1"]}

    def states(self) -> dict:
        """What the checkpoint keeps of this phase after an epoch."""
        return {"clip": cpu_state(self.model), "clip_opt": self.optimizer.state_dict()}
