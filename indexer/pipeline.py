"""Decode in parallel worker threads, batch per kind, encode, hand batches to the writer."""

from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image

from searchengine.errors import DecodeError, MediaError
from searchengine.media import AudioClip, load_audio, load_image
from searchengine.moments import LONGEST_RECORDING, moments_after as moments_threshold
from searchengine.store.metadata import FileLink, NewContent
from searchengine.threads import ModelThreads
from searchengine.threads import role as thread_role
from searchengine.types import Kind, Progress, ProgressEvent, Skipped

from .segments import embed_moments
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
    media: np.ndarray | Image.Image | AudioClip  # an image as its tower's input (float32 [3, S, S]) when prepared
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
        if isinstance(self.media, np.ndarray):
            return self.media.nbytes
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
           budget: ByteBudget | None = None, data: bytes | None = None, prepare=None) -> Decoded:
    """Decode the first path of a content group (all hold the same bytes), or `data`: those bytes read elsewhere.

    prepare: the bundle's prepare_image, run here in the decode worker, so an image reaches the encoder
    as its tower's input tensor and the encoder step runs the model alone.
    """
    first = paths[0]
    source = first.path if data is None else data
    if first.kind == Kind.AUDIO:
        return Decoded(digest, paths, load_audio(source, max_seconds=LONGEST_RECORDING))  # long ones become moments
    image = load_image(source, min_side=image_side, reserve=budget.reserve if budget else None)
    size = image.info.get("original_size", image.size)
    return Decoded(digest, paths, _prepared(image, prepare) if prepare else image, size)


def _prepared(image: Image.Image, prepare) -> np.ndarray:
    """prepare(image), its failure recorded as the file's skip reason (as an encoder failure was before)."""
    try:
        return prepare(image)
    except Exception as exc:  # noqa: BLE001 — torchvision raises anything on odd inputs
        raise DecodeError(f"encoder failed: {type(exc).__name__}: {exc}"[:200]) from exc


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
                 progress: Progress | None = None, total: int = 0, whisper: str | None = None,
                 moments_after: float | None = None, threads: int | None = None):
        self.bundle = bundle
        self.moments_after = moments_threshold(moments_after)  # longer recordings become moments
        self.whisper = whisper  # transcribe recordings with it beside a learned encoder (loaded on first use)
        self._transcriber = None
        self.writer = writer
        self.batch_size = batch_size
        self.workers = workers  # None: the thread policy's decode workers (searchengine/threads.py)
        self.threads = threads  # cores this run may use; None: the policy's budget
        self.model_threads: ModelThreads | None = None  # torch's threads, between batches (set by run)
        self.report = progress or (lambda event: None)
        self.total, self.done = total, 0
        self.skipped: list[Skipped] = []
        self.warnings: list[Skipped] = []
        self.embedded = 0

    def progress(self, n: int) -> None:
        """Count n more contents finished (embedded or skipped) and report it."""
        self.done += n
        self.report(ProgressEvent(STAGE, self.done, self.total))

    def run(self, groups: dict[tuple, list[Candidate]], data: dict[str, bytes] | None = None) -> None:
        """Decode → batch by kind → encode → write, flushing partial batches at the end.

        data: the bytes of some contents by digest, decoded instead of their paths (a Ray worker
        that cannot see the driver's files gets them this way).
        """
        if self.total:
            self.report(ProgressEvent(STAGE, 0, self.total))
        # A caller that names its workers (a Ray actor: its CPUs) names the run's budget too.
        with thread_role("index", self.threads or self.workers) as plan:
            self.model_threads = ModelThreads(plan)
            self._run(groups, data or {}, self.workers or plan.decode)

    def _run(self, groups: dict[tuple, list[Candidate]], data: dict[str, bytes], workers: int) -> None:
        buffers: dict[Kind, list[Decoded]] = {Kind.IMAGE: [], Kind.AUDIO: []}
        side, budget, prepare = self.bundle.image_size, ByteBudget(DECODE_BYTES), self.bundle.prepare_image
        stream = decoded_stream(groups, lambda digest, paths: decode(digest, paths, side, budget, data.get(digest),
                                                                     prepare), workers, window=2 * self.batch_size)
        for _key, paths, future in stream:
            waited = time.perf_counter()
            try:
                item = future.result()
            except MediaError as exc:
                self.skip(paths, str(exc))
                continue
            finally:
                self.model_threads.waited_for_decode(time.perf_counter() - waited)
            buffer = buffers[item.kind]
            buffer.append(item)
            if len(buffer) >= self.batch_size or sum(i.nbytes for i in buffer) > HELD_BYTES // 2:
                self._flush(buffer)
        for buffer in buffers.values():
            self._flush(buffer)

    def _flush(self, batch: list[Decoded]) -> None:
        if not batch:
            return
        started = time.perf_counter()
        items, vectors, transcripts = self._encode(batch)
        if self.model_threads is not None:
            self.model_threads.after_batch(time.perf_counter() - started)
        window = self.bundle.speech_seconds
        text_vectors = self._transcript_vectors(transcripts)
        moments = [self._moments(item) for item in items]
        self.commit([(item.paths, _new_content(item, vec, text, window, text_vec, spans))
                     for item, vec, text, text_vec, spans in zip(items, vectors, transcripts, text_vectors, moments)])
        self.progress(len(batch))
        batch.clear()

    def _moments(self, item: Decoded) -> tuple:
        """A long recording's embedded moments (indexer/segments.py); () for images and short recordings."""
        if item.kind != Kind.AUDIO:
            return ()
        return embed_moments(self.bundle, item.media.samples, self.moments_after, self._transcriber)

    def _transcript_vectors(self, transcripts: list[str | None]) -> list[np.ndarray | None]:
        """The text tower's vectors of what Whisper wrote down beside a learned encoder (None where nothing was)."""
        said = [i for i, text in enumerate(transcripts) if text]
        out: list[np.ndarray | None] = [None] * len(transcripts)
        if self.whisper is None or not said:
            return out
        for i, vector in zip(said, self.bundle.encode_texts([transcripts[i] for i in said])):
            out[i] = vector
        return out

    def commit(self, embedded: list[tuple[list[Candidate], NewContent]]) -> None:
        """Write new contents with every path that holds them (a Ray run's driver commits its workers' rows here)."""
        contents = [content for _, content in embedded]
        links = [FileLink(c.path, content.content_hash, content.kind, c.size, c.mtime_ns)
                 for paths, content in embedded for c in paths]
        self.writer.write(contents=contents, links=links)
        self.embedded += len(contents)
        self.warnings.extend(Skipped(c.path, content.warning) for paths, content in embedded if content.warning
                             for c in paths)

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
                self.skip(item.paths, f"encoder failed: {type(exc).__name__}: {exc}"[:200], count=False)
                continue
            kept.append(item)
            vectors.append(vec[0])
            transcripts.append(text[0])
        return kept, np.array(vectors, dtype=np.float32).reshape(len(kept), -1), transcripts

    def _encode_items(self, batch: list[Decoded]) -> tuple[np.ndarray, list[str | None]]:
        if batch[0].kind == Kind.IMAGE:
            return self._encode_pixels([item.media for item in batch]), [None] * len(batch)
        clips = [item.media.samples for item in batch]
        vectors, transcripts = self.bundle.encode_speech(clips)
        if self.whisper is not None and all(text is None for text in transcripts):
            if self._transcriber is None:
                self._transcriber = self.bundle.transcriber(self.whisper)
            transcripts = [self._transcriber.transcribe(clip) for clip in clips]
        return vectors, transcripts

    def _encode_pixels(self, images: list) -> np.ndarray:
        """Prepared images go to the tower as one stacked batch; PIL images (another caller's) the long way."""
        if all(isinstance(image, np.ndarray) for image in images):
            return self.bundle.encode_pixels(np.stack(images))
        return self.bundle.encode_images(images)

    def skip(self, paths: list[Candidate], reason: str, count: bool = True) -> None:
        """Record the paths of a content that cannot be embedded, with the reason."""
        skips = [(c.path, reason, c.size, c.mtime_ns) for c in paths]
        self.writer.write(skips=skips)
        self.skipped.extend(Skipped(c.path, reason) for c in paths)
        if count:
            self.progress(1)


def _new_content(item: Decoded, vector: np.ndarray, transcript: str | None, heard: float | None,
                 text_vector: np.ndarray | None = None, moments: tuple = ()) -> NewContent:
    if item.kind == Kind.IMAGE:
        width, height = item.size
        return NewContent(item.digest, item.kind.value, vector, width=width, height=height)
    clip = item.media
    warning = clip.warning
    if heard is not None and clip.duration > heard + 0.5 and not moments:
        warning = f"only the first {heard:.0f} s of this {clip.duration:.0f}-s recording are searchable"
    return NewContent(item.digest, item.kind.value, vector, duration=clip.duration, transcript=transcript,
                      warning=warning, text_vector=text_vector, moments=moments)
