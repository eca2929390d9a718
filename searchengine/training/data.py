"""Training data: manifest reading, split grouping, decoded media, cached speech features, batching.

Small pieces with arithmetic worth testing on their own (batching, feature packing), with no
training loop around them.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import SearchEngineError, TrainingError
from ..types import SAMPLE_RATE

SPLITS = ("train", "dev", "test")
REQUIRED_KEYS = ("image", "audio", "text", "split")


@dataclass(frozen=True)
class Pair:
    """One spoken caption of one image; paths are absolute."""

    image: Path
    audio: Path
    text: str
    split: str
    voice: str = ""


@dataclass
class SplitData:
    """The pairs of one split grouped by image: `image_of[i]` indexes `images` for pair i."""

    name: str
    pairs: list[Pair]
    images: list[Path]
    image_of: np.ndarray

    @property
    def texts(self) -> list[str]:
        """Caption text of every pair."""
        return [p.text for p in self.pairs]

    def captions_of(self) -> list[list[int]]:
        """For each image, the pair indices of its captions."""
        out: list[list[int]] = [[] for _ in self.images]
        for pair, image in enumerate(self.image_of):
            out[int(image)].append(pair)
        return out


# ----------------------------------------------------------------------------- manifest


def read_manifest(path: str | Path) -> list[Pair]:
    """Every pair of a manifest.jsonl, paths resolved against the manifest's folder."""
    path = Path(path).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"cannot read manifest {path}: {exc}") from exc
    pairs = [_parse_line(line, path, n) for n, line in enumerate(lines, 1) if line.strip()]
    if not pairs:
        raise TrainingError(f"manifest {path} holds no pairs")
    return pairs


def _parse_line(line: str, manifest: Path, number: int) -> Pair:
    """One manifest record as a Pair; any defect is a TrainingError naming the line."""
    where = f"{manifest}:{number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TrainingError(f"{where}: not JSON ({exc.msg})") from exc
    if not isinstance(record, dict) or any(not isinstance(record.get(k), str) for k in REQUIRED_KEYS):
        raise TrainingError(f"{where}: needs string fields {', '.join(REQUIRED_KEYS)}")
    if record["split"] not in SPLITS:
        raise TrainingError(f"{where}: split must be one of {', '.join(SPLITS)}, not {record['split']!r}")
    root = manifest.parent
    return Pair(root / record["image"], root / record["audio"], record["text"].strip(), record["split"],
                str(record.get("voice", "")))


def file_sha1(path: Path) -> str:
    """Content hash of a (small) file, to tie caches and checkpoints to one manifest."""
    return hashlib.sha1(path.read_bytes()).hexdigest()


def split_data(pairs: list[Pair], split: str) -> SplitData:
    """The pairs of one split with their distinct images; TrainingError when the split is empty."""
    chosen = [p for p in pairs if p.split == split]
    if not chosen:
        raise TrainingError(f"the manifest has no '{split}' pairs")
    missing = [str(p) for p in {q.image for q in chosen} | {q.audio for q in chosen} if not p.is_file()]
    if missing:
        raise TrainingError(f"{len(missing)} files named in the '{split}' split are missing, e.g. {sorted(missing)[0]}")
    index: dict[Path, int] = {}
    image_of = np.array([index.setdefault(p.image, len(index)) for p in chosen], dtype=np.int64)
    return SplitData(split, chosen, list(index), image_of)


def load_images(paths: list[Path]) -> list:
    """Decoded RGB images (PIL), read once and kept in memory for every epoch."""
    from ..media import load_image

    try:
        return [load_image(p) for p in paths]
    except SearchEngineError as exc:
        raise TrainingError(f"unreadable training image: {exc}") from exc


def load_waves(paths: list[Path]) -> list[np.ndarray]:
    """16 kHz mono float32 samples of every clip."""
    from ..media import load_audio

    try:
        return [load_audio(p).samples for p in paths]
    except SearchEngineError as exc:
        raise TrainingError(f"unreadable training audio: {exc}") from exc


# ----------------------------------------------------------------------------- cached speech features


@dataclass
class FeatureBank:
    """Frozen-encoder outputs of many clips, concatenated: row i is flat[offsets[i]:offsets[i]+lengths[i]]."""

    flat: torch.Tensor
    offsets: torch.Tensor
    lengths: torch.Tensor
    pair: torch.Tensor  # which manifest pair each row came from (augmented copies repeat it)

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero-padded [B, T_max, D] float32 features and their lengths (on the CPU)."""
        lengths = self.lengths[rows]
        out = torch.zeros(len(rows), int(lengths.max()), self.flat.shape[1])
        for i, row in enumerate(rows.tolist()):
            start = int(self.offsets[row])
            out[i, : int(lengths[i])] = self.flat[start:start + int(lengths[i])].float()
        return out, lengths

    @classmethod
    def from_list(cls, feats: list[torch.Tensor], pair: list[int]) -> "FeatureBank":
        """Pack per-clip [T_i, D] tensors (stored as float16: half the memory, ample precision)."""
        lengths = torch.tensor([len(f) for f in feats], dtype=torch.long)
        offsets = torch.cumsum(lengths, 0) - lengths
        flat = torch.cat([f.to(torch.float16).cpu() for f in feats]) if feats else torch.zeros(0, 1)
        return cls(flat, offsets, lengths, torch.tensor(pair, dtype=torch.long))

    @classmethod
    def concat(cls, banks: list["FeatureBank"]) -> "FeatureBank":
        """One bank holding the rows of several, in order."""
        shifts = torch.cumsum(torch.tensor([0] + [len(b.flat) for b in banks[:-1]]), 0)
        return cls(torch.cat([b.flat for b in banks]), torch.cat([b.offsets + s for b, s in zip(banks, shifts)]),
                   torch.cat([b.lengths for b in banks]), torch.cat([b.pair for b in banks]))

    def to_dict(self) -> dict:
        return {"flat": self.flat, "offsets": self.offsets, "lengths": self.lengths, "pair": self.pair}


_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


@functools.lru_cache(maxsize=1)
def limit_heap_fragmentation(threshold: int = 64 * 1024) -> bool:
    """Have glibc serve allocations of `threshold` bytes and more with mmap; False where it cannot.

    Feature extraction keeps one ~150 KB tensor per clip while large activations come and go between
    them. glibc raises its mmap threshold after the first large free, so the kept tensors land in the
    heap among freed holes it never returns: 0.38 GB of features held 3.4 GB of memory (3000 clips),
    and a 32k-clip split passed 24 GiB. A fixed threshold keeps that at 0.45 GB.
    """
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False  # not glibc (macOS, musl): their allocators do not show this pattern


def extract_features(encoder, waves: list[np.ndarray], batch_size: int = 16, progress=None,
                     transform=None) -> list[torch.Tensor]:
    """encoder.frozen_features for every clip, batched by length; one [T_i, D] tensor per clip.

    transform(i, wave), when given, makes the clip actually encoded (an augmented copy) one batch
    at a time, so a large split never holds a second copy of all its audio in memory.
    """
    from ..bundles.features import log_mel  # torchaudio only where features are made

    limit_heap_fragmentation()
    out: list[torch.Tensor | None] = [None] * len(waves)
    order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
    max_samples = int(encoder.config.max_seconds * SAMPLE_RATE)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        clips = [transform(i, waves[i]) if transform else waves[i] for i in idx]
        mel, lengths = log_mel([torch.as_tensor(clip[:max_samples]) for clip in clips], encoder.device)
        feats, feat_lengths = encoder.frozen_features(mel, lengths)
        for j, i in enumerate(idx):
            out[i] = feats[j, : int(feat_lengths[j])].to(torch.float16).cpu()
        if progress is not None:
            progress(len(idx))
    return out  # type: ignore[return-value]


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, drop_last: bool = True) -> list[torch.Tensor]:
    """A shuffled partition of range(n) into batches; the short tail is dropped unless it is all there is."""
    perm = torch.randperm(n, generator=generator)
    batches = [perm[i:i + batch_size] for i in range(0, n, batch_size)]
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches = batches[:-1]
    return batches
