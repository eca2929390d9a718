"""How `searchengine serve` runs the app under uvicorn: guards only the HTTP layer can give, and a clean log.

The app bounds what it reads (limits.py); this module covers what happens before and around it:
- a client must finish its request headers within the read timeout (uvicorn waits forever for them), and
  must not trickle the rest of a body the app already answered;
- a client that half-closes mid-body (the body is shorter than its Content-Length) still gets an answer
  (uvicorn closes the socket at once, so the client sees no response at all);
- access tokens passed as ?token= never reach the access log.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s\"]*")
KEEP_ALIVE_S = 5  # uvicorn's default: an idle keep-alive connection closes after this


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on every wait for the client that no app code is covering.

    It reaches into uvicorn's per-request state (cycle.more_body, message_event, keep_alive); the tests in
    test_server_robustness.py exercise each path over real sockets, so an uvicorn change that breaks it shows."""

    def __init__(self, *args, read_timeout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a client that connects and sends nothing is dropped too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # cancels uvicorn's keep-alive timer, so the deadline below replaces it
        if self._client_owes_bytes_nobody_reads():
            self._arm()  # not re-armed per piece: the whole header block must arrive within the timeout
        else:
            self._disarm()

    def _client_owes_bytes_nobody_reads(self) -> bool:
        """Headers still incomplete, or the response went out while the client is still sending its body."""
        if self.transport.is_closing():
            return False
        headers_pending = self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE
        answered_early = self.conn.our_state in (h11.DONE, h11.MUST_CLOSE) and self.conn.their_state is h11.SEND_BODY
        return headers_pending or answered_early

    def eof_received(self) -> bool | None:
        """The client half-closed. With a request in flight, end its body here and keep the socket open to
        answer: the app sees a body shorter than promised (400) rather than a vanished client."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete or cycle.disconnected:
            return None  # nothing to answer: close, as uvicorn does
        cycle.keep_alive = False  # nothing more can come: close once answered
        if cycle.more_body:
            cycle.more_body = False
            cycle.message_event.set()
        self._disarm()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.read_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        """No request is being read by the app, so there is nothing to answer: just close."""
        self._deadline = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection from %s: no complete request within %g s",
                             _address(self.client), self.read_timeout)
            self.transport.close()


class RedactTokens(logging.Filter):
    """Replaces the value of ?token= / &token= in log records with *** (the access log shows each URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def redact(text: str) -> str:
    return TOKEN_IN_QUERY.sub(r"\1***", text)


def run(app, host: str, port: int, read_timeout: float) -> None:
    """Serve `app` until interrupted (what uvicorn.run does, with the guarded protocol and filtered log)."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="info", timeout_keep_alive=KEEP_ALIVE_S,
                            http=functools.partial(GuardedH11Protocol, read_timeout=read_timeout))
    install_log_filters()  # after Config, which (re)configures uvicorn's loggers
    uvicorn.Server(config).run()


def install_log_filters() -> None:
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
    # The app's own lines (a client went away, ...) go where uvicorn's go.
    ours = logging.getLogger("searchengine.server")
    ours.setLevel(logging.INFO)
    if not ours.handlers:
        ours.handlers = list(logging.getLogger("uvicorn").handlers)  # uvicorn.error itself has none
        ours.propagate = False


def _address(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "?"
