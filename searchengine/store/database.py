"""The metadata database's engines: SQLite in a generation's folder, or a schema of a server database.

Everything that differs between the two lives here: SQLite's pragmas and explicit BEGIN, PostgreSQL's
per-generation schema and search_path, the writer's advisory lock, and the typed errors for what each
reports.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError as UrlError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from ..errors import ArgumentError, IndexStateError, SearchEngineError, StorageError
from ..fileio import no_space

SQLITE_HEADROOM = 8 << 20
WAL_SWITCH_SECONDS = 30  # as long as busy_timeout waits for a lock
SCHEMA_NAME = re.compile(r"^[a-z0-9_]{1,63}$")


# --- SQLite ------------------------------------------------------------------
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL lets searches read while an index run writes; busy_timeout waits out the writer's lock.

    isolation_level None stops Python's sqlite3 from opening transactions on its own (it never did
    for DDL, so a migration could half-apply); SQLAlchemy's BEGIN below opens every one instead.
    """
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    _enter_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _enter_wal(cursor) -> None:
    """PRAGMA journal_mode=WAL, retried while the file is locked.

    Switching a brand-new file to WAL takes its write lock, and SQLite may answer "database is locked"
    at once, without waiting out busy_timeout, when another process is switching it at the same moment
    (a would-be deadlock): processes opening one new index together met it about one run in ten.
    """
    deadline = time.monotonic() + WAL_SWITCH_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _begin(connection) -> None:
    # IMMEDIATE takes the write lock up front, waiting out busy_timeout: a deferred transaction that
    # reads and then writes fails at once ("database is locked") when another process wrote in between,
    # which is exactly what two processes creating one new index at the same moment do.
    immediate = connection.get_execution_options().get("sqlite_immediate", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def sqlite_engine(db_path: Path) -> Engine:
    """An engine on the SQLite file of one generation."""
    engine = create_engine(f"sqlite:///{db_path}")
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _begin)
    return engine


# --- PostgreSQL (any server database SQLAlchemy can reach) -------------------
def check_url(url: str) -> str:
    """The URL to connect with, or ArgumentError when it is no PostgreSQL URL or its driver is missing.

    A bare postgresql:// means psycopg 3 here (the `postgres` extra), not SQLAlchemy's default psycopg2.
    """
    try:
        parsed = make_url(url)
    except UrlError as exc:
        raise ArgumentError(f"--db takes a SQLAlchemy URL such as postgresql+psycopg://user@host/db, "
                            f"not {url!r}") from exc
    if parsed.get_backend_name() != "postgresql":
        raise ArgumentError(f"--db supports PostgreSQL URLs (postgresql+psycopg://...), not "
                            f"{parsed.get_backend_name()}: without --db the index keeps SQLite in its folder")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        parsed.get_dialect().import_dbapi()
    except ImportError as exc:
        raise ArgumentError(f"{parsed.drivername} needs its driver: pip install 'searchengine[postgres]' "
                            f"({exc})") from exc
    return parsed.render_as_string(hide_password=False)


def label(url: str, schema: str | None = None) -> str:
    """The URL with its password hidden, for messages, and the schema when there is one."""
    shown = make_url(url).render_as_string(hide_password=True)
    return f"{shown} (schema {schema})" if schema else shown


def server_engine(url: str, schema: str) -> Engine:
    """An engine whose connections see only `schema` (created here when missing)."""
    if not SCHEMA_NAME.match(schema):
        raise IndexStateError(f"not a usable schema name: {schema!r}")
    engine = create_engine(url, pool_pre_ping=True)

    @event.listens_for(engine, "connect", insert=True)
    def _search_path(dbapi_connection, _record) -> None:
        # Outside a transaction, so a later ROLLBACK cannot undo it; alembic's version table and
        # every table land in (and are looked up in) this schema only.
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f'SET search_path TO "{schema}"')
        dbapi_connection.autocommit = autocommit

    try:
        with engine.begin() as connection:
            lock_schema(connection, schema)
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    except SQLAlchemyError as exc:
        engine.dispose()
        raise database_error(label(url, schema), exc) from exc
    except BaseException:
        engine.dispose()
        raise
    return engine


def lock_schema(connection, schema: str | None = None) -> None:
    """Wait until no other process changes this schema (default: the connection's), until commit.

    Two machines opening a new index at once would otherwise both run CREATE SCHEMA IF NOT EXISTS,
    or the first migration, and one would fail on the other's half-committed objects.
    """
    if schema is None:
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(current_schema()))"))
    else:
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": schema})


def _admin(url: str) -> Engine:
    return create_engine(url, poolclass=NullPool)


def generation_schemas(url: str, prefix: str) -> list[str]:
    """The schemas of one index's generations: prefix + "_g<N>"."""
    engine = _admin(url)
    try:
        with engine.connect() as connection:
            names = connection.execute(text("SELECT schema_name FROM information_schema.schemata")).scalars()
            return sorted(n for n in names if re.fullmatch(re.escape(prefix) + r"_g\d+", n))
    except SQLAlchemyError as exc:
        raise database_error(label(url), exc) from exc
    finally:
        engine.dispose()


def drop_schemas(url: str, names: list[str]) -> None:
    """Drop these schemas with everything in them (generations a publish left behind)."""
    if not names:
        return
    engine = _admin(url)
    try:
        with engine.begin() as connection:
            for name in names:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    except SQLAlchemyError as exc:
        raise database_error(label(url), exc) from exc
    finally:
        engine.dispose()


def schema_exists(url: str, schema: str) -> bool:
    """Whether the server holds this schema (an index's first generation, for `create=False`)."""
    engine = _admin(url)
    try:
        with engine.connect() as connection:
            found = connection.execute(text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"),
                                       {"s": schema}).first()
        return found is not None
    except SQLAlchemyError as exc:
        raise database_error(label(url), exc) from exc
    finally:
        engine.dispose()


def lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for an index (pg_advisory_lock takes a bigint)."""
    return int.from_bytes(hashlib.sha256(f"searchengine:{name}".encode()).digest()[:8], "big", signed=True)


@contextmanager
def advisory_lock(url: str, key: int):
    """Yield whether this process got the session-level advisory lock `key`.

    A dedicated connection holds it for the whole run: the lock dies with the connection, so a writer
    that crashes (or a machine that drops off the network) never leaves the index locked.
    """
    engine = _admin(url)
    try:
        connection = engine.connect()
        held = bool(connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
        connection.commit()  # the lock belongs to the session, not to this transaction
    except SQLAlchemyError as exc:
        engine.dispose()
        raise database_error(label(url), exc) from exc
    try:
        yield held
    finally:
        try:
            if held:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            connection.close()
        except SQLAlchemyError:
            pass  # the server releases the lock with the session anyway
        engine.dispose()


# --- errors --------------------------------------------------------------------
def _low_space(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < SQLITE_HEADROOM
    except OSError:
        return False


def database_error(where: Path | str, exc: SQLAlchemyError) -> SearchEngineError:
    """The typed error for what the database reported: a full disk, a damaged file, or another failure.

    `where` is the SQLite file's path, or a server database's label.
    """
    detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    lowered = detail.lower()
    full = "disk is full" in lowered or "no space" in lowered or getattr(getattr(exc, "orig", None), "sqlstate", None) == "53100"
    if isinstance(where, str):
        if full:
            return StorageError(f"the database server's disk is full ({detail}); {where}. Nothing was lost: "
                                "free some space on the server and run the command again.")
        return IndexStateError(f"metadata database {where}: {detail}")
    if full or ("disk i/o error" in lowered and _low_space(where.parent)):
        # SQLite does not say how much it wanted: a batch of rows and its WAL frames fit in a few MB.
        # A full disk also shows as "disk I/O error" when the WAL's shared-memory file cannot grow.
        return no_space(where.parent, SQLITE_HEADROOM, None)
    if "malformed" in lowered or "not a database" in lowered or "disk image" in lowered:
        return IndexStateError(f"the metadata database {where} is damaged ({detail}). Move the index "
                               "folder aside and index the media again into a new one.")
    return IndexStateError(f"metadata database {where}: {detail}")


def read_in_session(engine: Engine, where: Path | str, work):
    """work(session)'s result, read in a session of its own; database failures become typed errors."""
    try:
        with Session(engine) as s:
            return work(s)
    except SQLAlchemyError as exc:
        raise database_error(where, exc) from exc
