"""Alembic environment for the review store. The store passes its engine's connection in
``config.attributes["connection"]``; run from the command line, ``DECODEMO_DB_URL`` is used."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from decodemo.store.schema import Base

config = context.config
target_metadata = Base.metadata


def _run_on(connection) -> None:
    """Run the pending migrations on ``connection`` in one transaction (batch mode, for SQLite)."""
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate the store's own connection when it passes one, else the ``DECODEMO_DB_URL`` database."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    from decodemo.store.db import database_url

    engine = create_engine(database_url())
    with engine.connect() as conn:
        _run_on(conn)


run_migrations_online()
