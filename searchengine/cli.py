"""The `searchengine` command: each command parses, makes one library call, formats the result."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import errors
from .bundles import list_bundles
from .index import open_index

# Exit codes: 0 ok, 1 engine error, 2 usage error (click's own), 3 bundle mismatch, 4 weights missing.
EXIT_CODES = {errors.BundleMismatch: 3, errors.WeightsMissing: 4}

index_option = click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path),
                            default=None, help="Index directory (default: $SEARCHENGINE_INDEX or a per-user folder).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
device_option = click.option("--device", default=None, help="Where models run: cpu, cuda (default: cuda if present).")


class EngineError(click.ClickException):
    """A library error shown as `Error: ...` with the exit code for its type."""

    def __init__(self, exc: errors.SearchEngineError):
        super().__init__(str(exc))
        self.exit_code = next((code for cls, code in EXIT_CODES.items() if isinstance(exc, cls)), 1)


class EngineGroup(click.Group):
    """Turns library errors raised by any command into clean messages and exit codes."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except errors.SearchEngineError as exc:
            raise EngineError(exc) from exc


def emit(data: dict, as_json: bool, text: str) -> None:
    """Print JSON or the human text."""
    click.echo(json.dumps(data, indent=None if not sys.stdout.isatty() else 2) if as_json else text)


@click.group(cls=EngineGroup)
@click.version_option(package_name="searchengine")
def cli() -> None:
    """Find photos by speaking, and spoken recordings by photo."""


@cli.command("bundles")
@json_option
def bundles_cmd(as_json: bool) -> None:
    """List the registered model bundles."""
    specs = list_bundles()
    data = {"bundles": [{"name": s.name, "description": s.description} for s in specs]}
    emit(data, as_json, "\n".join(f"{s.name:20} {s.description}" for s in specs))


class BarProgress:
    """A tqdm bar on stderr for the embedding phase; silent when stderr is not a terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None

    def start(self, total: int) -> None:
        if self.enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="file", desc="embedding", file=sys.stderr)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@cli.command("index")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@index_option
@click.option("--bundle", default=None, help="Bundle name or folder (default: the index's, else clip-whisper).")
@click.option("--rebuild", is_flag=True, help="Re-embed everything (needed to switch bundles).")
@click.option("--clip-weights", default=None, help="Local open_clip checkpoint for pretrained bundles.")
@click.option("--whisper-model", default=None, help="Local CTranslate2 Whisper folder or model name.")
@click.option("--batch-size", default=32, show_default=True, help="Files per encoder batch.")
@device_option
@json_option
def index_cmd(paths, index_dir, bundle, rebuild, clip_weights, whisper_model, batch_size, device, as_json) -> None:
    """Index the photos and voice recordings under PATHS (incremental)."""
    progress = BarProgress(enabled=sys.stderr.isatty() and not as_json)
    with open_index(index_dir, bundle, device=device, rebuild=rebuild, clip_weights=clip_weights,
                    whisper_model=whisper_model) as idx:
        try:
            report = idx.index(list(paths), progress=progress, batch_size=batch_size)
        finally:
            progress.close()
    lines = [f"added {report.added}, updated {report.updated}, removed {report.removed}, "
             f"unchanged {report.unchanged}, skipped {len(report.skipped)}"]
    lines += [f"  skipped {s.path}: {s.reason}" for s in report.skipped]
    emit(report.to_dict(), as_json, "\n".join(lines))


@cli.command("search")
@click.option("--audio", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Spoken query (any audio file).")
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Image query.")
@click.option("--text", help="Typed query.")
@click.option("--kind", type=click.Choice(["image", "audio", "any"]), default="any", show_default=True)
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1), help="Number of hits.")
@index_option
@device_option
@json_option
def search_cmd(audio, image, text, kind, k, index_dir, device, as_json) -> None:
    """Search the index by voice, image or text."""
    if sum(x is not None for x in (audio, image, text)) != 1:
        raise click.UsageError("give exactly one of --audio, --image, --text")
    with open_index(index_dir, device=device, create=False) as idx:
        hits, heard = idx.search_with_transcript(audio=audio, image=image, text=text, kind=kind, k=k)
    data = {"hits": [h.to_dict() for h in hits]}
    if heard is not None:
        data["query_transcript"] = heard
    emit(data, as_json, (f'heard: "{heard}"\n' if heard is not None else "") + format_hits(hits))


def format_hits(hits) -> str:
    """A readable table: rank, score, kind, path, transcript."""
    if not hits:
        return "no results (is the index empty?)"
    rows = [f"{'#':>3}  {'score':>6}  {'kind':5}  path"]
    for rank, hit in enumerate(hits, 1):
        extra = f'  "{hit.transcript}"' if hit.transcript else ""
        rows.append(f"{rank:>3}  {hit.score:6.3f}  {hit.kind:5}  {hit.path}{extra}")
    return "\n".join(rows)


@cli.command("status")
@index_option
@json_option
def status_cmd(index_dir, as_json) -> None:
    """Show what an index holds."""
    with open_index(index_dir, create=False) as idx:
        status = idx.status()
    emit(status.to_dict(), as_json, format_status(status))


def format_status(status) -> str:
    """Human-readable status."""
    bundle = f"{status.bundle.name} (dim {status.bundle.dim}, {status.bundle.source})" if status.bundle else "none yet"
    lines = [f"index:   {status.path}", f"bundle:  {bundle}",
             f"files:   " + ", ".join(f"{n} {k}" for k, n in sorted(status.files.items())) if status.files else "files:   none",
             f"vectors: " + ", ".join(f"{n} {k}" for k, n in sorted(status.vectors.items())),
             f"type:    {status.index_type}", f"size:    {status.index_bytes / 1e6:.2f} MB",
             f"skipped: {len(status.skipped)}"]
    lines += [f"  {s.path}: {s.reason}" for s in status.skipped]
    return "\n".join(lines)


from .server.command import serve_cmd  # noqa: E402  (below the options they reuse)
from .train_cli import eval_cmd, train_cmd  # noqa: E402

for _command in (serve_cmd, train_cmd, eval_cmd):
    cli.add_command(_command)


def main() -> None:
    """Entry point for `python -m searchengine`."""
    cli()
