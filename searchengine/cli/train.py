"""`searchengine train` and `searchengine eval`: parse, make one library call, format the result.

Only click and the plain-data registry load here; the training library (torch, open_clip) is
imported inside the commands, so `searchengine --help` stays fast.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from ..bundles.registry import DEFAULT_WHISPER, WHISPER_WEIGHTS
from .options import ProgressBar, device_option, emit, json_option

manifest_argument = click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))


@click.command("train")
@manifest_argument
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Bundle folder to write (also holds checkpoint.pt and the feature cache).")
@click.option("--from-bundle", default=None, help="Keep this bundle's image/text towers; train only speech.")
@click.option("--epochs", "tower_epochs", type=click.IntRange(min=0), default=None, help="Tower epochs.")
@click.option("--speech-epochs", type=click.IntRange(min=0), default=None, help="Speech-encoder epochs.")
@click.option("--batch-size", type=click.IntRange(min=2), default=None, help="Image-caption pairs per step.")
@click.option("--frontend", default=None,
              help=f"Whisper front end of the speech encoder: {', '.join(WHISPER_WEIGHTS)} or a folder.")
@click.option("--trainable-layers", type=click.IntRange(min=0), default=None, help="Top Whisper blocks to fine-tune.")
@click.option("--pool", default=None,
              help="Speech head: attention, text (queries read by a copy of the text tower), mean, "
                   "or several joined by + (an ensemble: the mean of their vectors).")
@click.option("--pool-queries", type=click.IntRange(min=1), default=None, help="Attention-pooling queries of the head.")
@click.option("--augment-copies", type=click.IntRange(min=0), default=None, help="Augmented copies per training clip.")
@click.option("--augment", type=click.Choice(["basic", "capture"]), default=None,
              help="Augmented copies: basic (speed + noise) or capture (room, noise, band-limit, clipping, "
                   "Opus/MP3 round trip, silence).")
@click.option("--augment-first", type=click.FloatRange(0, 1), default=None,
              help="Share of clips whose as-recorded version is replaced by an augmented one.")
@click.option("--init-from", default=None, help="Start the towers from this bundle's weights (same architecture).")
@click.option("--distill-weight", type=click.FloatRange(min=0), default=None, help="Weight of the speech-to-caption loss.")
@click.option("--name", default=None, help="Bundle name written into bundle.json.")
@click.option("--seed", default=0, show_default=True, help="Seed of every random generator.")
@click.option("--no-resume", is_flag=True, help="Start over even if OUT holds a checkpoint.")
@click.option("--features-only", is_flag=True,
              help="Only cache the speech features in OUT (no towers needed): a later run into OUT reuses them.")
@device_option
@json_option
def train_cmd(manifest, out_dir, from_bundle, seed, no_resume, features_only, device, as_json, **options) -> None:
    """Train a bundle on MANIFEST's train split and write it to --out."""
    from ..training.loop import cache_speech_features, train_bundle

    overrides = {k: v for k, v in options.items() if v is not None}
    # With --json a script reads stdout: draw bars only when a person can still see stderr.
    bar = ProgressBar(enabled=sys.stderr.isatty() or not as_json)
    if features_only:
        try:
            result = cache_speech_features(manifest, out_dir, seed=seed, device=device, progress=bar, **overrides)
        finally:
            bar.close()
        emit(result, as_json, f"cached {result['rows']} feature rows in {result['cache']} ({result['seconds']:.0f} s)")
        return
    try:
        report = train_bundle(manifest, out_dir, from_bundle=from_bundle, seed=seed, device=device,
                              progress=bar, resume=not no_resume, **overrides)
    finally:
        bar.close()
    emit(report.to_dict(), as_json, format_train(report))


def format_train(report) -> str:
    """Where the bundle went, how long it took and its final dev recall."""
    dev = "  ".join(f"{k} {v:.3f}" for k, v in report.dev.items()) or "no dev split"
    return "\n".join([f"bundle:  {report.bundle_dir}", f"device:  {report.device}",
                      f"time:    {report.seconds:.0f} s", f"dev:     {dev}"])


@click.command("eval")
@manifest_argument
@click.option("--bundle", default="stamp-scenes-small", show_default=True, help="Bundle name or folder.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "dev", "test"]))
@click.option("--whisper-model", default=None,
              help=f"Whisper model for the cascade (default: the bundle's, else {DEFAULT_WHISPER}).")
@click.option("--no-cascade", is_flag=True, help="Skip the Whisper cascade (it is the slow part).")
@device_option
@json_option
def eval_cmd(manifest, bundle, split, whisper_model, no_cascade, device, as_json) -> None:
    """Recall@1/5/10 of a bundle on MANIFEST's SPLIT: speech<->image (learned, cascade), text->image."""
    from ..training.evaluate import evaluate_bundle

    # One transcript cache per Whisper model, beside the manifest: re-running eval skips Whisper.
    cache = manifest.parent / f"transcripts-{re.sub(r'[^A-Za-z0-9.]+', '_', whisper_model or 'default')}.json"
    report = evaluate_bundle(bundle, manifest, split, cascade_whisper=whisper_model, cascade=not no_cascade,
                             transcript_cache=cache, device=device)
    emit(report, as_json, format_eval(report))


def format_eval(report: dict) -> str:
    """A recall table: one row per (system, direction)."""
    rows = [f"split {report['split']}: {report['pairs']} spoken captions, {report['images']} images",
            f"{'system':10} {'direction':16} {'R@1':>6} {'R@5':>6} {'R@10':>6}"]
    for system, direction, scores in _table_rows(report):
        rows.append(f"{system:10} {direction:16} " + " ".join(f"{scores[k]:6.3f}" for k in ("R@1", "R@5", "R@10")))
    if "cascade" in report:
        rows.append(f"cascade: Whisper {report['cascade']['whisper']}, WER {report['cascade']['wer']:.3f}")
    rows += [f"skipped {name}: {why}" for name, why in report.get("skipped", {}).items()]
    return "\n".join(rows)


def _table_rows(report: dict):
    for system in ("learned", "cascade"):
        for direction in ("speech_to_image", "image_to_speech"):
            if system in report:
                yield system, direction, report[system][direction]
    yield "text", "text_to_image", report["text_to_image"]
    yield "text", "image_to_text", report["image_to_text"]
