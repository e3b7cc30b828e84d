"""Evaluation metrics for anomaly detection: image, pixel and clip level.

Pure numpy (plus :func:`scipy.ndimage.label` for connected ground-truth regions); no
I/O and no scikit-learn. Every function accepts numpy arrays, array-likes or torch
tensors (detached and moved to the CPU; bfloat16 is widened to float32).

Conventions
-----------
* Labels / masks: ``1`` (or ``True``) means *anomalous*, ``0`` means normal. Any other
  value is refused with a :class:`ValueError` (binarise first, e.g. ``mask > 0``).
* Scores / maps: higher means *more anomalous*. Real numbers (bool, int or float);
  NaN is refused, ``+-inf`` is allowed in the ranking metrics.
* A sample is predicted anomalous at threshold ``t`` when ``score >= t``; samples with
  equal scores always switch together (ties are collapsed into one ROC / PR point,
  exactly as scikit-learn does).
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

import math
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

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
]


# --------------------------------------------------------------------------- inputs


def _to_numpy(x: Any) -> np.ndarray:
    """Convert an array-like or a torch tensor (or a list of tensors) to a numpy array."""
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):
        t = x.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            t = t.float()
        return t.numpy()
    if isinstance(x, (list, tuple)) and len(x) > 0 and hasattr(x[0], "detach"):
        return np.stack([_to_numpy(e) for e in x])
    return np.asarray(x)


def _as_binary(x: Any, name: str) -> NDArray[np.bool_]:
    """Binary labels/masks (bool or numbers equal to 0/1) as a bool array, same shape."""
    arr = _to_numpy(x)
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be bool or numeric 0/1, got dtype {arr.dtype}.")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        raise ValueError(
            f"{name} must be binary (0/1 or bool, 1 = anomalous); found value "
            f"{arr[bad].flat[0]!r}. Binarise first, e.g. `{name} > 0`."
        )
    return arr != 0


def _as_scores(x: Any, name: str) -> np.ndarray:
    """Real-valued scores without NaN, same shape; bool is widened to uint8."""
    arr = _to_numpy(x)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}.")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; scores must be real numbers.")
    return arr


def _as_vector(arr: np.ndarray, name: str) -> np.ndarray:
    """Ravel an array that is 1-D up to singleton axes, e.g. (N,), (N, 1) or (1, N)."""
    if sum(d != 1 for d in arr.shape) > 1:
        raise ValueError(f"{name} must be 1-D (one value per sample), got shape {arr.shape}.")
    return arr.ravel()


def _image_inputs(labels: Any, scores: Any) -> tuple[NDArray[np.bool_], np.ndarray]:
    y = _as_vector(_as_binary(labels, "labels"), "labels")
    s = _as_vector(_as_scores(scores, "scores"), "scores")
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}.")
    if y.size == 0:
        raise ValueError("labels and scores are empty.")
    return y, s


def _pixel_inputs(masks: Any, maps: Any) -> tuple[NDArray[np.bool_], np.ndarray]:
    m = _as_binary(masks, "masks")
    a = _as_scores(maps, "maps")
    if m.shape != a.shape:
        raise ValueError(f"masks and maps differ in shape: {m.shape} vs {a.shape}.")
    if m.size == 0:
        raise ValueError("masks and maps are empty.")
    return m, a


def _as_stack(m: NDArray[np.bool_], a: np.ndarray) -> tuple[NDArray[np.bool_], np.ndarray]:
    """Bring equal-shaped masks/maps to (N, H, W): accepts (H, W), (N, H, W), (N, 1, H, W)."""
    if m.ndim == 2:
        return m[None], a[None]
    if m.ndim == 3:
        return m, a
    if m.ndim == 4 and m.shape[1] == 1:
        return m[:, 0], a[:, 0]
    raise ValueError(
        f"masks/maps must have shape (H, W), (N, H, W) or (N, 1, H, W), got {m.shape}."
    )


def _check_fraction(value: float, name: str) -> float:
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value}.")
    return value


# --------------------------------------------------------------------------- core


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
    if r.n_pos == 0 or r.n_neg == 0:
        return math.nan
    fp = np.r_[0, r.fps].astype(np.float64)
    tp = np.r_[0, r.tps].astype(np.float64)
    # Trapezoids in count space, one division at the end: exact for ties (diagonal steps).
    return float(np.sum(np.diff(fp) * (tp[1:] + tp[:-1])) / (2.0 * r.n_pos * r.n_neg))


def _average_precision(r: _Ranked) -> float:
    if r.n_pos == 0:
        return math.nan
    precision = r.tps / (r.ends + 1.0)  # tps + fps == ends + 1
    d_tp = np.diff(np.r_[0, r.tps])
    return float(np.sum(d_tp * precision) / r.n_pos)


def _f1_max(r: _Ranked) -> float:
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
    if r.n_pos == 0 or r.n_neg == 0:
        return math.nan
    fpr, tpr = _roc_points(r)
    area = _partial_area(fpr, tpr, max_fpr)
    if mcclish:
        min_area = 0.5 * max_fpr**2
        return float(0.5 * (1.0 + (area - min_area) / (max_fpr - min_area)))
    return area / max_fpr


# --------------------------------------------------------------------------- image / clip


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
    return _auroc(_rank(*_image_inputs(labels, scores)))


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
    return _average_precision(_rank(*_image_inputs(labels, scores)))


def f1_max(labels: Any, scores: Any) -> float:
    """Best F1 score over all thresholds ``score >= t`` (t ranging over the distinct scores).

    Args:
        labels: shape (N,), binary; 1 = anomalous.
        scores: shape (N,), real; higher = more anomalous.

    Returns:
        max F1 in [0, 1]; ``nan`` if there is no anomalous sample.
    """
    return _f1_max(_rank(*_image_inputs(labels, scores)))


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
    return _pauc(_rank(*_image_inputs(labels, scores)), max_fpr, mcclish)


def image_metrics(labels: Any, scores: Any) -> dict[str, float]:
    """Image-level AUROC, AP and F1-max from one sort.

    Args:
        labels: shape (N,), binary; 1 = anomalous image.
        scores: shape (N,), image anomaly scores.

    Returns:
        ``{"image_auroc", "image_ap", "image_f1_max"}`` (see :func:`auroc`,
        :func:`average_precision`, :func:`f1_max` for the ``nan`` cases).
    """
    r = _rank(*_image_inputs(labels, scores))
    return {
        "image_auroc": _auroc(r),
        "image_ap": _average_precision(r),
        "image_f1_max": _f1_max(r),
    }


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
    r = _rank(*_image_inputs(labels, scores))
    return {"auroc": _auroc(r), "pauc": _pauc(r, max_fpr, mcclish=False)}


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


# --------------------------------------------------------------------------- pixel


def pixel_auroc(masks: Any, maps: Any) -> float:
    """Pixel-level AUROC over all pixels of all images pooled together.

    Args:
        masks: shape (N, H, W) (any shape, flattened), binary; 1 = anomalous pixel.
        maps: same shape as ``masks``, anomaly maps.

    Returns:
        AUROC; ``nan`` if every pixel is normal (or every pixel anomalous).
    """
    return _auroc(_rank(*_pixel_inputs(masks, maps)))


def pixel_ap(masks: Any, maps: Any) -> float:
    """Pixel-level average precision (step-wise, see :func:`average_precision`).

    Args:
        masks: shape (N, H, W) (any shape, flattened), binary; 1 = anomalous pixel.
        maps: same shape as ``masks``, anomaly maps.

    Returns:
        AP; ``nan`` if no pixel is anomalous.
    """
    return _average_precision(_rank(*_pixel_inputs(masks, maps)))


def pixel_f1_max(masks: Any, maps: Any) -> float:
    """Pixel-level best F1 over all thresholds.

    Args:
        masks: shape (N, H, W) (any shape, flattened), binary; 1 = anomalous pixel.
        maps: same shape as ``masks``, anomaly maps.

    Returns:
        max F1; ``nan`` if no pixel is anomalous.
    """
    return _f1_max(_rank(*_pixel_inputs(masks, maps)))


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
    if num_thresholds is not None and (
        isinstance(num_thresholds, bool) or int(num_thresholds) != num_thresholds
        or num_thresholds < 2
    ):
        raise ValueError(f"num_thresholds must be None or an int >= 2, got {num_thresholds!r}.")
    m, a = _as_stack(*_pixel_inputs(masks, maps))
    weights, n_regions = _region_weights(m)
    if n_regions == 0 or m.all():
        return math.nan
    if num_thresholds is not None:
        return _aupro_binned(m, a, weights, n_regions, max_fpr, int(num_thresholds))
    return _aupro_exact(_rank(m, a), weights, n_regions, max_fpr)


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
