"""The library commands: index, search, status. Each parses, makes one library call, formats."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..types import DEFAULT_MIN_SCORE, KIND_FILTERS
from .listen import DEFAULT_SECONDS, record_query
from .options import (ProgressBar, apply_threads, bundle_option, clip_weights_option, db_option, device_option, emit,
                      from_settings, index_option, json_option, precision_option, threads_option, whisper_model_option)
from .setup import runnable_hints


def _ray_address(_ctx, _param, value: str | None) -> str | None:
    """`--ray` takes the next word when one follows: refuse a folder taken for a cluster address."""
    if value is None or value in ("local", "auto") or value.startswith("ray://"):
        return value
    host, _, port = value.rpartition(":")
    if host and port.isdigit() and "/" not in value:
        return value  # a head node's GCS address, host:6379
    raise click.BadParameter(f"'{value}' is not a Ray address (local, auto, ray://head:10001 or head:6379); "
                             "to start Ray on this machine put --ray after the paths or write --ray local",
                             param_hint="--ray")


@click.command("index")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@index_option
@bundle_option
@click.option("--rebuild", is_flag=True,
              help="Re-embed everything into a new copy, swapped in when complete (needed to switch bundles).")
@click.option("--prune", is_flag=True, help="Also forget indexed files gone from disk under folders not found now.")
@clip_weights_option
@whisper_model_option
@click.option("--batch-size", default=32, show_default=True, help="Files per encoder batch.")
@click.option("--transcribe/--no-transcribe", default=None,
              help="Write down new recordings with Whisper beside a learned speech encoder "
                   "(default: when its weights are installed; cascade bundles always transcribe).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              callback=_ray_address,
              help="Decode and encode on Ray workers: alone (or `local`), on a Ray instance started here; `auto` or "
                   "ray://head:10001 joins a cluster (its nodes must see PATHS, or add --ray-ship-bytes).")
@click.option("--ray-ship-bytes", is_flag=True,
              help="With --ray: send each file's bytes to the workers (for paths the Ray nodes cannot see).")
@click.option("--moments-after", type=click.FloatRange(min=3), default=None, metavar="SECONDS",
              help="Index recordings longer than this as moments, speech regions with their times "
                   + from_settings("moments_after", "25") + ".")
@click.option("--index-type", type=click.Choice(["auto", "flat", "ivf"]), default=None,
              help="Vector index: auto (exact, then IVF-SQ8 from 50,000 vectors), flat (always exact) or ivf "
                   + from_settings("index_type", "auto") + ".")
@db_option
@device_option
@precision_option
@threads_option
@json_option
def index_cmd(paths, index_dir, bundle, rebuild, prune, clip_weights, whisper_model, batch_size, transcribe,
              ray_address, ray_ship_bytes, moments_after, index_type, db, device, precision, threads, as_json) -> None:
    """Index the photos and voice recordings under PATHS (incremental)."""
    apply_threads("index", threads)
    from ..index import open_index

    if ray_ship_bytes and not ray_address:
        raise click.UsageError("--ray-ship-bytes needs --ray")
    ray = None
    if ray_address:
        from indexer.distributed import RayOptions

        ray = RayOptions(address=ray_address, ship_bytes=ray_ship_bytes)

    progress = ProgressBar(enabled=sys.stderr.isatty() and not as_json)
    hints = runnable_hints(paths, index_dir, db=db, clip_weights=clip_weights, whisper_model=whisper_model)
    with hints, open_index(index_dir, bundle, device=device, rebuild=rebuild, clip_weights=clip_weights,
                           whisper_model=whisper_model, db=db, precision=precision) as idx:
        before = _files_held(idx, rebuild)
        try:
            report = idx.index(list(paths), progress=progress, batch_size=batch_size, prune=prune, ray=ray,
                               transcribe=transcribe, moments_after=moments_after, index_type=index_type)
        except KeyboardInterrupt:  # the library has saved every finished batch on its way out
            progress.close()
            saved = max(0, _files_held(idx, rebuild) - before)
            click.echo(f"stopped: {saved} files saved, run again to continue", err=True)
            raise SystemExit(130) from None  # the shell's code for "ended by Ctrl-C"
        finally:
            progress.close()
    note = nothing_found_note(report, paths)
    text = "\n".join(filter(None, [format_report(report), note]))
    emit(report.to_dict() | ({"note": note} if note else {}), as_json, text)


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


class MinScore(click.ParamType):
    """A number, or `default` for the documented threshold."""

    name = "score"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        if str(value).strip().lower() == "default":
            return DEFAULT_MIN_SCORE
        try:
            return float(value)
        except ValueError:
            self.fail(f"'{value}' is neither a number nor `default`", param, ctx)


def _steering_options(command):
    """The options that narrow and page a search (the library's search arguments of the same names)."""
    options = [
        click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0),
                     help="Skip this many hits (the next page: --offset 10 with -k 10)."),
        click.option("--min-score", "min_score", type=MinScore(), default=None, metavar="SCORE|default",
                     help="Leave out hits with a lower calibrated score; `default` is "
                     f"{DEFAULT_MIN_SCORE:g}: what the best unrelated file reaches by chance."),
        click.option("--under", "under", multiple=True, type=click.Path(file_okay=False, path_type=Path),
                     help="Only files in this folder (repeatable)."),
        click.option("--since", help="Only photos taken (else files modified) on or after this date or ISO time."),
        click.option("--until", help="Only photos taken (else files modified) up to this date (the whole day) "
                     "or before this ISO time."),
        click.option("--type", "types", multiple=True, metavar="EXT",
                     help="Only files of this type, e.g. jpg (also .jpeg) or wav (repeatable)."),
        click.option("--moments", is_flag=True,
                     help="Every matching moment of a long recording, not only its best."),
        click.option("--exclude-query", is_flag=True,
                     help="Leave out indexed copies of the query file (else they are marked and come first)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command("search")
@click.argument("query", required=False)
@click.option("--audio", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Spoken query (any audio file).")
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Image query.")
@click.option("--text", help="Typed query.")
@click.option("--record", "record_seconds", is_flag=False, flag_value=DEFAULT_SECONDS, default=None,
              type=click.FloatRange(min=0.5, max=600), metavar="[SECONDS]",
              help=f"Speak the query: record from the default microphone for up to SECONDS (default "
                   f"{DEFAULT_SECONDS:g}; Enter or a pause stops it sooner), then search as --audio would.")
@click.option("--kind", type=click.Choice(KIND_FILTERS), default="any", show_default=True)
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1), help="Number of hits.")
@_steering_options
@click.option("-f", "--paths", "paths_only", is_flag=True, help="Print only the paths of the hits, one per line.")
@index_option
@db_option
@device_option
@precision_option
@threads_option
@json_option
def search_cmd(query, audio, image, text, record_seconds, kind, k, paths_only, index_dir, db, device, precision,
               threads, as_json, **steering) -> None:
    """Search the index by voice, image or text; hits are ranked by calibrated score (images and recordings alike).

    QUERY may stand alone: a photo or recording file searches by it, anything else is typed text
    (`searchengine search "two ducks on a lake"`, `searchengine search beach.jpg`).
    """
    apply_threads("query", threads)
    from ..index import open_index
    from ..search import one_query
    from .queries import infer_query

    given = infer_query(query, audio, image, text)
    if record_seconds is not None:
        if any(value is not None for value in given.values()):
            raise click.UsageError("--record is the query: give no other")
        given["audio"] = None
    else:
        one_query(**given)  # a usage error before the index opens
    with open_index(index_dir, device=device, create=False, db=db, precision=precision) as idx:
        if record_seconds is not None:  # the index opened: only now is it worth speaking
            given["audio"] = record_query(record_seconds, show_meter=not as_json and not paths_only)
        result = idx.search(**given, kind=kind, k=k, **steering)
    if paths_only and not as_json:
        click.echo("\n".join(hit.path for hit in result.hits), nl=bool(result.hits))
        return
    heard = f'heard: "{result.transcript}"\n' if result.transcript is not None else ""
    notes = "".join(f"\n{note}" for note in _search_notes(result, steering["min_score"]))
    emit(result.to_dict(), as_json, heard + format_hits(result.hits, result.offset) + notes)


def format_hits(hits, offset: int = 0) -> str:
    """A readable table: rank, calibrated score, cosine, kind, path, transcript."""
    if not hits:
        return "no more results" if offset else "no results"
    rows = [f"{'#':>3}  {'score':>6}  {'cosine':>6}  {'kind':5}  path"]
    for rank, hit in enumerate(hits, offset + 1):
        extra = f'  "{hit.transcript}"' if hit.transcript else ""
        at = f"  {clock(hit.start)}–{clock(hit.end)}" if hit.start is not None and hit.end is not None else ""
        rows.append(f"{rank:>3}  {hit.score:6.2f}  {hit.cosine:6.3f}  {hit.kind:5}  {hit.path}{at}{extra}")
    return "\n".join(rows)


def clock(seconds: float) -> str:
    """mm:ss (h:mm:ss from an hour on) of a moment's time."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def _search_notes(result, min_score: float | None) -> list[str]:
    """Lines under the table: the query's own copies, an empty answer's reason, the next page."""
    notes = []
    marked = [str(offset) for offset, hit in enumerate(result.hits, result.offset + 1) if hit.is_query]
    if marked:
        notes.append(f"#{', #'.join(marked)}: the query itself (--exclude-query leaves it out)")
    elif result.query_paths:
        notes.append(f"left out the query itself: {', '.join(result.query_paths)}")
    if not result.hits and min_score is not None:
        notes.append(f"nothing scores {min_score:g} or more: no good match (a lower --min-score shows weaker ones)")
    if result.more:
        notes.append(f"more: --offset {result.offset + len(result.hits)}")
    return notes


@click.command("status")
@index_option
@db_option
@json_option
def status_cmd(index_dir, db, as_json) -> None:
    """Show what an index holds."""
    from ..index import open_index

    with open_index(index_dir, create=False, db=db, load_vectors=False) as idx:  # the database answers
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
