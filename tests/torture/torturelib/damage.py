"""Disk-full and corruption trials: the engine must refuse with one typed line, or repair, never lose data."""

from __future__ import annotations

from pathlib import Path

from . import diskfull
from .corrupt import EXPECT, REPAIR, copy_index, damage, file_class
from .crash import next_rebuild, old_index_untouched
from .state import check_trial, describe, loaded_bundle
from .trials import Scene, Trial, cli, cli_problems, engine_errors, typed_problems, verdict

# Where a disk fills up: the very first open (schema creation), an incremental run, the CLI's message,
# a rebuild to the other bundle (which needs room for a second generation).
STAGES = ("first-open", "indexing", "cli", "rebuild")


def disk_full_trial(scene: Scene, mount: Path, level_kb: int, stage: str) -> Trial:
    """Fill the tmpfs to `level_kb` free, index there, check the refusal, free the space, check recovery."""
    diskfull.clear(mount)
    index_dir = mount / "index"
    if stage != "first-open":
        copy_index(scene.full if stage == "rebuild" else scene.earlier, index_dir)
    free = diskfull.fill(mount, level_kb)
    if stage == "rebuild":
        ended, problems = _rebuild_on_full_disk(scene, index_dir)
    else:
        ended, problems = _index_on_full_disk(scene, index_dir, stage)
    if stage != "first-open":
        problems += _answers_while_full(index_dir)
    diskfull.unfill(mount)
    problems += _recovery(scene, index_dir, stage, ended)
    diskfull.clear(mount)
    return verdict("disk-full", f"{stage}-{level_kb}KB", problems, free_kb=free, ended=ended, level_kb=level_kb,
                   stage=stage)


def _recovery(scene: Scene, index_dir: Path, stage: str, ended: str) -> list[str]:
    """With space back: the index is whole; a refused rebuild left the old one and the next one completes."""
    if stage != "rebuild":
        return check_trial(index_dir, scene.roots, loaded_bundle(scene.bundle), scene.reference)
    if ended == "completed":
        return check_trial(index_dir, scene.roots, loaded_bundle(scene.other_bundle), scene.other_reference)
    return old_index_untouched(scene, index_dir, published_ok=True) + next_rebuild(scene, index_dir)[0]


def _rebuild_on_full_disk(scene: Scene, index_dir: Path) -> tuple[str, list[str]]:
    from searchengine import open_index

    try:
        with open_index(index_dir, str(scene.other_bundle), rebuild=True) as idx:
            idx.index([str(r) for r in scene.roots])
    except Exception as exc:  # noqa: BLE001 — judged below
        return describe(exc), typed_problems(exc, storage=True)
    return "completed", []


def _index_on_full_disk(scene: Scene, index_dir: Path, stage: str) -> tuple[str, list[str]]:
    if stage == "cli":
        result = cli("index", scene.root, "--index", index_dir, "--bundle", scene.bundle)
        ended = "completed" if result.exit_code == 0 else result.output.strip()[:200]
        return ended, cli_problems(result, "index on a full disk", storage=True)
    from searchengine import open_index

    try:
        with open_index(index_dir, loaded_bundle(scene.bundle)) as idx:
            idx.index([str(r) for r in scene.roots])
    except Exception as exc:  # noqa: BLE001 — judged below
        return describe(exc), typed_problems(exc, storage=True)
    return "completed", []


def _answers_while_full(index_dir: Path) -> list[str]:
    """Reading needs no space: with the disk still full, the index opens and answers (or says StorageError)."""
    from searchengine import open_index

    _, storage_error = engine_errors()
    try:
        with open_index(index_dir) as idx:
            idx.status()
            idx.search(text="a photo", k=3)
    except Exception as exc:  # noqa: BLE001
        if storage_error is not None and isinstance(exc, storage_error):
            return typed_problems(exc, storage=True)
        return [f"with the disk still full the index does not answer: {describe(exc)}"]
    return []


def corruption_trial(scene: Scene, rel: Path, mode: str, workdir: Path, *, seed: int = 0,
                     page: int | None = None, layout: str = "first-build") -> Trial:
    """Damage one file of a complete index; FAISS files must be rebuilt, the rest repaired or refused cleanly."""
    cls = file_class(rel)
    name = f"{layout}/{rel}:{mode}" + (f"@{page}" if page else "") + (f"#{seed}" if seed else "")
    index_dir = copy_index(scene.layout(layout), Path(workdir) / name.replace("/", "_") / "index")
    what = damage(index_dir / rel, mode, seed=seed, page=page, dim=scene.reference_dim)
    cli_copy = copy_index(index_dir, index_dir.parent / "cli-copy")
    refused, problems = _library_ops(scene, index_dir)
    if refused and EXPECT[cls] == REPAIR:
        problems.append(f"refused instead of rebuilding from SQLite: {refused}")
    if not refused and not problems:
        problems += check_trial(index_dir, scene.roots, loaded_bundle(scene.bundle), scene.reference)
    problems += cli_problems(cli("status", "--index", cli_copy), "status")
    problems += cli_problems(cli("index", scene.root, "--index", cli_copy, "--bundle", scene.bundle), "index")
    return verdict("corruption", name, problems, damage=what, file_class=cls, expect=EXPECT[cls],
                   ended=refused or "repaired")


def _library_ops(scene: Scene, index_dir: Path) -> tuple[str | None, list[str]]:
    """Open, status, search, re-run. Returns (the typed refusal, if any, problems with it)."""
    from searchengine import open_index

    try:
        with open_index(index_dir, loaded_bundle(scene.bundle)) as idx:
            idx.status()
            idx.search(text="a photo", k=3)
            idx.index([str(r) for r in scene.roots])
    except Exception as exc:  # noqa: BLE001 — judged by typed_problems
        return describe(exc), typed_problems(exc)
    return None, []
