"""The library commands: index, search, status, bundles. Each parses, makes one library call, formats."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..types import KIND_FILTERS
from .options import ProgressBar, db_option, device_option, emit, index_option, json_option


@click.command("bundles")
@json_option
def bundles_cmd(as_json: bool) -> None:
    """List the registered model bundles."""
    from ..bundles.registry import list_bundles

    specs = list_bundles()
    data = {"bundles": [{"name": s.name, "description": s.description} for s in specs]}
    emit(data, as_json, "\n".join(f"{s.name:20} {s.description}" for s in specs))


@click.command("index")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@index_option
@click.option("--bundle", default=None, help="Bundle name or folder (default: the index's, else clip-whisper).")
@click.option("--rebuild", is_flag=True,
              help="Re-embed everything into a new copy, swapped in when complete (needed to switch bundles).")
@click.option("--prune", is_flag=True, help="Also forget indexed files gone from disk under folders not found now.")
@click.option("--clip-weights", default=None, help="Local open_clip checkpoint for pretrained bundles.")
@click.option("--whisper-model", default=None, help="Local CTranslate2 Whisper folder or model name.")
@click.option("--batch-size", default=32, show_default=True, help="Files per encoder batch.")
@db_option
@device_option
@json_option
def index_cmd(paths, index_dir, bundle, rebuild, prune, clip_weights, whisper_model, batch_size, db, device,
              as_json) -> None:
    """Index the photos and voice recordings under PATHS (incremental)."""
    from ..index import open_index

    progress = ProgressBar(enabled=sys.stderr.isatty() and not as_json)
    with open_index(index_dir, bundle, device=device, rebuild=rebuild, clip_weights=clip_weights,
                    whisper_model=whisper_model, db=db) as idx:
        before = _files_held(idx, rebuild)
        try:
            report = idx.index(list(paths), progress=progress, batch_size=batch_size, prune=prune)
        except KeyboardInterrupt:  # the library has saved every finished batch on its way out
            progress.close()
            saved = max(0, _files_held(idx, rebuild) - before)
            click.echo(f"stopped: {saved} files saved, run again to continue", err=True)
            raise SystemExit(130) from None  # the shell's code for "ended by Ctrl-C"
        finally:
            progress.close()
    note = nothing_found_note(report, paths)
    emit(report.to_dict() | ({"note": note} if note else {}), as_json, "\n".join(filter(None, [format_report(report), note])))


def nothing_found_note(report, paths) -> str | None:
    """When the roots held no media at all: which file types the engine looks for."""
    if report.added or report.updated or report.unchanged or report.removed or report.skipped or report.offline:
        return None
    from ..media import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS

    return (f"no photos or recordings found under {', '.join(map(str, paths))}; looked for images "
            f"({' '.join(sorted(IMAGE_EXTENSIONS))}) and audio ({' '.join(sorted(AUDIO_EXTENSIONS))})")


def _files_held(idx, rebuilding: bool) -> int:
    """Files in the index, or in the rebuild being made beside it (what an interrupted run has kept)."""
    status = idx.status()
    if rebuilding:
        return status.rebuild["files"] if status.rebuild else 0
    return sum(status.files.values())


def format_report(report) -> str:
    """The counts, then one line per skipped file, warning and offline folder."""
    lines = [f"added {report.added}, updated {report.updated}, removed {report.removed}, "
             f"unchanged {report.unchanged}, skipped {len(report.skipped)}"]
    lines += [f"  skipped {s.path}: {s.reason}" for s in report.skipped]
    lines += [f"  warning {w.path}: {w.reason}" for w in report.warnings]
    lines += [f"  offline: {o.root} not found, kept its {o.kept} indexed files (--prune forgets them)"
              for o in report.offline]
    return "\n".join(lines)


@click.command("search")
@click.option("--audio", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Spoken query (any audio file).")
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Image query.")
@click.option("--text", help="Typed query.")
@click.option("--kind", type=click.Choice(KIND_FILTERS), default="any", show_default=True)
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1), help="Number of hits.")
@index_option
@db_option
@device_option
@json_option
def search_cmd(audio, image, text, kind, k, index_dir, db, device, as_json) -> None:
    """Search the index by voice, image or text."""
    from ..index import open_index
    from ..search import one_query

    one_query(audio=audio, image=image, text=text)  # a usage error before the index opens
    with open_index(index_dir, device=device, create=False, db=db) as idx:
        result = idx.search(audio=audio, image=image, text=text, kind=kind, k=k)
    heard = f'heard: "{result.transcript}"\n' if result.transcript is not None else ""
    emit(result.to_dict(), as_json, heard + format_hits(result.hits))


def format_hits(hits) -> str:
    """A readable table: rank, score, kind, path, transcript."""
    if not hits:
        return "no results (is the index empty?)"
    rows = [f"{'#':>3}  {'score':>6}  {'kind':5}  path"]
    for rank, hit in enumerate(hits, 1):
        extra = f'  "{hit.transcript}"' if hit.transcript else ""
        rows.append(f"{rank:>3}  {hit.score:6.3f}  {hit.kind:5}  {hit.path}{extra}")
    return "\n".join(rows)


@click.command("status")
@index_option
@db_option
@json_option
def status_cmd(index_dir, db, as_json) -> None:
    """Show what an index holds."""
    from ..index import open_index

    with open_index(index_dir, create=False, db=db) as idx:
        status = idx.status()
    emit(status.to_dict(), as_json, format_status(status))


def format_status(status) -> str:
    """Human-readable status."""
    bundle = f"{status.bundle.name} (dim {status.bundle.dim}, {status.bundle.source})" if status.bundle else "none yet"
    files = ", ".join(f"{n} {k}" for k, n in sorted(status.files.items())) or "none"
    lines = [f"index:   {status.path}", f"bundle:  {bundle}", f"files:   {files}",
             "vectors: " + ", ".join(f"{n} {k}" for k, n in sorted(status.vectors.items())),
             f"type:    {status.index_type}", f"size:    {status.index_bytes / 1e6:.2f} MB",
             f"skipped: {len(status.skipped)}"]
    lines += [f"  {s.path}: {s.reason}" for s in status.skipped]
    if status.warnings:
        lines += [f"warnings: {len(status.warnings)}"] + [f"  {w.path}: {w.reason}" for w in status.warnings]
    if status.rebuild:
        lines.append(f"rebuild: unfinished, bundle {status.rebuild['bundle']}, {status.rebuild['files']} files so far "
                     "(`searchengine index --rebuild` continues it)")
    return "\n".join(lines)
