"""Evaluation metrics for anomaly detection: image, pixel and clip level.

Pure numpy (plus :func:`scipy.ndimage.label` for connected ground-truth regions); no
I/O and no scikit-learn. Every function accepts numpy arrays, array-likes or torch
tensors (detached and moved to the CPU; bfloat16 is widened to float32).

Where things are
----------------
* :mod:`~decodemo.metrics.inputs`: the checks every metric runs on its inputs.
* :mod:`~decodemo.metrics.ranking`: the one sort of the scores and the areas from it.
* :mod:`~decodemo.metrics.image`: :func:`roc_curve`, :func:`auroc`,
  :func:`average_precision`, :func:`f1_max`, :func:`image_metrics`.
* :mod:`~decodemo.metrics.audio`: :func:`pauc` (DCASE), :func:`clip_metrics`.
* :mod:`~decodemo.metrics.pixel`: :func:`pixel_auroc`, :func:`pixel_ap`,
  :func:`pixel_f1_max`, :func:`pixel_metrics`.
* :mod:`~decodemo.metrics.pro`: :func:`aupro` (MVTec AD's per-region overlap).
* :mod:`~decodemo.metrics.calibration`: split-conformal thresholds (:func:`conformal_threshold`) and what a threshold promises on normals (:func:`describe`).
* :mod:`~decodemo.metrics.thresholds`: :func:`threshold_at_normal_quantile`, and
  :func:`decision_counts` / :func:`confusion_counts` (:class:`DecisionCounts`).

Conventions
-----------
* Labels / masks: ``1`` (or ``True``) means *anomalous*, ``0`` means normal. Any other
  value is refused with a :class:`ValueError` (binarise first, e.g. ``mask > 0``).
* Scores / maps: higher means *more anomalous*. Real numbers (bool, int or float);
  NaN is refused, ``+-inf`` is allowed in the ranking metrics.
* On the curves, a sample is predicted anomalous at threshold ``t`` when ``score >= t``
  (``t`` ranging over the scores themselves, as in scikit-learn); samples with
  equal scores always switch together (ties are collapsed into one ROC / PR point,
  exactly as scikit-learn does). The set of points, and so every area and F1-max, is the
  same as with the product's decision rule ``score > threshold`` (applied by
  :func:`decision_counts`), whose thresholds lie between the scores.
* All curves are exact: the scores are sorted once (``O(n log n)``) and every distinct
  score is a threshold. No sub-sampling of thresholds, no ``max_points``.
* Undefined values give ``nan`` instead of raising, so that evaluation tables over
  one-class subsets do not crash: AUROC / pAUC need both classes, AP and F1-max need at
  least one anomalous sample, AUPRO needs at least one anomalous region and one normal
  pixel. Empty inputs, mismatched shapes and non-binary labels still raise
  :class:`ValueError`, because they are bugs rather than subsets.
* Scalar results are Python ``float``.
"""

from __future__ import annotations

from decodemo.metrics.audio import clip_metrics, pauc
from decodemo.metrics.image import auroc, average_precision, f1_max, image_metrics, roc_curve
from decodemo.metrics.pixel import pixel_ap, pixel_auroc, pixel_f1_max, pixel_metrics
from decodemo.metrics.pro import aupro
from decodemo.metrics.thresholds import (
    DecisionCounts,
    confusion_counts,
    decision_counts,
    threshold_at_normal_quantile,
)

__all__ = [
    "roc_curve",
    "auroc",
    "average_precision",
    "f1_max",
    "pauc",
    "pixel_auroc",
    "pixel_ap",
    "pixel_f1_max",
    "aupro",
    "image_metrics",
    "pixel_metrics",
    "clip_metrics",
    "threshold_at_normal_quantile",
    "DecisionCounts",
    "decision_counts",
    "confusion_counts",
]
