"""What a database error means for the review store: a transient conflict worth another try,
or a failure to report as a typed :class:`~decodemo.errors.StoreError`.

:meth:`decodemo.store.ReviewStore.write` retries the transient ones (:func:`transient_kind`):
a SQLite lock, a PostgreSQL serialisation failure, deadlock or lock timeout, a unique key taken
by a concurrent writer of the same row, no free pooled connection. Everything else becomes a
typed error (:func:`typed_error`) whose message says what failed and what to do, with the
driver's first line as the detail; absolute paths are taken out of it (:func:`scrub`), and the
SQL statement and its parameters are never in it. A lost connection is not retried: the
commit may have happened, and only a request with a request id is safe to send again.
"""

from __future__ import annotations

import re

from sqlalchemy import exc as sa_exc

from decodemo.errors import StoreBusyError, StoreError, StoreUnavailableError

__all__ = ["transient_kind", "typed_error", "busy_error", "scrub", "driver_detail"]

#: PostgreSQL SQLSTATE -> what the conflict was (each resolves when the write runs again)
_PG_TRANSIENT = {
    "40001": "a serialisation failure",
    "40P01": "a deadlock",
    "55P03": "a lock held by another writer",
    "23505": "a unique key taken by another writer at the same moment",
}
#: SQLite extended result names -> what the conflict was
_SQLITE_TRANSIENT = {
    "SQLITE_BUSY": "a locked database",
    "SQLITE_BUSY_SNAPSHOT": "a locked database",
    "SQLITE_BUSY_RECOVERY": "a locked database",
    "SQLITE_LOCKED": "a locked table",
    "SQLITE_CONSTRAINT_UNIQUE": "a unique key taken by another writer at the same moment",
}
#: the same, recognised by the driver's message (drivers or fakes without the codes)
_TEXT_TRANSIENT = (
    ("database is locked", "a locked database"),
    ("database table is locked", "a locked table"),
    ("unique constraint failed", "a unique key taken by another writer at the same moment"),
    ("duplicate key value violates unique constraint", "a unique key taken by another writer at the same moment"),
    ("could not serialize access", "a serialisation failure"),
    ("deadlock detected", "a deadlock"),
)
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])(?:[A-Za-z]:[\\/]|/{1,2})[^\s\"'<>|,;()]*")
_DETAIL_CHARS = 200


def scrub(text: str) -> str:
    """``text`` with every absolute path (and URL tail) replaced by ``<path>``: a message shown to
    a person names no server folder."""
    return _ABSOLUTE_PATH.sub("<path>", text)


def driver_detail(exc: BaseException) -> str:
    """The database driver's own first line for ``exc`` (no SQL, no parameters), scrubbed and short."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    first = lines[0] if lines else type(orig).__name__
    first = scrub(first)
    return first if len(first) <= _DETAIL_CHARS else first[: _DETAIL_CHARS - 1] + "…"


def _codes(exc: BaseException) -> tuple[str | None, str | None]:
    """(PostgreSQL SQLSTATE, SQLite result name) of a wrapped driver error, where known."""
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return sqlstate, getattr(orig, "sqlite_errorname", None)


def transient_kind(exc: BaseException) -> str | None:
    """What kind of transient conflict ``exc`` is (words for a message), or None when running the
    write again would fail the same way."""
    if isinstance(exc, sa_exc.TimeoutError):  # the pool had no free connection: nothing was sent
        return "no free database connection"
    if not isinstance(exc, sa_exc.DBAPIError) or exc.connection_invalidated:
        return None
    if not isinstance(exc, (sa_exc.OperationalError, sa_exc.IntegrityError)):
        return None
    sqlstate, sqlite_name = _codes(exc)
    if sqlstate is not None:
        return _PG_TRANSIENT.get(sqlstate)
    if sqlite_name is not None and sqlite_name in _SQLITE_TRANSIENT:
        return _SQLITE_TRANSIENT[sqlite_name]
    text = str(getattr(exc, "orig", None) or "").lower()
    return next((kind for needle, kind in _TEXT_TRANSIENT if needle in text), None)


def busy_error(kind: str, attempts: int) -> StoreBusyError:
    """The error of a write that lost ``attempts`` times in a row (the last time to ``kind``)."""
    lost = (f"lost to another writer ({kind})" if attempts == 1 else
            f"lost to other writers {attempts} times in a row (last: {kind})")
    return StoreBusyError(f"The review store is busy: the write {lost}, so nothing was stored. Send it again in a "
                          "moment; a review sent with the same request id is stored once.")


def typed_error(exc: BaseException, action: str) -> StoreError:
    """The typed error for a database failure ``exc`` that a retry does not mend, while the store
    was doing ``action`` (e.g. "store the review", "read the reviews")."""
    kind = transient_kind(exc)
    if kind is not None:  # a conflict of a write not run again (a caller's own session)
        return busy_error(kind, 1)
    detail = driver_detail(exc)
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return StoreUnavailableError(
            f"The connection to the review store's database was lost while it tried to {action} ({detail}). "
            "The write may or may not have been stored: look before sending it again, or send it with the "
            "same request id, which stores it once.")
    if isinstance(exc, sa_exc.IntegrityError):
        return StoreError(f"The review store refused to {action}: it breaks a rule of the stored data ({detail}). "
                          "Nothing was stored; check that the item and the values exist and are allowed.")
    if isinstance(exc, sa_exc.DataError):
        return StoreError(f"The review store could not {action}: a value does not fit its column ({detail}). "
                          "Nothing was stored; shorten the value or remove unusual characters.")
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        return StoreUnavailableError(
            f"The review store's database could not {action} ({detail}). Check that the database server runs "
            "and DECODEMO_DB_URL names it, or that the SQLite file and its folder are writable.")
    return StoreError(f"The review store failed to {action} ({type(exc).__name__}: {detail}); nothing was stored.")
