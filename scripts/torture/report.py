"""The figures of a torture run, as Markdown: what docs/RELIABILITY.md quotes."""

from __future__ import annotations

import datetime
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def status(trial) -> str:
    """PASS, FAIL, or N/A: a swept injection point the engine never reaches (that call does not happen)."""
    if trial.ok:
        return "PASS"
    return "N/A" if trial.detail.startswith("injection point never reached") else "FAIL"


def record(trial) -> dict:
    return {"family": trial.family, "name": trial.name, "status": status(trial), "detail": trial.detail,
            "data": trial.data}


def engine_label(tree: Path | None) -> str:
    """Which engine was measured: a commit (and whether its tree had uncommitted changes), or a folder."""
    where = Path(tree or REPO)
    head = _git(where, "rev-parse", "--short", "HEAD")
    if not head:
        return f"engine tree {where}"
    dirty = _git(where, "status", "--porcelain", "--untracked-files=no", "--", "searchengine", "indexer", "alembic")
    return f"commit {head}" + (" with uncommitted engine changes" if dirty else "")


def _git(where: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=20)
        return done.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def summarise(trials: list, *, engine: str, seconds: float, trials_arg: int) -> str:
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = [f"## Torture run: {engine}", "",
             f"{when}, {len(trials)} trials in {seconds / 60:.1f} min (`--trials {trials_arg}`).", "",
             _families(trials), _kills(trials), _bad_inputs(trials), _disk_full(trials), _corruption(trials),
             _memory(trials), _failures(trials)]
    return "\n".join(p for p in parts if p is not None).rstrip()


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _families(trials: list) -> str:
    counts: dict[str, Counter] = defaultdict(Counter)
    for t in trials:
        counts[t.family][status(t)] += 1
    rows = [[f, sum(c.values()) - c["N/A"], c["PASS"], c["FAIL"], c["N/A"]] for f, c in counts.items()]
    return "### Trials by family\n\n" + _table(["family", "run", "passed", "failed", "n/a (point not reached)"], rows)


def _kills(trials: list) -> str | None:
    """Random kills can land after a short run ended; say how many really cut a run short."""
    lines = []
    for family in ("random-kill", "plain-kill", "rebuild"):
        timed = [t for t in trials if t.family == family and t.name.startswith(("random-kill", "plain-kill"))]
        if timed:
            landed = sum(1 for t in timed if t.data.get("killed"))
            lines.append(f"- {family}: {landed} of {len(timed)} timed kills landed before the run ended")
    return "\n".join(lines) + "\n" if lines else None


def _bad_inputs(trials: list) -> str | None:
    rows = []
    for t in (t for t in trials if t.family == "bad-input"):
        outcomes = t.data.get("outcomes") or {}
        bad = {Path(p).name: o for p, o in outcomes.items() if not Path(p).name.startswith("good.")}
        ended = "; ".join(f"`{n!r}`: {o[:90]}" for n, o in bad.items()) or t.data.get("run", t.detail[:120])
        rows.append([t.name, ended, status(t) + ("" if t.ok else f": {t.detail[:160]}")])
    return "### Bad inputs: how each run ended\n\n" + _table(["kind", "outcome", "verdict"], rows) if rows else None


def _disk_full(trials: list) -> str | None:
    by_stage: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"PASS": [], "FAIL": []})
    for t in (t for t in trials if t.family == "disk-full" and "stage" in t.data):
        by_stage[t.data["stage"]][status(t)].append(t.data["level_kb"])
    if not by_stage:
        return None
    rows = [[stage, len(v["PASS"]) + len(v["FAIL"]), _levels(v["PASS"]), _levels(v["FAIL"]) or "none"]
            for stage, v in by_stage.items()]
    return "### Disk full (tmpfs, KB left free)\n\n" + _table(["stage", "levels", "survived", "failed"], rows)


def _levels(levels: list[int]) -> str:
    return ", ".join(str(x) for x in sorted(levels))


def _corruption(trials: list) -> str | None:
    rows = [[t.name, t.data.get("damage", ""), t.data.get("expect", ""), (t.data.get("ended") or "")[:120],
             status(t) + ("" if t.ok else f": {t.detail[:160]}")]
            for t in trials if t.family == "corruption"]
    if not rows:
        return None
    return "### Corruption\n\n" + _table(["file:damage", "what was done", "must", "ended", "verdict"], rows)


def _memory(trials: list) -> str | None:
    rows = [[t.name, t.data.get("peak_rss_mb"), t.data.get("baseline_mb"), t.data.get("delta_mb"), t.data.get("wall_s"),
             status(t)] for t in trials if t.family == "memory"]
    if not rows:
        return None
    return "### Peak RSS of the indexer (MB)\n\n" + _table(
        ["input", "peak RSS", "tiny run (models)", "above the models", "seconds", "verdict"], rows)


def _failures(trials: list) -> str:
    failed = [t for t in trials if status(t) == "FAIL"]
    if not failed:
        return "### Failures\n\nnone\n"
    firsts: dict[str, list[str]] = defaultdict(list)
    for t in failed:
        firsts[t.family].append(f"- `{t.name}`: {t.detail[:300]}")
    body = []
    for family, lines in firsts.items():
        more = [f"- ... {len(lines) - 25} more"] if len(lines) > 25 else []
        body += [f"**{family}** ({len(lines)})", ""] + lines[:25] + more + [""]
    return "### Failures\n\n" + "\n".join(body)
