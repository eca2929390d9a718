"""A real user's first run: the default bundle, `models`, `config`, any open_clip model by name, fast light commands.

Commands run as separate processes of the installed `searchengine` script, with their own config file
(SEARCHENGINE_CONFIG), data folder and model cache in tmp: never the real home. The hub is unreachable
here, so every "offline" case is the real one. open_clip models are tiny custom configs built on the
fly and loaded through the same `clip:` path as any other; the default bundle's ViT-B-32 checkpoint is
a random one of the real shape, put where open_clip's download would put it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from media_factory import make_image
from tiny_bundle import TINY_CLIP

from searchengine import settings
from searchengine.bundles import hub, registry
from searchengine.errors import ArgumentError, BundleNotFound

SCRIPT = Path(sys.executable).parent / "searchengine"
TINY = "clip:tiny-test+whisper:tiny.en"
HEAVY = ("torch", "open_clip", "faiss", "faster_whisper", "ctranslate2")


@pytest.fixture
def home(tmp_path, monkeypatch) -> dict:
    """An empty config file, data folder and model cache for this test; no SEARCHENGINE_* from outside."""
    for setting in settings.SETTINGS.values():
        monkeypatch.delenv(setting.env, raising=False)
    (tmp_path / "config.toml").write_text("")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SEARCHENGINE_")},
           "SEARCHENGINE_CONFIG": str(tmp_path / "config.toml"), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"), "HF_HUB_CACHE": str(tmp_path / "hf"),
           "SEARCHENGINE_DEVICE": "cpu"}
    monkeypatch.setenv("SEARCHENGINE_CONFIG", env["SEARCHENGINE_CONFIG"])
    return env


def run(env: dict, *args, **extra_env) -> subprocess.CompletedProcess:
    """The installed command, as a user types it."""
    return subprocess.run([str(SCRIPT), *map(str, args)], env={**env, **extra_env}, capture_output=True, text=True,
                          timeout=600)


def run_line(env: dict, line: str) -> subprocess.CompletedProcess:
    """A command line exactly as the engine printed it."""
    words = shlex.split(line)
    assert words[0] == "searchengine", line
    return run(env, *words[1:])


def printed_command(stderr: str) -> str:
    return next(line.strip() for line in stderr.splitlines() if line.strip().startswith("searchengine "))


@pytest.fixture
def photos(tmp_path) -> Path:
    for i in range(3):
        make_image(tmp_path / "photos" / f"p{i}.png", i)
    return tmp_path / "photos"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> dict:
    """A custom open_clip config (the clip_configs setting) and two checkpoints of it with different weights."""
    import open_clip
    import torch

    root = tmp_path_factory.mktemp("tiny-open-clip")
    (root / "configs").mkdir()
    (root / "configs" / "tiny-test.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(root / "configs")
    for seed in (0, 1):
        torch.manual_seed(seed)
        torch.save(open_clip.create_model("tiny-test").state_dict(), root / f"tiny-{seed}.pt")
    return {"configs": root / "configs", "weights": root / "tiny-0.pt", "other": root / "tiny-1.pt"}


# ----------------------------------------------------------------------------- settings and `config`


def test_settings_precedence_flag_environment_file_default(home, tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text('index = "my-index"\nbundle = "stamp-scenes-small"\n'
                                          'clip_weights = "~/ckpt.safetensors"\n')
    assert settings.resolve("index") == settings.Resolved("index", str(tmp_path / "my-index"), "file",
                                                          str(tmp_path / "config.toml"))
    assert settings.value("clip_weights") == str(Path.home() / "ckpt.safetensors")
    monkeypatch.setenv("SEARCHENGINE_BUNDLE", "clip-whisper")
    assert settings.resolve("bundle") == settings.Resolved("bundle", "clip-whisper", "environment",
                                                           "SEARCHENGINE_BUNDLE")
    assert settings.resolve("bundle", "/some/folder").origin == "flag"
    assert settings.resolve("device") == settings.Resolved("device", None, "default")
    assert registry.default_bundle_name() == "clip-whisper"


@pytest.mark.parametrize("content,message", [("colour = 'red'\n", "unknown setting colour"),
                                             ("device = 3\n", "device must be a string"),
                                             ("index = \n", "config file")])
def test_a_bad_config_file_is_a_usage_error(home, tmp_path, content, message):
    (tmp_path / "config.toml").write_text(content)
    with pytest.raises(ArgumentError, match=message):
        settings.value("index")
    result = run(home, "config")
    assert result.returncode == 2 and message in result.stderr


def test_a_config_file_named_but_missing_is_an_error(home, tmp_path):
    result = run(home, "config", SEARCHENGINE_CONFIG=str(tmp_path / "typo.toml"))
    assert result.returncode == 2 and "no such file" in result.stderr


def test_config_shows_each_value_and_where_it_came_from(home, tmp_path):
    (tmp_path / "config.toml").write_text('bundle = "stamp-scenes-small"\nwhisper_model = "tiny.en"\n')
    result = run(home, "config", "--index", tmp_path / "flagged", "--json", SEARCHENGINE_DB="postgresql://h/db")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    found = {s["key"]: (s["value"], s["origin"]) for s in data["settings"]}
    assert found["index"] == (str(tmp_path / "flagged"), "flag")
    assert found["db"] == ("postgresql://h/db", "environment")
    assert found["bundle"] == ("stamp-scenes-small", "file") and found["whisper_model"] == ("tiny.en", "file")
    assert found["device"] == ("cpu", "environment") and found["clip_weights"] == (None, "default")
    assert data["file"] == str(tmp_path / "config.toml") and data["file_exists"]
    text = run(home, "config").stdout
    assert "stamp-scenes-small" in text and "file" in text and "SEARCHENGINE_CLIP_WEIGHTS" in text


# ----------------------------------------------------------------------------- names and caches


def test_a_bundle_named_by_its_parts():
    spec = registry.get_bundle_spec("clip:ViT-L-14/datacomp_xl_s13b_b90k+whisper:small")
    assert (spec.clip_model, spec.clip_pretrained, spec.whisper) == ("ViT-L-14", "datacomp_xl_s13b_b90k", "small")
    # Without a speech part the cascade uses Whisper base: both spellings are one bundle to an index.
    assert registry.bundle_source("clip:ViT-L-14/datacomp_xl_s13b_b90k") == \
        registry.bundle_source("clip:ViT-L-14/datacomp_xl_s13b_b90k+whisper:base")
    assert registry.bundle_source("clip:ViT-B-32/laion2b_s34b_b79k+whisper:base") == "clip-whisper"
    assert registry.get_bundle_spec("clip:hf-hub:org/repo").clip_model == "hf-hub:org/repo"
    assert registry.get_bundle_spec("clip:tiny").clip_pretrained is None
    for bad in ("clip:", "clip:ViT-B-32/a/b", "clip:ViT-B-32+speech:base", "clip:ViT-B-32+whisper:"):
        with pytest.raises(BundleNotFound, match="clip:MODEL/TAG"):
            registry.get_bundle_spec(bad)


def test_bundles_documents_the_form_and_marks_the_default(home, tmp_path):
    (tmp_path / "config.toml").write_text('bundle = "stamp-scenes-small"\n')
    data = json.loads(run(home, "bundles", "--json").stdout)
    assert data["default"] == "stamp-scenes-small"
    assert [b["name"] for b in data["bundles"] if b["default"]] == ["stamp-scenes-small"]
    assert any(form.startswith("clip:MODEL/TAG+whisper:SIZE") for form in data["forms"])
    assert "clip:MODEL/TAG+whisper:SIZE" in run(home, "bundles").stdout


def test_the_copied_download_tables_match_open_clip_and_faster_whisper():
    import open_clip
    from faster_whisper import utils

    for (model, tag), source in registry.OPEN_CLIP_HUB.items():
        assert open_clip.get_pretrained_cfg(model, tag)["hf_hub"] == source, (model, tag)
    assert registry.FASTER_WHISPER_REPOS == utils._MODELS
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    assert registry.OPEN_CLIP_FILES == (HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME)


def test_the_cache_is_read_as_huggingface_hub_reads_it(tmp_path, monkeypatch):
    from huggingface_hub import constants, try_to_load_from_cache

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    snapshot = _hub_snapshot(tmp_path, "org/model", {"open_clip_pytorch_model.bin": b"x", "config.json": b"{}"})
    (tmp_path / "models--org--half" / "refs").mkdir(parents=True)  # a download that never finished
    (tmp_path / "models--org--half" / "refs" / "main").write_text("f" * 40)
    for repo, name in [("org/model", "open_clip_pytorch_model.bin"), ("org/model", "open_clip_model.safetensors"),
                       ("org/half", "model.bin"), ("org/none", "model.bin")]:
        ours = hub.cached_file(repo, (name,))
        theirs = try_to_load_from_cache(repo, name, cache_dir=str(tmp_path))
        assert (str(ours) if ours else None) == (theirs if isinstance(theirs, str) else None), (repo, name)
    assert hub.cached_file("org/model", registry.OPEN_CLIP_FILES) == snapshot / "open_clip_pytorch_model.bin"


def _hub_snapshot(cache: Path, repo: str, files: dict[str, bytes]) -> Path:
    """A model repo laid out as huggingface_hub's downloads leave it (refs/main names the snapshot)."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    snapshot = folder / "snapshots" / ("c0ffee" * 6 + "abcd")
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(snapshot.name)  # no newline, as the hub client writes it
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return snapshot


# ----------------------------------------------------------------------------- the first run


@pytest.mark.weights
def test_first_run_without_the_default_weights(home, photos):
    started = time.perf_counter()
    result = run(home, "index", photos)
    seconds = time.perf_counter() - started
    assert result.returncode == 4 and seconds < 5, (seconds, result.stderr)
    assert "default bundle 'clip-whisper'" in result.stderr and "open_clip ViT-B-32" in result.stderr
    assert "searchengine models fetch clip-whisper" in result.stderr and "Whisper base" not in result.stderr
    assert not (Path(home["XDG_DATA_HOME"]) / "searchengine").exists()  # no empty index left behind
    line = printed_command(result.stderr)
    assert line == f"searchengine index {photos} --bundle stamp-scenes-small"
    done = run_line(home, line)
    assert done.returncode == 0 and "added 3" in done.stdout, done.stderr
    assert json.loads(run(home, "status", "--json").stdout)["bundle"]["name"] == "stamp-scenes-small"


def test_open_index_checks_the_new_index_bundle_before_writing(home, tmp_path, tiny_bundle, photos, monkeypatch):
    from huggingface_hub import constants

    from searchengine import open_index
    from searchengine.errors import WeightsMissing

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsMissing, match="default bundle 'clip-whisper'") as caught:
        open_index(tmp_path / "idx")
    assert caught.value.suggested_bundle == "stamp-scenes-small" and not (tmp_path / "idx").exists()
    (tmp_path / "config.toml").write_text(f'bundle = "{tiny_bundle}"\nindex = "idx"\n')
    with open_index() as index:  # both from the config file
        assert index.path == tmp_path / "idx" and index.index([photos]).added == 3
        assert index.status().bundle.name == "tiny"


def test_a_missing_clip_weights_file_says_no_such_file(home, photos, tmp_path):
    result = run(home, "index", photos, "--index", tmp_path / "idx", "--bundle", "clip-whisper",
                 "--clip-weights", tmp_path / "nope.safetensors")
    assert result.returncode == 4 and f"no such file: {tmp_path / 'nope.safetensors'}" in result.stderr
    assert "unreachable" not in result.stderr and not (tmp_path / "idx").exists()


def test_models_says_what_is_here_and_fetch_fails_fast_offline(home):
    listed = json.loads(run(home, "models", "--json").stdout)["bundles"]
    by_name = {b["name"]: b for b in listed}
    assert by_name["clip-whisper"]["default"] and by_name["clip-whisper"]["ready"] is False
    clip_part = by_name["clip-whisper"]["weights"][0]
    assert clip_part["path"] == f"{home['HF_HUB_CACHE']}/models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    assert by_name["stamp-scenes-small"]["ready"] is True
    assert all(Path(w["path"]).exists() for w in by_name["stamp-scenes-small"]["weights"])
    started = time.perf_counter()
    fetched = run(home, "models", "fetch", "clip-whisper")
    assert fetched.returncode == 4 and "cannot reach the model hub" in fetched.stderr
    assert time.perf_counter() - started < 5 and not Path(home["HF_HUB_CACHE"]).exists()


# ----------------------------------------------------------------------------- any open_clip model


@pytest.mark.weights
def test_any_open_clip_model_by_its_parts(home, tiny_model, photos, tmp_path):
    from test_cascade import speak

    speak("two ducks swimming on a lake", photos / "ducks.wav")
    env = {**home, "SEARCHENGINE_CLIP_CONFIGS": str(tiny_model["configs"])}
    index = tmp_path / "idx"
    result = run(env, "index", photos, "--index", index, "--bundle", TINY, "--clip-weights", tiny_model["weights"],
                 "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["added"] == 4
    status = json.loads(run(env, "status", "--index", index, "--json").stdout)
    assert status["bundle"]["source"] == TINY and status["bundle"]["dim"] == TINY_CLIP["embed_dim"]
    env["SEARCHENGINE_CLIP_WEIGHTS"] = str(tiny_model["weights"])  # search finds the weights in the settings
    hits = json.loads(run(env, "search", "--index", index, "--text", "ducks", "--kind", "audio", "--json").stdout)
    assert "duck" in hits["hits"][0]["transcript"].lower()
    shown = json.loads(run(env, "models", "--bundle", TINY, "--json").stdout)["bundles"][-1]
    assert shown["ready"] and shown["weights"][0]["path"] == str(tiny_model["weights"])


@pytest.mark.weights
def test_a_mismatch_prints_a_command_that_runs(home, tiny_model, tiny_bundle, photos, tmp_path):
    env = {**home, "SEARCHENGINE_CLIP_CONFIGS": str(tiny_model["configs"])}
    index, named = tmp_path / "idx", "clip:tiny-test+whisper:tiny.en"
    assert run(env, "index", photos, "--index", index, "--bundle", named, "--clip-weights",
               tiny_model["weights"]).returncode == 0
    other = run(env, "index", photos, "--index", index, "--clip-weights", tiny_model["other"])
    assert other.returncode == 3 and "other weights" in other.stderr
    assert f"--clip-weights {tiny_model['other']}" in printed_command(other.stderr)
    switched = run(env, "index", photos, "--index", index, "--bundle", tiny_bundle)
    assert switched.returncode == 3
    line = printed_command(switched.stderr)
    assert line == f"searchengine index --rebuild --index {index} --bundle {tiny_bundle} {photos}"
    assert run_line(env, line).returncode == 0
    assert json.loads(run(env, "status", "--index", index, "--json").stdout)["bundle"]["name"] == "tiny"


@pytest.mark.weights
def test_a_broken_checkpoint_leaves_no_index(home, tiny_model, photos, tmp_path):
    env = {**home, "SEARCHENGINE_CLIP_CONFIGS": str(tiny_model["configs"])}
    wrong = tmp_path / "wrong.pt"
    shutil.copy(Path(registry.__file__).parents[1] / "bundled" / "stamp-scenes-small" / "clip.pt", wrong)
    result = run(env, "index", photos, "--index", tmp_path / "idx", "--bundle", "clip:tiny-test",
                 "--clip-weights", wrong)
    assert result.returncode == 1 and f"cannot load the open_clip checkpoint {wrong}" in result.stderr
    assert not (tmp_path / "idx").exists()
    unknown = run(env, "index", photos, "--index", tmp_path / "idx", "--bundle", "no-such-bundle")
    assert unknown.returncode == 1 and "no bundle named" in unknown.stderr and not (tmp_path / "idx").exists()


@pytest.mark.weights
def test_an_open_clip_hub_repo_from_the_cache_offline(home, tiny_model, photos, tmp_path):
    import open_clip
    import torch
    from safetensors.torch import save_file

    model = open_clip.create_model("tiny-test")
    model.load_state_dict(torch.load(tiny_model["weights"]))
    config = json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": {}}).encode()
    snapshot = _hub_snapshot(Path(home["HF_HUB_CACHE"]), "local/tiny-clip", {"open_clip_config.json": config})
    save_file(model.state_dict(), snapshot / "open_clip_model.safetensors")
    name = "clip:hf-hub:local/tiny-clip+whisper:tiny.en"
    shown = json.loads(run(home, "models", "--bundle", name, "--json").stdout)["bundles"][-1]
    assert shown["ready"] and shown["weights"][0]["path"] == str(snapshot)
    result = run(home, "index", photos, "--index", tmp_path / "idx", "--bundle", name, HF_HUB_OFFLINE="1")
    assert result.returncode == 0 and "added 3" in result.stdout, result.stderr


@pytest.mark.weights
def test_the_default_bundle_loads_from_the_cache_offline(home, photos):
    """clip-whisper's checkpoint where open_clip's download puts it: no flag needed, no hub asked."""
    import open_clip
    from safetensors.torch import save_file

    state = {k: v.half().contiguous() for k, v in open_clip.create_model("ViT-B-32").state_dict().items()}
    snapshot = _hub_snapshot(Path(home["HF_HUB_CACHE"]), "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", {})
    save_file(state, snapshot / "open_clip_model.safetensors")
    result = run(home, "index", photos, "--json", HF_HUB_OFFLINE="1")
    assert result.returncode == 0 and json.loads(result.stdout)["added"] == 3, result.stderr
    status = json.loads(run(home, "status", "--json").stdout)
    assert status["bundle"]["name"] == "clip-whisper" and status["bundle"]["dim"] == 512
    assert json.loads(run(home, "models", "--json").stdout)["bundles"][0]["ready"] is True


# ----------------------------------------------------------------------------- start-up


LIGHT = [("--help",), ("bundles",), ("config",), ("models",), ("bundles", "--json")]


@pytest.mark.parametrize("args", LIGHT)
def test_light_commands_load_no_model_library(home, args):
    code = ("import sys\nfrom searchengine.cli import cli\ntry:\n    cli(sys.argv[1:])\nexcept SystemExit as e:\n"
            f"    assert not e.code, e.code\nprint('LOADED', [m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code, *args], env=home, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "LOADED []"
