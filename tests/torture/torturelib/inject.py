"""Fault injection for a child process: wrap engine functions so the child dies at a chosen point.

Nothing here edits the engine. A child installs hooks after the engine is imported, so a crash can
be placed exactly: mid temp-file write, before a rename, between the two kinds' FAISS saves, inside
a SQLite transaction, during the first migration. A hook names its target as "module:Qualified.name";
module-level functions are rebound in every engine module that imported them by name (``from
..fileio import atomic_write`` makes a second binding the defining module cannot see).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time
import types
from dataclasses import dataclass
from pathlib import Path

MARKER = "injected"  # file the child writes just before it kills itself
PAUSED, RESUME = "paused", "resume"  # a paused child waits for the parent to create RESUME
ENGINE_PACKAGES = ("searchengine", "indexer")
_lock = threading.Lock()  # decode threads call hooked functions concurrently
_armed: dict[str, "Armed"] = {}  # "sql" / "commit" -> the hook currently waiting inside a call


@dataclass
class Hook:
    """Where and how a child is hurt."""

    target: str  # "indexer.walk:content_hash", "searchengine.store.vectors:VectorStore.save", ...
    when: str = "before"  # before | after | sql | commit | atomic_mid | atomic_tmp
    nth: int = 1  # which matching call (1-based)
    k: int = 1  # when="sql": die before the k-th SQL statement issued inside that call
    match: str | None = None  # only calls with an argument whose str() contains this
    action: str = "kill"  # kill | vanish (delete `path`) | change (overwrite `path` with `source`) | pause
    path: str | None = None
    source: str | None = None

    def label(self, n: int) -> str:
        return f"{self.target}#{n}:{self.when}" + (f"@{self.k}" if self.when == "sql" else "")


@dataclass
class Armed:
    hook: Hook
    label: str
    out: Path
    count: int = 0


def die(out: Path, what: str) -> None:
    """Record where the child died, then SIGKILL it: no finally block, atexit or flush gets to run."""
    fd = os.open(out / MARKER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, what.encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def install(hooks: list[dict], out: Path) -> None:
    """Install every hook (dicts as sent over the fork server's pipe)."""
    if any(h.get("when") in ("sql", "commit") for h in hooks):
        _listen_to_sql()
    for spec in hooks:
        hook = Hook(**spec)
        owner, attr, original = _resolve(hook.target)
        _replace(owner, attr, original, _wrap(hook, original, out))


def _resolve(target: str):
    module_name, qualname = target.split(":")
    owner = importlib.import_module(module_name)
    *path, attr = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, attr, getattr(owner, attr)


def _replace(owner, attr: str, original, wrapper) -> None:
    setattr(owner, attr, wrapper)
    if not isinstance(owner, types.ModuleType):
        return  # a method: the class is the only binding
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(ENGINE_PACKAGES):
            continue
        for key, value in list(vars(module).items()):
            if value is original:
                setattr(module, key, wrapper)


def _wrap(hook: Hook, original, out: Path):
    calls = [0]

    def wrapper(*args, **kwargs):
        if hook.match is not None and not any(hook.match in str(a) for a in args):
            return original(*args, **kwargs)
        with _lock:
            calls[0] += 1
            n = calls[0]
        if n != hook.nth:
            return original(*args, **kwargs)
        label = hook.label(n)
        if hook.when == "before":
            _fire(hook, out, label)
            return original(*args, **kwargs)
        if hook.when in ("atomic_mid", "atomic_tmp"):
            return _atomic(hook, original, out, label, args, kwargs)
        if hook.when in ("sql", "commit"):
            _armed[hook.when] = Armed(hook, label, out)
            try:
                return original(*args, **kwargs)
            finally:
                _armed.pop(hook.when, None)  # the call ended without reaching the point
        result = original(*args, **kwargs)
        _fire(hook, out, label)
        return result

    wrapper.__wrapped__ = original
    return wrapper


def _fire(hook: Hook, out: Path, label: str) -> None:
    if hook.action == "kill":
        die(out, label)
    elif hook.action == "vanish":
        Path(hook.path).unlink(missing_ok=True)
    elif hook.action == "change":
        Path(hook.path).write_bytes(Path(hook.source).read_bytes())
    elif hook.action == "pause":
        _pause(out, label)
    _note(out, label)


def _pause(out: Path, label: str) -> None:
    """Hold the child at this point until the parent, having looked at the index meanwhile, says go on."""
    (out / PAUSED).write_text(label)
    while not (out / RESUME).exists():
        time.sleep(0.02)


def _note(out: Path, label: str) -> None:
    """Non-fatal hooks leave a trace too, so a trial can tell its point was reached."""
    with open(out / MARKER, "a") as handle:
        handle.write(label + "\n")


def _atomic(hook: Hook, original, out: Path, label: str, args, kwargs):
    """atomic_write(path, data, ...) with data replaced by a writer that dies once the temp file exists.

    atomic_mid cuts the temp file to half its length first (a write cut short); atomic_tmp leaves it
    whole (the crash falls between the write and the rename).
    """
    args = list(args)
    data = args[1] if len(args) > 1 else kwargs.pop("data")

    def dying_writer(tmp):
        if callable(data):
            data(tmp)
        else:
            Path(tmp).write_bytes(data.encode() if isinstance(data, str) else bytes(data))
        if hook.when == "atomic_mid":
            os.truncate(tmp, os.path.getsize(tmp) // 2)
        die(out, label)

    if len(args) > 1:
        args[1] = dying_writer
    else:
        kwargs["data"] = dying_writer
    return original(*args, **kwargs)


def _listen_to_sql() -> None:
    """SQLAlchemy events on the Engine class see every statement and commit of every engine."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def before_statement(*_args) -> None:
        armed = _armed.get("sql")
        if armed is not None:
            armed.count += 1
            if armed.count >= armed.hook.k:
                die(armed.out, armed.label)

    def before_commit(_conn) -> None:
        armed = _armed.get("commit")
        if armed is not None:
            die(armed.out, armed.label)

    event.listen(Engine, "before_cursor_execute", before_statement)
    event.listen(Engine, "commit", before_commit)
