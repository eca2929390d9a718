"""Alembic environment: targets the metadata of searchengine.store.models.

The library passes an open connection in `config.attributes["connection"]`; run by hand,
alembic connects to the URL in alembic.ini instead.
"""

from alembic import context
from sqlalchemy import engine_from_config, pool

from searchengine.store.models import Base

target_metadata = Base.metadata


def run_migrations(connection) -> None:
    """Apply migrations on one connection; batch mode because SQLite cannot ALTER most things
    (on PostgreSQL batch mode issues plain ALTERs).

    transactional_ddl: SQLite and PostgreSQL can both roll back CREATE and ALTER, so a migration cut
    short (a crash, a full disk) leaves the schema as it was, never half made. On PostgreSQL the
    connection's search_path names the generation's schema, so the tables and alembic's version
    table land there.
    """
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Use the caller's connection when given, else the configured URL."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = engine_from_config(context.config.get_section(context.config.config_ini_section),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        run_migrations(conn)


run_online()
