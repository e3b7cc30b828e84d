"""The review store: analysed inputs, detector runs, review versions and threshold changes.

Files (the uploaded input, each run's map, each corrected mask) live under
``<data dir>/files``; rows reference them by a path relative to the data directory. Nothing
is overwritten: the same upload twice is one item with more runs, an edited review is a new
version, an undo marks a version undone and keeps it.

Sessions: the data functions (:mod:`decodemo.store.records`) take a session; the caller opens
one per event with :meth:`ReviewStore.session`, or :meth:`ReviewStore.write` for a write that
is run again on a lost race. The methods of :class:`ReviewStore` below are that, for one call:
each opens one session, calls the data functions, and returns plain values.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from decodemo.store import records
from decodemo.store.db import database_url, make_engine, upgrade
from decodemo.store.records import ANONYMOUS, VERDICTS, ItemRecord, ReviewError, RunRecord

__all__ = ["VERDICTS", "ANONYMOUS", "ReviewError", "ReviewStore", "safe_name"]

T = TypeVar("T")


def safe_name(text: str, limit: int = 64) -> str:
    """A file-name-safe form of ``text`` (letters, digits, ``._-``; never empty or hidden)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "x"
    return s[:limit]


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


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
    """

    def __init__(self, url: str | None = None, *, data_dir: str | Path | None = None, migrate: bool = True) -> None:
        from decodemo.settings import data_dir as default_dir

        self.data_dir = Path(data_dir) if data_dir is not None else default_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.url = url or database_url(self.data_dir)
        self.engine = make_engine(self.url)
        if migrate:
            upgrade(self.engine)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ sessions
    @contextmanager
    def session(self) -> Iterator[Session]:
        """One session and one transaction for one event: committed when the block ends,
        rolled back when it raises."""
        with self.Session.begin() as s:
            yield s

    def write(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(session, *args, **kwargs)`` in one transaction, run again (up to 8 times) on a lost
        race (a unique key taken by another writer) or a locked database. Returns what ``fn`` returns."""
        for i in range(7):
            try:
                return self._in_session(fn, *args, **kwargs)
            except (IntegrityError, OperationalError):
                time.sleep(0.02 * (i + 1))
        return self._in_session(fn, *args, **kwargs)  # the last try: its error is the caller's

    def _in_session(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(session, *args, **kwargs)`` in one session of its own (one transaction, not retried)."""
        with self.session() as s:
            return fn(s, *args, **kwargs)

    # ------------------------------------------------------------------ files
    def path(self, relative: str) -> Path:
        """The absolute path of a stored file."""
        return self.data_dir / relative

    def _save_input(self, comp) -> str:
        src = Path(comp.path)
        ext = src.suffix.lower() if src.suffix else ".bin"
        rel = f"files/inputs/{comp.sha256[:2]}/{comp.sha256}{ext}"
        dest = self.path(rel)
        if not dest.is_file():
            data = getattr(comp, "data", None)
            if data is not None:  # the bytes the service read: the upload is not read again
                _atomic_write(dest, data)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".tmp-{uuid.uuid4().hex}")
                shutil.copyfile(src, tmp)
                os.replace(tmp, dest)
        return rel

    def _save_maps(self, comp) -> dict[str, str]:
        paths = {}
        run_key = uuid.uuid4().hex[:12]  # one folder per comparison, maps named <method>_map.npy
        for o in comp.outcomes:
            rel = f"files/maps/{comp.sha256[:16]}/{run_key}/{safe_name(o.method)}_map.npy"
            _atomic_write(self.path(rel), _npy_bytes(o.map))
            paths[o.method] = rel
        return paths

    def _save_mask(self, item: ItemRecord, reviewer: str, mask: np.ndarray) -> str:
        """Write a reviewer's mask of the item; named by its content, so that a write run again
        writes the same file."""
        mask = np.asarray(mask)
        if mask.shape != (item.height, item.width):
            raise ReviewError(f"The mask is {mask.shape[1]} x {mask.shape[0]} but the input is "
                              f"{item.width} x {item.height}; draw it on the input's own size.")
        data = _png_bytes(mask.astype(bool))
        rel = f"files/masks/{item.id}/{safe_name(reviewer)}_{hashlib.sha256(data).hexdigest()[:12]}.png"
        _atomic_write(self.path(rel), data)
        return rel

    def mask(self, review: dict[str, Any]) -> np.ndarray | None:
        if not review.get("mask_path"):
            return None
        from PIL import Image

        return np.asarray(Image.open(self.path(review["mask_path"]))) > 127

    def load_map(self, run: RunRecord | dict[str, Any]) -> np.ndarray:
        """A run's stored anomaly map (float32, the input's size)."""
        rel = run["map_path"] if isinstance(run, dict) else run.map_path
        return np.load(self.path(rel), allow_pickle=False)

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
                   note: str = "") -> dict[str, Any]:
        """In session ``s``: a new version of ``reviewer``'s review of the item, its mask (a
        boolean array of the input's exact size; audio: mel bands x frames) written as a file."""
        item, name, methods = records.check_review(s, item_id, reviewer, verdict, methods_right)
        mask_path = None if mask is None else self._save_mask(item, name, mask)
        return records.add_review(s, item_id, reviewer, verdict, methods_right=methods, mask_path=mask_path,
                                  note=note)

    def submit_review(self, item_id: int, reviewer: str | None, verdict: str, *, methods_right: Iterable[str] = (),
                      mask: np.ndarray | None = None, note: str = "") -> dict[str, Any]:
        """Store a new version of ``reviewer``'s review of the item. ``mask``: a boolean array of
        the input's exact size (audio: mel bands x frames). ``reviewer`` None is anonymous."""
        return self.write(self.add_review, item_id, reviewer, verdict, methods_right=methods_right, mask=mask,
                          note=note)

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
        ``masks.zip`` with every stored mask as ``item<id>_<reviewer>_v<version>.png``."""
        return self.write_export(self.rows(), out_dir)

    def write_export(self, data: dict[str, list[dict[str, Any]]], out_dir: str | Path) -> dict[str, Path]:
        """:meth:`export` of tables already read (:func:`decodemo.store.records.table_rows`)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for table, rows in data.items():
            p = out / f"{table}.csv"
            cols = list(rows[0]) if rows else []
            with open(p, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=cols)
                w.writeheader()
                for r in rows:
                    w.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()})
            paths[table] = p
        paths["json"] = out / "decodemo_export.json"
        paths["json"].write_text(json.dumps(data, indent=1, default=str) + "\n")
        paths["masks"] = out / "masks.zip"
        with zipfile.ZipFile(paths["masks"], "w", compression=zipfile.ZIP_DEFLATED) as z:
            for r in data["reviews"]:
                if r["mask_path"] and self.path(r["mask_path"]).is_file():
                    z.write(self.path(r["mask_path"]),
                            f"item{int(r['item_id'])}_{safe_name(r['reviewer'])}_v{int(r['version'])}.png")
        return paths
