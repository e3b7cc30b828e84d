"""The one sort behind every ranking metric, and the areas computed from it.

Scores are sorted once (descending) and equal scores are collapsed into one group; the
positives / negatives counted at each distinct score give the ROC, the PR steps and the
F1 curve exactly. ``nan`` is returned where a metric is undefined (a class is absent).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray


class _Ranked(NamedTuple):
    """Scores sorted once, descending, with equal scores collapsed into groups.

    ``order`` is the descending permutation of the flat input; ``ends[k]`` is the
    position (in sorted order) of the last sample of the k-th distinct score, whose
    value is ``thresholds[k]``; ``tps[k]`` / ``fps[k]`` count the positives / negatives
    with ``score >= thresholds[k]``.
    """

    order: NDArray[np.intp]
    ends: NDArray[np.intp]
    thresholds: np.ndarray
    tps: NDArray[np.int64]
    fps: NDArray[np.int64]
    n_pos: int
    n_neg: int


def _rank(y: NDArray[np.bool_], s: np.ndarray) -> _Ranked:
    """Sort (flat) scores descending once and count positives/negatives per threshold."""
    y = y.ravel()
    s = s.ravel()
    # Ties are collapsed below, so the sort need not be stable (the default is fastest).
    order = np.argsort(s)[::-1]
    s_sorted = s[order]
    # `!=` rather than `np.diff(...) != 0` so that repeated +-inf collapse too.
    distinct = np.flatnonzero(s_sorted[1:] != s_sorted[:-1])
    ends = np.r_[distinct, s_sorted.size - 1]
    tps = np.cumsum(y[order], dtype=np.int64)[ends]
    fps = (ends + 1) - tps
    n_pos = int(tps[-1])
    return _Ranked(order, ends, s_sorted[ends], tps, fps, n_pos, s.size - n_pos)


def _auroc(r: _Ranked) -> float:
    """Area under the ROC of ranked scores; ``nan`` without both classes."""
    if r.n_pos == 0 or r.n_neg == 0:
        return math.nan
    fp = np.r_[0, r.fps].astype(np.float64)
    tp = np.r_[0, r.tps].astype(np.float64)
    # Trapezoids in count space, one division at the end: exact for ties (diagonal steps).
    return float(np.sum(np.diff(fp) * (tp[1:] + tp[:-1])) / (2.0 * r.n_pos * r.n_neg))


def _average_precision(r: _Ranked) -> float:
    """Step-wise average precision of ranked scores; ``nan`` without positives."""
    if r.n_pos == 0:
        return math.nan
    precision = r.tps / (r.ends + 1.0)  # tps + fps == ends + 1
    d_tp = np.diff(np.r_[0, r.tps])
    return float(np.sum(d_tp * precision) / r.n_pos)


def _f1_max(r: _Ranked) -> float:
    """Best F1 over the distinct scores of ranked scores; ``nan`` without positives."""
    if r.n_pos == 0:
        return math.nan
    # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (TP + FP + P)
    f1 = 2.0 * r.tps / (r.ends + 1.0 + r.n_pos)
    return float(f1.max())


def _roc_points(r: _Ranked) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(fpr, tpr) including the (0, 0) start; needs both classes."""
    fpr = np.r_[0, r.fps] / float(r.n_neg)
    tpr = np.r_[0, r.tps] / float(r.n_pos)
    return fpr, tpr


def _partial_area(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoidal area under the polyline (x, y) for x in [x[0], x_max].

    ``x`` must be non-decreasing (vertical steps allowed). If ``x_max`` falls strictly
    between two points, ``y`` is linearly interpolated there, as in the MVTec AD
    evaluation code (``trapezoid(..., x_max)``) and scikit-learn's partial ROC AUC.
    """
    stop = int(np.searchsorted(x, x_max, side="right"))  # x[:stop] <= x_max
    xs, ys = x[:stop], y[:stop]
    area = float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1])) / 2.0)
    if 0 < stop < x.size and xs[-1] < x_max:
        x0, x1, y0, y1 = x[stop - 1], x[stop], y[stop - 1], y[stop]
        y_at = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
        area += float((x_max - x0) * (y0 + y_at) / 2.0)
    return area


def _pauc(r: _Ranked, max_fpr: float, mcclish: bool) -> float:
    """Partial ROC area over FPR in [0, max_fpr] / max_fpr (or McClish-standardised)."""
    if r.n_pos == 0 or r.n_neg == 0:
        return math.nan
    fpr, tpr = _roc_points(r)
    area = _partial_area(fpr, tpr, max_fpr)
    if mcclish:
        min_area = 0.5 * max_fpr**2
        return float(0.5 * (1.0 + (area - min_area) / (max_fpr - min_area)))
    return area / max_fpr
