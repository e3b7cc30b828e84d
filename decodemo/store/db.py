"""Engine, sessions and migrations of the review store.

The database is ``DECODEMO_DB_URL`` when set (any SQLAlchemy URL, e.g.
``postgresql+psycopg://user@host/decodemo``), else a SQLite file ``decodemo.sqlite3`` in the
data directory (``DECODEMO_DATA_DIR``, default ``~/.local/share/decodemo``). SQLite runs in WAL
mode with a busy timeout and takes its write lock at the start of a transaction, so writers
from several threads queue instead of failing; PostgreSQL runs at READ COMMITTED, and writers of
one item take turns on its row lock. Alembic migrations run on open (``upgrade head``).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine

__all__ = ["database_url", "make_engine", "upgrade", "downgrade", "current_revision", "head_revision", "MIGRATIONS"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def database_url(data_dir: str | Path | None = None) -> str:
    from decodemo import settings

    url = settings.db_url()
    if url:
        return url
    default_dir = settings.data_dir

    folder = Path(data_dir) if data_dir is not None else default_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'decodemo.sqlite3'}"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - exercised by every SQLite test
            dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):  # one writer at a time, queued by busy_timeout
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql"):
        # READ COMMITTED whatever the server's default: the writers lock the row they depend on
        # (records.lock_item) and then read what was committed before them; under SERIALIZABLE
        # they would fail and be retried instead (ReviewStore.write)
        return create_engine(url, pool_pre_ping=True, isolation_level="READ COMMITTED")
    return create_engine(url, pool_pre_ping=True)


def _alembic_config(connection):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the migrations up to ``revision``."""
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Undo the migrations after ``revision`` (e.g. to go back to an older decodemo)."""
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(_alembic_config(conn), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()
