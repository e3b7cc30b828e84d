"""What the reviews say about the detectors: per-model precision, recall, F1, confusion matrix,
ROC and PR curves over reviewed items, pixel IoU against corrected masks, agreement between
reviewers (Cohen's kappa), and a suggested threshold per model (best F1 on reviewed items).

A suggestion needs :data:`MIN_REVIEWED` reviewed normals and as many anomalies (configurable:
``DECODEMO_MIN_REVIEWED``); it comes with an out-of-sample F1 (the threshold chosen on the other
folds of a stratified cross-validation, scored on the held-out fold, pooled) and its bootstrap
interval, and, where the model's normal reference is given, the share of it that the suggested
threshold flags and the false-positive rate it guarantees
(:func:`decodemo.metrics.calibration.describe`). The counts, curves and F1 of a model are
those of its current threshold, so every figure moves when a threshold is applied.

An item's reference label is the majority of its reviewers' current verdicts, ``unsure``
left out; an item whose reviewers tie is left out. "anomalous" is the positive class.
Counts and curves come from :mod:`decodemo.metrics`, under the product's decision rule
(``score > threshold``): a curve has one point per threshold that changes a decision, so
items with equal scores always switch together.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from decodemo.metrics import auroc, confusion_counts, decision_counts, roc_curve
from decodemo.store import records

__all__ = ["item_labels", "cohen_kappa", "best_f1_threshold", "cross_validated_f1", "feedback", "MIN_REVIEWED"]

#: reviewed normals and reviewed anomalies a suggested threshold needs (each)
MIN_REVIEWED = 10
_FOLDS = 5
_BOOTSTRAP = 1000

_COUNTS = ("tp", "fp", "fn", "tn", "precision", "recall", "f1")  # the keys of a model entry from its decisions


def item_labels(reviews: list[dict[str, Any]]) -> dict[int, bool]:
    """item id -> True (anomalous) / False (normal) from the current reviews."""
    votes: dict[int, list[int]] = {}
    for r in reviews:
        if r["verdict"] in ("normal", "anomalous"):
            votes.setdefault(r["item_id"], []).append(1 if r["verdict"] == "anomalous" else -1)
    return {i: sum(v) > 0 for i, v in votes.items() if sum(v) != 0}


def cohen_kappa(a: list[str], b: list[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items (None for no items)."""
    if not a:
        return None
    cats = sorted(set(a) | set(b))
    n = len(a)
    po = sum(x == y for x, y in zip(a, b)) / n
    pe = sum((a.count(c) / n) * (b.count(c) / n) for c in cats)
    if pe >= 1.0:
        return 1.0 if po >= 1.0 else 0.0
    return (po - pe) / (1.0 - pe)


def _cuts(scores: np.ndarray) -> np.ndarray:
    """Every threshold at which ``score > threshold`` flags a different set of items (at least
    one), lowest first: just below the lowest score, then midway between consecutive distinct
    scores."""
    u = np.unique(scores)
    return np.concatenate([[u[0] - max(1e-6, 1e-3 * abs(u[0]))], (u[:-1] + u[1:]) / 2])


def _f1_at(y: np.ndarray, s: np.ndarray, t: float) -> float:
    return decision_counts(s, y, t, zero_division=0.0).f1


def best_f1_threshold(y: np.ndarray, scores: np.ndarray, current: float) -> dict[str, Any] | None:
    """The threshold with the best F1 (decision ``score > threshold``) over the reviewed items;
    candidates are midpoints between consecutive distinct scores, just below the lowest, and
    ``current`` itself. Ties go to the candidate closest to ``current`` (so a threshold that is
    already best is kept). None without both classes."""
    y = np.asarray(y, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.all() or not y.any():
        return None
    # the current threshold is a candidate too: when it already gives the best F1, it is kept
    best = None
    for t in [*_cuts(s), current]:
        f1 = _f1_at(y, s, t)
        key = (round(f1, 12), -abs(t - current))
        if best is None or key > best[0]:
            best = (key, float(t), f1)
    return {"threshold": best[1], "f1": best[2], "f1_current": _f1_at(y, s, current)}


def cross_validated_f1(y: np.ndarray, scores: np.ndarray, current: float, *, folds: int = _FOLDS,
                       level: float = 0.9, seed: int = 0) -> dict[str, Any] | None:
    """The F1 of :func:`best_f1_threshold` out of sample: stratified ``folds``-fold (each item's
    decision from the threshold chosen without it), pooled over the folds, with a bootstrap
    ``level`` interval over items. None without two items of each class."""
    y = np.asarray(y, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    if len(pos) < 2 or len(neg) < 2:
        return None
    rng = np.random.default_rng(seed)
    k = min(folds, len(pos), len(neg))
    fold = np.empty(len(y), dtype=int)
    for idx in (pos, neg):
        fold[rng.permutation(idx)] = np.arange(len(idx)) % k
    flagged = np.zeros(len(y), dtype=bool)
    for f in range(k):
        train, test = fold != f, fold == f
        chosen = best_f1_threshold(y[train], s[train], current)
        flagged[test] = s[test] > (chosen["threshold"] if chosen else current)
    f1 = confusion_counts(y, flagged, zero_division=0.0).f1
    boots = []
    for _ in range(_BOOTSTRAP):
        b = rng.integers(0, len(y), len(y))
        boots.append(confusion_counts(y[b], flagged[b], zero_division=0.0).f1)
    tail = (1.0 - level) / 2.0
    return {"f1": float(f1), "interval": [float(np.quantile(boots, tail)), float(np.quantile(boots, 1 - tail))],
            "level": level, "folds": int(k)}


def _curves(y: np.ndarray, s: np.ndarray) -> dict[str, Any]:
    """ROC (with its area) and PR points of the scores ``s`` against the labels ``y``."""
    out: dict[str, Any] = {}
    if y.any() and not y.all():
        fpr, tpr, _ = roc_curve(y, s)
        out["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
        out["auroc"] = float(auroc(y, s))
    if y.any():
        flagging = [decision_counts(s, y, t) for t in _cuts(s)[::-1]]  # fewest flagged first
        out["pr"] = {"recall": [c.recall for c in flagging], "precision": [c.precision for c in flagging]}
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _model_entry(store, name: str, by_item: dict[int, dict], labels: dict[int, bool],
                 masks: dict[int, list[np.ndarray]], current: float, *, min_reviewed: int,
                 reference: list[float] | None) -> dict[str, Any]:
    """One model's figures: its latest run per item (``by_item``) against the labels and masks,
    judged against its ``current`` threshold."""
    from decodemo.metrics.calibration import describe

    ids = [i for i in by_item if i in labels]
    entry: dict[str, Any] = {"model": name, "method": next(iter(by_item.values()))["method"], "n_reviewed": len(ids),
                             "threshold": float(current), "suggestion": None}
    if ids:
        y = np.array([labels[i] for i in ids])
        s = np.array([by_item[i]["score"] for i in ids], dtype=np.float64)
        counts = confusion_counts(y, s > current, zero_division=0.0)  # under the threshold that holds now
        entry.update({k: getattr(counts, k) for k in _COUNTS})
        entry["confusion"] = [[counts.tn, counts.fp], [counts.fn, counts.tp]]  # rows: truth normal/anomalous
        entry.update(_curves(y, s))
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        entry.update(n_normal=n_neg, n_anomalous=n_pos)
        if n_pos >= min_reviewed and n_neg >= min_reviewed:
            sug = best_f1_threshold(y, s, current)
            sug["out_of_sample"] = cross_validated_f1(y, s, current)
            if reference:
                sug["normal_reference"] = describe(reference, sug["threshold"])
            entry["suggestion"] = sug
        else:
            entry["suggestion_needs"] = (f"{max(0, min_reviewed - n_neg)} more reviewed normals and "
                                         f"{max(0, min_reviewed - n_pos)} more reviewed anomalies "
                                         f"(at least {min_reviewed} of each)")
    if reference:
        entry["normal_reference"] = describe(reference, current)
    ious = []
    for i, ms in masks.items():
        run = by_item.get(i)
        if run is None or run["pixel_threshold"] is None:
            continue
        pred_mask = store.load_map(run) > run["pixel_threshold"]
        ious += [_iou(pred_mask, gt) for gt in ms if gt.shape == pred_mask.shape]
    entry["pixel_iou"] = float(np.mean(ious)) if ious else None
    entry["n_masks"] = len(ious)
    return entry


def _kappa_pairs(reviews: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cohen's kappa of every two reviewers over the items both reviewed."""
    by_reviewer: dict[str, dict[int, str]] = {}
    for r in reviews:
        by_reviewer.setdefault(r["reviewer"], {})[r["item_id"]] = r["verdict"]
    pairs = []
    for a, b in combinations(sorted(by_reviewer), 2):
        common = sorted(set(by_reviewer[a]) & set(by_reviewer[b]))
        if common:
            k = cohen_kappa([by_reviewer[a][i] for i in common], [by_reviewer[b][i] for i in common])
            pairs.append({"reviewers": [a, b], "n_items": len(common), "kappa": k})
    return pairs


def feedback(store, *, domain: str | None = None, current_thresholds: dict[str, float] | None = None,
             references: dict[str, list[float]] | None = None, min_reviewed: int | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, computed from the store's rows (read in one session;
    the map and mask files after it). ``current_thresholds``: model name -> its threshold now
    (default: the one of its latest run); ``references``: model name -> its normal reference
    scores; ``min_reviewed``: reviewed normals and anomalies a suggestion needs (default
    ``DECODEMO_MIN_REVIEWED``, else :data:`MIN_REVIEWED`)."""
    from decodemo import settings

    if min_reviewed is None:
        min_reviewed = settings.min_reviewed()
    with store.session() as s:
        rows = records.table_rows(s)
        reviews = records.current_reviews(s)
    items = {it["id"]: it for it in rows["items"] if domain in (None, "", it["domain"])}
    reviews = [r for r in reviews if r["item_id"] in items]
    labels = item_labels(reviews)
    latest: dict[str, dict[int, dict]] = {}
    for run in rows["runs"]:
        if run["item_id"] in items:
            latest.setdefault(run["model_name"], {})[run["item_id"]] = run  # runs are in id order
    masks: dict[int, list[np.ndarray]] = {}
    for r in reviews:
        if r["mask_path"] and r["verdict"] == "anomalous":
            masks.setdefault(r["item_id"], []).append(store.mask(r))
    models = {}
    for name, by_item in sorted(latest.items()):
        current = (current_thresholds or {}).get(name, by_item[max(by_item)]["threshold"])
        models[name] = _model_entry(store, name, by_item, labels, masks, current, min_reviewed=min_reviewed,
                                    reference=(references or {}).get(name))
    return {
        "n_items": len(items), "n_reviewed": len({r["item_id"] for r in reviews}), "n_labelled": len(labels),
        "models": models, "min_reviewed": min_reviewed, "kappa": _kappa_pairs(reviews), "threshold_changes": list(rows["threshold_changes"]),
    }
