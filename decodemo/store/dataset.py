"""The reviewed items of a model set as dataset rows: each item's verdict, its reviews and its mask.

An item's verdict is the reference the dashboard uses (:func:`decodemo.store.feedback.item_labels`):
the majority of its reviewers' current verdicts (each reviewer's latest version that is not undone),
``unsure`` left out. An item whose reviewers all said ``unsure``, or whose normal and anomalous
verdicts tie, has no verdict and is left out of the dataset. The mask of an anomalous item is the
one of its most recent current ``anomalous`` review that has a mask.

:func:`reviewed_items` is a data function (it takes a session, as :mod:`decodemo.store.records`);
:func:`decodemo.data.reviewed.write_reviewed_layout` writes its rows as a folder layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from decodemo.errors import NothingToExportError
from decodemo.store import records
from decodemo.store.feedback import item_labels
from decodemo.store.schema import Item
from decodemo.store.store import safe_name

__all__ = ["reviewed_items"]


_TIE = "tie: as many normal as anomalous verdicts"


def reviewed_items(s: Session, domain: str) -> list[dict[str, Any]]:
    """Every item of model set ``domain`` with at least one current review, in item id order.

    Each row: ``item_id``, ``sha256``, ``name``, ``stem`` (``item<id>_<name>``, file-name safe and
    unique), ``modality``, ``file_path`` (the stored upload, relative to the data directory),
    ``verdict`` (``normal``, ``anomalous``, ``unsure``, or None for a tie), ``left_out`` (None, or
    why the item is not in the dataset), ``reviews`` (the current reviews: ``review_id``,
    ``reviewer``, ``version``, ``verdict``, ``mask_path``), ``mask_path`` and ``mask_review_id``
    (the mask the dataset takes, or None).

    Raises :class:`~decodemo.errors.NothingToExportError` when the store has no item of ``domain``,
    or none of them has a normal or anomalous verdict.
    """
    items = s.scalars(select(Item).where(Item.domain == domain).order_by(Item.id)).all()
    if not items:
        present = sorted(set(s.scalars(select(Item.domain).distinct())))
        raise NothingToExportError(f"The review store has no items of model set {domain!r}; it has items of "
                                   f"{', '.join(present) if present else 'none (nothing analysed yet)'}.")
    by_item: dict[int, list[dict[str, Any]]] = {}
    for r in sorted(records.current_reviews(s), key=lambda r: r["id"]):
        by_item.setdefault(r["item_id"], []).append(r)
    labels = item_labels([r for it in items for r in by_item.get(it.id, [])])
    rows = []
    for it in items:
        reviews = by_item.get(it.id)
        if not reviews:
            continue  # pending: nobody's current review
        verdict = None if it.id not in labels else ("anomalous" if labels[it.id] else "normal")
        masked = [r for r in reviews if r["verdict"] == "anomalous" and r["mask_path"]] if verdict == "anomalous" else []
        if verdict is None and all(r["verdict"] == "unsure" for r in reviews):
            verdict = "unsure"
        rows.append({
            "item_id": it.id, "sha256": it.sha256, "name": it.name,
            "stem": f"item{it.id}_{safe_name(Path(it.name).stem, 48)}", "modality": it.modality,
            "file_path": it.file_path, "verdict": verdict,
            "left_out": None if verdict in ("normal", "anomalous") else verdict or _TIE,
            "reviews": [{"review_id": r["id"], "reviewer": r["reviewer"], "version": r["version"],
                         "verdict": r["verdict"], "mask_path": r["mask_path"]} for r in reviews],
            "mask_path": masked[-1]["mask_path"] if masked else None,
            "mask_review_id": masked[-1]["id"] if masked else None,
        })
    if not any(r["left_out"] is None for r in rows):
        raise NothingToExportError(
            f"None of the {len(items)} items of model set {domain!r} has a normal or anomalous verdict yet "
            f"({len(rows)} reviewed, all unsure or tied); review some on the Review tab first.")
    return rows
