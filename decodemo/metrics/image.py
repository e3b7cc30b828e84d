"""Image-level (one score per sample) ranking metrics: ROC curve, AUROC, AP and F1-max."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from decodemo.metrics.inputs import _image_inputs
from decodemo.metrics.ranking import _auroc, _average_precision, _f1_max, _rank, _Ranked


def _ranked_samples(labels: Any, scores: Any) -> _Ranked:
    """Check per-sample ``labels`` / ``scores`` and sort them once."""
    return _rank(*_image_inputs(labels, scores))


def roc_curve(
    labels: Any, scores: Any, *, drop_intermediate: bool = False
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Receiver operating characteristic, one point per distinct score.

    Args:
        labels: shape (N,), binary; 1 = anomalous.
        scores: shape (N,), real; higher = more anomalous.
        drop_intermediate: drop collinear points that cannot change the area, with
            scikit-learn's rule. Off by default (every distinct score is kept), unlike
            scikit-learn whose default is ``True``.

    Returns:
        ``(fpr, tpr, thresholds)``, each float64 of shape (K + 1,) where K is the number
        of distinct scores (fewer with ``drop_intermediate``). ``thresholds`` is
        decreasing and starts with ``inf`` (the point ``fpr = tpr = 0``); point ``k``
        predicts anomalous every sample with ``score >= thresholds[k]``. Equal scores
        are collapsed into one point (same as ``sklearn.metrics.roc_curve``). If a
        class is absent, its rate is undefined and returned as all-``nan``.
    """
    y, s = _image_inputs(labels, scores)
    r = _rank(y, s)
    fps, tps, thr = r.fps, r.tps, r.thresholds.astype(np.float64)
    if drop_intermediate and fps.size > 2:
        keep = np.flatnonzero(
            np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        )
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    fps = np.r_[0, fps].astype(np.float64)
    tps = np.r_[0, tps].astype(np.float64)
    fpr = fps / r.n_neg if r.n_neg else np.full(fps.shape, np.nan)
    tpr = tps / r.n_pos if r.n_pos else np.full(tps.shape, np.nan)
    return fpr, tpr, np.r_[np.inf, thr]


def auroc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve (ties count one half, as in scikit-learn).

    Args:
        labels: shape (N,), binary; 1 = anomalous.
        scores: shape (N,), real; higher = more anomalous.

    Returns:
        AUROC in [0, 1]; ``nan`` if only one class is present (instead of raising, so
        evaluation tables on one-class subsets do not crash).
    """
    return _auroc(_ranked_samples(labels, scores))


def average_precision(labels: Any, scores: Any) -> float:
    """Average precision, scikit-learn's step-wise definition (no interpolation).

    ``AP = sum_k (R_k - R_{k-1}) * P_k`` over the distinct scores in decreasing order,
    with ``R_0 = 0``; equal scores form one step.

    Args:
        labels: shape (N,), binary; 1 = anomalous.
        scores: shape (N,), real; higher = more anomalous.

    Returns:
        AP in [0, 1]; ``nan`` if there is no anomalous sample (1.0 if there is no normal
        one, as every threshold then has precision 1).
    """
    return _average_precision(_ranked_samples(labels, scores))


def f1_max(labels: Any, scores: Any) -> float:
    """Best F1 score over all thresholds ``score >= t`` (t ranging over the distinct scores).

    Args:
        labels: shape (N,), binary; 1 = anomalous.
        scores: shape (N,), real; higher = more anomalous.

    Returns:
        max F1 in [0, 1]; ``nan`` if there is no anomalous sample.
    """
    return _f1_max(_ranked_samples(labels, scores))


def image_metrics(labels: Any, scores: Any) -> dict[str, float]:
    """Image-level AUROC, AP and F1-max from one sort.

    Args:
        labels: shape (N,), binary; 1 = anomalous image.
        scores: shape (N,), image anomaly scores.

    Returns:
        ``{"image_auroc", "image_ap", "image_f1_max"}`` (see :func:`auroc`,
        :func:`average_precision`, :func:`f1_max` for the ``nan`` cases).
    """
    r = _ranked_samples(labels, scores)
    return {
        "image_auroc": _auroc(r),
        "image_ap": _average_precision(r),
        "image_f1_max": _f1_max(r),
    }
