"""Alembic environment for the review store. The store passes its engine's connection in
``config.attributes["connection"]``; run from the command line, ``DECODEMO_DB_URL`` is used."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from decodemo.store.schema import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    from decodemo.store.db import database_url

    engine = create_engine(database_url())
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
