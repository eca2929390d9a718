"""SIGKILL trials: a child `searchengine index` dies at a chosen point or a random time; then the invariants.

Points are hooks (inject.py) on the engine's few writing functions; `nth` picks which call. Each
trial starts from a copy of a prepared index directory, so trials are independent and repeatable.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from .corrupt import copy_index
from .forkserver import ForkServer, random_delay, run_plain
from .state import check_saved, check_trial, check_vectors, compare, describe, guarded, loaded_bundle, snapshot
from .trials import Scene, Trial, verdict

ATOMIC = "searchengine.fileio:atomic_write"
SAVE = "searchengine.store.vectors:VectorStore.save"
WRITE = "searchengine.store.metadata:MetadataStore.write"
UPGRADE = "searchengine.store.migrate:upgrade"
DECODE = "searchengine.media:load_image"


def point(target: str, when: str, nth: int = 1, k: int = 1) -> list[dict]:
    return [{"target": target, "when": when, "nth": nth, "k": k}]


# name -> hooks; each kills the child once, at that place in an incremental run.
CRASH_POINTS = {
    "temp-file-half-written": point(ATOMIC, "atomic_mid"),
    "temp-file-before-rename": point(ATOMIC, "atomic_tmp"),
    "second-temp-file-half-written": point(ATOMIC, "atomic_mid", nth=2),
    "before-first-faiss-save": point(SAVE, "before"),
    "between-the-two-faiss-saves": point(SAVE, "after", nth=1),
    "inside-sqlite-transaction": point(WRITE, "sql", nth=2, k=2),
    "before-sqlite-commit": point(WRITE, "commit", nth=2),
    "after-a-sqlite-commit": point(WRITE, "after", nth=3),
    "mid-decode": point(DECODE, "before", nth=3),
}
# Kills during a rebuild to the other bundle (started from a complete index).
REBUILD_POINTS = {
    "after-first-commit": point(WRITE, "after", nth=1),
    "after-third-commit": point(WRITE, "after", nth=3),
    "before-faiss-save": point(SAVE, "before"),
    "between-faiss-saves": point(SAVE, "after", nth=1),
    "second-file-before-rename": point(ATOMIC, "atomic_tmp", nth=2),
}


def migration_point(k: int) -> list[dict]:
    """Die before the k-th SQL statement of the first open's migration."""
    return point(UPGRADE, "sql", k=k)


def index_argv(scene: Scene, index_dir: Path, *, rebuild: bool = False) -> list:
    bundle = scene.other_bundle if rebuild else scene.bundle
    return ["index", scene.root, "--index", index_dir, "--bundle", bundle, "--json", "--batch-size", "2"] \
        + (["--rebuild"] if rebuild else [])


def prepare(scene: Scene, index_dir: Path, start: str) -> None:
    """fresh: nothing; earlier: an index of the corpus's first state; full: a complete index."""
    shutil.rmtree(index_dir, ignore_errors=True)
    if start != "fresh":
        copy_index(scene.earlier if start == "earlier" else scene.full, index_dir)


def crash_trial(server: ForkServer, scene: Scene, name: str, workdir: Path, *, hooks: list[dict] = (),
                kill_after: float | None = None, start: str = "earlier", family: str = "crash") -> Trial:
    """Run the child, make sure it died where asked, then check the invariants against a clean run."""
    trial_dir = Path(workdir) / name
    index_dir = trial_dir / "index"
    prepare(scene, index_dir, start)
    child = server.run(index_argv(scene, index_dir), out=trial_dir / "child", inject=hooks, kill_after=kill_after)
    data = {"child": child.describe(), "died_at": child.injected, "killed": child.signal == 9, "start": start}
    if hooks and not child.died_at_hook:
        return Trial(family, name, False, f"injection point never reached: {child.describe()}", data)
    problems = _run_problems(child)
    problems += check_trial(index_dir, scene.roots, loaded_bundle(scene.bundle), scene.reference)
    return verdict(family, name, problems, **data)


def _run_problems(child) -> list[str]:
    if child.signal is None and child.returncode != 0:
        return [f"the run failed before any kill: {child.describe()}"]
    return []


def rebuild_trial(server: ForkServer, scene: Scene, name: str, workdir: Path, *, hooks: list[dict] = (),
                  kill_after: float | None = None) -> Trial:
    """Kill `index --rebuild --bundle OTHER`; the old index must be untouched, the next rebuild complete it."""
    trial_dir = Path(workdir) / name
    index_dir = trial_dir / "index"
    prepare(scene, index_dir, "full")
    child = server.run(index_argv(scene, index_dir, rebuild=True), out=trial_dir / "child", inject=hooks,
                       kill_after=kill_after)
    data = {"child": child.describe(), "died_at": child.injected, "killed": child.signal == 9}
    if hooks and not child.died_at_hook:
        return Trial("rebuild", name, False, f"injection point never reached: {child.describe()}", data)
    problems = _run_problems(child) + old_index_untouched(scene, index_dir, published_ok=True)
    finish, embedded = next_rebuild(scene, index_dir)
    data.update(embedded_by_next_rebuild=embedded, contents=scene.other_reference.contents)
    return verdict("rebuild", name, problems + finish, **data)


def searchable_during_rebuild(server: ForkServer, scene: Scene, workdir: Path, hooks: list[dict]) -> Trial:
    """Pause a live rebuild at `hooks` (action "pause"): meanwhile the old index opens, is whole and answers."""
    trial_dir = Path(workdir) / "searchable-during-rebuild"
    index_dir = trial_dir / "index"
    prepare(scene, index_dir, "full")
    out = server.submit(index_argv(scene, index_dir, rebuild=True), out=trial_dir / "child", inject=hooks)
    paused = server.wait_paused(out)
    problems = old_index_untouched(scene, index_dir) if paused else ["the rebuild never reached its pause point"]
    server.resume(out)
    child = server.collect(out)
    if child.returncode != 0:
        problems.append(f"the paused rebuild did not complete: {child.describe()}")
    else:
        problems += check_trial(index_dir, scene.roots, loaded_bundle(scene.other_bundle), scene.other_reference)
    return verdict("rebuild", "searchable-during-rebuild", problems, child=child.describe())


def old_index_untouched(scene: Scene, index_dir: Path, *, published_ok: bool = False) -> list[str]:
    """Opened without naming a bundle, the index is the old one, whole, and answers a search.

    With `published_ok`, the whole new index is fine too: a kill after the rebuild's publishing
    rename lands on a finished rebuild. A mixture of the two never is.
    """
    from searchengine import open_index

    try:
        with open_index(index_dir) as idx:
            snap = snapshot(idx)
            hits = idx.search(text="a photo", kind="any", k=3).hits
    except Exception as exc:  # noqa: BLE001
        return [f"old index after the killed rebuild: does not open or search: {describe(exc)}"]
    new = published_ok and snap.bundle == scene.other_reference.bundle
    problems = compare(snap, scene.other_reference if new else scene.reference)
    what = "published index after the killed rebuild" if new else "old index after the killed rebuild"
    return [f"{what}: {p}" for p in problems] + ([] if hits else [f"{what} answers no search"])


def next_rebuild(scene: Scene, index_dir: Path) -> tuple[list[str], int | None]:
    """Rebuild again to completion; it must equal a clean run with the other bundle. Returns (problems, embedded)."""
    from searchengine import open_index

    try:  # by folder, as the CLI passes it (a rebuild loads its bundle itself)
        with open_index(index_dir, str(scene.other_bundle), rebuild=True) as idx:
            report = idx.index([str(r) for r in scene.roots])
            problems = guarded("after the next rebuild", check_vectors, idx) + guarded("on disk", check_saved, idx)
            problems += guarded("after the next rebuild", lambda i: compare(snapshot(i), scene.other_reference), idx)
            return problems, report.embedded
    except Exception as exc:  # noqa: BLE001
        return [f"the next rebuild failed: {describe(exc)}"], None


def migration_trial(server: ForkServer, scene: Scene, k: int, workdir: Path) -> Trial:
    """Kill the very first open while it creates the schema; the next open must work."""
    return crash_trial(server, scene, f"first-migration-statement-{k}", workdir, hooks=migration_point(k),
                       start="fresh", family="migration")


def calibrate(server: ForkServer, scene: Scene, workdir: Path, start: str = "earlier") -> float:
    """Seconds a clean child run takes from this start: the range random kills are drawn from."""
    index_dir = Path(workdir) / f"calibrate-{start}" / "index"
    prepare(scene, index_dir, start)
    child = server.run(index_argv(scene, index_dir), out=index_dir.parent / "child")
    if child.returncode != 0:
        raise RuntimeError(f"a clean run fails, no crash trial can be judged: {child.describe()}")
    return child.wall_s


def random_kill_trials(server: ForkServer, scene: Scene, workdir: Path, count: int, seed: int,
                       start: str = "earlier") -> list[Trial]:
    """Kill at uniformly random times over a clean run's length (a few land after it ended: fine)."""
    rng = random.Random(seed)
    wall = calibrate(server, scene, workdir, start)
    return [crash_trial(server, scene, f"random-kill-{start}-{i}", workdir, start=start,
                        kill_after=random_delay(rng, 0.02, wall * 1.1), family="random-kill") for i in range(count)]


def calibrate_plain(scene: Scene, workdir: Path) -> float:
    """Seconds a clean `python -m searchengine index` takes here (imports included: most of it)."""
    index_dir = Path(workdir) / "calibrate-plain" / "index"
    prepare(scene, index_dir, "earlier")
    child = run_plain(index_argv(scene, index_dir))
    if child.returncode != 0:
        raise RuntimeError(f"a clean plain run fails, no kill of one can be judged: {child.describe()}")
    return child.wall_s


def plain_kill_trial(scene: Scene, workdir: Path, delay: float, name: str) -> Trial:
    """`python -m searchengine index` as its own process, kill -9 after `delay` s (no fork server at all)."""
    index_dir = Path(workdir) / name / "index"
    prepare(scene, index_dir, "earlier")
    child = run_plain(index_argv(scene, index_dir), kill_after=delay)
    problems = _run_problems(child) + check_trial(index_dir, scene.roots, loaded_bundle(scene.bundle), scene.reference)
    return verdict("plain-kill", name, problems, child=child.describe(), killed=child.signal == 9, delay=delay)
