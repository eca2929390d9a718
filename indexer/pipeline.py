"""Decode in parallel worker threads, batch per kind, encode, hand batches to the writer."""

from __future__ import annotations

import os
import threading
from collections import deque
from contextlib import contextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image

from searchengine.errors import MediaError
from searchengine.media import AudioClip, load_audio, load_image
from searchengine.store.metadata import FileLink, NewContent
from searchengine.types import Kind, Progress, ProgressEvent, Skipped

from .walk import Candidate
from .writer import Writer

STAGE = "embedding"
# Decoded media waiting for the encoder, at most (audio is 64 KB a second decoded: 600 s is 38 MB,
# so a count alone would let 64 long recordings hold 2.4 GB).
HELD_BYTES = 256 << 20
# Images being decoded at once, at most (a 100-MP PNG holds 400 MB before it can be shrunk).
DECODE_BYTES = 800 << 20


@dataclass
class Decoded:
    """A decoded content with every path that holds it."""

    digest: str
    paths: list[Candidate]
    media: Image.Image | AudioClip
    size: tuple[int, int] | None = None  # an image's width and height before decoding shrank it

    @property
    def kind(self) -> Kind:
        """Image or audio."""
        return self.paths[0].kind

    @property
    def nbytes(self) -> int:
        """Memory the decoded media holds."""
        if isinstance(self.media, AudioClip):
            return self.media.samples.nbytes
        return self.media.width * self.media.height * 3


class ByteBudget:
    """Lets decodes run together only while their peak memory fits: large non-JPEG images wait their turn."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self._free = threading.Condition()

    @contextmanager
    def reserve(self, cost: int):
        cost = min(cost, self.limit)  # one image larger than the whole budget still runs, alone
        with self._free:
            self._free.wait_for(lambda: self.used + cost <= self.limit)
            self.used += cost
        try:
            yield
        finally:
            with self._free:
                self.used -= cost
                self._free.notify_all()


def decode(digest: str, paths: list[Candidate], image_side: int | None = None,
           budget: ByteBudget | None = None) -> Decoded:
    """Decode the first path of a content group (all hold the same bytes)."""
    first = paths[0]
    if first.kind == Kind.AUDIO:
        return Decoded(digest, paths, load_audio(first.path))
    image = load_image(first.path, min_side=image_side, reserve=budget.reserve if budget else None)
    return Decoded(digest, paths, image, image.info.get("original_size", image.size))


def decoded_stream(groups: dict, decode_one, workers: int, window: int,
                   held_bytes: int = HELD_BYTES) -> Iterator[tuple[tuple, list[Candidate], Future]]:
    """Yield (key, paths, future) in order while decodes run ahead in threads, bounded by count and bytes."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque = deque()
        for key, paths in groups.items():
            while pending and (len(pending) >= window or _held(pending) > held_bytes):
                yield pending.popleft()
            pending.append((key, paths, pool.submit(decode_one, key[0], paths)))
        while pending:
            yield pending.popleft()


def _held(pending: deque) -> int:
    """Bytes of the finished decodes still waiting in `pending`."""
    return sum(f.result().nbytes for _, _, f in pending if f.done() and f.exception() is None)


class Pipeline:
    """Turns a plan's new contents into committed rows and vectors."""

    def __init__(self, bundle, writer: Writer, batch_size: int = 32, workers: int | None = None,
                 progress: Progress | None = None, total: int = 0):
        self.bundle = bundle
        self.writer = writer
        self.batch_size = batch_size
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.report = progress or (lambda event: None)
        self.total, self.done = total, 0
        self.skipped: list[Skipped] = []
        self.warnings: list[Skipped] = []
        self.embedded = 0

    def progress(self, n: int) -> None:
        """Count n more contents finished (embedded or skipped) and report it."""
        self.done += n
        self.report(ProgressEvent(STAGE, self.done, self.total))

    def run(self, groups: dict[tuple, list[Candidate]]) -> None:
        """Decode → batch by kind → encode → write, flushing partial batches at the end."""
        if self.total:
            self.report(ProgressEvent(STAGE, 0, self.total))
        buffers: dict[Kind, list[Decoded]] = {Kind.IMAGE: [], Kind.AUDIO: []}
        side, budget = self.bundle.image_size, ByteBudget(DECODE_BYTES)
        stream = decoded_stream(groups, lambda digest, paths: decode(digest, paths, side, budget), self.workers,
                                window=2 * self.batch_size)
        for _key, paths, future in stream:
            try:
                item = future.result()
            except MediaError as exc:
                self._skip(paths, str(exc))
                continue
            buffer = buffers[item.kind]
            buffer.append(item)
            if len(buffer) >= self.batch_size or sum(i.nbytes for i in buffer) > HELD_BYTES // 2:
                self._flush(buffer)
        for buffer in buffers.values():
            self._flush(buffer)

    def _flush(self, batch: list[Decoded]) -> None:
        if not batch:
            return
        items, vectors, transcripts = self._encode(batch)
        window = self.bundle.speech_seconds
        contents = [_new_content(item, vec, text, window) for item, vec, text in zip(items, vectors, transcripts)]
        links = [FileLink(c.path, item.digest, item.kind.value, c.size, c.mtime_ns) for item in items for c in item.paths]
        self.writer.write(contents=contents, links=links)
        self.embedded += len(items)
        self.warnings.extend(Skipped(c.path, content.warning) for item, content in zip(items, contents)
                             if content.warning for c in item.paths)
        self.progress(len(batch))
        batch.clear()

    def _encode(self, batch: list[Decoded]) -> tuple[list[Decoded], np.ndarray, list[str | None]]:
        """Encode a batch; if the encoder fails on it, retry one by one to isolate the culprit."""
        try:
            return (batch, *self._encode_items(batch))
        except Exception:  # encoders raise anything from torch/ctranslate2 on odd inputs
            if len(batch) == 1:
                raise
        kept, vectors, transcripts = [], [], []
        for item in batch:
            try:
                vec, text = self._encode_items([item])
            except Exception as exc:  # noqa: BLE001 — recorded as the file's skip reason
                self._skip(item.paths, f"encoder failed: {type(exc).__name__}: {exc}"[:200], count=False)
                continue
            kept.append(item)
            vectors.append(vec[0])
            transcripts.append(text[0])
        return kept, np.array(vectors, dtype=np.float32).reshape(len(kept), -1), transcripts

    def _encode_items(self, batch: list[Decoded]) -> tuple[np.ndarray, list[str | None]]:
        if batch[0].kind == Kind.IMAGE:
            return self.bundle.encode_images([item.media for item in batch]), [None] * len(batch)
        return self.bundle.encode_speech([item.media.samples for item in batch])

    def _skip(self, paths: list[Candidate], reason: str, count: bool = True) -> None:
        skips = [(c.path, reason, c.size, c.mtime_ns) for c in paths]
        self.writer.write(skips=skips)
        self.skipped.extend(Skipped(c.path, reason) for c in paths)
        if count:
            self.progress(1)


def _new_content(item: Decoded, vector: np.ndarray, transcript: str | None, heard: float | None) -> NewContent:
    if item.kind == Kind.IMAGE:
        width, height = item.size
        return NewContent(item.digest, item.kind.value, vector, width=width, height=height)
    clip = item.media
    warning = clip.warning
    if heard is not None and clip.duration > heard + 0.5:
        warning = f"only the first {heard:.0f} s of this {clip.duration:.0f}-s recording are searchable"
    return NewContent(item.digest, item.kind.value, vector, duration=clip.duration, transcript=transcript,
                      warning=warning)
