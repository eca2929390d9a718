"""Schema changes go only through alembic; this applies them to an open engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, inspect, text

from ..errors import IndexStateError
from .database import lock_schema


def migrations_dir() -> Path:
    """Where the alembic scripts are: inside the installed package, or the repository's alembic/."""
    package_dir = Path(__file__).resolve().parents[1]
    for candidate in (package_dir / "migrations", package_dir.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise IndexStateError("the engine's database migrations are missing next to the searchengine package "
                          "(a broken install: reinstall searchengine)")


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema, sharing the engine's connection."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if _at_head(engine, config):  # the usual open: a read, no write lock (readers never queue behind a writer)
        return
    with engine.execution_options(sqlite_immediate=True).begin() as connection:
        if connection.dialect.name == "sqlite":  # PostgreSQL's DDL always ran in one transaction
            _drop_half_made_schema(connection)
        else:
            lock_schema(connection)  # one process migrates a schema at a time
        config.attributes["connection"] = connection
        try:
            command.upgrade(config, "head")
        except CommandError as exc:  # e.g. a schema revision this version does not know (a newer engine's)
            raise IndexStateError(f"cannot migrate the metadata database: {exc}") from exc


def _at_head(engine: Engine, config: Config) -> bool:
    """Whether the database already has the newest schema (then nothing needs a write lock)."""
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head


def _drop_half_made_schema(connection: Connection) -> None:
    """Drop the empty tables of a first migration an older engine cut short, so it can run again.

    Migrations now run in one transaction, but an index made before that could be left with some
    tables and no schema version ("table bundle_info already exists" on every later open).
    """
    tables = set(inspect(connection).get_table_names())
    if not tables or _version(connection, tables) is not None:
        return
    ours = sorted(tables - {"alembic_version"})
    if any(connection.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() for t in ours):
        raise IndexStateError("the metadata database has tables but no schema version, and they hold data; "
                              "move the index folder aside and index the media again")
    for table in ours:
        connection.execute(text(f'DROP TABLE "{table}"'))


def _version(connection: Connection, tables: set[str]) -> str | None:
    if "alembic_version" not in tables:
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
