"""What every command shares: the common options, JSON or text output, exit codes, the progress bar.

Importing this module loads click only: the commands import the library inside their bodies, so
`searchengine --help` and the light commands never load torch, FAISS or the media decoders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .. import errors
from ..settings import SETTINGS
from ..types import ProgressEvent

# Exit codes: 0 ok, 1 engine error, 2 usage error (click's own, and bad arguments such as malformed queries),
# 3 bundle mismatch, 4 weights missing.
EXIT_CODES = {errors.ArgumentError: 2, errors.BundleMismatch: 3, errors.WeightsMissing: 4}


def from_settings(key: str, otherwise: str) -> str:
    """The default part of an option's help: flags left out are resolved by searchengine.settings."""
    return (f"(default: ${SETTINGS[key].env}, else `{key}` in the config file, else {otherwise}; "
            "see `searchengine config`)")


# Options default to None: the library resolves what was left out through the settings (environment,
# config file, default), so the command line, the library and `searchengine config` always agree.
index_option = click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path),
                            default=None, help="Index directory " + from_settings("index", "a per-user folder") + ".")
db_option = click.option("--db", "db", default=None, metavar="URL",
                         help="PostgreSQL URL for the metadata, e.g. postgresql+psycopg://user@host/db "
                              + from_settings("db", "SQLite in the index directory") + ".")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
device_option = click.option("--device", default=None,
                             help="Where models run: cpu, cuda " + from_settings("device", "cuda if present") + ".")
bundle_option = click.option("--bundle", default=None, metavar="NAME|PATH",
                             help="Bundle: a name from `searchengine bundles`, clip:MODEL/TAG+whisper:SIZE, or a "
                                  "folder. An existing index keeps its own; a new one gets this "
                                  + from_settings("bundle", "clip-whisper") + ".")
clip_weights_option = click.option("--clip-weights", default=None, metavar="FILE",
                                   help="Local open_clip checkpoint for pretrained bundles "
                                        + from_settings("clip_weights", "the cache or the hub") + ".")
whisper_model_option = click.option("--whisper-model", default=None, metavar="NAME|DIR",
                                    help="Whisper model name or CTranslate2 folder for the cascade "
                                         + from_settings("whisper_model", "the bundle's") + ".")

precision_option = click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "int8"]), default=None,
                                help="Encoders' arithmetic: fp32, bf16, or int8 (CPU: quantised Linear layers; the "
                                     "bundled speech encoder runs ~1.7 x faster for <= 2 points of recall) "
                                     + from_settings("precision", "bf16 on CUDA, fp32 on a CPU") + ".")
threads_option = click.option("--threads", "threads", default=None, metavar="N|auto",
                              help="Cores this command may use for the models, FAISS and decoding "
                                   + from_settings("threads", "every core") + ".")


def apply_threads(role: str, flag: str | None) -> None:
    """Size torch's, FAISS's and the decoders' threads for `role` (before either library loads)."""
    from .. import settings, threads

    threads.apply(role, threads.parse_budget(settings.value("threads", flag)))


class EngineError(click.ClickException):
    """A library error shown as `Error: ...` with the exit code for its type."""

    def __init__(self, exc: errors.SearchEngineError):
        super().__init__(str(exc))
        self.exit_code = next((code for cls, code in EXIT_CODES.items() if isinstance(exc, cls)), 1)


class JsonError(click.ClickException):
    """An error of a command run with --json: `{"error": ..., "code": ...}` on stdout, where its output goes."""

    def __init__(self, error: click.ClickException):
        super().__init__(error.format_message())
        self.exit_code = error.exit_code

    def show(self, file=None) -> None:
        click.echo(json.dumps({"error": self.message, "code": self.exit_code}))


class EngineGroup(click.Group):
    """Turns library errors raised by any command into clean messages and exit codes (JSON with --json)."""

    def invoke(self, ctx):
        wants_json = "--json" in [*getattr(ctx, "_protected_args", []), *ctx.args]
        try:
            try:
                return super().invoke(ctx)
            except errors.SearchEngineError as exc:
                raise EngineError(exc) from exc
        except click.ClickException as exc:
            if wants_json:
                raise JsonError(exc) from exc
            raise


def emit(data: dict, as_json: bool, text: str) -> None:
    """Print JSON (indented on a terminal, one line in a pipe) or the human text."""
    click.echo(json.dumps(data, indent=None if not sys.stdout.isatty() else 2) if as_json else text)


class ProgressBar:
    """Draws the library's ProgressEvents on stderr: a bar per stage, one line per finished epoch."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None
        self.key = None

    def __call__(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        if event.kind == "epoch":
            self.close()
            click.echo(f"{event.stage} epoch {event.epoch}/{event.epochs}: loss {event.loss:.4f}  "
                       + "  ".join(f"{k} {v:.3f}" for k, v in (event.metrics or {}).items()), err=True)
            return
        key = (event.stage, event.epoch, event.message)
        if key != self.key:
            self._open(key, event)
        self.bar.n = event.done
        self.bar.set_postfix_str(f"loss {event.loss:.3f}" if event.loss is not None else "", refresh=False)
        self.bar.refresh()

    def _open(self, key, event: ProgressEvent) -> None:
        from tqdm import tqdm

        self.close()
        self.key = key
        desc = event.message or (f"{event.stage} {event.epoch}/{event.epochs}" if event.epochs else event.stage)
        unit = "files" if event.stage in ("scanning", "embedding") else "it"
        self.bar = tqdm(total=event.total or None, desc=desc, file=sys.stderr, leave=False, unit=f" {unit}")

    def close(self) -> None:
        """End the current bar (call when the work ends, also on errors)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
