"""The capture-like augmentations of the speech encoder (searchengine/training/robust.py) and the
lossy encoder behind them (media.encode_audio): real signals through real filters and codecs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from searchengine.errors import UnsupportedMedia
from searchengine.media import encode_audio, load_audio
from searchengine.training import robust
from searchengine.training.config import TrainConfig
from searchengine.training.speech import augmentation
from searchengine.errors import TrainingError

SR = 16000


def chirp(seconds: float = 1.5, low: float = 100.0, high: float = 7000.0) -> np.ndarray:
    """A sweep across the speech band at half scale."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * (low * t + (high - low) * t ** 2 / (2 * seconds))
    return (0.5 * np.sin(phase)).astype(np.float32)


def voiced(seconds: float = 1.5, pitch: float = 140.0) -> np.ndarray:
    """A vowel-like signal: harmonics of `pitch` falling as 1/k up to 4 kHz, in 4 Hz syllables."""
    t = np.arange(int(seconds * SR)) / SR
    harmonics = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, int(4000 // pitch)))
    return (0.3 * harmonics / np.abs(harmonics).max() * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def band_energy(wave: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1 / SR)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("codec, bitrate", [("opus", 24000), ("opus", 12000), ("mp3", 32000)])
def test_lossy_round_trip_keeps_length_and_shape(codec, bitrate):
    wave = voiced()
    data = encode_audio(wave, codec, bitrate)
    assert len(data) < wave.nbytes / 4  # compressed: far below 16-bit PCM
    back = load_audio(data).samples
    assert abs(len(back) - len(wave)) < 0.06 * SR
    # The speech band survives (the codec may move phase, so compare energy, not samples).
    assert 0.5 < band_energy(back, 200, 3000) / band_energy(wave, 200, 3000) < 2.0


def test_unknown_codec_is_a_typed_error():
    with pytest.raises(UnsupportedMedia):
        encode_audio(chirp(), "flac")


def test_reverberation_keeps_length_and_peak_and_smears_time():
    click = np.zeros(SR, np.float32)
    click[1000] = 0.8
    wet = robust.reverberate(click, gen(), rt60=(0.5, 0.5), direct_ratio_db=(0.0, 0.0)).numpy()
    assert len(wet) == len(click) and abs(np.abs(wet).max() - 0.8) < 1e-5
    tail = np.abs(wet[1000 + SR // 10: 1000 + SR // 5]).sum()
    assert tail > 1.0 and np.abs(wet[:1000]).max() < 1e-4  # energy after the click, none before it


def test_room_impulse_response_decays_by_rt60():
    rir = robust.room_impulse_response(gen(), rt60=0.4, direct_ratio_db=6.0)
    assert len(rir) == int(0.4 * SR) and float(rir[0]) == 1.0
    early, late = rir[1:800].pow(2).mean(), rir[-800:].pow(2).mean()
    assert 10 * torch.log10(early / late) > 40  # about 60 dB down by the end


def test_telephone_band_removes_lows_and_highs():
    wave = chirp()
    out = robust.butterworth_band(torch.from_numpy(wave), 300.0, 3400.0).numpy()
    assert band_energy(out, 6000, 8000) < 0.01 * band_energy(wave, 6000, 8000)  # 4th order: -24 dB an octave
    assert band_energy(out, 0, 150) < 0.05 * band_energy(wave, 0, 150)
    assert band_energy(out, 800, 2500) > 0.8 * band_energy(wave, 800, 2500)


def test_clipping_limits_and_levels_change():
    wave = torch.from_numpy(chirp())
    clipped = robust.level_and_clipping(wave, gen(), clip=True)
    assert float(clipped.abs().max()) == 1.0 and float((clipped.abs() == 1.0).float().mean()) > 0.05
    quieter = [float(robust.level_and_clipping(wave, gen(s), clip=False).abs().max()) for s in range(20)]
    assert min(quieter) < 0.2 < 0.5 < max(quieter) <= 1.0


def test_silence_and_breath_pad_both_ends():
    wave = torch.from_numpy(chirp(0.5))
    out = robust.pad_with_silence(wave, gen(3), max_seconds=0.8)
    assert len(out) >= len(wave) + 0.1 * SR  # at least 0.05 s each side
    lead = int(torch.nonzero(out == wave[0])[0]) if bool((out == wave[0]).any()) else 0
    assert lead >= 0.05 * SR and torch.equal(out[lead:lead + len(wave)], wave)  # the clip itself untouched
    assert float(out[:lead].abs().max()) < 0.1  # room tone and a soft breath only


@pytest.mark.parametrize("exponent, low_share", [(0.0, 0.15), (2.0, 0.9)])
def test_coloured_noise_spectrum(exponent, low_share):
    noise = robust.coloured_noise(SR, gen(), exponent).numpy()
    assert abs(np.sqrt((noise ** 2).mean()) - 1.0) < 1e-3
    share = band_energy(noise, 0, 1000) / band_energy(noise, 0, 8000)
    assert (share < low_share) if exponent == 0.0 else (share > low_share)


def test_capture_like_is_repeatable_and_changes_the_clip():
    wave = chirp()
    a, b = robust.capture_like(wave, gen(7)), robust.capture_like(wave, gen(7))
    c = robust.capture_like(wave, gen(8))
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert not (len(a) == len(c) and np.allclose(a, c))
    assert np.abs(a).max() <= 1.0 + 1e-6


def test_the_training_setting_picks_the_augmentation():
    assert augmentation("capture") is robust.capture_like
    assert augmentation("basic").__name__ == "augment_wave"
    with pytest.raises(TrainingError):
        from searchengine.training.config import resolve_config
        resolve_config(TrainConfig(), {"augment": "studio"})


def test_robustness_report_scores_every_condition_against_clean(tmp_path):
    import sys
    from pathlib import Path

    from test_train_eval import _write_world
    from tiny_bundle import build_tiny_bundle

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import eval_robustness

    manifest = _write_world(tmp_path)
    bundle = build_tiny_bundle(tmp_path / "bundle")
    report = eval_robustness.evaluate(str(manifest), str(bundle), "train", "cpu")
    assert list(report["conditions"]) == list(eval_robustness.CONDITIONS) and report["pairs"] == 8
    clean = report["conditions"]["clean"]["speech_to_image"]["R@1"]
    for condition, drop in report["drop_R@1"].items():
        got = report["conditions"][condition]["speech_to_image"]["R@1"]
        assert drop["speech_to_image"] == pytest.approx(clean - got, abs=1e-4)
    # The conditions really change the clips the encoder hears (a tone in a room is no longer the tone).
    wave = chirp(1.0)
    assert not np.allclose(eval_robustness.reverb(wave, 0), wave) and len(eval_robustness.opus24(wave)) == len(wave)
    assert "clean" in eval_robustness.table(report)
