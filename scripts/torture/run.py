"""Long torture runs: every bad input, swept crash points, hundreds of random kills, many disk-full levels.

    .venv/bin/python scripts/torture/run.py --trials 200 --out docs/torture-results.md --json results.json
    .venv/bin/python scripts/torture/run.py --families crash,disk-full --trials 50
    .venv/bin/python scripts/torture/run.py --engine /tmp/old-checkout ...   # measure another engine tree

The trial code is tests/torture/torturelib (the CI suite runs the same functions with small counts).
Prints one line per trial and a summary; exits 1 when any trial failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "torture"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

FAMILIES = ("bad-input", "crash", "rebuild", "migration", "random-kill", "plain-kill", "disk-full", "corruption",
            "memory", "lifecycle")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100, help="random-kill trials per start state (and sweep depth)")
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset of: " + ", ".join(FAMILIES))
    ap.add_argument("--out", type=Path, help="write the Markdown summary here")
    ap.add_argument("--json", type=Path, help="write every trial record here")
    ap.add_argument("--workdir", type=Path, help="scratch folder (default: a new temp folder)")
    ap.add_argument("--engine", type=Path, help="import the engine from this tree instead of the installed one")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hang-timeout", type=float, default=60.0, help="seconds before a bad-input run counts as hung")
    ap.add_argument("--memory-cap-mb", type=float, default=5120, help="kill a memory trial this far above the models")
    return ap.parse_args(argv)


def use_engine(tree: Path | None) -> None:
    """Put another engine tree first on the path, for this process and every child it starts."""
    if tree is None:
        return
    tree = tree.resolve()
    sys.path.insert(0, str(tree))
    rest = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    os.environ["PYTHONPATH"] = os.pathsep.join([str(tree), *rest])


class Runner:
    """Holds what every family needs and collects the trials as they finish."""

    def __init__(self, args: argparse.Namespace):
        from torturelib.corpus import build_bundles
        from torturelib.forkserver import ForkServer
        from torturelib.trials import make_scene

        self.args = args
        self.rng = random.Random(args.seed)
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix="torture-")).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.bundle, self.other = build_bundles(self.work / "bundles")
        self.scene = make_scene(self.work / "scene", self.bundle, self.other)
        self.server = ForkServer(self.work / "forkserver").start()
        self.trials = []

    def add(self, trial) -> None:
        from report import status

        self.trials.append(trial)
        why = f": {trial.detail[:400]}" if not trial.ok else ""
        print(f"{status(trial):4}  {trial.family:11} {trial.name}{why}", flush=True)

    def close(self) -> None:
        self.server.close()


def run_bad_input(r: Runner) -> None:
    from torturelib import badinput, inputs

    for kind in badinput.KINDS:
        r.add(inputs.bad_input_trial(r.server, kind, r.work / "bad-input", r.bundle, timeout=r.args.hang_timeout))
    for first, second in (("twin.wav", "twin.jpg"), ("twin.png", "twin.wav")):
        r.add(inputs.twin_link_trial(r.work / "twins", r.bundle, first, second))


def crash_sweep(depth: int) -> dict[str, list[dict]]:
    """Every hook target at its every call up to `depth` (calls that never happen come back as n/a)."""
    from torturelib import crash

    points = {}
    for nth in range(1, depth + 1):
        points[f"temp-file-half-written#{nth}"] = crash.point(crash.ATOMIC, "atomic_mid", nth)
        points[f"temp-file-before-rename#{nth}"] = crash.point(crash.ATOMIC, "atomic_tmp", nth)
        points[f"temp-file-after-rename#{nth}"] = crash.point(crash.ATOMIC, "after", nth)
        points[f"before-faiss-save#{nth}"] = crash.point(crash.SAVE, "before", nth)
        points[f"after-faiss-save#{nth}"] = crash.point(crash.SAVE, "after", nth)
        points[f"before-sqlite-commit#{nth}"] = crash.point(crash.WRITE, "commit", nth)
        points[f"after-sqlite-commit#{nth}"] = crash.point(crash.WRITE, "after", nth)
        for k in (1, 2, 3):
            points[f"inside-sqlite-transaction#{nth}@{k}"] = crash.point(crash.WRITE, "sql", nth, k)
        points[f"before-decode#{nth}"] = crash.point(crash.DECODE, "before", nth)
    return points


def run_crash(r: Runner) -> None:
    from torturelib import crash

    depth = max(3, min(8, r.args.trials // 20))
    for start in ("earlier", "fresh"):
        for name, hooks in crash_sweep(depth).items():
            r.add(crash.crash_trial(r.server, r.scene, f"{start}:{name}", r.work / "crash", hooks=hooks, start=start))


def run_rebuild(r: Runner) -> None:
    from torturelib import crash

    depth = max(3, min(8, r.args.trials // 20))
    for name, hooks in crash_sweep(depth).items():
        r.add(crash.rebuild_trial(r.server, r.scene, name, r.work / "rebuild", hooks=hooks))
    for nth in range(1, depth + 1):
        pause = [{"target": crash.WRITE, "when": "after", "nth": nth, "action": "pause"}]
        trial = crash.searchable_during_rebuild(r.server, r.scene, r.work / "rebuild", pause)
        trial.name += f"-after-commit-{nth}"
        r.add(trial)
    wall = crash.calibrate(r.server, r.scene, r.work / "rebuild", start="full") * 1.5
    for i in range(max(5, r.args.trials // 10)):
        r.add(crash.rebuild_trial(r.server, r.scene, f"random-kill-{i}", r.work / "rebuild",
                                  kill_after=round(r.rng.uniform(0.02, wall), 3)))


def run_migration(r: Runner) -> None:
    from torturelib import crash

    for k in range(1, 31):
        r.add(crash.migration_trial(r.server, r.scene, k, r.work / "migration"))


def run_random_kill(r: Runner) -> None:
    from torturelib import crash

    for start in ("earlier", "fresh", "full"):
        for trial in crash.random_kill_trials(r.server, r.scene, r.work / "random", r.args.trials,
                                              seed=r.rng.randrange(1 << 30), start=start):
            r.add(trial)


def run_plain_kill(r: Runner) -> None:
    """The real entry point, its imports included: kill -9 anywhere in the length of a clean run."""
    from torturelib import crash

    wall = crash.calibrate_plain(r.scene, r.work / "plain")
    for i in range(max(3, r.args.trials // 20)):
        delay = round(r.rng.uniform(0.3 * wall, wall), 2)
        r.add(crash.plain_kill_trial(r.scene, r.work / "plain", delay, f"plain-kill-{i}-at-{delay}s"))


def run_disk_full(r: Runner) -> None:
    from torturelib import damage, diskfull
    from torturelib.trials import Trial

    levels = list(range(0, 257, 8)) + [300, 400, 600, 1000]
    try:
        with diskfull.tmpfs(r.work / "tmpfs", 4096) as mount:
            for level in levels:
                for stage in damage.STAGES:
                    r.add(damage.disk_full_trial(r.scene, mount, level, stage))
    except diskfull.Unavailable as exc:
        r.add(Trial("disk-full", "all levels", True, f"skipped: {exc}", {"skipped": str(exc)}))


def run_corruption(r: Runner) -> None:
    from torturelib import corrupt, damage

    seeds = max(1, r.args.trials // 50)
    for layout in ("first-build", "after-rebuild"):
        source = r.scene.layout(layout)
        for rel, mode in corrupt.cases(source):
            if mode == "garble-page":
                for page in range(1, corrupt.sqlite_pages(source / rel) + 1):
                    r.add(damage.corruption_trial(r.scene, rel, mode, r.work / "corrupt", page=page, layout=layout))
                continue
            for seed in range(seeds if mode == "random" else 1):
                r.add(damage.corruption_trial(r.scene, rel, mode, r.work / "corrupt", seed=seed, layout=layout))


def run_memory(r: Runner) -> None:
    from torturelib import inputs

    folders = inputs.memory_inputs(r.work / "memory-inputs")
    for trial in inputs.memory_trials(r.server, r.work / "memory", r.bundle, folders, cap_mb=r.args.memory_cap_mb):
        r.add(trial)


def run_lifecycle(r: Runner) -> None:
    from torturelib import inputs

    r.add(inputs.offline_root_trial(r.work, r.bundle))


RUNS = {"bad-input": run_bad_input, "crash": run_crash, "rebuild": run_rebuild, "migration": run_migration,
        "random-kill": run_random_kill, "plain-kill": run_plain_kill, "disk-full": run_disk_full,
        "corruption": run_corruption, "memory": run_memory, "lifecycle": run_lifecycle}


def main(argv=None) -> int:
    args = parse_args(argv)
    use_engine(args.engine)
    import report

    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = set(families) - set(RUNS)
    if unknown:
        raise SystemExit(f"unknown families: {', '.join(sorted(unknown))}")
    start = time.monotonic()
    runner = Runner(args)
    try:
        for family in families:
            RUNS[family](runner)
    finally:
        runner.close()
    summary = report.summarise(runner.trials, engine=report.engine_label(args.engine), seconds=time.monotonic() - start,
                               trials_arg=args.trials)
    print(summary)
    if args.out:
        args.out.write_text(summary + "\n")
    if args.json:
        args.json.write_text(json.dumps([report.record(t) for t in runner.trials], indent=1, default=str))
    return 1 if any(report.status(t) == "FAIL" for t in runner.trials) else 0


if __name__ == "__main__":
    sys.exit(main())
