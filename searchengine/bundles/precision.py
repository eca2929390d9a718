"""The arithmetic a bundle's encoders run in: fp32, bf16, or int8 (dynamically quantised Linear layers).

- ``fp32``: the default on the CPU; vectors exactly as trained.
- ``bf16``: autocast to bfloat16 (the default on CUDA, as before; on a CPU only worth it where the CPU has
  bf16 units, e.g. AMX or AVX512-BF16).
- ``int8``: every ``nn.Linear`` of the image tower, the text tower and the speech encoder is replaced by
  torch's dynamically quantised one (int8 weights, activations quantised per batch), CPU only. Linear
  layers hold nearly all of a transformer's work (attention projections inside open_clip's
  ``nn.MultiheadAttention`` stay float, torch does not quantise those), convolutions stay float.

An index does not record the precision that built it: int8 and bf16 vectors of a model stay within a
cosine of ~0.99 of its fp32 ones (docs/BENCHMARKS.md), the same kind of difference CUDA's bf16 already
makes, so an index built at one precision answers queries encoded at another.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..errors import ArgumentError

PRECISIONS = ("fp32", "bf16", "int8")


def resolve_precision(requested: str | None, device: str) -> str:
    """The precision to run: `requested` (fp32, bf16, int8; None or "auto" for the device's default).

    ArgumentError for an unknown name, or int8 on a GPU (torch's dynamic quantisation is CPU-only).
    """
    cuda = str(device).startswith("cuda")
    name = (requested or "auto").strip().lower()
    if name == "auto":
        return "bf16" if cuda else "fp32"
    if name not in PRECISIONS:
        raise ArgumentError(f"precision must be one of auto, {', '.join(PRECISIONS)} (not {requested!r})")
    if name == "int8" and cuda:
        raise ArgumentError("int8 runs on the CPU only (torch's dynamic quantisation); use bf16 on a GPU")
    return name


def quantize_linears(module: nn.Module) -> nn.Module:
    """`module` with its nn.Linear layers dynamically quantised to int8 (a new module; the input is left alone).

    A Linear whose parent reads its weight or bias as tensors (open_clip's ResNet attention pool passes
    them to F.multi_head_attention_forward) stays float: a quantised layer has no such tensors.
    """
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    names = quantizable_linears(module)
    dtypes = {name: m.weight.dtype for name, m in module.named_modules() if name in set(names)}
    quantized = quantize_dynamic(module, {name: default_dynamic_qconfig for name in names}, dtype=torch.qint8,
                                 inplace=False)
    for name, layer in quantized.named_modules():
        if name in dtypes:  # open_clip asks a block's first Linear for the float type its inputs are cast to
            layer.int8_original_dtype = dtypes[name]
    return quantized


def quantizable_linears(module: nn.Module) -> list[str]:
    """Names of the nn.Linear layers that are only ever called, never read as weight/bias tensors."""
    out = []
    for parent_name, parent in module.named_modules():
        source = _forward_source(parent)
        for name, child in parent.named_children():
            if type(child) is not nn.Linear:
                continue
            if f"{name}.weight" in source or f"{name}.bias" in source:
                continue
            out.append(f"{parent_name}.{name}" if parent_name else name)
    return out


def _forward_source(module: nn.Module) -> str:
    """The text of a module's forward (empty when Python cannot show it)."""
    import inspect

    try:
        return inspect.getsource(type(module).forward)
    except (OSError, TypeError):
        return ""


def prepare(module: nn.Module, precision: str) -> nn.Module:
    """The module to run at `precision` (int8 quantises; fp32 and bf16 run the weights as they are)."""
    return quantize_linears(module) if precision == "int8" else module


def autocast(device: str | torch.device, precision: str):
    """The context encoders run in: bf16 autocast for bf16 (fp16 on GPUs without bf16), else nothing."""
    if precision != "bf16":
        return contextlib.nullcontext()
    if str(device).startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", dtype=torch.bfloat16)
