"""Pixel-level metrics: every pixel of every image pooled into one ranking.

``masks`` are binary (1 = anomalous pixel) and ``maps`` are anomaly maps of the same
shape; the single-metric functions accept any shape (flattened), :func:`pixel_metrics`
the image stacks (H, W), (N, H, W) or (N, 1, H, W) that :func:`~decodemo.metrics.aupro`
needs.
"""

from __future__ import annotations

import math
from typing import Any

from decodemo.metrics.inputs import _as_stack, _check_fraction, _pixel_inputs
from decodemo.metrics.pro import _aupro_exact, _region_weights
from decodemo.metrics.ranking import _auroc, _average_precision, _f1_max, _rank, _Ranked


def _ranked_pixels(masks: Any, maps: Any) -> _Ranked:
    """Check ``masks`` / ``maps`` (any equal shapes) and sort all their pixels once."""
    return _rank(*_pixel_inputs(masks, maps))


def pixel_auroc(masks: Any, maps: Any) -> float:
    """Pixel-level AUROC over all pixels of all images pooled together.

    Returns the AUROC of the flattened ``maps`` against the flattened ``masks``; ``nan``
    if every pixel is normal (or every pixel anomalous).
    """
    return _auroc(_ranked_pixels(masks, maps))


def pixel_ap(masks: Any, maps: Any) -> float:
    """Pixel-level average precision (step-wise, see :func:`~decodemo.metrics.average_precision`).

    ``nan`` if no pixel is anomalous.
    """
    return _average_precision(_ranked_pixels(masks, maps))


def pixel_f1_max(masks: Any, maps: Any) -> float:
    """Pixel-level best F1 over all thresholds (the distinct map values); ``nan`` if no
    pixel is anomalous."""
    return _f1_max(_ranked_pixels(masks, maps))


def pixel_metrics(masks: Any, maps: Any, *, max_fpr: float = 0.3) -> dict[str, float]:
    """Pixel-level AUROC, AP, F1-max and AUPRO, sharing one sort of all pixels.

    Args:
        masks: shape (N, H, W) (also (H, W) or (N, 1, H, W)), binary; 1 = anomalous.
        maps: same shape as ``masks``, anomaly maps.
        max_fpr: FPR limit of the AUPRO.

    Returns:
        ``{"pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro"}`` (exact; ``nan`` cases
        as in the single-metric functions).
    """
    max_fpr = _check_fraction(max_fpr, "max_fpr")
    m, a = _as_stack(*_pixel_inputs(masks, maps))
    r = _rank(m, a)
    weights, n_regions = _region_weights(m)
    if n_regions == 0 or r.n_neg == 0:
        pro = math.nan
    else:
        pro = _aupro_exact(r, weights, n_regions, max_fpr)
    return {
        "pixel_auroc": _auroc(r),
        "pixel_ap": _average_precision(r),
        "pixel_f1_max": _f1_max(r),
        "aupro": pro,
    }
