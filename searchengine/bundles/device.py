"""Where models run: CUDA with half precision when present, else the CPU in float32."""

from __future__ import annotations

import contextlib
import os

import torch


def pick_device(requested: str | None = None) -> str:
    """The requested device, else SEARCHENGINE_DEVICE, else cuda when available, else cpu."""
    requested = requested or os.environ.get("SEARCHENGINE_DEVICE")
    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def autocast(device: str):
    """bf16 autocast on CUDA (fp16 range issues avoided); a no-op on the CPU."""
    if str(device).startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
