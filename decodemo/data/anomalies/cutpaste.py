"""The CutPaste kinds: a rectangle (``cutpaste_patch``) or a thin rotated scar
(``cutpaste_scar``) cut from a donor, optionally colour-jittered, and pasted elsewhere."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from decodemo.data.anomalies.donors import _colour_jitter, _pick_donor
from decodemo.data.anomalies.placement import _random_centre, _replace_region, _rotated_frame, _span


def _cutpaste_patch(image: np.ndarray, rng: np.random.Generator, donors: Sequence[np.ndarray],
                    scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A donor rectangle of 2-10 % of the area pasted at a random place; mask: the rectangle."""
    h, w = image.shape[:2]
    donor = _pick_donor(image, donors, rng)
    frac = rng.uniform(0.02, 0.10)
    aspect = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
    ph = int(round(math.sqrt(frac * h * w * aspect)))
    pw = int(round(math.sqrt(frac * h * w / aspect)))
    src_y, src_x = _span(h, ph, rng), _span(w, pw, rng)
    patch = donor[src_y, src_x]
    dst_y, dst_x = _span(h, patch.shape[0], rng), _span(w, patch.shape[1], rng)
    if rng.random() < 0.5:
        patch = _colour_jitter(patch, rng, 0.2)
    return _replace_region(image, (dst_y, dst_x), patch)


def _cutpaste_scar(image: np.ndarray, rng: np.random.Generator, donors: Sequence[np.ndarray],
                   scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A thin donor rectangle rotated with its mask (sampled bilinearly) and pasted; mask: the
    pixel centres inside the rotated rectangle."""
    h, w = image.shape[:2]
    donor = _pick_donor(image, donors, rng)
    side = math.sqrt(h * w)
    width = max(1.0, rng.uniform(2.0, 16.0) * scale)
    length = min(max(2.0, rng.uniform(0.10, 0.25) * side), min(h, w) - 1.0)
    width = min(width, max(1.0, w - 1.0))
    theta = rng.uniform(0.0, math.pi)
    cos, sin = math.cos(theta), math.sin(theta)
    # the source rectangle is axis-aligned in the donor: ``length`` along rows, ``width`` along columns
    sy = _random_centre(h, length / 2, rng)
    sx = _random_centre(w, width / 2, rng)
    radius = 0.5 * math.hypot(length, width)
    cy, cx = _random_centre(h, radius, rng), _random_centre(w, radius, rng)
    u, v = _rotated_frame(h, w, cy, cx, cos, sin)  # rectangle frame of each image pixel
    mask = (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2)
    mask[int(round(cy)), int(round(cx))] = True
    coords = np.stack([sy + u[mask], sx + v[mask]])
    values = np.stack([ndimage.map_coordinates(donor[..., c], coords, order=1, mode="nearest")
                       for c in range(3)], axis=-1)
    if rng.random() < 0.5:
        values = _colour_jitter(values, rng, 0.2)
    changed = image.copy()
    changed[mask] = values
    return changed, mask
