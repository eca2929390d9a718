"""The only code that writes FAISS and SQLite together.

Commit order, and why it is crash-safe: each batch is one SQLite transaction that stores the
rows *and the vectors*; FAISS is updated in memory after the commit, and its changes are appended
to each store's change log every `save_every` seconds (cost: the changes, not the index; see
store/vectorlog.py) and folded into the base file at the end when that is cheap. A crash at any
point leaves SQLite complete and FAISS older (a prefix of the same history); opening the index
reconciles FAISS from the vectors in SQLite (adds the rows above FAISS's newest id, drops ids whose
rows are gone), so nothing is lost and nothing dangles.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from searchengine.media import capture_time
from searchengine.store.metadata import FileLink, MetadataStore, NewContent
from searchengine.store.vectors import VectorStore
from searchengine.types import MOMENT_STORE, TRANSCRIPT_STORE


GATHER_ROWS = 512
GATHER_FROM = 2000  # files to embed in a run


class Writer:
    """Applies batches to both stores in the documented order.

    New files (contents and their links) can be gathered into one transaction of up to `commit_rows`
    files or `commit_every` seconds: a statement costs about as much for 32 rows as for 512, so the
    database's share of a row shrinks with the transaction (commit_rows_for says when a run does). A
    batch that removes or skips paths is committed at once, after what was gathered, so batches still
    apply in their order. A kill loses at most the gathered files (the next run embeds them again);
    flush() commits them.
    """

    def __init__(self, metadata: MetadataStore, vectors: dict[str, VectorStore], save_every: float = 5.0,
                 commit_rows: int = 1, commit_every: float = 1.0):
        self.metadata = metadata
        self.vectors = vectors
        self.save_every = save_every
        self.commit_rows = commit_rows
        self.commit_every = commit_every
        self._last_save = time.monotonic()
        self._dirty = False
        self._gathered: tuple[list[NewContent], list[FileLink]] = ([], [])
        self._gathered_since = 0.0

    def write(self, contents: list[NewContent] = (), links: list[FileLink] = (), removed: list[str] = (),
              skips: list[tuple[str, str, int, int]] = ()) -> None:
        """Apply one batch: gathered with others when it only adds files, else committed now."""
        links = [with_capture_time(link) for link in links]
        if removed or skips:
            self.commit()
            self._apply(list(contents), links, list(removed), list(skips))
            return
        if not self._gathered[1] and not self._gathered[0]:
            self._gathered_since = time.monotonic()
        self._gathered[0].extend(contents)
        self._gathered[1].extend(links)
        if max(len(self._gathered[0]), len(self._gathered[1])) >= self.commit_rows \
                or time.monotonic() - self._gathered_since >= self.commit_every:
            self.commit()

    def commit(self) -> None:
        """Commit the gathered new files now."""
        contents, links = self._gathered
        if contents or links:
            self._gathered = ([], [])
            self._apply(contents, links, [], [])

    def _apply(self, contents: list[NewContent], links: list[FileLink], removed: list[str],
               skips: list[tuple[str, str, int, int]]) -> None:
        """Commit to SQLite, then mirror into FAISS."""
        added, orphans = self.metadata.write(contents, links, removed, skips)
        kinds_vectors: dict[str, list[np.ndarray]] = {}  # by store, in the order the metadata numbered them
        for c in contents:
            kinds_vectors.setdefault(c.kind, []).append(c.vector)
            if c.text_vector is not None:
                kinds_vectors.setdefault(TRANSCRIPT_STORE, []).append(c.text_vector)
            kinds_vectors.setdefault(MOMENT_STORE, []).extend(m.vector for m in c.moments)
        for kind, ids in added.items():
            self.vectors[kind].add(np.array(ids), np.stack(kinds_vectors[kind]))
        for kind, ids in orphans.items():
            self.vectors[kind].remove(ids)
        self._dirty = self._dirty or bool(added or orphans)
        if time.monotonic() - self._last_save > self.save_every:
            self._save(final=False)

    def flush(self) -> None:
        """Commit what is gathered and save every FAISS index that changed, at the end of a run: small
        ones are compacted into one file."""
        self.commit()
        self._save(final=True)

    def _save(self, final: bool) -> None:
        if not self._dirty:
            return
        for store in self.vectors.values():
            store.save()
            if final:
                store.fold()
        self._dirty = False
        self._last_save = time.monotonic()


def commit_rows_for(files: int) -> int:
    """Files per transaction for a run embedding `files` files: a large run gathers 512 (5x the rows/s of
    one commit per 32-file batch, measured in scripts/bench_store.py); a small one commits each batch,
    so every finished batch is in the database at once (it costs little in total)."""
    return GATHER_ROWS if files >= GATHER_FROM else 1


def with_capture_time(link: FileLink) -> FileLink:
    """The link with its photo's capture time (EXIF), read from the file's header as it is linked."""
    if link.kind != "image" or link.captured_at is not None:
        return link
    return dataclasses.replace(link, captured_at=capture_time(link.path))
