"""Whether the model hub that open_clip and faster-whisper fetch from can be reached right now.

Checked before any download so an offline machine fails at once with a useful message instead
of spending a minute in the hub client's retries.
"""

from __future__ import annotations

import functools
import os
import socket
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
