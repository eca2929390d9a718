"""Getting started: `bundles`, `models` (which weights are here, and fetching them), `config` (the settings).

These commands answer at once: they read names, files and the config file, and load no model
library (`models fetch` alone imports open_clip and faster-whisper, to download and verify).
"""

from __future__ import annotations

import shlex
import shutil
from contextlib import contextmanager
from pathlib import Path

import click

from .. import settings
from ..errors import BundleError, BundleMismatch, WeightsMissing
from .options import (bundle_option, clip_weights_option, db_option, device_option, emit, index_option, json_option,
                      whisper_model_option)

BUNDLE_FORM = ("clip:MODEL/TAG+whisper:SIZE   any open_clip model and pretrained tag (open_clip.list_pretrained()), "
               "speech by the Whisper cascade; e.g. clip:ViT-L-14/datacomp_xl_s13b_b90k+whisper:small. "
               "Without +whisper:SIZE speech uses Whisper base; clip:MODEL alone takes its weights from "
               "--clip-weights FILE; clip:hf-hub:ORG/REPO reads an open_clip repo on the hub.")


@click.command("bundles")
@json_option
def bundles_cmd(as_json: bool) -> None:
    """List the registered model bundles, and how to name any open_clip model as one."""
    from ..bundles.registry import list_bundles

    specs, default = list_bundles(), settings.value("bundle")
    data = {"bundles": [{"name": s.name, "description": s.description, "default": s.name == default} for s in specs],
            "default": default, "forms": [BUNDLE_FORM, "PATH   a bundle folder written by `searchengine train`"]}
    lines = [f"{s.name + (' *' if s.name == default else ''):22} {s.description}" for s in specs]
    lines += ["", "* the default for new indexes (`searchengine config`); whose weights are here: "
                  "`searchengine models`", "", "Any open_clip model is a bundle too:", f"  {BUNDLE_FORM}",
              "  PATH   a bundle folder written by `searchengine train`"]
    emit(data, as_json, "\n".join(lines))


@click.group("models", invoke_without_command=True)
@click.option("--bundle", "extra", multiple=True, metavar="NAME|PATH", help="Also show this bundle (repeatable).")
@json_option
@click.pass_context
def models_cmd(ctx, extra: tuple[str, ...], as_json: bool) -> None:
    """Show whether each bundle's weights are here, and where (`models fetch NAME` downloads them)."""
    if ctx.invoked_subcommand is not None:
        return
    from ..bundles.registry import list_bundles

    default = settings.value("bundle")
    names = list(dict.fromkeys([s.name for s in list_bundles()] + [default, *extra]))
    reports = [_bundle_report(name, name == default) for name in names]
    emit({"bundles": reports}, as_json, "\n".join(_format_report(r) for r in reports))


def _bundle_report(name: str, is_default: bool) -> dict:
    from ..bundles.weights import bundle_weights

    states = bundle_weights(name, clip_source=_open_clip_source)
    known = [s.present for s in states]
    ready = False if False in known else (None if None in known else True)
    return {"name": name, "default": is_default, "ready": ready, "weights": [s.to_dict() for s in states]}


def _open_clip_source(model: str, tag: str) -> str | None:
    """open_clip's own table, for a model/tag pair outside the copied one (imports open_clip: seconds)."""
    from ..bundles.clip import hub_source

    return hub_source(model, tag)


def _format_report(report: dict) -> str:
    state = {True: "ready", False: "weights missing", None: "unknown until it loads"}[report["ready"]]
    lines = [f"{report['name']}{' (default)' if report['default'] else ''}: {state}"]
    for w in report["weights"]:
        where = {True: f"present at {w['path']} ({w['origin']})", None: w["hint"]}.get(w["present"],
                                                                                       f"missing: {w['hint']}")
        lines.append(f"  {w['part']:12} {w['what']}: {where}")
    return "\n".join(lines)


@models_cmd.command("fetch")
@click.argument("bundle")
@json_option
def fetch_cmd(bundle: str, as_json: bool) -> None:
    """Download BUNDLE's weights into open_clip's and faster-whisper's caches, then load them to verify."""
    from ..bundles.hub import hub_reachable
    from ..bundles.weights import bundle_weights, describe_missing

    missing = [s for s in bundle_weights(bundle) if s.present is not True]
    local = [s for s in missing if s.present is False and not s.downloadable]
    if local:  # a file the user named, or a package: nothing to download
        raise WeightsMissing(f"bundle '{bundle}' needs files no download provides:\n{describe_missing(local)}")
    if missing and not hub_reachable():
        raise WeightsMissing(f"cannot reach the model hub to fetch bundle '{bundle}' (offline, or HF_HUB_OFFLINE is "
                             f"set). Run this on a machine with internet, then copy its cache folder over:\n"
                             f"{describe_missing(missing, how=False)}")
    from ..bundles.bundle import load_bundle

    loaded = load_bundle(bundle, device="cpu")  # open_clip / faster-whisper download what is missing; loading verifies
    report = _bundle_report(bundle, bundle == settings.value("bundle"))
    report["fingerprint"] = loaded.fingerprint
    emit(report, as_json, _format_report(report) + f"\nverified: loaded, {loaded.dim}-d vectors")


@click.command("config")
@index_option
@bundle_option
@clip_weights_option
@whisper_model_option
@db_option
@device_option
@json_option
def config_cmd(index_dir, bundle, clip_weights, whisper_model, db, device, as_json) -> None:
    """Show the effective settings and where each comes from (flag, environment, file, default)."""
    flags = {"index": index_dir, "bundle": bundle, "clip_weights": clip_weights, "whisper_model": whisper_model,
             "db": db, "device": device}
    path = settings.config_path()
    resolved = settings.effective(flags)
    data = {"file": str(path), "file_exists": path.is_file(), "settings": [r.to_dict() for r in resolved]}
    lines = [f"config file: {path}" + ("" if path.is_file() else " (not found: every setting is a flag, an "
                                                                 "environment variable or the default)")]
    for r in resolved:
        origin = r.origin + (f" ({r.where})" if r.where and r.origin == "environment" else "")
        lines.append(f"{r.key:14} {r.value if r.value is not None else '-':50} {origin}")
    lines.append("keys: " + ", ".join(f"{s.key} (${s.env})" for s in settings.SETTINGS.values()))
    emit(data, as_json, "\n".join(lines))


@contextmanager
def runnable_hints(paths, index_dir: Path | None, **flags: str | None):
    """Errors of `index` that end in advice get a command line that can be run as printed, with the folders.

    flags: the options given that such a command needs again (db, clip_weights, whisper_model).
    A new index whose bundle failed to load is removed again, so a first run leaves nothing behind.
    """
    flags = {k: (_absolute([v])[0] if k == "clip_weights" and v else v) for k, v in flags.items()}
    folder = Path(settings.value("index", index_dir)).expanduser()
    new = not folder.exists() and settings.value("db", flags.get("db")) is None
    try:
        yield
    except BundleError as exc:
        if new:
            _remove_unused(folder)
        _raise_with_command(exc, paths, index_dir)
        raise
    except BundleMismatch as exc:
        if not hasattr(exc, "reason"):
            raise
        from ..binding import rebuild_command

        command = rebuild_command(exc.index_path, exc.bundle, _absolute(paths), **flags)
        raise BundleMismatch(f"{exc.reason}. To re-embed everything with it, run:\n  {command}") from exc


def _raise_with_command(exc: BundleError, paths, index_dir: Path | None) -> None:
    """A first run without the default bundle's weights: the same command with the bundled model."""
    bundled = getattr(exc, "suggested_bundle", None)
    if bundled is None:
        return
    words = ["searchengine", "index", *_absolute(paths)]
    words += ["--index", _absolute([index_dir])[0]] if index_dir else []
    raise WeightsMissing(f"{exc.detail}\nOr index now with the bundled model (it knows only the stamp-scenes "
                         f"world, see README):\n  {shlex.join(words + ['--bundle', bundled])}") from exc


def _remove_unused(folder: Path) -> None:
    """Remove an index folder this run created when no vectors were saved in it (the bundle never loaded)."""
    if folder.is_dir() and not any(folder.rglob("*.faiss")):
        shutil.rmtree(folder, ignore_errors=True)


def _absolute(paths) -> list[str]:
    return [str(Path(p).expanduser().absolute()) for p in paths]
