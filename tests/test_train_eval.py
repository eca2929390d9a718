"""Training and evaluation: recall arithmetic, the loss, and tiny end-to-end runs of train_bundle."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_bundle import TINY_CLIP
from media_factory import tone, write_wav

from searchengine.bundles.bundle import load_bundle
from searchengine.errors import TrainingError
from searchengine.training.augment import time_mask
from searchengine.training.config import TrainConfig
from searchengine.training.data import FeatureBank, epoch_batches, read_manifest, split_data
from searchengine.training.evaluate import (edit_distance, evaluate_bundle, first_hit_ranks, recall_at_k,
                                            recall_from_ranks, relevance, word_error_rate)
from searchengine.training.loop import train_bundle
from searchengine.training.losses import info_nce
from searchengine.training.optim import lr_at
from searchengine.types import ProgressEvent

# ----------------------------------------------------------------------------- recall arithmetic


def test_perfect_ranking_hits_everything():
    sim = np.eye(4)
    assert recall_at_k(sim, np.arange(4), np.arange(4)) == {"R@1": 1.0, "R@5": 1.0, "R@10": 1.0}


def test_reversed_ranking_puts_every_hit_last():
    sim = -np.eye(3)  # each query's own item scores lowest
    ranks = first_hit_ranks(sim, relevance(np.arange(3), np.arange(3)))
    assert ranks.tolist() == [2, 2, 2]
    assert recall_from_ranks(ranks, (1, 2, 3)) == {"R@1": 0.0, "R@2": 0.0, "R@3": 1.0}


def test_ties_count_against_the_query():
    sim = np.zeros((3, 3))  # a collapsed model: every score equal
    assert first_hit_ranks(sim, relevance(np.arange(3), np.arange(3))).tolist() == [2, 2, 2]
    sim = np.array([[0.5, 0.5, 0.1]])  # the relevant item (0) ties with item 1
    assert first_hit_ranks(sim, relevance(np.array([0]), np.arange(3))).tolist() == [1]


def test_several_captions_per_image():
    image_of = np.array([0, 0, 1, 1])  # four spoken captions, two per image
    sim = np.array([[0.9, 0.1], [0.2, 0.3], [0.1, 0.8], [0.7, 0.6]])  # [caption, image]
    s2i = recall_at_k(sim, image_of, np.arange(2), (1, 2))
    assert s2i == {"R@1": 0.5, "R@2": 1.0}  # captions 1 and 3 prefer the wrong image
    # image -> caption: a hit when either caption of the image comes first (0 for image 0, 2 for image 1).
    assert recall_at_k(sim.T, np.arange(2), image_of, (1,)) == {"R@1": 1.0}
    # Image 0 without its best caption: caption 3 (image 1's, 0.7) now outranks caption 1 (0.2).
    assert first_hit_ranks(sim.T[:, 1:], relevance(np.arange(2), image_of[1:])).tolist() == [1, 0]


def test_query_without_relevant_item_is_a_miss():
    ranks = first_hit_ranks(np.ones((1, 2)), relevance(np.array([5]), np.arange(2)))
    assert ranks.tolist() == [-1]
    assert recall_from_ranks(ranks, (1, 2)) == {"R@1": 0.0, "R@2": 0.0}
    assert recall_from_ranks(np.array([]), (1,)) == {"R@1": 0.0}


def test_word_error_rate():
    assert edit_distance("a b c".split(), "a c".split()) == 1
    assert word_error_rate(["A red apple."], ["a red apple"]) == 0.0
    assert word_error_rate(["a red apple", "two ducks"], ["a bed apple", ""]) == pytest.approx(3 / 5)


# ----------------------------------------------------------------------------- loss and helpers


def test_info_nce_low_for_identical_embeddings():
    x = torch.nn.functional.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    assert float(info_nce(x, x, torch.tensor(100.0))) < 0.05
    shuffled = x[torch.tensor([1, 2, 3, 4, 5, 6, 7, 0])]
    assert float(info_nce(x, shuffled, torch.tensor(100.0))) > 1.0


def test_info_nce_known_value_2x2():
    eye = torch.eye(2)
    # Each row: softmax([1, 0]) on the right item -> -log(e / (e + 1)) = log(1 + 1/e), both ways.
    assert float(info_nce(eye, eye, torch.tensor(1.0))) == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    # Both rows in one group: half the target on each item -> mean of the two cross-entropies.
    expected = 0.5 * (math.log(1 + math.exp(-1)) + math.log(1 + math.e))
    assert float(info_nce(eye, eye, torch.tensor(1.0), torch.tensor([3, 3]))) == pytest.approx(expected, abs=1e-6)


def test_lr_schedule_warms_up_then_decays():
    assert lr_at(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert lr_at(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(100, 100, 10, 1.0) == pytest.approx(0.0, abs=1e-12)


def test_feature_bank_pads_and_masks():
    bank = FeatureBank.from_list([torch.ones(3, 2), 2 * torch.ones(5, 2)], [0, 1])
    feats, lengths = bank.batch(torch.tensor([1, 0]))
    assert feats.shape == (2, 5, 2) and lengths.tolist() == [5, 3]
    assert feats[1, 3:].abs().sum() == 0 and feats[0].min() == 2
    masked = time_mask(feats, lengths, torch.Generator().manual_seed(0), max_fraction=0.5)
    assert masked.shape == feats.shape and float(masked.sum()) <= float(feats.sum())
    both = FeatureBank.concat([bank, FeatureBank.from_list([3 * torch.ones(2, 2)], [0])])
    feats, lengths = both.batch(torch.tensor([2, 1]))
    assert lengths.tolist() == [2, 5] and feats[0, :2].min() == 3 and both.pair.tolist() == [0, 1, 0]


def test_epoch_batches_partition():
    batches = epoch_batches(10, 4, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [4, 4]  # the short tail is dropped
    assert epoch_batches(3, 4, torch.Generator().manual_seed(0))[0].numel() == 3


# ----------------------------------------------------------------------------- manifests

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 230), "yellow": (240, 220, 40),
           "black": (10, 10, 10), "white": (245, 245, 245)}


def _write_world(root: Path) -> Path:
    """Six solid-colour images, two tone 'captions' each: 4 images train, 1 dev, 1 test."""
    from PIL import Image

    lines = []
    for i, (name, rgb) in enumerate(COLOURS.items()):
        split = "train" if i < 4 else ("dev" if i == 4 else "test")
        Image.new("RGB", (40, 40), rgb).save(root / f"{name}.png")
        for k in range(2):
            write_wav(root / f"{name}_{k}.wav", tone(10 * i + k, 0.6))
            lines.append({"image": f"{name}.png", "audio": f"{name}_{k}.wav", "text": f"a {name} square",
                          "voice": f"v{k}", "split": split})
    (root / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root / "manifest.jsonl"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return _write_world(tmp_path_factory.mktemp("world"))


def _config(**changes) -> TrainConfig:
    """Tiny everything: random-init scratch speech encoder, 2 epochs a phase, seconds to run."""
    base = TrainConfig(model_cfg=TINY_CLIP, tower_epochs=2, speech_epochs=2, batch_size=4, speech_batch_size=4,
                       warmup_steps=1, frontend=None, speech_options={"width": 32, "layers": 1, "heads": 2},
                       augment_copies=1, name="tiny-trained")
    return TrainConfig(**{**base.__dict__, **changes})


def test_manifest_errors(tmp_path, world):
    with pytest.raises(TrainingError, match="cannot read"):
        read_manifest(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "a.png"}\n')
    with pytest.raises(TrainingError, match=":1: needs"):
        read_manifest(bad)
    bad.write_text("not json\n")
    with pytest.raises(TrainingError, match="not JSON"):
        read_manifest(bad)
    bad.write_text(json.dumps({"image": "a", "audio": "b", "text": "c", "split": "holdout"}) + "\n")
    with pytest.raises(TrainingError, match="split must be"):
        read_manifest(bad)
    pairs = [p for p in read_manifest(world) if p.split != "train"]
    with pytest.raises(TrainingError, match="no 'train' pairs"):
        split_data(pairs, "train")
    lines = world.read_text().splitlines()
    missing = tmp_path / "missing.jsonl"
    missing.write_text("\n".join(x.replace("red.png", str(world.parent / "gone.png")) for x in lines) + "\n")
    with pytest.raises(TrainingError, match="missing"):
        train_bundle(missing, tmp_path / "out", config=_config())


def test_split_groups_captions_by_image(world):
    data = split_data(read_manifest(world), "train")
    assert len(data.pairs) == 8 and len(data.images) == 4
    assert data.image_of.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert data.captions_of()[1] == [2, 3]


# ----------------------------------------------------------------------------- end to end


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    state = torch.load(directory / "clip.pt", weights_only=True)
    state.update({f"speech.{k}": v for k, v in torch.load(directory / "speech.pt", weights_only=True).items()})
    return state


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory) -> tuple[Path, object, list[ProgressEvent]]:
    events: list[ProgressEvent] = []
    out = tmp_path_factory.mktemp("trained") / "bundle"
    report = train_bundle(world, out, config=_config(), seed=0, progress=events.append, device="cpu")
    return out, report, events


def test_train_writes_a_loadable_bundle_that_eval_scores(trained, world):
    out, report, events = trained
    assert {p.name for p in out.iterdir()} >= {"bundle.json", "clip.pt", "speech.json", "speech.pt", "checkpoint.pt"}
    assert report.counts == {"train_pairs": 8, "train_images": 4, "dev_pairs": 2, "dev_images": 1}
    assert [(h["phase"], h["epoch"]) for h in report.history] == [("towers", 1), ("towers", 2), ("speech", 1), ("speech", 2)]
    assert {"text_to_image_R@1", "speech_to_image_R@1"} <= set(report.dev)
    assert any(e.kind == "step" for e in events) and any(e.kind == "stage" for e in events)
    bundle = load_bundle(out, device="cpu")
    assert bundle.name == "tiny-trained" and bundle.dim == TINY_CLIP["embed_dim"]
    saved = torch.load(out / "speech.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in saved.values() if v.is_floating_point())  # half on disk
    assert bundle.speech.encoder.proj.weight.dtype == torch.float32  # float32 once loaded
    result = evaluate_bundle(bundle, world, "test", cascade=False)
    assert result["pairs"] == 2 and result["images"] == 1
    for key in ("learned", "text_to_image"):
        assert set(result[key] if key != "learned" else result[key]["speech_to_image"]) == {"R@1", "R@5", "R@10"}
    assert result["learned"]["image_to_speech"]["R@1"] == 1.0  # one image: its own clips are all there is


def test_finished_run_is_not_redone(trained, world):
    out, report, _ = trained
    again = train_bundle(world, out, config=_config(), seed=0)
    assert again.resumed_from == "done:0" and again.history == report.history


def test_same_seed_same_weights_other_seed_differs(trained, world, tmp_path):
    out, _, _ = trained
    train_bundle(world, tmp_path / "again", config=_config(), seed=0)
    assert _same(_weights(out), _weights(tmp_path / "again"))
    train_bundle(world, tmp_path / "other", config=_config(), seed=1)
    assert not _same(_weights(out), _weights(tmp_path / "other"))


class _Stop(Exception):
    pass


def test_resume_from_checkpoint_matches_an_uninterrupted_run(trained, world, tmp_path):
    out, _, _ = trained

    def stop_after_first_speech_epoch(event: ProgressEvent) -> None:
        if event.kind == "epoch" and event.stage == "speech":
            raise _Stop

    with pytest.raises(_Stop):
        train_bundle(world, tmp_path / "resumed", config=_config(), seed=0, progress=stop_after_first_speech_epoch)
    report = train_bundle(world, tmp_path / "resumed", config=_config(), seed=0)
    assert report.resumed_from == "speech:1"
    assert _same(_weights(out), _weights(tmp_path / "resumed"))


def test_checkpoint_of_other_settings_is_refused(trained, world):
    out, _, _ = trained
    with pytest.raises(TrainingError, match="other data or settings"):
        train_bundle(world, out, config=_config(speech_epochs=3), seed=0)


def test_speech_only_training_keeps_the_towers(trained, world, tmp_path):
    out, _, _ = trained
    report = train_bundle(world, tmp_path / "speech-only", from_bundle=str(out), config=_config(), seed=3)
    assert [h["phase"] for h in report.history] == ["speech", "speech"]
    before, after = torch.load(out / "clip.pt", weights_only=True), torch.load(tmp_path / "speech-only" / "clip.pt", weights_only=True)
    assert _same(before, after)


def test_bad_settings_are_training_errors(world, tmp_path):
    with pytest.raises(TrainingError):
        train_bundle(world, tmp_path / "x", config=_config(batch_size=1))
    with pytest.raises(TrainingError, match="from-bundle"):
        train_bundle(world, tmp_path / "y", from_bundle=str(tmp_path / "nowhere"), config=_config())
    with pytest.raises(TrainingError, match="no_such_setting"):
        train_bundle(world, tmp_path / "z", config=_config(), no_such_setting=1)
    with pytest.raises(TrainingError, match="must be numbers: tower_epochs"):
        train_bundle(world, tmp_path / "z", config=_config(tower_epochs="2"))
    with pytest.raises(TrainingError, match="unknown device"):
        train_bundle(world, tmp_path / "z", config=_config(), device="no-such-device")
    with pytest.raises(TrainingError, match="speech encoder"):
        train_bundle(world, tmp_path / "z", config=_config(tower_epochs=0, pool="nope"))


def test_text_pool_head_starts_from_the_bundles_text_tower(trained, world, tmp_path):
    out, _, _ = trained
    text = load_bundle(out, device="cpu").towers.text_tower_parts()
    runs = {}
    for scale in (0.0, 0.1):
        directory = tmp_path / f"text-{scale}"
        train_bundle(world, directory, from_bundle=str(out), seed=0,
                     config=_config(pool="text", pool_queries=2, text_lr_scale=scale))
        runs[scale] = torch.load(directory / "speech.pt", weights_only=True)
        encoder = load_bundle(directory, device="cpu").speech.encoder
        assert encoder.config.pool == "text" and encoder.config.text_tower["width"] == TINY_CLIP["text_cfg"]["width"]
    half = text["projection"].half()
    assert torch.equal(runs[0.0]["pool.projection"], half)  # frozen copy: still the tower's own
    assert not torch.equal(runs[0.1]["pool.projection"], half)  # learning copy: moved
    assert not torch.equal(runs[0.0]["pool.to_token.weight"], runs[0.1]["pool.to_token.weight"])
    assert runs[0.0]["pool.score.weight"].abs().sum() > 0  # the queries learned where to listen


def test_an_ensemble_trains_every_head(trained, world, tmp_path):
    out, _, _ = trained
    report = train_bundle(world, tmp_path / "both", from_bundle=str(out), seed=0,
                          config=_config(pool="attention+text", pool_queries=2))
    saved = torch.load(tmp_path / "both" / "speech.pt", weights_only=True)
    # Both pools start as plain means (zero scores): non-zero scores mean each head got a gradient.
    assert saved["pool.score.weight"].abs().sum() > 0 and saved["extra_heads.0.pool.score.weight"].abs().sum() > 0
    assert "speech_to_image_R@1" in report.dev
    encoder = load_bundle(tmp_path / "both", device="cpu").speech.encoder
    assert [type(pool).__name__ for pool, _ in encoder.heads] == ["AttentionPool", "TextTowerPool"]


# ----------------------------------------------------------------------------- pruned token table


def test_trained_bundle_keeps_only_the_caption_tokens_and_maps_others_to_unk(trained, world):
    out, _, _ = trained
    config = json.loads((out / "bundle.json").read_text())["clip"]["model_cfg"]
    kept = config["token_ids"]
    # The six colour captions use a handful of tokens: padding, <unk>, the words, start and end.
    assert config["text_cfg"]["vocab_size"] == len(kept) < 20 and kept[1] == -1 and kept[-1] == 49407
    state = torch.load(out / "clip.pt", weights_only=True)
    assert state["token_embedding.weight"].shape[0] == len(kept)
    bundle = load_bundle(out, device="cpu")
    tokenizer = bundle.towers.tokenizer
    row = tokenizer(["a red square"])[0]
    assert int(row.argmax()) == 4 and int(row[4]) == tokenizer.eot_token_id == len(kept) - 1  # pooled at the end token
    assert tokenizer.encode("a zebra square")[1] == tokenizer.unk_token_id  # a word no caption used
    # The train captions embed as before pruning: the checkpoint's towers (pruned too) agree with the bundle.
    seen = bundle.encode_texts(["a red square", "a green square"])
    assert np.allclose(seen, bundle.towers.encode_texts(["a red square", "a green square"]))
    assert np.allclose(bundle.encode_texts(["a zebra square"]), bundle.encode_texts(["a lion square"]))  # both <unk>


def test_pruning_keeps_the_embeddings_of_kept_tokens(world):
    from searchengine.bundles import clip

    towers = clip.build_custom(TINY_CLIP, "cpu")
    texts = ["a red square", "two blue squares"]
    before = towers.encode_texts(texts)
    pruned, cfg = clip.prune_token_table(towers, TINY_CLIP, texts)
    assert np.allclose(pruned.encode_texts(texts), before, atol=1e-5)
    assert cfg["text_cfg"]["vocab_size"] == len(cfg["token_ids"]) and TINY_CLIP["text_cfg"]["vocab_size"] == 49408
    rebuilt = clip.build_custom(cfg, "cpu")  # what loading a bundle does: the config alone restores the tokenizer
    rebuilt.model.load_state_dict(pruned.model.state_dict())
    assert np.allclose(rebuilt.encode_texts(texts), before, atol=1e-5)
    assert np.allclose(rebuilt.encode_texts(["a zebra square"]), rebuilt.encode_texts(["a lion square"]))  # both <unk>


def test_unpruned_training_keeps_the_full_table(world, tmp_path):
    train_bundle(world, tmp_path / "full", config=_config(prune_tokens=False, speech_epochs=0), seed=0)
    config = json.loads((tmp_path / "full" / "bundle.json").read_text())["clip"]["model_cfg"]
    assert "token_ids" not in config and config["text_cfg"]["vocab_size"] == 49408


def test_features_cached_beforehand_are_reused_by_the_speech_run(world, tmp_path):
    from searchengine.training.loop import cache_speech_features

    out = tmp_path / "run"
    result = cache_speech_features(world, out, config=_config(augment="capture"), seed=0)
    assert result["rows"] == {"train": 16, "dev": 2}  # 8 train clips as recorded + 1 capture-like copy each
    cached = {p.name: p.stat().st_mtime_ns for p in (out / "cache").iterdir()}
    assert len(cached) == 3 and not (out / "checkpoint.pt").exists()
    events: list[ProgressEvent] = []
    train_bundle(world, out, config=_config(augment="capture"), seed=0, progress=events.append)
    assert not [e for e in events if e.stage == "features"]  # nothing extracted again
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cache").iterdir()} == cached
    basic = tmp_path / "basic"
    cache_speech_features(world, basic, config=_config(), seed=0)  # another augmentation: other copies
    assert {p.name for p in (basic / "cache").iterdir()} != set(cached)


def test_augment_first_replaces_a_share_of_the_recorded_clips(world, tmp_path):
    from searchengine.training.loop import cache_speech_features

    plain, mixed = tmp_path / "plain", tmp_path / "mixed"
    cache_speech_features(world, plain, config=_config(augment_copies=0), seed=0)
    cache_speech_features(world, mixed, config=_config(augment_copies=0, augment="capture", augment_first=0.5), seed=0)
    bank = {}
    for name, out in (("plain", plain), ("mixed", mixed)):
        (train,) = [p for p in (out / "cache").iterdir() if "-train-" in p.name]
        bank[name] = torch.load(train, weights_only=True)
    same = [torch.equal(a, b) for a, b in zip(_rows(bank["plain"]), _rows(bank["mixed"]))]
    assert len(same) == 8 and 0 < sum(same) < 8  # some clips as recorded, some augmented


def _rows(bank: dict) -> list[torch.Tensor]:
    return [bank["flat"][o:o + n] for o, n in zip(bank["offsets"].tolist(), bank["lengths"].tolist())]


def test_towers_can_start_from_another_bundle(trained, world, tmp_path):
    out, _, _ = trained  # its token table is pruned: the start spreads it back over the full table
    train_bundle(world, tmp_path / "warm", config=_config(tower_epochs=0, speech_epochs=0, init_from=str(out)), seed=0)
    train_bundle(world, tmp_path / "cold", config=_config(tower_epochs=0, speech_epochs=0), seed=0)
    texts = ["a red square", "a blue square", "a zebra"]
    source = load_bundle(out, device="cpu").encode_texts(texts)
    assert np.allclose(load_bundle(tmp_path / "warm", device="cpu").encode_texts(texts), source, atol=2e-3)  # fp16 on disk
    assert not np.allclose(load_bundle(tmp_path / "cold", device="cpu").encode_texts(texts), source, atol=0.05)
    with pytest.raises(TrainingError):
        train_bundle(world, tmp_path / "bad", config=_config(init_from=str(tmp_path / "nowhere")), seed=0)
