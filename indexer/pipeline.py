"""Decode in parallel worker threads, batch per kind, encode, hand batches to the writer."""

from __future__ import annotations

import os
from collections import deque
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


@dataclass
class Decoded:
    """A decoded content with every path that holds it."""

    digest: str
    paths: list[Candidate]
    media: Image.Image | AudioClip

    @property
    def kind(self) -> Kind:
        """Image or audio."""
        return self.paths[0].kind


def decode(digest: str, paths: list[Candidate]) -> Decoded:
    """Decode the first path of a content group (all hold the same bytes)."""
    first = paths[0]
    media = load_image(first.path) if first.kind == Kind.IMAGE else load_audio(first.path)
    return Decoded(digest, paths, media)


def decoded_stream(groups: dict[str, list[Candidate]], workers: int, window: int) -> Iterator[tuple[str, list[Candidate], Future]]:
    """Yield (digest, paths, future) in order while up to `window` decodes run ahead in threads."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque = deque()
        for digest, paths in groups.items():
            pending.append((digest, paths, pool.submit(decode, digest, paths)))
            if len(pending) >= window:
                yield pending.popleft()
        while pending:
            yield pending.popleft()


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
        self.embedded = 0

    def progress(self, n: int) -> None:
        """Count n more contents finished (embedded or skipped) and report it."""
        self.done += n
        self.report(ProgressEvent(STAGE, self.done, self.total))

    def run(self, groups: dict[str, list[Candidate]]) -> None:
        """Decode → batch by kind → encode → write, flushing partial batches at the end."""
        if self.total:
            self.report(ProgressEvent(STAGE, 0, self.total))
        buffers: dict[Kind, list[Decoded]] = {Kind.IMAGE: [], Kind.AUDIO: []}
        for digest, paths, future in decoded_stream(groups, self.workers, window=2 * self.batch_size):
            try:
                item = future.result()
            except MediaError as exc:
                self._skip(paths, str(exc))
                continue
            buffers[item.kind].append(item)
            if len(buffers[item.kind]) >= self.batch_size:
                self._flush(buffers[item.kind])
        for buffer in buffers.values():
            self._flush(buffer)

    def _flush(self, batch: list[Decoded]) -> None:
        if not batch:
            return
        items, vectors, transcripts = self._encode(batch)
        contents = [_new_content(item, vec, text) for item, vec, text in zip(items, vectors, transcripts)]
        links = [FileLink(c.path, item.digest, c.size, c.mtime_ns) for item in items for c in item.paths]
        self.writer.write(contents=contents, links=links)
        self.embedded += len(items)
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


def _new_content(item: Decoded, vector: np.ndarray, transcript: str | None) -> NewContent:
    if item.kind == Kind.IMAGE:
        width, height = item.media.size
        return NewContent(item.digest, item.kind.value, vector, width=width, height=height)
    return NewContent(item.digest, item.kind.value, vector, duration=item.media.duration, transcript=transcript)
