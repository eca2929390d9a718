"""The write path: walk folders, decode, batch, encode and write to the index's stores."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from searchengine.store.metadata import FileLink, MetadataStore
from searchengine.store.vectors import VectorStore
from searchengine.threads import current, plan_for
from searchengine.types import IndexReport, Kind, Progress

from .pipeline import Pipeline
from .plan import Plan, StoreView, make_plan
from .walk import walk
from .writer import Writer, commit_rows_for

if TYPE_CHECKING:
    from .distributed import RayOptions

__all__ = ["index_paths"]


def index_paths(metadata: MetadataStore, vectors: dict[str, VectorStore], bundle, roots: list[Path],
                progress: Progress | None = None, batch_size: int = 32, prune: bool = False,
                ray: RayOptions | None = None, transcribe: bool | None = None,
                moments_after: float | None = None) -> IndexReport:
    """Bring the stores in line with the media under `roots`; returns what changed.

    prune: forget indexed files that are gone from disk anywhere, also under roots not found now.
    ray: decode and encode the new contents on Ray actors (walking, planning and writing stay here).
    transcribe: write down new recordings with Whisper beside a learned speech encoder (None: when
    its weights are installed; the cascade always does).
    moments_after: recordings longer than this (seconds) are indexed as moments (default: the setting).
    """
    found = walk(roots, progress)
    store = StoreView(metadata.file_states(), metadata.skip_states(), {s.path: s.reason for s in metadata.skipped()},
                      metadata.known_keys)
    budget = current().budget if current() else None  # a --threads cap holds for hashing too
    plan = make_plan(found, store, prune, hash_workers=plan_for("index", budget).decode)
    writer = Writer(metadata, vectors, commit_rows=commit_rows_for(plan.embed_count))
    links = [FileLink(c.path, digest, c.kind.value, c.size, c.mtime_ns) for c, digest in plan.link]
    writer.write(links=links, removed=plan.removed + plan.forgotten, skips=plan.new_skips)
    metadata.touch([(c.path, c.size, c.mtime_ns) for c in plan.touched])
    has_audio = any(kind == Kind.AUDIO for _, kind in plan.embed)
    whisper = bundle.index_whisper(transcribe) if has_audio else None
    pipeline = Pipeline(bundle, writer, batch_size, progress=progress, total=plan.embed_count, whisper=whisper,
                        moments_after=moments_after)
    try:
        if ray is None:
            pipeline.run(plan.embed)
        else:
            from .distributed import embed_on_ray  # Ray loads only for the runs that ask for it

            embed_on_ray(plan.embed, pipeline, replace(ray, whisper=whisper, moments_after=pipeline.moments_after))
    finally:
        writer.flush()
    return _report(plan, pipeline)


def _report(plan: Plan, pipeline: Pipeline) -> IndexReport:
    """Count paths (not contents): a duplicate file is one more added path."""
    failed = {s.path for s in pipeline.skipped}
    indexed = [c.path for c, _ in plan.link] + [c.path for group in plan.embed.values() for c in group]
    indexed = [p for p in indexed if p not in failed]
    updated = sum(1 for p in indexed if p in plan.updated_paths)
    return IndexReport(added=len(indexed) - updated, updated=updated, removed=len(plan.removed),
                       unchanged=plan.unchanged, skipped=plan.skipped + pipeline.skipped,
                       embedded=pipeline.embedded, warnings=pipeline.warnings, offline=plan.offline)
