#!/usr/bin/env python3
"""Start-up time of the light commands: best of 3 wall times, and which model libraries each one loads.

    .venv/bin/python scripts/bench_startup.py [--index DIR] [--runs 3] [--no-write]

Runs the installed `searchengine` script beside this Python as a user would (a fresh process each time),
with an empty config file. `status` needs an index: without --index a small one is built first from three
sample photos with the bundled model. The table goes to stdout and, unless --no-write, into
docs/BENCHMARKS.md under the "Startup" heading (replacing an earlier one).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "searchengine"
HEAVY = ("torch", "open_clip", "faiss", "sqlalchemy", "faster_whisper", "ctranslate2", "PIL", "av")
LIMIT_S = 1.5
# What each row runs: (label, arguments, extra environment).
COMMANDS = [
    ("`searchengine --help`", ["--help"], {}),
    ("`searchengine bundles`", ["bundles"], {}),
    ("`searchengine status`", ["status", "--index", "{index}"], {}),
    ("`searchengine config`", ["config"], {}),
    ("`searchengine models`", ["models"], {}),
    ("completion script (`bash_source`)", [], {"_SEARCHENGINE_COMPLETE": "bash_source"}),
    ("completing `searchengine mo<TAB>`", [], {"_SEARCHENGINE_COMPLETE": "bash_complete",
                                               "COMP_WORDS": "searchengine mo", "COMP_CWORD": "1"}),
]
LOADED = ("import sys\nfrom searchengine.cli import cli\ntry:\n    cli(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
          f"print('LOADED', ','.join(m for m in {HEAVY!r} if m in sys.modules))")


def best_of(args: list[str], env: dict, runs: int) -> float:
    """The fastest of `runs` fresh processes (the others measure the machine's noise)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed: {result.stderr.strip()}")
    return min(times)


def loaded_modules(args: list[str], env: dict) -> str:
    """Which heavy libraries the command imports (completion runs outside the command: none of its own)."""
    if not args:
        return "-"
    out = subprocess.run([sys.executable, "-c", LOADED, *args], env=env, capture_output=True, text=True).stdout
    names = next((line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("LOADED ")), "?")
    return names.replace(",", ", ") if names.strip() else "none"


def build_index(folder: Path, env: dict) -> Path:
    photos = sorted((ROOT / "samples" / "media" / "photos").glob("*.jpg"))[:3]
    source = folder / "photos"
    source.mkdir()
    for photo in photos:
        (source / photo.name).write_bytes(photo.read_bytes())
    index = folder / "index"
    subprocess.run([str(SCRIPT), "index", str(source), "--index", str(index), "--bundle", "stamp-scenes-small"],
                   env=env, check=True, capture_output=True)
    return index


def table(rows: list[tuple[str, float, str]], runs: int) -> str:
    lines = ["| command | best of %d (s) | model libraries loaded |" % runs, "|---|---|---|"]
    lines += [f"| {label} | {seconds:.2f} | {loaded} |" for label, seconds, loaded in rows]
    return "\n".join(lines)


def write_section(text: str) -> Path:
    """Replace the "## Startup" section of docs/BENCHMARKS.md (or append one)."""
    path = ROOT / "docs" / "BENCHMARKS.md"
    doc = path.read_text()
    section = f"## Startup\n\n{text}\n"
    match = re.search(r"^## Startup\n.*?(?=^## |\Z)", doc, flags=re.S | re.M)
    doc = doc[:match.start()] + section + "\n" + doc[match.end():] if match else doc.rstrip() + "\n\n" + section
    path.write_text(doc.rstrip() + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, help="an index for `status` (default: build a small one)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.toml").write_text("")
        env = {**os.environ, "SEARCHENGINE_CONFIG": str(Path(tmp) / "config.toml")}
        index = options.index or build_index(Path(tmp), env)
        rows = []
        for label, args, extra in COMMANDS:
            args = [a.format(index=index) for a in args]
            run_env = {**env, **extra}
            rows.append((label, best_of(args, run_env, options.runs), loaded_modules(args, run_env)))
            print(f"{label:42} {rows[-1][1]:.2f} s   loads: {rows[-1][2]}", flush=True)
    machine = (f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, load average "
               f"{os.getloadavg()[0]:.1f} at the end: other jobs shared the CPUs when it is near or over their number")
    slow = [label for label, seconds, _ in rows if seconds >= LIMIT_S]
    models = [label for label, _, loaded in rows if "torch" in loaded or "open_clip" in loaded]
    text = (f"`scripts/bench_startup.py` ({machine}): wall time of a fresh process, best of {options.runs}, "
            f"with an empty config file; `status` on an index of 3 photos. Target: under {LIMIT_S} s each "
            f"({'met' if not slow else 'missed by ' + ', '.join(slow)}).\n\n" + table(rows, options.runs) + "\n\n"
            + ("No command here loads torch or open_clip." if not models
               else "Loading torch or open_clip: " + ", ".join(models) + "."))
    print("\n" + text)
    if not options.no_write:
        print(f"\nwritten to {write_section(text)}")


if __name__ == "__main__":
    main()
