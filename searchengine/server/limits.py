"""What keeps slow or hostile clients from holding the server: how long a request body may stall, and how
many searches may be received and decoded at once. The app enforces these itself, so they hold under any
ASGI server (and in tests); `serving.py` adds the guards that only the HTTP layer can give."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

from ..errors import ArgumentError
from .uploads import ApiError


@dataclass(frozen=True)
class Limits:
    """The server's bounds; the defaults suit one person's library on one machine."""

    # Seconds each piece of a request body may take to arrive: a client that stalls gets 408 and is dropped.
    body_timeout: float = 20.0
    # Searches being received, waiting or running at once; more get 503 at once instead of queueing without
    # bound (each may hold an upload of up to the upload limit in memory).
    max_uploads: int = 16
    # Searches decoding and encoding at once: one decoded photo can take gigabytes, so only this many run and
    # the others wait for a slot.
    max_searches: int = 2
    # How long an accepted search waits for a decode slot before it gets 503.
    search_wait: float = 60.0

    def __post_init__(self):
        if self.body_timeout <= 0 or self.search_wait < 0 or self.max_uploads < 1 or self.max_searches < 1:
            raise ArgumentError(f"invalid server limits: {self}")


class Gate:
    """At most `size` holders at once; a caller that cannot get in says so as a JSON 503, never waits forever."""

    def __init__(self, size: int, busy_message: str):
        self._slots = asyncio.Semaphore(size)
        self._busy = busy_message

    @asynccontextmanager
    async def enter_now(self) -> AsyncIterator[None]:
        """Enter if a slot is free, else 503 at once (checking and taking cannot interleave: no await between)."""
        if self._slots.locked():
            raise ApiError(503, self._busy, {"Retry-After": "5"})
        async with self._slots:
            yield

    @asynccontextmanager
    async def enter_within(self, seconds: float) -> AsyncIterator[None]:
        """Enter once a slot frees up, or 503 after `seconds`."""
        try:
            await asyncio.wait_for(self._slots.acquire(), seconds)
        except asyncio.TimeoutError:
            raise ApiError(503, self._busy, {"Retry-After": "5"}) from None
        try:
            yield
        finally:
            self._slots.release()
