"""Schema changes go only through alembic; this applies them to an open engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine


def migrations_dir() -> Path:
    """Where the alembic scripts are: inside the installed package, or the repository's alembic/."""
    package_dir = Path(__file__).resolve().parents[1]
    for candidate in (package_dir / "migrations", package_dir.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("alembic migrations not found next to the searchengine package")


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema, sharing the engine's connection."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
