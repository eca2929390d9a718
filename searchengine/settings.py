"""The effective settings: a command-line flag, else the environment, else the config file, else the default.

The config file is TOML at platformdirs' user config folder (`~/.config/searchengine/config.toml` on
Linux), or wherever SEARCHENGINE_CONFIG points. Only the standard library, platformdirs and the
exception tree load here: every command, however light, resolves its defaults through this module.
"""

from __future__ import annotations

import functools
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from .errors import ArgumentError

CONFIG_ENV = "SEARCHENGINE_CONFIG"
DEFAULT_BUNDLE = "clip-whisper"
ORIGINS = ("flag", "environment", "file", "default")


@dataclass(frozen=True)
class Setting:
    """One setting: its key in the config file, its environment variable, what it means."""

    key: str
    env: str
    help: str
    path: bool = False  # a file or folder: `~` is expanded, and in the file relative paths start at its folder


SETTINGS: dict[str, Setting] = {s.key: s for s in (
    Setting("index", "SEARCHENGINE_INDEX", "index directory", path=True),
    Setting("bundle", "SEARCHENGINE_BUNDLE", "bundle of new indexes: a name, clip:MODEL/TAG+whisper:SIZE, or a folder"),
    Setting("clip_weights", "SEARCHENGINE_CLIP_WEIGHTS", "local open_clip checkpoint of pretrained bundles", path=True),
    Setting("clip_configs", "SEARCHENGINE_CLIP_CONFIGS", "folder (or file) of more open_clip model configs", path=True),
    Setting("whisper_model", "SEARCHENGINE_WHISPER_MODEL", "Whisper model name or CTranslate2 folder for the cascade"),
    Setting("device", "SEARCHENGINE_DEVICE", "where models run: cpu, cuda"),
    Setting("db", "SEARCHENGINE_DB", "PostgreSQL URL for the metadata"),
    Setting("transcribe", "SEARCHENGINE_TRANSCRIBE",
            "write down recordings at index time beside a learned speech encoder: auto, yes or no"),
    Setting("moments_after", "SEARCHENGINE_MOMENTS_AFTER",
            "recordings longer than this many seconds are indexed as moments (speech regions); default 25"),
    Setting("index_type", "SEARCHENGINE_INDEX_TYPE",
            "vector index of index runs: auto (exact, then IVF-SQ8 from 50,000 vectors), flat or ivf"),
    Setting("precision", "SEARCHENGINE_PRECISION",
            "arithmetic of the encoders: auto (bf16 on CUDA, fp32 on a CPU), fp32, bf16 or int8 (CPU)"),
    Setting("threads", "SEARCHENGINE_THREADS", "cores a command may use (torch, FAISS, decoding): auto or a number"),
)}
SWITCH_VALUES = {"auto": None, "yes": True, "true": True, "1": True, "on": True,
                 "no": False, "false": False, "0": False, "off": False}


@dataclass(frozen=True)
class Resolved:
    """A setting's effective value and where it came from (`where`: the variable or the file)."""

    key: str
    value: str | None
    origin: str
    where: str | None = None

    def to_dict(self) -> dict:
        return {"key": self.key, "value": self.value, "origin": self.origin, "where": self.where}


def config_path() -> Path:
    """SEARCHENGINE_CONFIG when set, else config.toml in the per-user config folder."""
    env = os.environ.get(CONFIG_ENV)
    return Path(env).expanduser() if env else Path(platformdirs.user_config_dir("searchengine")) / "config.toml"


def default_value(key: str) -> str | None:
    """What a setting is when nothing sets it (None: the library decides, e.g. CUDA when present)."""
    if key == "index":
        return str(Path(platformdirs.user_data_dir("searchengine")) / "index")
    return DEFAULT_BUNDLE if key == "bundle" else None


def resolve(key: str, flag: str | os.PathLike | None = None) -> Resolved:
    """The effective value of `key` given the flag's value (None when the flag was not given)."""
    setting = _setting(key)
    if flag is not None and str(flag) != "":
        return Resolved(key, str(flag), "flag")
    if env := os.environ.get(setting.env):
        return Resolved(key, _expand(setting, env, None), "environment", setting.env)
    path = config_path()
    if (found := read_config(path).get(key)) is not None:
        return Resolved(key, _expand(setting, found, path.parent), "file", str(path))
    return Resolved(key, default_value(key), "default")


def value(key: str, flag: str | os.PathLike | None = None) -> str | None:
    """The effective value alone."""
    return resolve(key, flag).value


def switch(key: str, flag: bool | None = None) -> bool | None:
    """A yes/no/auto setting as True/False/None (None: the library decides); ArgumentError for other words."""
    if flag is not None:
        return flag
    raw = value(key)
    if raw is None:
        return None
    if raw.strip().lower() not in SWITCH_VALUES:
        raise ArgumentError(f"setting {key} must be one of auto, yes, no (not {raw!r})")
    return SWITCH_VALUES[raw.strip().lower()]


def effective(flags: dict[str, str | None] | None = None) -> list[Resolved]:
    """Every setting, resolved (for `searchengine config`)."""
    flags = flags or {}
    return [resolve(key, flags.get(key)) for key in SETTINGS]


def read_config(path: Path) -> dict[str, str]:
    """The settings in a config file ({} when the default file does not exist); ArgumentError when unusable."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        if os.environ.get(CONFIG_ENV):  # named on purpose: a typo should not pass silently
            raise ArgumentError(f"config file {path} ({CONFIG_ENV}): no such file") from None
        return {}
    except OSError as exc:
        raise ArgumentError(f"config file {path}: {exc.strerror}") from exc
    return dict(_parse(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _parse(path: str, _mtime_ns: int, _size: int) -> tuple[tuple[str, str], ...]:
    """Parsed once per file version (a command resolves several settings)."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ArgumentError(f"config file {path}: {exc}") from exc
    unknown = sorted(set(data) - set(SETTINGS))
    if unknown:
        raise ArgumentError(f"config file {path}: unknown setting {', '.join(unknown)} "
                            f"(known: {', '.join(SETTINGS)})")
    wrong = sorted(k for k, v in data.items() if not isinstance(v, str))
    if wrong:
        raise ArgumentError(f"config file {path}: {', '.join(wrong)} must be a string, e.g. {wrong[0]} = \"...\"")
    return tuple((k, v) for k, v in data.items() if v != "")


def _setting(key: str) -> Setting:
    if key not in SETTINGS:
        raise ArgumentError(f"unknown setting {key!r} (known: {', '.join(SETTINGS)})")
    return SETTINGS[key]


def _expand(setting: Setting, raw: str, base: Path | None) -> str:
    """`~` expanded for paths (and path-like names); a relative path in the file starts at the file's folder."""
    if not (setting.path or raw.startswith("~")):
        return raw
    path = Path(raw).expanduser()
    if base is not None and setting.path and not path.is_absolute():
        path = base / path
    return str(path)
