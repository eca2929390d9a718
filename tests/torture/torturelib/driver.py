"""The child side: a fork server that imports the engine once, then forks one process per trial.

`python -m searchengine index` spends ~6 s importing torch and open_clip before it does anything on
this machine; a crash trial then lasts ~1 s. So this server imports the engine once (it never runs a
model: no thread pool is started before a fork) and forks a child per request. The child is a real
process running the real CLI (`searchengine.cli:cli`); it is SIGKILLed by its own hook or by the
server's timer, exactly as `kill -9` would. scripts/torture/run.py also kills a plain
`python -m searchengine` subprocess, so the fork server is not the only path tested.

Protocol: one JSON request per line on stdin, one JSON result per line on stdout.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import signal
import sys
import time
import traceback
from pathlib import Path

PRELOAD = ("torch", "open_clip", "faiss", "av", "PIL.Image", "sqlalchemy", "alembic.command",
           "searchengine.cli", "searchengine.index", "searchengine.search", "searchengine.bundles.bundle")
PRELOAD_PACKAGES = ("indexer", "searchengine.store")
POLL_S = 0.01


def preload() -> list[str]:
    """Import what a child needs; an engine module that fails to import is reported, not fatal."""
    failed = []
    for name in PRELOAD:
        failed += _try_import(name)
    for package in PRELOAD_PACKAGES:
        failed += _try_import(package)
        module = sys.modules.get(package)
        for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
            failed += _try_import(f"{package}.{info.name}")
    return failed


def _try_import(name: str) -> list[str]:
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 — an engine mid-edit must not stop the harness
        return [f"{name}: {type(exc).__name__}: {exc}"]
    return []


def serve() -> None:
    """Answer requests until stdin closes."""
    failed = preload()
    _reply({"ready": True, "pid": os.getpid(), "preload_failed": failed})
    for line in sys.stdin:
        if line.strip():
            _reply(run_request(json.loads(line)))


def _reply(data: dict) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def run_request(req: dict) -> dict:
    """Fork a child for one trial, watch it (timer kill, timeout, RSS cap), reap it, describe the end."""
    out = Path(req["out"])
    out.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(req, out)  # never returns
    watch = _watch(pid, req, start)
    watch["wall_s"] = round(time.monotonic() - start, 3)
    marker = out / "injected"
    watch["injected"] = marker.read_text() if marker.exists() else None
    return watch


def _watch(pid: int, req: dict, start: float) -> dict:
    kill_after, timeout = req.get("kill_after"), req.get("timeout", 120)
    rss_limit = req.get("rss_limit_mb")
    peak_kb, why = 0, None
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        elapsed = time.monotonic() - start
        peak_kb = max(peak_kb, _rss_kb(pid))
        if why is None:
            why = _reason_to_kill(elapsed, kill_after, timeout, rss_limit, peak_kb)
            if why:
                os.kill(pid, signal.SIGKILL)
        time.sleep(POLL_S)
    peak_kb = max(peak_kb, usage.ru_maxrss)
    result = {"pid": pid, "peak_rss_mb": round(peak_kb / 1024, 1), "killed_by": why}
    if os.WIFSIGNALED(status):
        result.update(returncode=None, signal=os.WTERMSIG(status))
    else:
        result.update(returncode=os.WEXITSTATUS(status), signal=None)
    return result


def _reason_to_kill(elapsed: float, kill_after, timeout, rss_limit, peak_kb: int) -> str | None:
    if kill_after is not None and elapsed >= kill_after:
        return "timer"
    if timeout is not None and elapsed >= timeout:
        return "timeout"
    if rss_limit is not None and peak_kb > rss_limit * 1024:
        return "rss_limit"
    return None


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _child(req: dict, out: Path) -> None:
    """Run the CLI in this forked process with stdout/stderr in files; exit as `python -m` would."""
    code = 1
    try:
        _redirect(out)
        os.chdir(req.get("cwd") or out)
        from . import inject

        inject.install(req.get("inject") or [], out)
        code = _run_cli(req["argv"])
    except BaseException:  # noqa: BLE001 — whatever escapes is what `python -m` would print
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _redirect(out: Path) -> None:
    for fd, name in ((1, "stdout"), (2, "stderr")):
        handle = os.open(out / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def _run_cli(argv: list[str]) -> int:
    from searchengine.cli import cli

    try:
        cli.main(args=argv, prog_name="searchengine", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    serve()
