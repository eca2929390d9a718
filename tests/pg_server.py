"""A throwaway PostgreSQL 15 server for the tests: its own data directory and a free localhost port.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the `postgres`
system user (the Debian package creates it) in a temp folder that user owns.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")


class Unavailable(Exception):
    """Why no server can run here (the tests that need one are skipped with this reason)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix, uid and gid to run the server with (postgres when we are root)."""
    if os.geteuid() != 0:
        return [], None, None
    import pwd

    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise Unavailable("running as root and there is no `postgres` user (apt-get install postgresql)") from None
    if shutil.which("runuser") is None:
        raise Unavailable("running as root and `runuser` is missing")
    return ["runuser", "-u", "postgres", "--"], user.pw_uid, user.pw_gid


class PostgresServer:
    """initdb + pg_ctl start on construction; stop() shuts it down and removes its folder."""

    def __init__(self):
        if not (BIN / "initdb").is_file():
            raise Unavailable(f"no PostgreSQL 15 server binaries in {BIN} (apt-get install postgresql)")
        self.prefix, uid, gid = _as_user()
        self.root = Path(tempfile.mkdtemp(prefix="searchengine-pg-"))
        if uid is not None:
            os.chown(self.root, uid, gid)
        self.data, self.port = self.root / "data", _free_port()
        self._run(BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        # Unix sockets in our own folder (not /var/run/postgresql, which may not exist), TCP on localhost.
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(BIN / "pg_ctl", "-D", self.data, "-l", self.root / "log", "-o", options, "-w", "-t", "60", "start")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args) -> None:
        done = subprocess.run([*self.prefix, *map(str, args)], capture_output=True, text=True, cwd=self.root)
        if done.returncode:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            self.stop()
            raise Unavailable(f"{Path(str(args[0])).name} failed: {done.stderr.strip()[-500:]} {log[-500:]}")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run([*self.prefix, str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                            "stop"], capture_output=True, cwd=self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> PostgresServer:
    """A running server, or Unavailable with the reason (also when psycopg is not installed)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise Unavailable("psycopg is not installed (pip install -e '.[postgres]')") from None
    server = PostgresServer()
    deadline = time.monotonic() + 30
    while True:  # pg_ctl -w waits for the socket; a first TCP connection may still lag behind
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            return server
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise Unavailable("the PostgreSQL server did not accept connections in 30 s") from None
            time.sleep(0.2)


def psycopg_conninfo(url: str) -> str:
    """The libpq URL psycopg takes for a SQLAlchemy postgresql+psycopg:// URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextmanager
def hold_writer_lock(index):
    """Hold the index's writer lock from elsewhere, as a second index run would (flock or advisory lock)."""
    if index.backend.url is None:
        import fcntl

        with open(index.path / "write.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        return
    import psycopg

    with psycopg.connect(psycopg_conninfo(index.backend.url), autocommit=True) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (index.backend.lock_key(),))
        yield
