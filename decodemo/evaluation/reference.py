"""Normal reference of a registry model: its scores on normal inputs, and its map values there.

The compare view says how far an input's score lies above or below what the model gives
normal inputs (the percentile of the normal reference scores), draws the score against that
distribution, and turns a chosen image threshold into a pixel threshold for the defect mask
(the map value exceeded by the same share of normal pixels as normal images exceed the
threshold). All of it comes from normal data only: by default the held-out part of the
training folder's ``train/good`` (the same seeded split the training used), or with
``all_normal`` every file of a folder of extra normal inputs.

``python -m decodemo reference NAME --data DIR`` computes it and stores it in the manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

__all__ = ["PIXEL_QUANTILES", "normal_reference", "percentile_of", "pixel_threshold", "score_quantile"]

#: quantiles of the normal map values kept in a reference (enough to interpolate a mask threshold)
PIXEL_QUANTILES = [0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999]
_MAX_PIXELS_PER_INPUT = 4096  # a seeded subsample of each map keeps the quantiles cheap


@torch.no_grad()
def normal_reference(model, paths: Iterable[str | Path], *, category: str | None = None,
                     source: str = "") -> dict[str, Any]:
    """Score normal ``paths`` with ``model`` -> ``{"scores", "pixel_quantiles", "n", "source"}``."""
    from decodemo.inference import detect_paths

    kwargs = {"category": category} if category is not None else {}
    rng = np.random.default_rng(0)
    scores, pixels = [], []
    paths = list(paths)
    if not paths:
        raise ValueError("A normal reference needs at least one normal input.")
    for det in detect_paths(model, paths, batch_size=1, desc="normal reference", **kwargs):
        score, values = det.score, det.map.ravel()
        scores.append(float(score))
        if values.size > _MAX_PIXELS_PER_INPUT:
            values = rng.choice(values, _MAX_PIXELS_PER_INPUT, replace=False)
        pixels.append(values.astype(np.float64))
    allpix = np.concatenate(pixels)
    return {
        "scores": [round(s, 6) for s in scores],
        "pixel_quantiles": {"q": list(PIXEL_QUANTILES),
                            "v": [round(float(v), 6) for v in np.quantile(allpix, PIXEL_QUANTILES)]},
        "n": len(scores),
        "source": source,
    }


def percentile_of(score: float, reference_scores) -> float | None:
    """Share of normal reference scores below ``score``, in percent (ties count half)."""
    ref = np.asarray(reference_scores, dtype=np.float64)
    if ref.size == 0 or not np.isfinite(score):
        return None
    return float(100.0 * ((ref < score).sum() + 0.5 * (ref == score).sum()) / ref.size)


def score_quantile(threshold: float, reference_scores) -> float:
    """Share (0..1) of normal reference scores at or below ``threshold``."""
    ref = np.asarray(reference_scores, dtype=np.float64)
    if ref.size == 0:
        return 0.99
    return float((ref <= threshold).mean())


def pixel_threshold(reference: dict[str, Any] | None, threshold: float) -> float | None:
    """The map value to flag as defect for an image threshold.

    The share of normal images at or below ``threshold`` (clipped to the stored quantile range)
    picks the same quantile of normal map values. A threshold above every normal score maps to
    the top stored quantile, raised in proportion to how far beyond the reference's largest score
    it lies, so the mask keeps responding to the control.
    """
    if not reference or not reference.get("pixel_quantiles"):
        return None
    qs = np.asarray(reference["pixel_quantiles"]["q"], dtype=np.float64)
    vs = np.asarray(reference["pixel_quantiles"]["v"], dtype=np.float64)
    ref = np.asarray(reference.get("scores") or [], dtype=np.float64)
    q = np.clip(score_quantile(threshold, ref), qs[0], qs[-1])
    value = float(np.interp(q, qs, vs))
    if ref.size and ref.max() > 0 and threshold > ref.max():
        value *= float(threshold / ref.max())
    return value
