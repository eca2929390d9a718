"""The one device and precision policy: CUDA with half-precision autocast when present, else the CPU in float32."""

from __future__ import annotations

import contextlib
import os

import torch

from ..errors import ArgumentError

DEVICE_ENV = "SEARCHENGINE_DEVICE"


def pick_device(requested: str | torch.device | None = None) -> str:
    """The requested device, else SEARCHENGINE_DEVICE, else cuda when available, else cpu.

    ArgumentError for a name torch does not know (a typo should not surface deep inside a model).
    """
    requested = requested or os.environ.get(DEVICE_ENV)
    if not requested:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(str(requested))
    except RuntimeError as exc:
        raise ArgumentError(f"unknown device {str(requested)!r} (use cpu, cuda or cuda:N): {exc}") from exc
    return str(requested)


def autocast(device: str | torch.device):
    """bf16 autocast on CUDA (fp16 where the GPU lacks bf16); a no-op on the CPU.

    CPU autocast is slower than float32 on most CPUs, and bf16 keeps fp32's range, so a learnable
    temperature or a long sum cannot overflow as it can in fp16.
    """
    if not str(device).startswith("cuda"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)
