"""The model hub that open_clip and faster-whisper fetch from: can it be reached, what does its cache hold.

Checked before any download so an offline machine fails at once with a useful message instead
of spending a minute in the hub client's retries, and so weights already in the cache are used
without asking the hub at all.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from urllib.parse import urlparse


def hub_reachable() -> bool:
    """True when offline mode is not forced and the hub endpoint accepts a TCP connection."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        return False
    return _endpoint_answers()


@functools.lru_cache(maxsize=1)
def _endpoint_answers(timeout: float = 3.0) -> bool:
    """Probed once per process: the answer will not change within one run."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- what the hub cache holds
# Looked up by name, the way huggingface_hub's own `try_to_load_from_cache` does (a test checks that they
# agree), so finding a model needs neither the network nor the libraries that download it.


def hub_cache() -> Path:
    """The folder open_clip and faster-whisper download into (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants  # plain constants: milliseconds, not the client

    return Path(constants.HF_HUB_CACHE)


def repo_folder(repo_id: str) -> Path:
    """Where the cache keeps a model repo (whether or not anything is there yet)."""
    return hub_cache() / ("models--" + repo_id.replace("/", "--"))


def cached_snapshot(repo_id: str, needed: tuple[str, ...] = (), revision: str = "main") -> Path | None:
    """The cached snapshot folder of `repo_id` at `revision` when it holds every file in `needed`."""
    refs = repo_folder(repo_id) / "refs" / revision
    try:
        commit = refs.read_text()
    except OSError:
        return None
    snapshot = repo_folder(repo_id) / "snapshots" / commit
    return snapshot if snapshot.is_dir() and all((snapshot / name).is_file() for name in needed) else None


def cached_file(repo_id: str, filenames: tuple[str, ...], revision: str = "main") -> Path | None:
    """The first of `filenames` (best first) that the cache holds for `repo_id`, or None."""
    snapshot = cached_snapshot(repo_id, revision=revision)
    if snapshot is None:
        return None
    return next((snapshot / name for name in filenames if (snapshot / name).is_file()), None)
