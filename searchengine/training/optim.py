"""Optimisation helpers both training phases share: seeding, the learning-rate schedule, AdamW groups.

Every function here is a pure function of its arguments (or of the seed), which is what lets a
resumed run repeat an uninterrupted one: nothing in the schedule lives outside the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import random

import numpy as np
import torch


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


def adamw(groups: list[dict], lr: float) -> torch.optim.AdamW:
    # beta2 0.98 and eps 1e-6 as in CLIP: steadier with the large gradients of a learnable temperature.
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's rate, scaled by the group's own "lr_scale" (pretrained blocks learn slower)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    """One optimiser step on `loss`; its value as a float for the progress report."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def cpu_state(module: torch.nn.Module) -> dict:
    """A detached CPU copy of a module's state, safe to checkpoint while training goes on."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
