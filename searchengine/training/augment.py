"""Training-time augmentations of waveforms and features.

Each is a small pure function; randomness comes only from the torch.Generator passed in, so an
augmented epoch can be replayed exactly.
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio.functional as AF

from ..bundles.features import as_wave_tensor
from ..types import SAMPLE_RATE


def resample(wave, orig_sr: int, new_sr: int = SAMPLE_RATE) -> torch.Tensor:
    """Band-limited resampling of a 1-D (or [..., time]) waveform."""
    wave = torch.as_tensor(wave, dtype=torch.float32)
    return wave if orig_sr == new_sr else AF.resample(wave, int(orig_sr), int(new_sr))


# ----------------------------------------------------------------------------- augmentations


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def speed_perturb(wave, generator: torch.Generator, low: float = 0.9, high: float = 1.1) -> torch.Tensor:
    """Play the clip `factor` times faster (pitch moves too, as in Kaldi's 3-way perturbation).

    The factor is rounded to whole percent so the resampling kernel stays small (gcd of 100).
    """
    percent = round(100 * _uniform(generator, low, high))
    return resample(wave, percent, 100) if percent != 100 else as_wave_tensor(wave).clone()


def add_noise(
    wave, generator: torch.Generator, snr_db: tuple[float, float] = (5.0, 30.0), noise=None
) -> torch.Tensor:
    """Mix in noise at an SNR drawn from `snr_db`: white noise, or a random stretch of `noise` (looped)."""
    wave = as_wave_tensor(wave)
    if noise is None:
        noise = torch.randn(wave.shape, generator=generator)
    else:
        noise = as_wave_tensor(noise)
        reps = -(-wave.numel() // max(noise.numel(), 1))
        noise = noise.repeat(reps + 1)
        start = int(torch.randint(0, noise.numel() - wave.numel() + 1, (), generator=generator))
        noise = noise[start : start + wave.numel()]
    if wave.numel() == 0 or float(wave.abs().max()) == 0.0 or float(noise.abs().max()) == 0.0:
        return wave.clone()  # SNR is undefined for silence
    snr = torch.tensor([_uniform(generator, *snr_db)])
    return AF.add_noise(wave[None], noise[None], snr)[0]


def augment_wave(wave: np.ndarray, generator: torch.Generator) -> np.ndarray:
    """A speed-perturbed (0.9-1.1, pitch moves too) and noisy (10-30 dB SNR) copy of a clip."""
    return add_noise(speed_perturb(wave, generator), generator, snr_db=(10.0, 30.0)).numpy()


def time_mask(feats: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator,
              max_fraction: float = 0.15) -> torch.Tensor:
    """SpecAugment-style time masking on cached features: one span of up to `max_fraction` per clip zeroed."""
    out = feats.clone()
    for i, length in enumerate(lengths.tolist()):
        width = int(float(torch.rand((), generator=generator)) * max_fraction * length)
        if width:
            start = int(torch.randint(0, length - width + 1, (), generator=generator))
            out[i, start:start + width] = 0.0
    return out
