"""The training losses: symmetric InfoNCE, cosine distillation, and the temperature clamp.

Pure functions of tensors, so their arithmetic can be tested without a training loop around them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

INIT_LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's starting temperature


def info_nce(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor,
             groups: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE between matching rows of unit vectors `a` and `b`.

    Rows that share a `groups` id (two captions of one image in a batch) are all positives of each
    other, with the target mass split evenly, so a duplicate is never pushed away as a negative.
    """
    logits = logit_scale * a.float() @ b.float().T
    if groups is None:
        targets = torch.arange(len(a), device=a.device)
        return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
    same = (groups[:, None] == groups[None, :]).float()
    targets = same / same.sum(1, keepdim=True)  # `same` is symmetric: one matrix serves both ways
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def cosine_distill(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean (1 - cosine) between unit student rows and unit teacher rows."""
    return 1.0 - (student.float() * teacher.float()).sum(-1).mean()


def clamp_logit_scale(param: torch.Tensor, max_scale: float = 100.0) -> None:
    """Keep a learnable log-temperature at most log(100), as CLIP does, so logits cannot explode."""
    with torch.no_grad():
        param.clamp_(0.0, math.log(max_scale))
