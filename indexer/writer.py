"""The only code that writes FAISS and SQLite together.

Commit order, and why it is crash-safe: each batch is one SQLite transaction that stores the
rows *and the vectors*; FAISS is updated in memory after the commit and saved atomically
(temp file + rename) every `save_every` seconds and at the end. A crash at any point leaves
SQLite complete and FAISS older; opening the index reconciles FAISS from the vectors in SQLite
(adds missing ids, drops ids whose rows are gone), so nothing is lost and nothing dangles.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from searchengine.media import capture_time
from searchengine.store.metadata import FileLink, MetadataStore, NewContent
from searchengine.store.vectors import VectorStore
from searchengine.types import TRANSCRIPT_STORE


class Writer:
    """Applies batches to both stores in the documented order."""

    def __init__(self, metadata: MetadataStore, vectors: dict[str, VectorStore], save_every: float = 30.0):
        self.metadata = metadata
        self.vectors = vectors
        self.save_every = save_every
        self._last_save = time.monotonic()
        self._dirty = False

    def write(self, contents: list[NewContent] = (), links: list[FileLink] = (), removed: list[str] = (),
              skips: list[tuple[str, str, int, int]] = ()) -> None:
        """Commit one batch to SQLite, then mirror it into FAISS."""
        links = [with_capture_time(link) for link in links]
        added, orphans = self.metadata.write(list(contents), links, list(removed), list(skips))
        kinds_vectors: dict[str, list[np.ndarray]] = {}  # by store, in the order the metadata numbered them
        for c in contents:
            kinds_vectors.setdefault(c.kind, []).append(c.vector)
            if c.text_vector is not None:
                kinds_vectors.setdefault(TRANSCRIPT_STORE, []).append(c.text_vector)
        for kind, ids in added.items():
            self.vectors[kind].add(np.array(ids), np.stack(kinds_vectors[kind]))
        for kind, ids in orphans.items():
            self.vectors[kind].remove(ids)
        self._dirty = self._dirty or bool(added or orphans)
        if time.monotonic() - self._last_save > self.save_every:
            self.flush()

    def flush(self) -> None:
        """Save every FAISS index that changed since the last save."""
        if not self._dirty:
            return
        for store in self.vectors.values():
            store.save()
        self._dirty = False
        self._last_save = time.monotonic()


def with_capture_time(link: FileLink) -> FileLink:
    """The link with its photo's capture time (EXIF), read from the file's header as it is linked."""
    if link.kind != "image" or link.captured_at is not None:
        return link
    return dataclasses.replace(link, captured_at=capture_time(link.path))
