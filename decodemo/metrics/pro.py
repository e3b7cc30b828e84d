"""Per-region overlap (PRO) and its normalised area AUPRO, as in MVTec AD.

Ground-truth regions are the connected components of each mask (8-connectivity, never
across images). PRO at a threshold is the mean over all regions of the fraction of the
region's pixels flagged; it is plotted against the false-positive rate over all normal
pixels and integrated up to ``max_fpr``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from decodemo.metrics.inputs import _as_stack, _check_fraction, _pixel_inputs
from decodemo.metrics.ranking import _partial_area, _rank, _Ranked

_REGION_STRUCTURE = np.ones((3, 3), dtype=int)  # as in the MVTec AD evaluation code


def _region_weights(masks: NDArray[np.bool_]) -> tuple[NDArray[np.float64], int]:
    """Per-pixel weight ``1 / size(region)`` (0 on normal pixels) and the number of regions.

    Regions are the connected components of each (H, W) mask with the 3x3 all-ones
    structuring element (8-connectivity); regions never connect across images.
    """
    structure = np.zeros((3, 3, 3), dtype=int)
    structure[1] = _REGION_STRUCTURE  # no connectivity along the image axis
    labeled, n_regions = ndimage.label(masks, structure=structure)
    sizes = np.bincount(labeled.ravel(), minlength=n_regions + 1).astype(np.float64)
    inv = np.zeros_like(sizes)
    inv[1:] = 1.0 / sizes[1:]
    return inv[labeled], int(n_regions)


def _aupro_exact(r: _Ranked, weights: np.ndarray, n_regions: int, max_fpr: float) -> float:
    """AUPRO with every distinct score as a threshold, from the pixels' one sort ``r``."""
    # Normal pixels are exactly the negatives, so FPR is the ROC's FPR.
    fpr = np.r_[0.0, r.fps / float(r.n_neg), 1.0]
    pro = np.cumsum(weights.ravel()[r.order])[r.ends] / n_regions
    pro = np.r_[0.0, np.minimum(pro, 1.0), 1.0]
    return _partial_area(fpr, pro, max_fpr) / max_fpr


def _aupro_binned(
    masks: NDArray[np.bool_],
    maps: np.ndarray,
    weights: np.ndarray,
    n_regions: int,
    max_fpr: float,
    num_thresholds: int,
) -> float:
    """AUPRO approximated with ``num_thresholds`` evenly spaced thresholds, without sorting."""
    a = maps.ravel().astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError("maps must be finite when num_thresholds is given.")
    edges = np.linspace(a.min(), a.max(), num_thresholds)
    # Bin b holds the pixels whose score is >= edges[b] but < edges[b + 1].
    bins = np.searchsorted(edges, a, side="right") - 1
    normal = ~masks.ravel()
    fp = np.bincount(bins, weights=normal.astype(np.float64), minlength=num_thresholds)[::-1]
    ov = np.bincount(bins, weights=weights.ravel(), minlength=num_thresholds)[::-1]
    fpr = np.r_[0.0, np.cumsum(fp) / normal.sum(), 1.0]
    pro = np.r_[0.0, np.minimum(np.cumsum(ov) / n_regions, 1.0), 1.0]
    return _partial_area(fpr, pro, max_fpr) / max_fpr


def _check_num_thresholds(num_thresholds: int | None) -> None:
    """Refuse a ``num_thresholds`` that is not None or an int >= 2."""
    if num_thresholds is not None and (
        isinstance(num_thresholds, bool) or int(num_thresholds) != num_thresholds
        or num_thresholds < 2
    ):
        raise ValueError(f"num_thresholds must be None or an int >= 2, got {num_thresholds!r}.")


def aupro(
    masks: Any, maps: Any, *, max_fpr: float = 0.3, num_thresholds: int | None = None
) -> float:
    """Area under the per-region-overlap (PRO) curve up to ``max_fpr``, normalised.

    As in MVTec AD (Bergmann et al., IJCV 2021) and its official evaluation code
    (``compute_pro`` + ``trapezoid``): ground-truth regions are the connected
    components of each mask with the 3x3 all-ones structuring element
    (8-connectivity), labelled per image. At a threshold ``t``, PRO is the mean over
    all regions of all images of the fraction of the region's pixels with
    ``map >= t``; FPR is the fraction of all normal pixels, over all images including
    anomaly-free ones, with ``map >= t``. The curve (from (0, 0), through every
    distinct score, to (1, 1)) is integrated with the trapezoidal rule over
    FPR in [0, max_fpr], with PRO linearly interpolated at ``max_fpr``, and divided by
    ``max_fpr`` (perfect map = 1.0, constant map = ``max_fpr / 2``).

    Exact by default: pixels are sorted by score once, each contributes
    ``1 / (region size * number of regions)`` to PRO and ``1 / number of normal
    pixels`` to FPR, the contributions are summed cumulatively and equal scores are
    collapsed into one point. This matches the official code (which keeps the FPR in
    float32) up to rounding.

    Args:
        masks: shape (N, H, W) (also (H, W) or (N, 1, H, W)), binary; 1 = anomalous.
        maps: same shape as ``masks``, anomaly maps; higher = more anomalous.
        max_fpr: integration limit in (0, 1]; MVTec AD uses 0.3.
        num_thresholds: if given (>= 2), approximate instead with that many thresholds
            evenly spaced from the smallest to the largest map value (each pixel is
            counted at the largest threshold not above its score), without sorting.

    Returns:
        AUPRO in [0, 1]; ``nan`` if there is no anomalous region or no normal pixel.
    """
    max_fpr = _check_fraction(max_fpr, "max_fpr")
    _check_num_thresholds(num_thresholds)
    m, a = _as_stack(*_pixel_inputs(masks, maps))
    weights, n_regions = _region_weights(m)
    if n_regions == 0 or m.all():
        return math.nan
    if num_thresholds is not None:
        return _aupro_binned(m, a, weights, n_regions, max_fpr, int(num_thresholds))
    return _aupro_exact(_rank(m, a), weights, n_regions, max_fpr)
