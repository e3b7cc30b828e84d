"""The review store's data functions: each reads or writes rows in a session it is given.

The session's life is the caller's (SQLAlchemy's guide: "separate and external" to the data
functions): :meth:`decodemo.store.ReviewStore.session` for one user event,
:meth:`~decodemo.store.ReviewStore.write` for one write retried on a lost race. Nothing here
commits, opens a session or touches a file, and no ORM row leaves: every function returns
plain values (:class:`ItemRecord`, :class:`RunRecord`, dictionaries).

    with store.session() as s:
        item = records.get_item(s, item_id)
        runs = records.latest_runs(s, item_id)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, Iterable

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from decodemo.errors import NoteTooLongError, RequestIdConflictError, RequestIdError, ReviewError
from decodemo.methods.catalogue import DIFFUSION_METHODS
from decodemo.store.schema import Item, Review, Run, ThresholdChange, utcnow

__all__ = ["VERDICTS", "ANONYMOUS", "VISITOR_PREFIX", "is_anonymous", "NOTE_MAX_CHARS", "REQUEST_ID_MAX_CHARS", "NAME_MAX_CHARS", "ReviewError",
           "ItemRecord", "RunRecord", "iso", "reviewer_label", "display_name", "check_note", "check_request_id",
           "check_review", "add_comparison", "get_item", "item_by_sha", "latest_runs", "queue", "replayed_review",
           "add_review", "undo_review", "history", "current_reviews", "counts", "add_threshold_change",
           "applied_thresholds", "table_rows"]

VERDICTS = ("normal", "anomalous", "unsure")
ANONYMOUS = "anonymous"
#: a visitor without a login is stored as ``anonymous:<8 hex>`` (a per-browser id, decodemo.app.auth)
VISITOR_PREFIX = ANONYMOUS + ":"


def is_anonymous(name: str | None) -> bool:
    """Whether a stored uploader or reviewer name is anonymous: none, ``anonymous``, or a visitor's."""
    name = (name or "").strip()
    return not name or name == ANONYMOUS or name.startswith(VISITOR_PREFIX)
#: the longest note a review keeps; a longer one is refused (:class:`~decodemo.errors.NoteTooLongError`), never cut
NOTE_MAX_CHARS = 10_000
#: the longest request id (a UUID has 36 characters); the ``reviews.request_id`` column's length
REQUEST_ID_MAX_CHARS = 64
#: the longest display name of an item (the ``items.name`` column's length)
NAME_MAX_CHARS = 255
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def iso(dt: datetime | None) -> str | None:
    """``dt`` as ISO text in UTC (SQLite hands stored times back without their zone: they are UTC),
    so that the same stored time reads the same on every backend and before and after a commit."""
    if dt is None:
        return None
    dt = dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)
    return dt.isoformat()


@dataclass(frozen=True)
class ItemRecord:
    """An analysed input: a plain copy of its ``items`` row."""

    id: int
    sha256: str
    name: str
    file_path: str  # relative to the data directory
    modality: str
    domain: str
    height: int  # input size (audio: mel bands)
    width: int  # (audio: frames)
    uploaded_at: datetime
    uploaded_by: str
    anonymous: bool
    disagreement: float


@dataclass(frozen=True)
class RunRecord:
    """One detector run on an item: a plain copy of its ``runs`` row."""

    id: int
    item_id: int
    method: str
    model_name: str
    model_revision: str
    score: float
    decision: str
    threshold: float
    pixel_threshold: float | None
    percentile: float | None
    latency_ms: float
    nfe: int
    map_path: str  # relative to the data directory
    created_at: datetime


def _copy(cls, row):
    return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


def _review_dict(r: Review) -> dict[str, Any]:
    return {"id": r.id, "item_id": r.item_id, "reviewer": r.reviewer, "anonymous": r.anonymous,
            "version": r.version, "verdict": r.verdict, "methods_right": list(r.methods_right or []),
            "mask_path": r.mask_path, "note": r.note, "created_at": iso(r.created_at),
            "undone_at": iso(r.undone_at), "undone_by": r.undone_by, "request_id": r.request_id}


def display_name(name: str, limit: int = NAME_MAX_CHARS) -> str:
    """An uploaded file's name as the store shows it: control characters (which PostgreSQL may
    refuse) made spaces, and a name longer than ``limit`` shortened in the middle, so that its
    start and its extension both stay readable."""
    text = _CONTROL.sub(" ", str(name or "")).strip() or "unnamed"
    if len(text) <= limit:
        return text
    tail = min(40, limit // 3)
    return text[: limit - tail - 1] + "…" + text[-tail:]


# ---------------------------------------------------------------------- analyses
def add_comparison(s: Session, comp, *, input_path: str, map_paths: dict[str, str], user: str | None) -> int:
    """Add a comparison (``decodemo.service.Comparison``) whose files are already stored: its
    item once per content (``input_path``), a run per method (``map_paths``: method -> map
    file). ``user`` None is anonymous. Returns the item id."""
    h, w = comp.size
    disagreement = float(comp.summary()["disagreement"])
    item = s.scalar(select(Item).where(Item.sha256 == comp.sha256))
    if item is None:
        item = Item(sha256=comp.sha256, name=display_name(comp.name), file_path=input_path, modality=comp.modality,
                    domain=comp.domain, height=int(h), width=int(w), uploaded_by=user or ANONYMOUS,
                    anonymous=is_anonymous(user))
        s.add(item)
        s.flush()
    item.domain = comp.domain
    item.disagreement = disagreement
    for o in comp.outcomes:
        s.add(Run(item_id=item.id, method=o.method, model_name=o.model, model_revision=o.revision,
                  score=float(o.score), decision=o.decision, threshold=float(o.threshold),
                  pixel_threshold=None if o.pixel_threshold is None else float(o.pixel_threshold),
                  percentile=o.percentile, latency_ms=float(o.latency_ms), nfe=int(o.nfe),
                  map_path=map_paths[o.method]))
    return item.id


def get_item(s: Session, item_id: int) -> ItemRecord:
    item = s.get(Item, item_id)
    if item is None:
        raise ReviewError(f"No item {item_id} in the review store.")
    return _copy(ItemRecord, item)


def item_by_sha(s: Session, sha256: str) -> ItemRecord | None:
    item = s.scalar(select(Item).where(Item.sha256 == sha256))
    return None if item is None else _copy(ItemRecord, item)


def _latest_by_item(runs: Iterable[Run]) -> dict[int, dict[str, RunRecord]]:
    """item id -> method -> its most recent run (``runs`` in id order)."""
    latest: dict[int, dict[str, RunRecord]] = {}
    for r in runs:
        latest.setdefault(r.item_id, {})[r.method] = _copy(RunRecord, r)
    return latest


def latest_runs(s: Session, item_id: int) -> dict[str, RunRecord]:
    """method -> the item's most recent run of it."""
    runs = s.scalars(select(Run).where(Run.item_id == item_id).order_by(Run.id))
    return _latest_by_item(runs).get(item_id, {})


# ---------------------------------------------------------------------- queue
def _live(s: Session) -> list[Review]:
    """The current review of every (item, reviewer): its latest version not undone."""
    rows = s.scalars(select(Review).where(Review.undone_at.is_(None)).order_by(Review.version)).all()
    cur: dict[tuple[int, str], Review] = {}
    for r in rows:
        cur[(r.item_id, r.reviewer)] = r
    return list(cur.values())


def queue(s: Session, *, domain: str | None = None, modality: str | None = None, method: str | None = None,
          decision: str | None = None, reviewed_by: str | None = None, include_reviewed: bool = False,
          exclude: Iterable[int] = ()) -> list[dict[str, Any]]:
    """Items to review: pending first, then by how much the methods disagree (most first),
    then oldest first. Filters: domain, modality, a method's latest decision, items a
    reviewer has reviewed (``reviewed_by``; implies ``include_reviewed``). ``exclude``
    (skipped items) go to the end instead of being dropped."""
    excluded = set(exclude)
    q = select(Item)
    if domain:
        q = q.where(Item.domain == domain)
    if modality:
        q = q.where(Item.modality == modality)
    items = s.scalars(q).all()
    latest = _latest_by_item(s.scalars(select(Run).order_by(Run.id)))
    reviewers: dict[int, set[str]] = {}
    for r in _live(s):
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
                     "uploaded_at": iso(it.uploaded_at)})
    rows.sort(key=lambda r: (r["skipped"], not r["pending"], -r["disagreement"], r["uploaded_at"] or "",
                             r["item_id"]))
    return rows


# ---------------------------------------------------------------------- reviews
def reviewer_label(reviewer: str | None) -> str:
    """The name a review is stored under: the reviewer's, or ``anonymous``."""
    return (reviewer or "").strip() or ANONYMOUS


def check_note(note: str | None) -> str:
    """The note as stored (None is empty), or :class:`~decodemo.errors.NoteTooLongError` when it
    is longer than :data:`NOTE_MAX_CHARS` (a note is never cut: the reviewer decides what goes)."""
    text = "" if note is None else str(note)
    if len(text) > NOTE_MAX_CHARS:
        raise NoteTooLongError(f"The note has {len(text):,} characters; a review's note has at most "
                               f"{NOTE_MAX_CHARS:,}. Shorten it and send the review again (nothing was stored).")
    if "\x00" in text:
        raise ReviewError("The note contains a NUL character (\\x00), which the database cannot keep; remove it.")
    return text


def check_request_id(request_id: str | None) -> str | None:
    """The request id as stored (None: the review has none), or :class:`~decodemo.errors.RequestIdError`
    when it is not a token of 1 to :data:`REQUEST_ID_MAX_CHARS` letters, digits, ``.``, ``_``,
    ``:`` or ``-`` starting with a letter or digit (a UUID is one)."""
    if request_id is None:
        return None
    if not isinstance(request_id, str):
        raise RequestIdError(f"A request id is text (e.g. a UUID), not {type(request_id).__name__}.")
    if not 1 <= len(request_id) <= REQUEST_ID_MAX_CHARS or not _REQUEST_ID.fullmatch(request_id):
        shown = request_id if len(request_id) <= 80 else request_id[:77] + "..."
        raise RequestIdError(f"The request id {shown!r} is not accepted: use 1 to {REQUEST_ID_MAX_CHARS} letters, "
                             "digits, '.', '_', ':' or '-', starting with a letter or digit (e.g. a UUID).")
    return request_id


def check_review(s: Session, item_id: int, reviewer: str | None, verdict: str,
                 methods_right: Iterable[str] = ()) -> tuple[ItemRecord, str, list[str]]:
    """Refuse a review that cannot be stored (:class:`ReviewError`); else the item, the
    reviewer's stored name and the sorted methods that were right."""
    if verdict not in VERDICTS:
        raise ReviewError(f"The verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}.")
    methods = sorted(set(methods_right))
    bad = [m for m in methods if m not in DIFFUSION_METHODS]
    if bad:
        raise ReviewError(f"Unknown method(s) {bad}: use {', '.join(DIFFUSION_METHODS)}.")
    item = get_item(s, item_id)
    name = reviewer_label(reviewer)
    if len(name) > 128:
        raise ReviewError("A reviewer name has at most 128 characters.")
    return item, name, methods


def lock_item(s: Session, item_id: int) -> None:
    """Hold the item's row until the session ends (PostgreSQL ``SELECT ... FOR UPDATE``; SQLite's
    write lock already covers it), so that writers of one item's reviews take turns: each reads
    the latest version and request ids as committed by the one before, instead of racing for them."""
    s.execute(select(Item.id).where(Item.id == item_id).with_for_update())


def replayed_review(s: Session, item_id: int, name: str, request_id: str | None, *, verdict: str,
                    methods: list[str], mask_path: str | None, note: str) -> dict[str, Any] | None:
    """The review stored earlier under reviewer ``name``'s ``request_id`` when this is the same
    request sent again (None: no request id, or one not used yet). Raises
    :class:`~decodemo.errors.RequestIdConflictError` when the earlier request's content differs."""
    if request_id is None:
        return None
    r = s.scalar(select(Review).where(Review.reviewer == name, Review.request_id == request_id))
    if r is None:
        return None
    sent = {"item": item_id, "verdict": verdict, "methods right": methods, "mask": mask_path, "note": note}
    stored = {"item": r.item_id, "verdict": r.verdict, "methods right": sorted(r.methods_right or []),
              "mask": r.mask_path, "note": r.note}
    differs = [k for k in sent if sent[k] != stored[k]]
    if differs:
        raise RequestIdConflictError(
            f"Request id {request_id!r} of {name} already stored review {r.id} (item {r.item_id}, version "
            f"{r.version}) with another {', '.join(differs)}. A request sent again must be the same request; "
            "send a new review with a new request id.")
    return _review_dict(r)


def add_review(s: Session, item_id: int, reviewer: str | None, verdict: str, *, methods_right: Iterable[str] = (),
               mask_path: str | None = None, note: str | None = "", request_id: str | None = None) -> dict[str, Any]:
    """Add a new version of ``reviewer``'s review of the item (``mask_path``: a stored mask
    file, or None). ``reviewer`` None is anonymous. Returns the stored version.

    ``request_id`` (optional, :func:`check_request_id`): the client's id of this request. The same
    request sent again with it (after a lost answer) adds nothing and returns the version the
    first one stored; another review under an id the reviewer already used is refused
    (:func:`replayed_review`)."""
    text, rid = check_note(note), check_request_id(request_id)
    lock_item(s, item_id)
    _, name, methods = check_review(s, item_id, reviewer, verdict, methods_right)
    earlier = replayed_review(s, item_id, name, rid, verdict=verdict, methods=methods, mask_path=mask_path, note=text)
    if earlier is not None:
        return earlier
    last = s.scalar(select(func.max(Review.version)).where(Review.item_id == item_id, Review.reviewer == name)) or 0
    r = Review(item_id=item_id, reviewer=name, anonymous=is_anonymous(name), version=last + 1,
               verdict=verdict, methods_right=methods, mask_path=mask_path, note=text, request_id=rid)
    s.add(r)
    s.flush()
    return _review_dict(r)


def undo_review(s: Session, item_id: int, reviewer: str | None, *, by: str | None = None) -> dict[str, Any] | None:
    """Mark ``reviewer``'s latest live version of the item undone; returns the review that is
    current afterwards (None when none is left)."""
    name = reviewer_label(reviewer)
    lock_item(s, item_id)  # two undos at once undo two versions, not the same one twice
    live = s.scalars(select(Review).where(Review.item_id == item_id, Review.reviewer == name,
                                          Review.undone_at.is_(None)).order_by(Review.version.desc())).all()
    if not live:
        raise ReviewError(f"{name} has no review of item {item_id} to undo.")
    live[0].undone_at = utcnow()
    live[0].undone_by = by or name
    return _review_dict(live[1]) if len(live) > 1 else None


def undo_last_review(s: Session, reviewer: str | None) -> tuple[int, dict[str, Any] | None]:
    """Mark ``reviewer``'s most recent live review, of whichever item, undone -> ``(item_id, the
    review of that item current afterwards or None)``."""
    name = reviewer_label(reviewer)
    last = s.scalars(select(Review).where(Review.reviewer == name, Review.undone_at.is_(None))
                     .order_by(Review.created_at.desc(), Review.id.desc()).limit(1)).first()
    if last is None:
        raise ReviewError(f"{name} has no review left to undo.")
    return last.item_id, undo_review(s, last.item_id, reviewer)


def history(s: Session, item_id: int, reviewer: str | None = None) -> list[dict[str, Any]]:
    """Every version of the item's reviews (of ``reviewer``'s only, when given), undone ones too."""
    q = select(Review).where(Review.item_id == item_id)
    if reviewer is not None:
        q = q.where(Review.reviewer == reviewer)
    return [_review_dict(r) for r in s.scalars(q.order_by(Review.reviewer, Review.version))]


def current_reviews(s: Session, item_id: int | None = None) -> list[dict[str, Any]]:
    """The current review of every (item, reviewer), of one item when ``item_id`` is given."""
    return [_review_dict(r) for r in _live(s) if item_id is None or r.item_id == item_id]


def counts(s: Session) -> dict[str, int]:
    n_items = s.scalar(select(func.count(Item.id))) or 0
    n_versions = s.scalar(select(func.count(Review.id))) or 0
    reviewed = {r.item_id for r in _live(s)}
    return {"items": n_items, "reviewed": len(reviewed), "pending": n_items - len(reviewed),
            "review_versions": n_versions}


# ---------------------------------------------------------------------- thresholds
def add_threshold_change(s: Session, model_name: str, new: float, *, old: float, by: str | None,
                         reason: str) -> dict[str, Any]:
    """Record that ``model_name``'s threshold goes from ``old`` to ``new``, who did it and why."""
    if not np.isfinite(new):
        raise ReviewError("A threshold must be a finite number.")
    if not reason or not reason.strip():
        raise ReviewError("Say why the threshold changes (the reason is kept with the change).")
    c = ThresholdChange(model_name=model_name, old_threshold=float(old), new_threshold=float(new),
                        reason=reason.strip(), changed_by=(by or ANONYMOUS))
    s.add(c)
    s.flush()
    return {"id": c.id, "model_name": model_name, "old_threshold": c.old_threshold,
            "new_threshold": c.new_threshold, "reason": c.reason, "changed_by": c.changed_by,
            "changed_at": iso(c.changed_at)}


def applied_thresholds(s: Session) -> dict[str, float]:
    """model name -> the threshold applied last (models never changed are absent)."""
    rows = s.scalars(select(ThresholdChange).order_by(ThresholdChange.id))
    return {r.model_name: r.new_threshold for r in rows}


# ---------------------------------------------------------------------- export
def table_rows(s: Session) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, as dictionaries (datetimes as ISO text), in id order."""
    def plain(obj) -> dict[str, Any]:
        d = {c.name: getattr(obj, c.key) for c in obj.__table__.columns}
        return {k: (iso(v) if hasattr(v, "isoformat") else v) for k, v in d.items()}

    tables = {"items": Item, "runs": Run, "reviews": Review, "threshold_changes": ThresholdChange}
    return {name: [plain(x) for x in s.scalars(select(t).order_by(t.id))] for name, t in tables.items()}
