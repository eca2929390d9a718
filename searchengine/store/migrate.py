"""Schema changes go only through alembic; this applies them to an open engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import Engine

from ..errors import IndexStateError


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
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        try:
            command.upgrade(config, "head")
        except CommandError as exc:  # e.g. a schema revision this version does not know (a newer engine's)
            raise IndexStateError(f"cannot migrate the metadata database: {exc}") from exc
