"""Whisper's log-mel features of 16 kHz clips: what every speech encoder reads.

With training/augment.py, the only modules that import torchaudio, so the rest can be used (and
tested) where it is absent or broken.
"""

from __future__ import annotations

import functools

import torch
import torchaudio

from ..errors import MediaError
from ..types import SAMPLE_RATE

N_FFT = 400  # 25 ms window
HOP = 160  # 10 ms hop: 100 frames a second
N_MELS = 80
# torch's reflect padding needs more samples than half a window; shorter clips get zeros first.
_MIN_SAMPLES = N_FFT


@functools.lru_cache(maxsize=4)
def _mel_transform(device: str) -> torchaudio.transforms.MelSpectrogram:
    # Whisper's filterbank is librosa's Slaney one (mel scale and area norm), 0-8 kHz.
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=SAMPLE_RATE,
        n_fft=N_FFT,
        hop_length=HOP,
        n_mels=N_MELS,
        f_min=0.0,
        f_max=SAMPLE_RATE / 2,
        power=2.0,
        center=True,
        pad_mode="reflect",
        mel_scale="slaney",
        norm="slaney",
    ).to(device)


def as_wave_tensor(wave) -> torch.Tensor:
    t = torch.as_tensor(wave, dtype=torch.float32)
    if t.dim() != 1:
        raise MediaError(f"expected a 1-D mono waveform, got shape {tuple(t.shape)}")
    return t


def log_mel_one(wave, device: str | torch.device = "cpu") -> torch.Tensor:
    """[80, T] Whisper features of one 16 kHz clip, T = len // 160 + 1.

    Same recipe as Whisper / faster-whisper: 160 zeros appended, centred STFT, last frame dropped,
    log10 clamped to (max - 8) over the clip, then (x + 4) / 4.
    """
    wave = as_wave_tensor(wave).to(device)
    frames = (wave.numel() + HOP) // HOP
    wave = torch.nn.functional.pad(wave, (0, max(HOP, _MIN_SAMPLES - wave.numel())))
    mel = _mel_transform(str(wave.device))(wave)[:, :frames]
    log = torch.clamp(mel, min=1e-10).log10()
    log = torch.maximum(log, log.max() - 8.0)
    return (log + 4.0) / 4.0


def log_mel(waveforms, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Batch of clips of different lengths -> (mel [B, 80, T_max] zero-padded, lengths [B] in frames).

    Each clip is featurised alone (its own clamp, its own end padding) so a clip's features do not
    depend on what it is batched with; padding frames are 0, which is what the encoder's convs see
    past a lone clip's end.
    """
    mels = [log_mel_one(w, device) for w in waveforms]
    lengths = torch.tensor([m.shape[-1] for m in mels], dtype=torch.long, device=device)
    out = torch.zeros(len(mels), N_MELS, int(lengths.max()) if mels else 0, device=device)
    for i, m in enumerate(mels):
        out[i, :, : m.shape[-1]] = m
    return out, lengths


def pad_or_trim(mel: torch.Tensor, frames: int = 3000) -> torch.Tensor:
    """Zero-pad (or cut) the time axis to `frames`, as faster-whisper does before its 30-s encoder."""
    if mel.shape[-1] >= frames:
        return mel[..., :frames]
    return torch.nn.functional.pad(mel, (0, frames - mel.shape[-1]))
