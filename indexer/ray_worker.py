"""What runs inside a Ray worker process: one loaded bundle that decodes and encodes the batches sent to it.

A worker runs the local Pipeline (the same decoding, batching, memory budgets and isolation of a file
the encoder fails on) into a sink that collects rows instead of writing them: only the driver writes.
This module does not import Ray: the driver wraps EmbedWorker in a Ray actor.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from searchengine.errors import SearchEngineError
from searchengine.store.metadata import NewContent

from .pipeline import Pipeline
from .walk import Candidate

# How the decoders name an input that has no file name: PIL shows the buffer, FFmpeg '<none>'.
UNNAMED_INPUT = re.compile(r"<_io\.BytesIO object at 0x[0-9a-f]+>|'<none>'")


@dataclass(frozen=True)
class Job:
    """One content to embed: its digest, the path that holds it, and its bytes when the driver read them."""

    digest: str
    path: Candidate
    data: bytes | None = None


@dataclass
class Outcome:
    """A worker's answer for one batch: the new contents, and (path, reason) for each content it could not embed."""

    contents: list[NewContent]
    failed: list[tuple[str, str]]


class Collected:
    """Stands in for the Writer inside a worker: keeps what the pipeline would have written."""

    def __init__(self):
        self.contents: list[NewContent] = []
        self.skips: list[tuple[str, str, int, int]] = []

    def write(self, contents=(), links=(), removed=(), skips=()) -> None:
        """Keep the contents and skips; links are the driver's business (it knows every path of a content)."""
        self.contents.extend(contents)
        self.skips.extend(skips)


class EmbedWorker:
    """One per Ray actor: loads the bundle once, then embeds the batches it is sent, one at a time."""

    def __init__(self, bundle_ref: str, load_kwargs: dict, threads: int, whisper: str | None = None,
                 moments_after: float | None = None):
        from searchengine.bundles.bundle import load_bundle  # in the worker process, not at import

        # the driver's threshold, not the worker's own setting: the index must not depend on where it ran
        self.threads, self.whisper, self.moments_after = threads, whisper, moments_after
        self.bundle, self.error = None, None
        try:
            self.bundle = load_bundle(bundle_ref, **load_kwargs)
        except SearchEngineError as exc:  # kept for ready(): the driver raises it with its own type
            self.error = exc

    def ready(self) -> tuple[int, str | None, SearchEngineError | None]:
        """(process id, fingerprint of the loaded weights, the error that kept them from loading)."""
        return os.getpid(), self.bundle.info.fingerprint if self.bundle else None, self.error

    def embed(self, jobs: list[Job]) -> Outcome:
        """Decode and encode one batch (ideally of one kind); decode failures come back as reasons."""
        sink = Collected()
        pipeline = Pipeline(self.bundle, sink, batch_size=len(jobs), workers=self.threads, whisper=self.whisper,
                            moments_after=self.moments_after)
        groups = {(job.digest, job.path.kind): [job.path] for job in jobs}
        pipeline.run(groups, {job.digest: job.data for job in jobs if job.data is not None})
        shipped = {job.path.path for job in jobs if job.data is not None}
        return Outcome(sink.contents, [(path, _named(reason, path) if path in shipped else reason)
                                       for path, reason, _, _ in sink.skips])


def _named(reason: str, path: str) -> str:
    """A decode error of shipped bytes named as the file, so the report reads as a local run's."""
    return UNNAMED_INPUT.sub(lambda _: repr(path), reason)
