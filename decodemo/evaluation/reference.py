"""Normal reference of a registry model: its scores on normal inputs, and its map values there.

The compare view says how far an input's score lies above or below what the model gives
normal inputs (the percentile of the normal reference scores), draws the score against that
distribution, and turns a chosen image threshold into a pixel threshold for the defect mask
(the map value exceeded by the same share of normal pixels as normal images exceed the
threshold). All of it comes from normal data only: by default the held-out part of the
training folder's ``train/good`` (the same seeded split the training used), or with
``all_normal`` every file of a folder of extra normal inputs.

An image model's reference also holds a **shape calibration**: the same normal files cut to
non-square crops (:data:`SHAPE_CROPS` per file, one side kept whole, the other cut so that the
aspect deficit ``f = 1 - short / long`` falls in each of :data:`SHAPE_BINS`), scored under the
model's own ``image_fit``. A padded or squeezed border shifts every score of a model that trained
on squares, whatever the content; :func:`shape_calibrated` maps the score of a non-square input
onto the scale of square normal inputs (the mean and spread of the normal crops of its ``f`` bin
to those of the square normals), so the threshold, the percentile and the verdict mean the same
for every shape. Square inputs and tiled ones (whose inputs are squares) are left as they are.
Each crop also gets one synthetic defect (the validation kinds of :mod:`decodemo.data.anomalies`,
in turn), and each bin keeps how well the model tells those apart from the normal crops (its
AUROC). Where that is below :data:`SHAPE_MIN_AUROC` the model cannot judge inputs of that shape,
and :func:`shape_calibrated` says so (``meaningful`` False): a calibration can move a score onto
the normal scale, but not give back a discrimination the model does not have there.

``python -m decodemo reference NAME --data DIR`` computes it and stores it in the manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

__all__ = ["PIXEL_QUANTILES", "SHAPE_BINS", "SHAPE_CROPS", "aspect_deficit", "normal_reference", "percentile_of",
           "pixel_threshold", "score_quantile", "shape_calibrated", "shape_calibration", "SHAPE_MIN_AUROC"]

#: quantiles of the normal map values kept in a reference (enough to interpolate a mask threshold)
PIXEL_QUANTILES = [0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999]
_MAX_PIXELS_PER_INPUT = 4096  # a seeded subsample of each map keeps the quantiles cheap
#: aspect-deficit bins (``f = 1 - short side / long side``) of the shape calibration; the last is open
SHAPE_BINS = (0.0, 0.15, 0.3, 0.5)
#: normal crops per reference file: one per bin, wide or tall at random
SHAPE_CROPS = len(SHAPE_BINS) - 1
_MIN_SHAPE_SPREAD = 0.25  # a bin's spread is at least this share of the square normals' spread
#: below this AUROC of synthetic defects against normal crops a bin's verdicts are not meaningful
#: (fixed beforehand: synthetic defects are easier than real ones, so a model that cannot tell
#: them apart on crops of a shape cannot judge that shape)
SHAPE_MIN_AUROC = 0.75


def aspect_deficit(geometry: dict | None) -> float:
    """``1 - short / long`` of the input an image detection came from (0 for a square, for a
    clip and for tiled images, whose model inputs are squares)."""
    if not geometry or geometry.get("mode") not in ("pad", "squash"):
        return 0.0
    h, w = geometry["input"]
    return 1.0 - min(h, w) / max(h, w)


def _normal_crops(img, seed: int) -> list:
    """:data:`SHAPE_CROPS` seeded crops of a PIL image at its own scale, one aspect deficit drawn
    in each bin of :data:`SHAPE_BINS` (the open last bin up to 0.5: aspect 2)."""
    rng = np.random.default_rng([seed, 4099])
    w, h = img.size
    out = []
    for lo, hi in zip(SHAPE_BINS[:-1], SHAPE_BINS[1:]):
        f = rng.uniform(max(lo, 0.02), hi)
        if rng.random() < 0.5:
            ch = max(8, round(h * (1 - f)))
            top = int(rng.integers(0, h - ch + 1))
            out.append(img.crop((0, top, w, top + ch)))
        else:
            cw = max(8, round(w * (1 - f)))
            left = int(rng.integers(0, w - cw + 1))
            out.append(img.crop((left, 0, left + cw, h)))
    return out


def shape_calibration(square_scores, crop_deficits, crop_scores, defect_deficits=(), defect_scores=()) -> dict[str, Any]:
    """The per-bin mean and spread of normal crop scores next to the square normals', and the
    AUROC of the synthetic-defect crops against the normal crops of each bin (JSON-ready)."""
    from decodemo.metrics.image import auroc

    sq = np.asarray(square_scores, dtype=np.float64)
    f = np.asarray(crop_deficits, dtype=np.float64)
    c = np.asarray(crop_scores, dtype=np.float64)
    fd = np.asarray(defect_deficits, dtype=np.float64)
    d = np.asarray(defect_scores, dtype=np.float64)
    s0 = float(sq.std(ddof=1)) if sq.size > 1 else 0.0
    bins = []
    for k, lo in enumerate(SHAPE_BINS[:-1]):
        hi = SHAPE_BINS[k + 1] if k + 2 < len(SHAPE_BINS) else np.inf
        v = c[(f >= lo) & (f < hi)]
        if v.size < 2:
            continue
        b = {"from": lo, "mean": round(float(v.mean()), 6),
             "sd": round(max(float(v.std(ddof=1)), _MIN_SHAPE_SPREAD * s0, 1e-12), 6), "n": int(v.size)}
        dv = d[(fd >= lo) & (fd < hi)]
        if dv.size:
            b["defect_auroc"] = round(auroc(np.r_[np.zeros(v.size), np.ones(dv.size)], np.r_[v, dv]), 4)
            b["n_defects"] = int(dv.size)
        bins.append(b)
    return {"square": {"mean": round(float(sq.mean()), 6), "sd": round(max(s0, 1e-12), 6), "n": int(sq.size)},
            "bins": bins, "n_crops": int(c.size)}


def shape_calibrated(score: float, geometry: dict | None, reference: dict[str, Any] | None) -> tuple[float, dict | None]:
    """``score`` on the square normals' scale for a padded or squeezed input -> ``(score, how)``;
    ``how`` is ``None`` when nothing changed (a square or tiled input, or no calibration stored)."""
    cal = (reference or {}).get("shape")
    f = aspect_deficit(geometry)
    if not cal or not cal.get("bins") or f <= 0 or not np.isfinite(score):
        return score, None
    # the last bin starting at or below f (the first bin for an f below every bin's start)
    b = next((x for x in reversed(cal["bins"]) if x["from"] <= f), cal["bins"][0])
    sq = cal["square"]
    out = sq["mean"] + (float(score) - b["mean"]) * sq["sd"] / b["sd"]
    how = {"raw_score": float(score), "aspect_deficit": round(f, 4), "bin_from": b["from"],
           "crop_mean": b["mean"], "crop_sd": b["sd"]}
    if "defect_auroc" in b:
        how["defect_auroc"] = b["defect_auroc"]
        how["meaningful"] = bool(b["defect_auroc"] >= SHAPE_MIN_AUROC)
    return float(out), how


@torch.no_grad()
def normal_reference(model, paths: Iterable[str | Path], *, category: str | None = None,
                     source: str = "", shapes: bool | None = None) -> dict[str, Any]:
    """Score normal ``paths`` with ``model`` -> ``{"scores", "pixel_quantiles", "n", "source"}``
    and, for an image model (``shapes`` None or True), ``"shape"``: its shape calibration."""
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
    out = {
        "scores": [round(s, 6) for s in scores],
        "pixel_quantiles": {"q": list(PIXEL_QUANTILES),
                            "v": [round(float(v), 6) for v in np.quantile(allpix, PIXEL_QUANTILES)]},
        "n": len(scores),
        "source": source,
    }
    if shapes is not False and getattr(model.config, "modality", "image") == "image" and len(scores) > 1:
        out["shape"] = _shape_reference(model, paths, scores, kwargs)
    return out


def _shape_reference(model, paths: list, scores: list[float], kwargs: dict) -> dict[str, Any]:
    from PIL import Image
    from tqdm.auto import tqdm

    from decodemo.data.anomalies import IMAGE_KINDS, image_anomaly
    from decodemo.inference import detect_prepared, image_input
    from decodemo.io.images import load_image

    cfg = model.config
    fit = getattr(cfg, "image_fit", "auto")
    found: dict[str, tuple[list, list]] = {"normal": ([], []), "defect": ([], [])}

    def score(img, which: str) -> None:
        det = detect_prepared(model, image_input(img, cfg.image_size, fit), batch_size=1, **kwargs)
        f = aspect_deficit(det.geometry)
        if f > 0:
            found[which][0].append(f)
            found[which][1].append(float(det.score))

    k = 0
    for i, p in enumerate(tqdm(paths, desc="shape calibration", unit="file")):
        for crop in _normal_crops(load_image(p), i):
            score(crop, "normal")
            arr = np.asarray(crop, dtype=np.float32) / 255.0
            bad, _ = image_anomaly(arr, IMAGE_KINDS[k % len(IMAGE_KINDS)], np.random.default_rng([i, k, 8191]))
            score(Image.fromarray((np.clip(bad, 0, 1) * 255).round().astype(np.uint8)), "defect")
            k += 1
    return shape_calibration(scores, *found["normal"], *found["defect"])


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
