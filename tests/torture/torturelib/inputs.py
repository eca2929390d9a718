"""Trials on what the user points the engine at: hostile files, huge photos, roots that go offline."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import badinput
from .corpus import bomb_png, large_photos, make_image, tone, write_wav
from .forkserver import ForkServer
from .state import check_vectors, compare, describe, guarded, loaded_bundle, snapshot
from .trials import Trial, cli, cli_problems, verdict

MATCHES = {"indexed": ("indexed",), "skipped": ("skipped",), "either": ("indexed", "skipped"),
           "any": ("indexed", "skipped", "gone", "dropped")}


def _as_stored(path: str) -> str:
    """How the engine records a path: undecodable bytes (surrogate escapes) become U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def classify(index_dir: Path, targets: dict[str, str]) -> dict[str, str]:
    """How each target ended: 'indexed as KIND', 'skipped: REASON', 'gone' (deleted) or 'dropped' (no trace)."""
    from searchengine import open_index

    with open_index(index_dir, create=False) as idx:
        indexed = snapshot(idx).indexed
        skipped = {s.path: s.reason for s in idx.status().skipped}
    outcomes = {}
    for path in targets:
        # A name that is not UTF-8 is recorded with U+FFFD where its bad bytes were.
        path_key = _as_stored(path) if _as_stored(path) in skipped else path
        if path_key in indexed:
            outcomes[path] = f"indexed as {indexed[path_key][0]}"
        elif path_key in skipped:
            outcomes[path] = f"skipped: {skipped[path_key]}" if skipped[path_key] else "skipped with no reason"
        else:
            outcomes[path] = "dropped silently" if os.path.lexists(path) else "gone"
    return outcomes


def expectation_problems(targets: dict[str, str], outcomes: dict[str, str]) -> list[str]:
    problems = []
    for path, expect in targets.items():
        got = outcomes[path]
        ok = got.split()[0].rstrip(":") in MATCHES[expect] and got != "skipped with no reason"
        if expect == "indexed" and ok:  # the kind its name promises, not the other one's content
            ok = got == f"indexed as {_kind_of(path)}"
        if not ok:
            problems.append(f"{Path(path).name!r}: {got[:160]} (expected {expect})")
    return problems


def _kind_of(path: str) -> str:
    from searchengine.media import kind_of_path

    found = kind_of_path(path)
    return found.value if found is not None else "?"


def child_problems(child, what: str) -> list[str]:
    """A run on bad input must end by itself, exit 0 and print no traceback."""
    if child.hung:
        return [f"{what} hung (killed after {child.wall_s:.0f} s)"]
    if child.traceback:
        return [f"{what} printed a traceback: {child.stderr.strip().splitlines()[-1][:200]}"]
    if child.signal:
        return [f"{what} died of signal {child.signal} ({child.killed_by or 'not by us'})"]
    if child.returncode != 0:
        return [f"{what} exited {child.returncode}: {child.stderr.strip()[-200:]}"]
    return []


def bad_input_trial(server: ForkServer, name: str, workdir: Path, bundle: Path, *, timeout: float = 30) -> Trial:
    """Index one kind's folder twice in children; record each target's outcome; the re-run must change nothing."""
    base = Path(workdir) / name
    badinput.remove(base)
    case = badinput.build(name, base / "media")
    argv = ["index", base / "media", "--index", base / "index", "--bundle", bundle, "--json"]
    first = server.run(argv, out=base / "run1", inject=case.hooks, timeout=timeout)
    problems = child_problems(first, "the run")
    data = {"run": first.describe(), "wall_s": first.wall_s, "outcomes": {}}
    if first.hung or first.traceback or first.signal:
        return verdict("bad-input", name, problems, **data)
    if case.hooks and not first.injected:
        problems.append("the mid-run change never happened (its hook was not reached)")
    try:
        data["outcomes"] = classify(base / "index", case.targets)
    except Exception as exc:  # noqa: BLE001
        return verdict("bad-input", name, problems + [f"the index does not open: {describe(exc)}"], **data)
    problems += expectation_problems(case.targets, data["outcomes"])
    reference = _reference(server, case, base, bundle, argv, timeout)
    second = server.run(argv, out=base / "run2", timeout=timeout)
    problems += child_problems(second, "the re-run")
    if not second.hung:
        problems += _final_state(base / "index", reference)
    return verdict("bad-input", name, problems, **data)


def _reference(server, case, base: Path, bundle: Path, argv: list, timeout: float):
    """What the re-run must end equal to: a clean run of the final input (the input changed) or the first run."""
    from searchengine import open_index

    index_dir = base / "index"
    if case.mutates:
        index_dir = base / "clean-index"
        clean_argv = ["index", base / "media", "--index", index_dir, "--bundle", bundle]
        server.run(clean_argv, out=base / "clean", timeout=timeout)
    with open_index(index_dir, create=False) as idx:
        return snapshot(idx)


def _final_state(index_dir: Path, reference) -> list[str]:
    from searchengine import open_index

    try:
        with open_index(index_dir, create=False) as idx:
            return guarded("after the re-run", check_vectors, idx) + \
                guarded("after the re-run", lambda i: compare(snapshot(i), reference), idx)
    except Exception as exc:  # noqa: BLE001
        return [f"after the re-run the index does not open: {describe(exc)}"]


def memory_inputs(workdir: Path, photos: int = 24, side: int = 7000) -> dict[str, Path]:
    """Folders for the memory trial: big JPEGs, big PNGs, one PNG bomb, four distinct bombs decoded together."""
    base = Path(workdir)
    shutil.rmtree(base, ignore_errors=True)
    make_image(base / "small/one.png", 1)
    write_wav(base / "small/one.wav", tone(1, 0.5))
    large_photos(base / f"photos-{photos}x{side}", photos, side)
    large_photos(base / f"pngs-{photos // 2}x{side}", photos // 2, side, fmt="PNG")
    bomb_png(base / "one-bomb/bomb.png")
    bomb = bomb_png(base / "four-bombs/bomb0.png").read_bytes()
    for i in range(1, 4):
        (base / f"four-bombs/bomb{i}.png").write_bytes(bomb + bytes([i]))  # distinct hashes, same decode
    megapixels = f"{side * side / 1e6:.0f}MP"
    return {"baseline": base / "small", f"{photos}-photos-of-{megapixels}": base / f"photos-{photos}x{side}",
            f"{photos // 2}-pngs-of-{megapixels}": base / f"pngs-{photos // 2}x{side}",
            "one-9999x9999-png-bomb": base / "one-bomb", "four-png-bombs": base / "four-bombs"}


def memory_trials(server: ForkServer, workdir: Path, bundle: Path, inputs: dict[str, Path], *,
                  budget_mb: float = 2048, cap_mb: float = 4096, timeout: float = 600) -> list[Trial]:
    """Peak RSS of the indexer above a tiny run's (the models): under `budget_mb`; killed past `cap_mb`."""
    def run(name: str, folder: Path, limit):
        return server.run(["index", folder, "--index", Path(workdir) / f"index-{name}", "--bundle", bundle, "--json"],
                          out=Path(workdir) / f"run-{name}", timeout=timeout, rss_limit_mb=limit)

    base = run("baseline", inputs["baseline"], None)
    trials = []
    for name, folder in inputs.items():
        if name == "baseline":
            continue
        child = run(name, folder, base.peak_rss_mb + cap_mb)
        delta = round(child.peak_rss_mb - base.peak_rss_mb, 1)
        problems = child_problems(child, "the run") if child.killed_by != "rss_limit" else \
            [f"RSS passed {cap_mb:.0f} MB above the models: killed to protect the machine"]
        if delta >= budget_mb:
            problems.append(f"peak RSS {delta:.0f} MB above the models (budget {budget_mb:.0f} MB)")
        trials.append(verdict("memory", name, problems, peak_rss_mb=child.peak_rss_mb, baseline_mb=base.peak_rss_mb,
                              delta_mb=delta, wall_s=child.wall_s, run=child.describe()))
    return trials


def offline_root_trial(workdir: Path, bundle: Path) -> Trial:
    """A root missing in a later run keeps its entries and is reported offline; `index --prune` drops them."""
    from searchengine import open_index

    base = Path(workdir) / "offline"
    shutil.rmtree(base, ignore_errors=True)
    roots = [base / "internal", base / "usb-drive"]
    for i, root in enumerate(roots):
        make_image(root / "p.png", 60 + i)
        write_wav(root / "v.wav", tone(60 + i, 0.7))
    with open_index(base / "index", loaded_bundle(bundle)) as idx:
        idx.index([str(r) for r in roots])
        before = snapshot(idx)
    roots[1].rename(base / "unplugged")
    run = cli("index", *roots, "--index", base / "index", "--bundle", bundle, "--json")
    problems = cli_problems(run, "index with a root offline")
    if run.exit_code == 0 and not ("offline" in run.output.lower() and str(roots[1]) in run.output):
        problems.append(f"the run does not report {roots[1].name} as offline: {run.output.strip()[:200]}")
    problems += _lost(base / "index", before.paths(), "after a run with the root offline")
    pruned = cli("index", *roots, "--index", base / "index", "--bundle", bundle, "--prune")
    if pruned.exit_code != 0:
        problems.append(f"`index --prune` failed: {pruned.output.strip()[:200]}")
    else:
        with open_index(base / "index", create=False) as idx:
            kept = {p for p in snapshot(idx).paths() if p.startswith(f"{roots[1]}/")}
        if kept:
            problems.append(f"--prune kept {len(kept)} entries of the missing root")
        problems += _lost(base / "index", {p for p in before.paths() if p.startswith(f"{roots[0]}/")}, "after --prune")
    return verdict("lifecycle", "offline-root-then-prune", problems)


def _lost(index_dir: Path, wanted: set[str], when: str) -> list[str]:
    from searchengine import open_index

    with open_index(index_dir, create=False) as idx:
        lost = wanted - snapshot(idx).paths()
    return [f"{when}: {len(lost)} entries lost, e.g. {sorted(lost)[:2]}"] if lost else []


def twin_link_trial(workdir: Path, bundle: Path, first: str, second: str) -> Trial:
    """Index `first`, then add `second` with the same bytes: it is judged on its own, not linked across kinds."""
    from searchengine import open_index

    base = Path(workdir) / f"twin-{first}-{second}"
    shutil.rmtree(base, ignore_errors=True)
    if first.endswith(".wav"):
        write_wav(base / "media" / first, tone(70, 0.8))
    else:
        make_image(base / "media" / first, 70, fmt="PNG")
    with open_index(base / "index", loaded_bundle(bundle)) as idx:
        idx.index([str(base / "media")])
        (base / "media" / second).write_bytes((base / "media" / first).read_bytes())
        idx.index([str(base / "media")])
    targets = {str(base / "media" / first): "indexed", str(base / "media" / second): "skipped"}
    return verdict("bad-input", f"twin-in-a-later-run-{first}-then-{second}",
                   expectation_problems(targets, classify(base / "index", targets)))
