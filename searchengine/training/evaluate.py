"""Cross-modal retrieval metrics of a bundle on one split of a manifest.

Recall@K here: a query scores a hit when any item it should find ranks in the top K. Ties are
broken against the query (an irrelevant item with the same score ranks ahead), so a collapsed
model that scores everything equally gets no hits rather than all of them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..bundles.registry import DEFAULT_WHISPER
from ..errors import WeightsMissing
from ..fileio import atomic_write
from ..types import Progress, ProgressEvent
from .data import SplitData, load_images, load_waves, read_manifest, split_data

KS = (1, 5, 10)


# ----------------------------------------------------------------------------- pure arithmetic


def relevance(query_groups: np.ndarray, gallery_groups: np.ndarray) -> np.ndarray:
    """[Q, G] bool: query q should find gallery item g when they belong to the same group (image)."""
    return np.asarray(query_groups)[:, None] == np.asarray(gallery_groups)[None, :]


def first_hit_ranks(sim: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """0-based rank of each query's best relevant item (irrelevant ties count as ahead); -1 if it has none."""
    sim = np.asarray(sim, dtype=np.float64)
    best = np.where(relevant, sim, -np.inf).max(axis=1)
    ahead = ((sim >= best[:, None]) & ~relevant).sum(axis=1)
    return np.where(relevant.any(axis=1), ahead, -1)


def recall_from_ranks(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """{"R@k": share of queries whose first hit ranks below k} (queries without any relevant item miss)."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        return {f"R@{k}": 0.0 for k in ks}
    return {f"R@{k}": float(((ranks >= 0) & (ranks < k)).mean()) for k in ks}


def recall_at_k(sim: np.ndarray, query_groups: np.ndarray, gallery_groups: np.ndarray,
                ks: tuple[int, ...] = KS) -> dict[str, float]:
    """Recall@K of a query-by-gallery similarity matrix, relevance given by shared group ids."""
    return recall_from_ranks(first_hit_ranks(sim, relevance(query_groups, gallery_groups)), ks)


def both_ways(pair_vecs: np.ndarray, image_vecs: np.ndarray, image_of: np.ndarray,
              ks: tuple[int, ...] = KS) -> tuple[dict[str, float], dict[str, float]]:
    """(pair -> image, image -> pair) recall for per-pair query vectors against the split's images."""
    sim = pair_vecs @ image_vecs.T
    images = np.arange(len(image_vecs))
    return recall_at_k(sim, image_of, images, ks), recall_at_k(sim.T, images, image_of, ks)


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between two word lists."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER: word edits over reference words (case and punctuation ignored)."""
    pairs = [(_words(r), _words(h)) for r, h in zip(refs, hyps)]
    total = sum(len(r) for r, _ in pairs)
    return sum(edit_distance(r, h) for r, h in pairs) / max(total, 1)


# ----------------------------------------------------------------------------- bundle evaluation


def evaluate_bundle(bundle, manifest: str | Path, split: str = "test", cascade_whisper: str | None = None, *,
                    cascade: bool = True, transcript_cache: str | Path | None = None,
                    device: str | None = None, progress: Progress | None = None) -> dict:
    """Recall@1/5/10 for speech->image and image->speech (learned, cascade) and the text oracle.

    Args:
        bundle: a loaded Bundle, or a bundle name / folder for `load_bundle`.
        manifest: manifest.jsonl of pairs; `split` picks which are scored.
        cascade_whisper: Whisper model for the cascade (default: the bundle's, else DEFAULT_WHISPER).
        cascade: also score the Whisper cascade (skipped, with the reason, when weights are missing).
        transcript_cache: JSON file keeping cascade transcripts, so a re-run skips Whisper.
        progress: called with a ProgressEvent as each stage starts and ends (and while transcribing).
    """
    from ..bundles.bundle import load_bundle  # torch and open_clip only when a bundle must be loaded

    bundle = bundle if hasattr(bundle, "encode_speech") else load_bundle(bundle, device=device)
    data = split_data(read_manifest(manifest), split)
    report: dict = {"split": split, "pairs": len(data.pairs), "images": len(data.images),
                    "voices": sorted({p.voice for p in data.pairs})}
    image_vecs = _stage(progress, "images", len(data.images), lambda: bundle.encode_images(load_images(data.images)))
    text_vecs = bundle.encode_texts(data.texts)
    report["text_to_image"], report["image_to_text"] = both_ways(text_vecs, image_vecs, data.image_of)
    waves = load_waves([p.audio for p in data.pairs])
    if getattr(bundle.speech, "kind", "") == "learned":
        vecs = _stage(progress, "learned speech", len(waves), lambda: bundle.encode_speech(waves)[0])
        report["learned"] = _speech_entry(vecs, image_vecs, data)
    if cascade:
        _add_cascade(report, bundle, data, waves, image_vecs, cascade_whisper, transcript_cache, progress)
    return report


def _stage(progress: Progress | None, name: str, total: int, work):
    """Run one step of the evaluation, reporting it as started and done."""
    if progress:
        progress(ProgressEvent(name, 0, total, kind="stage", message=name))
    result = work()
    if progress:
        progress(ProgressEvent(name, total, total))
    return result


def _speech_entry(vecs: np.ndarray, image_vecs: np.ndarray, data: SplitData) -> dict:
    s2i, i2s = both_ways(vecs, image_vecs, data.image_of)
    return {"speech_to_image": s2i, "image_to_speech": i2s}


def _add_cascade(report: dict, bundle, data: SplitData, waves: list[np.ndarray], image_vecs: np.ndarray,
                 whisper: str | None, cache: str | Path | None, progress: Progress | None) -> None:
    """Score Whisper transcripts through the text tower; record why when Whisper cannot load."""
    try:
        encoder = bundle.cascade(whisper)
    except WeightsMissing as exc:
        report.setdefault("skipped", {})["cascade"] = str(exc)
        return
    transcripts = transcribe_cached(encoder.transcriber, [p.audio for p in data.pairs], waves, cache, progress)
    entry = _speech_entry(bundle.encode_texts(transcripts), image_vecs, data)
    entry["whisper"] = whisper or bundle.cascade_whisper or DEFAULT_WHISPER
    entry["wer"] = word_error_rate(data.texts, transcripts)
    report["cascade"] = entry


def transcribe_cached(transcriber, paths: list[Path], waves: list[np.ndarray], cache: str | Path | None,
                      progress: Progress | None = None) -> list[str]:
    """Transcripts of every clip, reusing (and extending) a JSON cache keyed by Whisper model and file."""
    store = _read_cache(cache)
    model = str(transcriber.source)
    known = store.setdefault(model, {})
    keys = [_clip_key(p) for p in paths]
    todo = [i for i, k in enumerate(keys) if k not in known]
    for n, i in enumerate(todo, 1):
        known[keys[i]] = transcriber.transcribe(waves[i])
        if progress and (n % 10 == 0 or n == len(todo)):
            progress(ProgressEvent("transcribing", n, len(todo)))
    if todo and cache is not None:
        _write_cache(Path(cache), store)
    return [known[k] for k in keys]


def _clip_key(path: Path) -> str:
    """A cache key that changes when the file is rewritten."""
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _read_cache(cache: str | Path | None) -> dict:
    if cache is None or not Path(cache).is_file():
        return {}
    try:
        data = json.loads(Path(cache).read_text())
    except (OSError, ValueError):
        return {}  # a damaged cache only costs a re-transcription
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, store: dict) -> None:
    """Write through a temp file so an interrupted run leaves the old cache intact."""
    try:
        atomic_write(path, json.dumps(store))
    except OSError:
        pass  # a read-only data folder: the cache is an optimisation only
