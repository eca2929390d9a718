"""The parent side: start the fork server (driver.py), run trials in it, or run a plain subprocess."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRACEBACK = "Traceback (most recent call last)"


@dataclass
class Child:
    """How one child process ended."""

    returncode: int | None  # None when a signal ended it
    signal: int | None
    killed_by: str | None  # "timer", "timeout", "rss_limit" (the server's kill), None
    injected: str | None  # the hook label the child died at (or passed, for non-fatal hooks)
    wall_s: float
    peak_rss_mb: float
    stdout: str = ""
    stderr: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def hung(self) -> bool:
        return self.killed_by == "timeout"

    @property
    def traceback(self) -> bool:
        return TRACEBACK in self.stderr

    @property
    def died_at_hook(self) -> bool:
        return self.signal == signal.SIGKILL and self.killed_by is None and bool(self.injected)

    def describe(self) -> str:
        end = f"signal {self.signal}" if self.signal else f"exit {self.returncode}"
        tail = self.stderr.strip().splitlines()[-1:] if self.stderr.strip() else []
        return f"{end} after {self.wall_s:.1f}s" + (f" ({self.killed_by})" if self.killed_by else "") + \
            (f"; stderr: {tail[0][:300]}" if tail else "")


def child_env() -> dict:
    """The environment for children: the harness importable, no GPU surprises, quiet progress."""
    env = dict(os.environ)
    paths = [str(HERE.parent)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ForkServer:
    """One driver process; `run` forks a child per trial. Restarts itself if the server dies."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.preload_failed: list[str] = []
        self.count = 0

    def start(self) -> "ForkServer":
        log = open(self.log_dir / "forkserver.stderr", "ab")
        # A neutral working directory: `-m` puts the cwd first on sys.path, and a checkout's cwd would
        # shadow the engine tree named in PYTHONPATH (scripts/torture/run.py --engine).
        self.proc = subprocess.Popen([sys.executable, "-m", "torturelib.driver"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log, env=child_env(), text=True, bufsize=1,
                                     cwd=self.log_dir)
        log.close()
        hello = self._read()
        self.preload_failed = hello.get("preload_failed", [])
        return self

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            err = (self.log_dir / "forkserver.stderr").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the torture fork server died: {err}")
        return json.loads(line)

    def run(self, argv: list, *, out: Path | None = None, inject: list[dict] = (), kill_after: float | None = None,
            timeout: float = 120, rss_limit_mb: float | None = None) -> Child:
        """Run `searchengine ARGV` in a fresh child; see Child for what comes back."""
        out = self.submit(argv, out=out, inject=inject, kill_after=kill_after, timeout=timeout,
                          rss_limit_mb=rss_limit_mb)
        return self.collect(out)

    def submit(self, argv: list, *, out: Path | None = None, inject: list[dict] = (), kill_after: float | None = None,
               timeout: float = 120, rss_limit_mb: float | None = None) -> Path:
        """Start a child and return at once (its folder); `collect` waits for its end. One child at a time."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.count += 1
        out = Path(out or self.log_dir / f"child-{self.count}")
        out.mkdir(parents=True, exist_ok=True)
        for stale in ("injected", "stdout", "stderr", "paused", "resume"):
            (out / stale).unlink(missing_ok=True)
        req = {"argv": [str(a) for a in argv], "out": str(out), "inject": list(inject),
               "kill_after": kill_after, "timeout": timeout, "rss_limit_mb": rss_limit_mb}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return out

    def collect(self, out: Path) -> Child:
        res = self._read()
        return Child(res["returncode"], res["signal"], res["killed_by"], res["injected"], res["wall_s"],
                     res["peak_rss_mb"], _text(out / "stdout"), _text(out / "stderr"))

    @staticmethod
    def wait_paused(out: Path, timeout: float = 60) -> bool:
        """Wait for a child with a "pause" hook to reach it; False if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (out / "paused").exists():
                return True
            time.sleep(0.02)
        return False

    @staticmethod
    def resume(out: Path) -> None:
        (out / "resume").write_text("go on\n")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def run_plain(argv: list, *, kill_after: float | None = None, timeout: float = 300) -> Child:
    """`python -m searchengine ARGV` as its own process (no fork server), optionally kill -9 after a delay."""
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "searchengine", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=child_env(), text=True, cwd=tempfile.gettempdir())
    killed_by = None
    try:
        stdout, stderr = proc.communicate(timeout=kill_after if kill_after is not None else timeout)
    except subprocess.TimeoutExpired:
        killed_by = "timer" if kill_after is not None else "timeout"
        proc.send_signal(signal.SIGKILL)
        stdout, stderr = proc.communicate()
    code = proc.returncode
    return Child(code if code >= 0 else None, -code if code < 0 else None, killed_by, None,
                 round(time.monotonic() - start, 3), 0.0, stdout, stderr)


def random_delay(rng: random.Random, low: float, high: float) -> float:
    """A kill time drawn uniformly: the crash can land anywhere in the run, including its start."""
    return round(rng.uniform(low, high), 3)
