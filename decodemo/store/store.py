"""The review store: analysed inputs, detector runs, review versions and threshold changes.

Files (the uploaded input, each run's map, each corrected mask) live under
``<data dir>/files``; rows reference them by a path relative to the data directory. Nothing
is overwritten: the same upload twice is one item with more runs, an edited review is a new
version, an undo marks a version undone and keeps it.

Sessions: the data functions (:mod:`decodemo.store.records`) take a session; the caller opens
one per event with :meth:`ReviewStore.session`, or :meth:`ReviewStore.write` for a write that
is run again on a lost race. The methods of :class:`ReviewStore` below are that, for one call:
each opens one session, calls the data functions, and returns plain values.

Errors: every failure leaves the public methods as a :class:`~decodemo.errors.StoreError`
(:mod:`decodemo.store.failures` says which), with a message that names no server path; a
contended write is retried first (:meth:`ReviewStore.write`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import random
import re
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from decodemo.errors import StoreError, StoreFileError, StoreUnavailableError
from decodemo.store import records
from decodemo.store.db import database_url, make_engine, upgrade
from decodemo.store.failures import busy_error, scrub, transient_kind, typed_error
from decodemo.store.records import ANONYMOUS, VERDICTS, ItemRecord, ReviewError, RunRecord

__all__ = ["VERDICTS", "ANONYMOUS", "ReviewError", "ReviewStore", "safe_name", "csv_cell", "WRITE_ATTEMPTS"]

T = TypeVar("T")
log = logging.getLogger(__name__)

#: how many times :meth:`ReviewStore.write` runs a write that loses to a concurrent one
WRITE_ATTEMPTS = 10
#: the backoff before retry ``n`` is uniform in [0, min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**(n-1))]
#: ("full jitter"): writers that collided do not collide again in step
BACKOFF_FIRST_S = 0.02
BACKOFF_MAX_S = 1.0
#: extensions kept on stored uploads: short, lower-case letters and digits (longer or odder ones -> .bin)
_KEPT_SUFFIX = re.compile(r"\.[a-z0-9]{1,10}")
#: first characters that make a spreadsheet read a CSV cell as a formula (CWE-1236)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_name(text: str, limit: int = 64) -> str:
    """A file-name-safe form of ``text`` (letters, digits, ``._-``; never empty or hidden)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "x"
    return s[:limit]


def stored_suffix(name: str) -> str:
    """The extension a stored upload keeps: ``name``'s own, lower-case, when it is 1 to 10 letters
    or digits, else ``.bin`` (the content, not the extension, says what the file is; a long or odd
    extension must not make the stored file's name too long for the file system)."""
    suffix = Path(str(name)).suffix.lower()
    return suffix if _KEPT_SUFFIX.fullmatch(suffix) else ".bin"


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text: text beginning with ``=``, ``+``, ``-``, ``@``,
    a tab or a carriage return gets a leading ``'`` (so ``=HYPERLINK(...)`` is not run); lists and
    dictionaries are JSON text; numbers and None are kept."""
    if isinstance(value, (list, dict)):
        value = json.dumps(value)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _backoff_s(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...): full jitter, exponential cap."""
    return random.uniform(0.0, min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (attempt - 1)))


def _file_error(what: str, rel: str, exc: OSError) -> StoreFileError:
    """A typed error for a store file that cannot be written or read; it names the file by its
    path relative to the data directory only."""
    reason = exc.strerror or type(exc).__name__
    return StoreFileError(f"The review store could not {what} {rel} ({reason}). Check that its data directory "
                          "is writable and has free space; nothing was stored.")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def _png_bytes(mask: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return buf.getvalue()


class ReviewStore:
    """One database (SQLite file by default, PostgreSQL via ``DECODEMO_DB_URL``) plus its files.

    Thread-safe: every session is its own. Migrations run when the store opens.
    ``retries``: how many times :meth:`write` ran a write again since the store opened.
    """

    def __init__(self, url: str | None = None, *, data_dir: str | Path | None = None, migrate: bool = True) -> None:
        from decodemo.settings import data_dir as default_dir

        self.data_dir = Path(data_dir) if data_dir is not None else default_dir()
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _file_error("create its data directory", "(DECODEMO_DATA_DIR)", exc) from None
        self.url = url or database_url(self.data_dir)
        self.retries = 0
        self._retry_lock = threading.Lock()
        with self._typed("open its database"):
            self.engine = make_engine(self.url)
            if migrate:
                self._migrate()
        self.Session = sessionmaker(self.engine, expire_on_commit=False)

    def _migrate(self) -> None:
        """Run the migrations; a database that Alembic cannot bring to head is a typed error."""
        from alembic.util import CommandError

        try:
            upgrade(self.engine)
        except CommandError as exc:
            raise StoreUnavailableError(f"The review store's database cannot be migrated ({scrub(str(exc))}); it "
                                        "may come from a newer decodemo: open it with that version.") from None

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ sessions
    @contextmanager
    def _typed(self, action: str) -> Iterator[None]:
        """Database errors inside the block leave it as typed errors (:func:`~decodemo.store.failures.typed_error`)."""
        try:
            yield
        except SQLAlchemyError as exc:
            raise typed_error(exc, action) from exc

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One session and one transaction for one event: committed when the block ends,
        rolled back when it raises. A database error leaves it as a :class:`~decodemo.errors.StoreError`."""
        with self._typed("carry out the request"), self.Session.begin() as s:
            yield s

    def write(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(session, *args, **kwargs)`` in one transaction; returns what ``fn`` returns.

        A write that loses to a concurrent one (SQLite lock, PostgreSQL serialisation failure,
        deadlock or lock timeout, a unique key taken at the same moment, no free connection:
        :func:`~decodemo.store.failures.transient_kind`) is rolled back and run again, up to
        :data:`WRITE_ATTEMPTS` times in all, after a jittered backoff; ``fn`` must therefore be
        safe to run again (the store's writers are). When every attempt lost:
        :class:`~decodemo.errors.StoreBusyError`. Other database failures raise their typed
        error at once; a :class:`~decodemo.errors.DecodemoError` from ``fn`` passes unchanged."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                return self._in_session(fn, *args, **kwargs)
            except StoreError as exc:  # session() typed it; its cause is the database's own error
                kind = transient_kind(exc.__cause__)
                if kind is None:
                    raise
                if attempt == WRITE_ATTEMPTS:
                    raise busy_error(kind, attempt) from exc.__cause__
                self._count_retry(kind, attempt)
                time.sleep(_backoff_s(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _count_retry(self, kind: str, attempt: int) -> None:
        with self._retry_lock:
            self.retries += 1
        log.info("review store: write attempt %d lost (%s); retrying", attempt, kind)

    def _in_session(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(session, *args, **kwargs)`` in one session of its own (one transaction, not retried)."""
        with self.session() as s:
            return fn(s, *args, **kwargs)

    # ------------------------------------------------------------------ files
    def path(self, relative: str) -> Path:
        """The absolute path of a stored file."""
        return self.data_dir / relative

    def _write_file(self, rel: str, data: bytes) -> None:
        """Write a store file atomically (``rel``: relative to the data directory)."""
        try:
            _atomic_write(self.path(rel), data)
        except OSError as exc:
            raise _file_error("write", rel, exc) from None

    def _save_input(self, comp) -> str:
        """Keep the upload once per content as ``files/inputs/<sha[:2]>/<sha><ext>``: named by its
        hash and a short kept extension (:func:`stored_suffix`), so any upload name can be stored."""
        rel = f"files/inputs/{comp.sha256[:2]}/{comp.sha256}{stored_suffix(comp.path or comp.name)}"
        dest = self.path(rel)
        if dest.is_file():
            return rel
        data = getattr(comp, "data", None)
        if data is not None:  # the bytes the service read: the upload is not read again
            self._write_file(rel, data)
            return rel
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".tmp-{uuid.uuid4().hex}")
            shutil.copyfile(comp.path, tmp)
            os.replace(tmp, dest)
        except OSError as exc:
            raise _file_error("keep the upload as", rel, exc) from None
        return rel

    def _save_maps(self, comp) -> dict[str, str]:
        """Each method's map as ``files/maps/<input sha>/<map sha>/<method>_map.npy``: named by its
        content, so the same map (the same input again: the models are deterministic) is written
        once however often the input comes back, and an item's disk use stays bounded."""
        paths = {}
        for o in comp.outcomes:
            data = _npy_bytes(o.map)
            rel = (f"files/maps/{comp.sha256[:16]}/{hashlib.sha256(data).hexdigest()[:16]}/"
                   f"{safe_name(o.method)}_map.npy")
            if not self.path(rel).is_file():
                self._write_file(rel, data)
            paths[o.method] = rel
        return paths

    def _mask_file(self, item: ItemRecord, reviewer: str, mask: np.ndarray) -> tuple[str, bytes]:
        """(path, PNG bytes) of a reviewer's mask of the item, not written yet; named by its content,
        so that the same mask sent again has the same path."""
        mask = np.asarray(mask)
        if mask.shape != (item.height, item.width):
            raise ReviewError(f"The mask is {mask.shape[1]} x {mask.shape[0]} but the input is "
                              f"{item.width} x {item.height}; draw it on the input's own size.")
        data = _png_bytes(mask.astype(bool))
        rel = f"files/masks/{item.id}/{safe_name(reviewer)}_{hashlib.sha256(data).hexdigest()[:12]}.png"
        return rel, data

    def _read_file(self, rel: str, read: Callable[[Path], T]) -> T:
        """``read(absolute path)`` of a store file; a missing or unreadable one is a typed error."""
        try:
            return read(self.path(rel))
        except OSError as exc:
            raise _file_error("read", rel, exc) from None

    def mask(self, review: dict[str, Any]) -> np.ndarray | None:
        if not review.get("mask_path"):
            return None
        from PIL import Image

        return self._read_file(review["mask_path"], lambda p: np.asarray(Image.open(p)) > 127)

    def load_map(self, run: RunRecord | dict[str, Any]) -> np.ndarray:
        """A run's stored anomaly map (float32, the input's size)."""
        rel = run["map_path"] if isinstance(run, dict) else run.map_path
        return self._read_file(rel, lambda p: np.load(p, allow_pickle=False))

    # ------------------------------------------------------------------ analyses
    def record(self, comp, *, user: str | None = None) -> int:
        """Store a comparison (``decodemo.service.Comparison``): the input once per content, a
        run per method with its map. Returns the item id."""
        input_path, map_paths = self._save_input(comp), self._save_maps(comp)
        return self.write(records.add_comparison, comp, input_path=input_path, map_paths=map_paths, user=user)

    def latest_runs(self, item_id: int) -> dict[str, RunRecord]:
        """method -> the item's most recent run of it."""
        return self._in_session(records.latest_runs, item_id)

    def map_files(self, item_id: int) -> dict[str, Path]:
        """method -> the map file of the item's most recent run of it (written once, by :meth:`record`)."""
        return {m: self.path(r.map_path) for m, r in self.latest_runs(item_id).items()}

    def item(self, item_id: int) -> ItemRecord:
        return self._in_session(records.get_item, item_id)

    def item_by_sha(self, sha256: str) -> ItemRecord | None:
        return self._in_session(records.item_by_sha, sha256)

    def queue(self, **filters: Any) -> list[dict[str, Any]]:
        """Items to review, in order (:func:`decodemo.store.records.queue`, which names the filters)."""
        return self._in_session(records.queue, **filters)

    # ------------------------------------------------------------------ reviews
    def add_review(self, s: Session, item_id: int, reviewer: str | None, verdict: str, *,
                   methods_right: Iterable[str] = (), mask: np.ndarray | None = None,
                   note: str | None = "", request_id: str | None = None) -> dict[str, Any]:
        """In session ``s``: a new version of ``reviewer``'s review of the item, its mask (a
        boolean array of the input's exact size; audio: mel bands x frames) written as a file.
        ``request_id``: see :meth:`submit_review`; a request sent again writes no file."""
        text, rid = records.check_note(note), records.check_request_id(request_id)
        records.lock_item(s, item_id)
        item, name, methods = records.check_review(s, item_id, reviewer, verdict, methods_right)
        mask_file = None if mask is None else self._mask_file(item, name, mask)
        mask_path = None if mask_file is None else mask_file[0]
        earlier = records.replayed_review(s, item_id, name, rid, verdict=verdict, methods=methods,
                                          mask_path=mask_path, note=text)
        if earlier is not None:
            return earlier
        if mask_file is not None:
            self._write_file(*mask_file)
        return records.add_review(s, item_id, reviewer, verdict, methods_right=methods, mask_path=mask_path,
                                  note=text, request_id=rid)

    def submit_review(self, item_id: int, reviewer: str | None, verdict: str, *, methods_right: Iterable[str] = (),
                      mask: np.ndarray | None = None, note: str | None = "",
                      request_id: str | None = None) -> dict[str, Any]:
        """Store a new version of ``reviewer``'s review of the item. ``mask``: a boolean array of
        the input's exact size (audio: mel bands x frames). ``reviewer`` None is anonymous.
        ``note``: at most :data:`~decodemo.store.records.NOTE_MAX_CHARS` characters (longer:
        :class:`~decodemo.errors.NoteTooLongError`).

        ``request_id``: the client's id for this request (e.g. a UUID; 1 to 64 letters, digits,
        ``._:-``), so that sending it again after a crash or a lost answer is safe: the same
        request by the same reviewer is stored once and every call returns that stored version;
        other content under an id already used raises :class:`~decodemo.errors.RequestIdConflictError`.
        Without one, every call adds a version."""
        return self.write(self.add_review, item_id, reviewer, verdict, methods_right=methods_right, mask=mask,
                          note=note, request_id=request_id)

    def undo(self, item_id: int, reviewer: str | None, *, by: str | None = None) -> dict[str, Any] | None:
        """Mark ``reviewer``'s latest live version of the item undone; returns the review that is
        current afterwards (None when none is left)."""
        return self.write(records.undo_review, item_id, reviewer, by=by)

    def history(self, item_id: int, reviewer: str | None = None) -> list[dict[str, Any]]:
        return self._in_session(records.history, item_id, reviewer)

    def current_reviews(self, item_id: int | None = None) -> list[dict[str, Any]]:
        return self._in_session(records.current_reviews, item_id)

    def counts(self) -> dict[str, int]:
        return self._in_session(records.counts)

    # ------------------------------------------------------------------ thresholds
    def apply_threshold(self, model_name: str, new: float, *, old: float, by: str | None, reason: str) -> dict:
        return self.write(records.add_threshold_change, model_name, new, old=old, by=by, reason=reason)

    def applied_thresholds(self) -> dict[str, float]:
        """model name -> the threshold applied last (models never changed are absent)."""
        return self._in_session(records.applied_thresholds)

    # ------------------------------------------------------------------ export
    def rows(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table, as dictionaries (for export)."""
        return self._in_session(records.table_rows)

    def export(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``<table>.csv`` for every table, ``decodemo_export.json`` with all of them, and
        ``masks.zip`` with every stored mask as ``item<id>_<reviewer>_v<version>_review<id>.png``."""
        return self.write_export(self.rows(), out_dir)

    def write_export(self, data: dict[str, list[dict[str, Any]]], out_dir: str | Path) -> dict[str, Path]:
        """:meth:`export` of tables already read (:func:`decodemo.store.records.table_rows`).

        The CSV files are for spreadsheets: text that a spreadsheet would run as a formula is
        neutralised (:func:`csv_cell`). The JSON file keeps every value exactly as stored."""
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
            paths = {table: self._write_csv(out / f"{table}.csv", rows) for table, rows in data.items()}
            paths["json"] = out / "decodemo_export.json"
            paths["json"].write_text(json.dumps(data, indent=1, default=str) + "\n")
            paths["masks"] = self._write_masks_zip(out / "masks.zip", data["reviews"])
        except OSError as exc:
            raise _file_error("write the export to", out.name or "the export folder", exc) from None
        return paths

    @staticmethod
    def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
        cols = list(rows[0]) if rows else []
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            for r in rows:
                w.writerow({k: csv_cell(v) for k, v in r.items()})
        return path

    @staticmethod
    def mask_archive_name(review: dict[str, Any]) -> str:
        """A mask's name in ``masks.zip``: unique per review (the review id is in it; reviewer
        names such as "ana b" and "ana_b" are file-name safe alike)."""
        return (f"item{int(review['item_id'])}_{safe_name(review['reviewer'])}_v{int(review['version'])}"
                f"_review{int(review['id'])}.png")

    def _write_masks_zip(self, path: Path, reviews: list[dict[str, Any]]) -> Path:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for r in reviews:
                if r["mask_path"] and self.path(r["mask_path"]).is_file():
                    z.write(self.path(r["mask_path"]), self.mask_archive_name(r))
        return path
