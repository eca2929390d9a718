"""Audio front end: Whisper's log-mel features and the training augmentations.

This is the only module of the project that imports torchaudio, so the rest can be used (and
tested) where it is absent or broken. Everything here is a small pure function; randomness comes
only from the torch.Generator passed in, so an augmented epoch can be replayed exactly.
"""

from __future__ import annotations

import functools

import torch
import torchaudio
import torchaudio.functional as AF

SAMPLE_RATE = 16_000
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


def _as_tensor(wave) -> torch.Tensor:
    t = torch.as_tensor(wave, dtype=torch.float32)
    if t.dim() != 1:
        raise ValueError(f"expected a 1-D mono waveform, got shape {tuple(t.shape)}")
    return t


def log_mel_one(wave, device: str | torch.device = "cpu") -> torch.Tensor:
    """[80, T] Whisper features of one 16 kHz clip, T = len // 160 + 1.

    Same recipe as Whisper / faster-whisper: 160 zeros appended, centred STFT, last frame dropped,
    log10 clamped to (max - 8) over the clip, then (x + 4) / 4.
    """
    wave = _as_tensor(wave).to(device)
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
    return resample(wave, percent, 100) if percent != 100 else _as_tensor(wave).clone()


def add_noise(
    wave, generator: torch.Generator, snr_db: tuple[float, float] = (5.0, 30.0), noise=None
) -> torch.Tensor:
    """Mix in noise at an SNR drawn from `snr_db`: white noise, or a random stretch of `noise` (looped)."""
    wave = _as_tensor(wave)
    if noise is None:
        noise = torch.randn(wave.shape, generator=generator)
    else:
        noise = _as_tensor(noise)
        reps = -(-wave.numel() // max(noise.numel(), 1))
        noise = noise.repeat(reps + 1)
        start = int(torch.randint(0, noise.numel() - wave.numel() + 1, (), generator=generator))
        noise = noise[start : start + wave.numel()]
    if wave.numel() == 0 or float(wave.abs().max()) == 0.0 or float(noise.abs().max()) == 0.0:
        return wave.clone()  # SNR is undefined for silence
    snr = torch.tensor([_uniform(generator, *snr_db)])
    return AF.add_noise(wave[None], noise[None], snr)[0]


def _mask_axis(mel: torch.Tensor, generator: torch.Generator, axis: int, n: int, width: int, limit: int) -> torch.Tensor:
    for _ in range(n):
        w = int(torch.randint(0, width + 1, (), generator=generator))
        w = min(w, limit)
        start = int(torch.randint(0, limit - w + 1, (), generator=generator))
        index = [slice(None)] * mel.dim()
        index[axis] = slice(start, start + w)
        mel[tuple(index)] = 0.0  # 0 is the features' middle after the (x + 4) / 4 scaling
    return mel


def spec_augment(
    mel: torch.Tensor,
    generator: torch.Generator,
    length: int | None = None,
    freq_masks: int = 2,
    freq_width: int = 15,
    time_masks: int = 2,
    time_width: int = 40,
) -> torch.Tensor:
    """SpecAugment on one [80, T] log-mel: frequency and time bands set to 0 (a copy is returned).

    `length` keeps time masks inside the valid frames of a padded clip; masks never exceed a fifth
    of the clip, so very short clips are not wiped out.
    """
    mel = mel.clone()
    frames = mel.shape[-1] if length is None else int(length)
    mel = _mask_axis(mel, generator, -2, freq_masks, freq_width, mel.shape[-2])
    return _mask_axis(mel, generator, -1, time_masks, min(time_width, frames // 5), frames)
