"""Augmentations that model how people really record a spoken query, for the learned speech encoder.

A query reaches the engine through a room, a microphone, a codec and a level control, none of
which the clean TTS clips of a training world show. `capture_like` chains the effects of that
path, each with its own probability, so the features cached for an augmented copy look like a
phone or browser recording:

  speed (speaking rate; pitch moves with it) -> leading/trailing silence with a breath ->
  reverberation (a synthetic room impulse response) -> background noise (white, pink, brown) ->
  band-limiting (telephone 300-3400 Hz, or a microphone's low-pass) -> level change and clipping ->
  a lossy round trip (Opus at 12-32 kb/s as browsers send it, MP3 at 24-64 kb/s as phones save it).

Randomness comes only from the torch.Generator passed in, so a copy can be rebuilt exactly.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from ..bundles.features import as_wave_tensor
from ..errors import SearchEngineError
from ..types import SAMPLE_RATE
from .augment import add_noise

# How often each stage of the capture path applies to an augmented copy.
P_SILENCE, P_REVERB, P_NOISE, P_BAND, P_CLIP, P_CODEC = 0.5, 0.5, 0.6, 0.5, 0.2, 0.5


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _chance(generator: torch.Generator, p: float) -> bool:
    return float(torch.rand((), generator=generator)) < p


def _fast_len(n: int) -> int:
    """A power of two at least n: FFTs of prime lengths are many times slower."""
    return 1 << max(1, (n - 1).bit_length())


def fast_speed(wave, generator: torch.Generator, low: float = 0.9, high: float = 1.1) -> torch.Tensor:
    """Play the clip faster or slower (pitch moves too) by linear interpolation: cheap, and the
    little aliasing it adds is one more imperfection of real capture."""
    wave = as_wave_tensor(wave)
    factor = _uniform(generator, low, high)
    n = max(2, int(round(wave.numel() / factor)))
    if wave.numel() < 2:
        return wave.clone()
    return torch.nn.functional.interpolate(wave[None, None], size=n, mode="linear", align_corners=True)[0, 0]


def convolve(wave: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Linear convolution through power-of-two FFTs, cut to the wave's length."""
    n = _fast_len(wave.numel() + kernel.numel() - 1)
    return torch.fft.irfft(torch.fft.rfft(wave, n) * torch.fft.rfft(kernel, n), n)[: wave.numel()]


def room_impulse_response(generator: torch.Generator, rt60: float, direct_ratio_db: float,
                          sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """A synthetic room: a direct path, then exponentially decaying noise (-60 dB after rt60 seconds).

    direct_ratio_db is the direct path's energy over the tail's: low values sound far from the mic.
    """
    n = max(2, int(rt60 * sample_rate))
    t = torch.arange(n, dtype=torch.float32) / sample_rate
    tail = torch.randn(n, generator=generator) * torch.exp(-6.9078 * t / rt60)
    tail[0] = 0.0
    tail = tail / tail.norm().clamp_min(1e-8) * 10 ** (-direct_ratio_db / 20)
    tail[0] = 1.0
    return tail


def reverberate(wave, generator: torch.Generator, rt60: tuple[float, float] = (0.2, 0.9),
                direct_ratio_db: tuple[float, float] = (-3.0, 12.0)) -> torch.Tensor:
    """The clip as heard in a random room (same length, same peak level)."""
    wave = as_wave_tensor(wave)
    if wave.numel() == 0:
        return wave.clone()
    rir = room_impulse_response(generator, _uniform(generator, *rt60), _uniform(generator, *direct_ratio_db))
    wet = convolve(wave, rir)
    return match_peak(wet, wave)


def match_peak(wave: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    peak, target = float(wave.abs().max()), float(like.abs().max())
    return wave * (target / peak) if peak > 0 else wave


def coloured_noise(n: int, generator: torch.Generator, exponent: float) -> torch.Tensor:
    """Noise whose power falls as 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    size = _fast_len(n)
    spectrum = torch.fft.rfft(torch.randn(size, generator=generator))
    freqs = torch.arange(spectrum.numel(), dtype=torch.float32).clamp_min(1.0)
    noise = torch.fft.irfft(spectrum / freqs ** (exponent / 2), n=size)[:n]
    return noise / noise.pow(2).mean().sqrt().clamp_min(1e-8)


def background_noise(wave, generator: torch.Generator, snr_db: tuple[float, float] = (5.0, 30.0)) -> torch.Tensor:
    """White, pink or brown noise at a random SNR (rooms hum low, fans hiss high)."""
    wave = as_wave_tensor(wave)
    exponent = float(torch.randint(0, 3, (), generator=generator))
    return add_noise(wave, generator, snr_db, noise=coloured_noise(max(wave.numel(), 2), generator, exponent))


def band_limit(wave, generator: torch.Generator) -> torch.Tensor:
    """A telephone band (300-3400 Hz) or a cheap microphone's roll-off (high-pass 80-200, low-pass 3-7 kHz)."""
    wave = as_wave_tensor(wave)
    if _chance(generator, 0.4):
        low, high = 300.0, 3400.0
    else:
        low, high = _uniform(generator, 80.0, 200.0), _uniform(generator, 3000.0, 7000.0)
    return match_peak(butterworth_band(wave, low, high), wave)


def butterworth_band(wave: torch.Tensor, low: float, high: float, order: int = 4) -> torch.Tensor:
    """Band-pass by the magnitude of Butterworth filters, applied in the frequency domain (zero phase)."""
    n = _fast_len(wave.numel())
    freqs = torch.fft.rfftfreq(n, 1.0 / SAMPLE_RATE).clamp_min(1e-3)
    gain = 1 / torch.sqrt(1 + (freqs / high) ** (2 * order)) / torch.sqrt(1 + (low / freqs) ** (2 * order))
    return torch.fft.irfft(torch.fft.rfft(wave, n) * gain, n)[: wave.numel()]


def level_and_clipping(wave, generator: torch.Generator, clip: bool) -> torch.Tensor:
    """A quieter or louder recording (-20 to +6 dB); with clip, driven 3-12 dB into hard clipping."""
    wave = as_wave_tensor(wave)
    gain_db = _uniform(generator, 3.0, 12.0) if clip else _uniform(generator, -20.0, 6.0)
    return (wave * 10 ** (gain_db / 20)).clamp(-1.0, 1.0)


def pad_with_silence(wave, generator: torch.Generator, max_seconds: float = 0.8, breath: bool = True) -> torch.Tensor:
    """Leading and trailing near-silence (room tone at -60 to -45 dB), with a breath before the speech."""
    wave = as_wave_tensor(wave)
    lead = int(_uniform(generator, 0.05, max_seconds) * SAMPLE_RATE)
    trail = int(_uniform(generator, 0.05, max_seconds) * SAMPLE_RATE)
    floor = 10 ** (_uniform(generator, -60.0, -45.0) / 20)
    head = torch.randn(lead, generator=generator) * floor
    if breath and lead > SAMPLE_RATE // 4:
        head[-SAMPLE_RATE // 4:] += _breath(SAMPLE_RATE // 5, generator) * float(wave.abs().max()) * 0.05
    return torch.cat([head, wave, torch.randn(trail, generator=generator) * floor])


def _breath(n: int, generator: torch.Generator) -> torch.Tensor:
    """An inhalation: band-passed noise (500-2500 Hz) under a smooth rise and fall, padded to n + n/4."""
    noise = butterworth_band(torch.randn(n, generator=generator), 500.0, 2500.0, order=2)
    envelope = torch.sin(torch.linspace(0, math.pi, n)) ** 2
    out = torch.zeros(n + n // 4)
    out[:n] = noise / noise.abs().max().clamp_min(1e-8) * envelope
    return out


def lossy_round_trip(wave, generator: torch.Generator) -> torch.Tensor:
    """The clip after an Opus (12-32 kb/s) or MP3 (24-64 kb/s) encode and decode; unchanged if it fails."""
    from ..media import encode_audio, load_audio  # av, only where a codec runs

    wave = as_wave_tensor(wave)
    if _chance(generator, 0.6):
        codec, bitrate = "opus", int(_uniform(generator, 12.0, 32.0)) * 1000
    else:
        codec, bitrate = "mp3", int(_uniform(generator, 24.0, 64.0)) * 1000
    try:
        decoded = load_audio(encode_audio(wave.numpy(), codec, bitrate)).samples
    except SearchEngineError:
        return wave.clone()  # a clip the codec cannot take (too short) stays as it was
    out = torch.zeros(wave.numel())
    out[: min(wave.numel(), len(decoded))] = torch.from_numpy(np.asarray(decoded[: wave.numel()], np.float32))
    return out


def capture_like(wave: np.ndarray, generator: torch.Generator) -> np.ndarray:
    """One augmented copy of a clip as a real microphone, room and codec might deliver it (see the module doc)."""
    out = fast_speed(wave, generator)
    if _chance(generator, P_SILENCE):
        out = pad_with_silence(out, generator)
    if _chance(generator, P_REVERB):
        out = reverberate(out, generator)
    if _chance(generator, P_NOISE):
        out = background_noise(out, generator)
    if _chance(generator, P_BAND):
        out = band_limit(out, generator)
    out = level_and_clipping(out, generator, clip=_chance(generator, P_CLIP))
    if _chance(generator, P_CODEC):
        out = lossy_round_trip(out, generator)
    return out.numpy().astype(np.float32)


AUGMENTATIONS = {"basic": None, "capture": capture_like}  # "basic": augment.augment_wave (speed + white noise)
