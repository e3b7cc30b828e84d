"""Clip-level (audio) metrics: the partial AUC of the DCASE challenges, and AUROC + pAUC."""

from __future__ import annotations

from typing import Any

from decodemo.metrics.image import _ranked_samples
from decodemo.metrics.inputs import _check_fraction
from decodemo.metrics.ranking import _auroc, _pauc


def pauc(labels: Any, scores: Any, *, max_fpr: float = 0.1, mcclish: bool = False) -> float:
    """Partial AUC over FPR in [0, max_fpr], normalised by ``max_fpr``.

    This is the definition written in the DCASE machine-condition-monitoring (Task 2)
    challenge descriptions: ``pAUC = (1 / p) * integral_0^p TPR d(FPR)`` with
    ``p = max_fpr``, i.e. the area divided by ``p`` with no McClish correction. A
    perfect detector scores 1.0, an inverted one 0.0 and a random one ``p / 2``
    (0.05 for the default ``p = 0.1``). The ROC is linearly interpolated at ``p``.

    Note: the official DCASE evaluator scripts compute
    ``sklearn.metrics.roc_auc_score(y, s, max_fpr=p)``, which applies McClish's
    standardisation ``0.5 * (1 + (A - p**2/2) / (p - p**2/2))`` (random = 0.5).
    Pass ``mcclish=True`` to reproduce those numbers.

    Args:
        labels: shape (N,), binary; 1 = anomalous.
        scores: shape (N,), real; higher = more anomalous.
        max_fpr: upper FPR limit ``p`` in (0, 1]; ``p = 1`` gives the AUROC.
        mcclish: apply McClish's standardisation (scikit-learn's ``max_fpr``).

    Returns:
        pAUC; ``nan`` if only one class is present.
    """
    max_fpr = _check_fraction(max_fpr, "max_fpr")
    return _pauc(_ranked_samples(labels, scores), max_fpr, mcclish)


def clip_metrics(labels: Any, scores: Any, *, max_fpr: float = 0.1) -> dict[str, float]:
    """Clip-level (audio) AUROC and pAUC from one sort.

    Args:
        labels: shape (N,), binary; 1 = anomalous clip.
        scores: shape (N,), clip anomaly scores.
        max_fpr: FPR limit of the pAUC (DCASE uses 0.1).

    Returns:
        ``{"auroc", "pauc"}``; pAUC as in :func:`pauc` (area / max_fpr, no McClish).
    """
    max_fpr = _check_fraction(max_fpr, "max_fpr")
    r = _ranked_samples(labels, scores)
    return {"auroc": _auroc(r), "pauc": _pauc(r, max_fpr, mcclish=False)}
