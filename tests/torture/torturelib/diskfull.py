"""A real full disk: a small tmpfs mounted for the trial and filled to leave N KB free.

A fake ENOSPC raised from Python would miss what matters: SQLite's own writes (WAL, -shm, journal),
FAISS writing through C stdio, and the kernel's page granularity. Mounting needs root (or a user
namespace); where it is refused the trials are skipped with the reason `mount` gave.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

FILLER = ".torture-filler"
CHUNK = 64 * 1024


def mount_tmpfs(mountpoint: Path, size_kb: int) -> str | None:
    """Mount; None on success, else why it could not be done (the skip reason)."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        return "no `mount` command on this machine"
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return f"cannot mount a tmpfs here ({(proc.stderr or proc.stdout).strip() or 'mount failed'})"
    return None


def umount(mountpoint: Path) -> None:
    if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)  # busy: detach lazily


@contextmanager
def tmpfs(mountpoint: Path, size_kb: int):
    """Yield the mounted folder, or raise Unavailable with the reason."""
    reason = mount_tmpfs(mountpoint, size_kb)
    if reason:
        raise Unavailable(reason)
    try:
        yield mountpoint
    finally:
        umount(mountpoint)


class Unavailable(Exception):
    """No small filesystem can be had here."""


def free_kb(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize // 1024


def fill(mountpoint: Path, leave_kb: int) -> int:
    """Write a filler file until about `leave_kb` KB stay free; returns the free KB actually left."""
    filler = mountpoint / FILLER
    with open(filler, "ab", buffering=0) as out:  # unbuffered: a refused write is not retried at close
        while free_kb(mountpoint) > leave_kb:
            want = (free_kb(mountpoint) - leave_kb) * 1024
            try:
                out.write(b"\0" * min(CHUNK, max(want, 1)))
            except OSError:
                break
    return free_kb(mountpoint)


def unfill(mountpoint: Path) -> None:
    (mountpoint / FILLER).unlink(missing_ok=True)


def clear(mountpoint: Path) -> None:
    """Empty the filesystem between trials (the mount stays)."""
    for child in mountpoint.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
