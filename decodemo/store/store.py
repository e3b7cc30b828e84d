"""The review store: analysed inputs, detector runs, review versions and threshold changes.

Files (the uploaded input, each run's map, each corrected mask) live under
``<data dir>/files``; rows reference them by a path relative to the data directory. Nothing
is overwritten: the same upload twice is one item with more runs, an edited review is a new
version, an undo marks a version undone and keeps it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import sessionmaker

from decodemo.errors import DecodemoError
from decodemo.methods.catalogue import DIFFUSION_METHODS
from decodemo.store.db import database_url, make_engine, upgrade
from decodemo.store.schema import Item, Review, Run, ThresholdChange, utcnow

__all__ = ["VERDICTS", "ANONYMOUS", "ReviewError", "ReviewStore", "safe_name"]

VERDICTS = ("normal", "anomalous", "unsure")
ANONYMOUS = "anonymous"


class ReviewError(DecodemoError, ValueError):
    """A review or a threshold change that cannot be stored as given."""


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


def _iso(dt) -> str | None:
    return None if dt is None else dt.isoformat()


class ReviewStore:
    """One database (SQLite file by default, PostgreSQL via ``DECODEMO_DB_URL``) plus its files.

    Thread-safe: every method opens its own session. Migrations run when the store opens.
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

    def path(self, relative: str) -> Path:
        """The absolute path of a stored file."""
        return self.data_dir / relative

    def _retry(self, fn, attempts: int = 8):
        """Run a write transaction, retrying on a lost race (a unique key taken by another
        writer) or a locked database."""
        for i in range(attempts):
            try:
                return fn()
            except (IntegrityError, OperationalError):
                if i == attempts - 1:
                    raise
                time.sleep(0.02 * (i + 1))

    # ------------------------------------------------------------------ analyses
    def record(self, comp, *, user: str | None = None) -> int:
        """Store a comparison (``decodemo.service.Comparison``): the input once per content, a
        run per method with its map. Returns the item id."""
        src = Path(comp.path)
        ext = src.suffix.lower() if src.suffix else ".bin"
        rel_input = f"files/inputs/{comp.sha256[:2]}/{comp.sha256}{ext}"
        dest = self.path(rel_input)
        if not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".tmp-{uuid.uuid4().hex}")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        map_paths = {}
        for o in comp.outcomes:
            rel = f"files/maps/{comp.sha256[:16]}/{uuid.uuid4().hex[:12]}_{safe_name(o.method)}.npy"
            _atomic_write(self.path(rel), _npy_bytes(o.map))
            map_paths[o.method] = rel
        who = user or ANONYMOUS
        h, w = comp.size

        def write() -> int:
            with self.Session.begin() as s:
                item = s.scalar(select(Item).where(Item.sha256 == comp.sha256))
                if item is None:
                    item = Item(sha256=comp.sha256, name=comp.name[:255], file_path=rel_input, modality=comp.modality,
                                domain=comp.domain, height=int(h), width=int(w), uploaded_by=who,
                                anonymous=user is None)
                    s.add(item)
                    s.flush()
                item.domain = comp.domain
                item.disagreement = float(comp.summary()["disagreement"])
                for o in comp.outcomes:
                    s.add(Run(item_id=item.id, method=o.method, model_name=o.model, model_revision=o.revision,
                              score=float(o.score), decision=o.decision, threshold=float(o.threshold),
                              pixel_threshold=None if o.pixel_threshold is None else float(o.pixel_threshold),
                              percentile=o.percentile, latency_ms=float(o.latency_ms), nfe=int(o.nfe),
                              map_path=map_paths[o.method]))
                return item.id

        return self._retry(write)

    def latest_runs(self, item_id: int) -> dict[str, Run]:
        """method -> the item's most recent run of it."""
        with self.Session() as s:
            runs = s.scalars(select(Run).where(Run.item_id == item_id).order_by(Run.id)).all()
        return {r.method: r for r in runs}

    def item(self, item_id: int) -> Item:
        with self.Session() as s:
            item = s.get(Item, item_id)
            if item is None:
                raise ReviewError(f"No item {item_id} in the review store.")
            return item

    def item_by_sha(self, sha256: str) -> Item | None:
        with self.Session() as s:
            return s.scalar(select(Item).where(Item.sha256 == sha256))

    # ------------------------------------------------------------------ queue
    def _live(self, s) -> list[Review]:
        """The current review of every (item, reviewer): its latest version not undone."""
        rows = s.scalars(select(Review).where(Review.undone_at.is_(None)).order_by(Review.version)).all()
        cur: dict[tuple[int, str], Review] = {}
        for r in rows:
            cur[(r.item_id, r.reviewer)] = r
        return list(cur.values())

    def queue(self, *, domain: str | None = None, modality: str | None = None, method: str | None = None,
              decision: str | None = None, reviewed_by: str | None = None, include_reviewed: bool = False,
              exclude: Iterable[int] = ()) -> list[dict[str, Any]]:
        """Items to review: pending first, then by how much the methods disagree (most first),
        then oldest first. Filters: domain, modality, a method's latest decision, items a
        reviewer has reviewed (``reviewed_by``; implies ``include_reviewed``). ``exclude``
        (skipped items) go to the end instead of being dropped."""
        excluded = set(exclude)
        with self.Session() as s:
            q = select(Item)
            if domain:
                q = q.where(Item.domain == domain)
            if modality:
                q = q.where(Item.modality == modality)
            items = s.scalars(q).all()
            live = self._live(s)
            runs = s.scalars(select(Run).order_by(Run.id)).all()
        latest: dict[int, dict[str, Run]] = {}
        for r in runs:
            latest.setdefault(r.item_id, {})[r.method] = r
        reviewers: dict[int, set[str]] = {}
        for r in live:
            reviewers.setdefault(r.item_id, set()).add(r.reviewer)
        rows = []
        for it in items:
            done = it.id in reviewers
            if reviewed_by and reviewed_by not in reviewers.get(it.id, set()):
                continue
            if done and not (include_reviewed or reviewed_by):
                continue
            if method and decision:
                run = latest.get(it.id, {}).get(method)
                if run is None or run.decision != decision:
                    continue
            decisions = {m: r.decision for m, r in latest.get(it.id, {}).items()}
            rows.append({"item_id": it.id, "name": it.name, "domain": it.domain, "modality": it.modality,
                         "pending": not done, "disagreement": it.disagreement, "decisions": decisions,
                         "reviewers": sorted(reviewers.get(it.id, set())), "skipped": it.id in excluded,
                         "uploaded_at": _iso(it.uploaded_at)})
        rows.sort(key=lambda r: (r["skipped"], not r["pending"], -r["disagreement"], r["uploaded_at"] or "",
                                 r["item_id"]))
        return rows

    # ------------------------------------------------------------------ reviews
    def submit_review(self, item_id: int, reviewer: str | None, verdict: str, *, methods_right: Iterable[str] = (),
                      mask: np.ndarray | None = None, note: str = "") -> dict[str, Any]:
        """Store a new version of ``reviewer``'s review of the item. ``mask``: a boolean array of
        the input's exact size (audio: mel bands x frames). ``reviewer`` None is anonymous."""
        if verdict not in VERDICTS:
            raise ReviewError(f"The verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}.")
        methods_right = sorted(set(methods_right))
        bad = [m for m in methods_right if m not in DIFFUSION_METHODS]
        if bad:
            raise ReviewError(f"Unknown method(s) {bad}: use {', '.join(DIFFUSION_METHODS)}.")
        item = self.item(item_id)
        name = (reviewer or "").strip() or ANONYMOUS
        if len(name) > 128:
            raise ReviewError("A reviewer name has at most 128 characters.")
        rel_mask = None
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != (item.height, item.width):
                raise ReviewError(f"The mask is {mask.shape[1]} x {mask.shape[0]} but the input is "
                                  f"{item.width} x {item.height}; draw it on the input's own size.")
            rel_mask = f"files/masks/{item_id}/{safe_name(name)}_{uuid.uuid4().hex[:12]}.png"
            _atomic_write(self.path(rel_mask), _png_bytes(mask.astype(bool)))

        def write() -> dict[str, Any]:
            with self.Session.begin() as s:
                last = s.scalar(select(func.max(Review.version)).where(Review.item_id == item_id,
                                                                       Review.reviewer == name)) or 0
                r = Review(item_id=item_id, reviewer=name, anonymous=reviewer is None or name == ANONYMOUS,
                           version=last + 1, verdict=verdict, methods_right=methods_right, mask_path=rel_mask,
                           note=str(note or "")[:10000])
                s.add(r)
                s.flush()
                return self._review_dict(r)

        return self._retry(write)

    def undo(self, item_id: int, reviewer: str | None, *, by: str | None = None) -> dict[str, Any] | None:
        """Mark ``reviewer``'s latest live version of the item undone; returns the review that is
        current afterwards (None when none is left)."""
        name = (reviewer or "").strip() or ANONYMOUS

        def write():
            with self.Session.begin() as s:
                live = s.scalars(select(Review).where(Review.item_id == item_id, Review.reviewer == name,
                                                      Review.undone_at.is_(None))
                                 .order_by(Review.version.desc())).all()
                if not live:
                    raise ReviewError(f"{name} has no review of item {item_id} to undo.")
                live[0].undone_at = utcnow()
                live[0].undone_by = by or name
                return self._review_dict(live[1]) if len(live) > 1 else None

        return self._retry(write)

    def history(self, item_id: int, reviewer: str | None = None) -> list[dict[str, Any]]:
        with self.Session() as s:
            q = select(Review).where(Review.item_id == item_id)
            if reviewer is not None:
                q = q.where(Review.reviewer == reviewer)
            return [self._review_dict(r) for r in s.scalars(q.order_by(Review.reviewer, Review.version))]

    def current_reviews(self, item_id: int | None = None) -> list[dict[str, Any]]:
        with self.Session() as s:
            return [self._review_dict(r) for r in self._live(s) if item_id is None or r.item_id == item_id]

    def counts(self) -> dict[str, int]:
        with self.Session() as s:
            n_items = s.scalar(select(func.count(Item.id))) or 0
            n_versions = s.scalar(select(func.count(Review.id))) or 0
            reviewed = {r.item_id for r in self._live(s)}
        return {"items": n_items, "reviewed": len(reviewed), "pending": n_items - len(reviewed),
                "review_versions": n_versions}

    @staticmethod
    def _review_dict(r: Review) -> dict[str, Any]:
        return {"id": r.id, "item_id": r.item_id, "reviewer": r.reviewer, "anonymous": r.anonymous,
                "version": r.version, "verdict": r.verdict, "methods_right": list(r.methods_right or []),
                "mask_path": r.mask_path, "note": r.note, "created_at": _iso(r.created_at),
                "undone_at": _iso(r.undone_at), "undone_by": r.undone_by}

    def mask(self, review: dict[str, Any]) -> np.ndarray | None:
        if not review.get("mask_path"):
            return None
        from PIL import Image

        return np.asarray(Image.open(self.path(review["mask_path"]))) > 127

    # ------------------------------------------------------------------ thresholds
    def apply_threshold(self, model_name: str, new: float, *, old: float, by: str | None, reason: str) -> dict:
        if not np.isfinite(new):
            raise ReviewError("A threshold must be a finite number.")
        if not reason or not reason.strip():
            raise ReviewError("Say why the threshold changes (the reason is kept with the change).")
        with self.Session.begin() as s:
            c = ThresholdChange(model_name=model_name, old_threshold=float(old), new_threshold=float(new),
                                reason=reason.strip(), changed_by=(by or ANONYMOUS))
            s.add(c)
            s.flush()
            return {"id": c.id, "model_name": model_name, "old_threshold": c.old_threshold,
                    "new_threshold": c.new_threshold, "reason": c.reason, "changed_by": c.changed_by,
                    "changed_at": _iso(c.changed_at)}

    def applied_thresholds(self) -> dict[str, float]:
        """model name -> the threshold applied last (models never changed are absent)."""
        with self.Session() as s:
            rows = s.scalars(select(ThresholdChange).order_by(ThresholdChange.id)).all()
        return {r.model_name: r.new_threshold for r in rows}

    # ------------------------------------------------------------------ export
    def rows(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table, as dictionaries (for export)."""
        def plain(obj) -> dict[str, Any]:
            d = {c.name: getattr(obj, c.key) for c in obj.__table__.columns}
            return {k: (_iso(v) if hasattr(v, "isoformat") else v) for k, v in d.items()}

        with self.Session() as s:
            return {
                "items": [plain(x) for x in s.scalars(select(Item).order_by(Item.id))],
                "runs": [plain(x) for x in s.scalars(select(Run).order_by(Run.id))],
                "reviews": [plain(x) for x in s.scalars(select(Review).order_by(Review.id))],
                "threshold_changes": [plain(x) for x in s.scalars(select(ThresholdChange).order_by(ThresholdChange.id))],
            }

    def export(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``<table>.csv`` for every table, ``decodemo_export.json`` with all of them, and
        ``masks.zip`` with every stored mask as ``item<id>_<reviewer>_v<version>.png``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        data = self.rows()
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
