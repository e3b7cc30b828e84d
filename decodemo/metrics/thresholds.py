"""Decisions at a threshold: choosing one from normal data, and counting what it decides.

The product has one decision rule: a sample is *anomalous* when ``score > threshold``
(strictly greater; a score equal to the threshold is normal). :func:`decision_counts`
applies exactly that rule; :func:`threshold_at_normal_quantile` picks a threshold for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from decodemo.metrics.inputs import _as_binary, _as_scores


def threshold_at_normal_quantile(normal_scores: Any, *, q: float = 0.99) -> float:
    """Decision threshold estimated from normal data only: the ``q``-quantile of its scores.

    The quantile is linearly interpolated between order statistics (numpy's default
    ``method="linear"``, Hyndman & Fan type 7). Flag a sample as anomalous when
    ``score > threshold``; then about ``1 - q`` of normal samples (those like the
    calibration data) are false alarms. Use held-out normal data, not the training
    data the model was fitted on, or the false-alarm rate will be underestimated.

    Args:
        normal_scores: any shape (flattened), scores of normal samples or pixels;
            must be finite.
        q: quantile in [0, 1].

    Returns:
        The threshold as a float.
    """
    s = _as_scores(normal_scores, "normal_scores").ravel()
    if s.size == 0:
        raise ValueError("normal_scores is empty.")
    if not np.isfinite(s).all():
        raise ValueError("normal_scores must be finite.")
    q = float(q)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}.")
    return float(np.quantile(s.astype(np.float64), q, method="linear"))


@dataclass(frozen=True)
class DecisionCounts:
    """Confusion counts of binary decisions against binary labels, and the rates from them.

    "Anomalous" is the positive class. A rate whose denominator is zero (e.g. the
    precision when nothing is flagged) is the ``zero_division`` value it was computed
    with (``nan`` by default). ``threshold`` is the threshold the decisions came from
    (``None`` when the decisions were given directly).
    """

    tp: int  # anomalous, flagged
    fp: int  # normal, flagged (false alarm)
    fn: int  # anomalous, not flagged (miss)
    tn: int  # normal, not flagged
    precision: float  # tp / (tp + fp)
    recall: float  # tp / (tp + fn), the true-positive rate
    f1: float  # 2 * precision * recall / (precision + recall); 0.0 when tp == 0 < tp + fp + fn
    fpr: float  # fp / (fp + tn), the false-alarm rate among normals
    threshold: float | None = None


def _ratio(num: int, den: int, zero_division: float) -> float:
    """``num / den``, or ``zero_division`` when ``den`` is 0."""
    return num / den if den else zero_division


def _f1(tp: int, fp: int, fn: int, precision: float, recall: float, zero_division: float) -> float:
    """F1 from precision and recall; 0.0 when nothing is right, ``zero_division`` when
    there is nothing to be right about (no anomalous sample and none flagged)."""
    if tp + fp + fn == 0:
        return zero_division
    if tp == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _flat_pair(y: np.ndarray, d: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` and ``name`` (scores or predictions) flattened, after checking that they
    have one shape and are not empty."""
    if y.shape != d.shape:
        raise ValueError(f"labels and {name} differ in shape: {y.shape} vs {d.shape}.")
    if y.size == 0:
        raise ValueError(f"labels and {name} are empty.")
    return y.ravel(), d.ravel()


def confusion_counts(labels: Any, predicted: Any, *, zero_division: float = math.nan,
                     threshold: float | None = None) -> DecisionCounts:
    """Confusion counts and precision / recall / F1 / FPR of given binary decisions.

    Args:
        labels: binary, any shape (flattened); 1 = anomalous.
        predicted: binary, same shape as ``labels``; 1 = flagged anomalous.
        zero_division: the value of a rate whose denominator is zero (``0.0`` gives
            scikit-learn's ``zero_division=0`` figures).
        threshold: recorded in the result, not used.

    Returns:
        A :class:`DecisionCounts`.
    """
    y, p = _flat_pair(_as_binary(labels, "labels"), _as_binary(predicted, "predicted"), "predicted")
    tp = int(np.count_nonzero(p & y))
    fp = int(np.count_nonzero(p & ~y))
    fn = int(np.count_nonzero(~p & y))
    tn = int(np.count_nonzero(~p & ~y))
    zero_division = float(zero_division)
    precision = _ratio(tp, tp + fp, zero_division)
    recall = _ratio(tp, tp + fn, zero_division)
    return DecisionCounts(
        tp=tp, fp=fp, fn=fn, tn=tn, precision=precision, recall=recall,
        f1=_f1(tp, fp, fn, precision, recall, zero_division),
        fpr=_ratio(fp, fp + tn, zero_division), threshold=threshold,
    )


def decision_counts(scores: Any, labels: Any, threshold: float, *,
                    zero_division: float = math.nan) -> DecisionCounts:
    """What the product's decision rule ``score > threshold`` decides, counted against labels.

    A score equal to the threshold is *normal* (strictly greater is anomalous), as in
    :class:`decodemo.service` and the command line.

    Args:
        scores: real, any shape (flattened), no NaN; higher = more anomalous.
        labels: binary, same shape as ``scores``; 1 = anomalous.
        threshold: the decision threshold; a real number, not NaN (``inf`` flags nothing).
        zero_division: the value of a rate whose denominator is zero (default ``nan``).

    Returns:
        A :class:`DecisionCounts` with ``threshold`` set.
    """
    y, s = _flat_pair(_as_binary(labels, "labels"), _as_scores(scores, "scores"), "scores")
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("threshold is NaN; it must be a real number.")
    return confusion_counts(y, s > threshold, zero_division=zero_division, threshold=threshold)
