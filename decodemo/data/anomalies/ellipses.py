"""The kinds drawn inside a random ellipse: ``blur``, ``colour`` and ``warp``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from decodemo.data.anomalies.perlin import perlin_noise
from decodemo.data.anomalies.placement import _random_ellipse


def _blur(image: np.ndarray, rng: np.random.Generator, donors: Sequence[np.ndarray],
          scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The ellipse replaced by a Gaussian-blurred copy (sigma 2-6 px at 256 px, at least 1.5 px)."""
    mask, _ = _random_ellipse(*image.shape[:2], rng)
    sigma = max(1.5, rng.uniform(2.0, 6.0) * scale)
    return ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0.0), mode="reflect"), mask


def _colour(image: np.ndarray, rng: np.random.Generator, donors: Sequence[np.ndarray],
            scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The ellipse with random contrast, per-channel gains, brightness and offsets."""
    mask, _ = _random_ellipse(*image.shape[:2], rng)
    mean = image[mask].mean(axis=0)
    contrast = rng.uniform(0.6, 1.4)
    gains = rng.uniform(0.6, 1.4, size=3) * rng.uniform(0.7, 1.3)
    offset = rng.uniform(-0.2, 0.2, size=3)
    return ((image - mean) * contrast + mean) * gains + offset, mask


def _warp(image: np.ndarray, rng: np.random.Generator, donors: Sequence[np.ndarray],
          scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The ellipse resampled along a smooth Perlin displacement field tapered to zero at its border."""
    h, w = image.shape[:2]
    mask, r2 = _random_ellipse(h, w, rng)
    amplitude = max(2.0, rng.uniform(3.0, 10.0) * scale)
    # about one displacement period per ellipse diameter
    diameter = max(2.0, 2.0 * math.sqrt(mask.sum() / math.pi))
    res = (max(1, round(h / diameter)), max(1, round(w / diameter)))
    field = np.stack([perlin_noise((h, w), res, rng), perlin_noise((h, w), res, rng)]).astype(np.float64)
    peak = float(np.hypot(field[0], field[1])[mask].max())
    taper = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))  # no displacement at the ellipse border
    field *= amplitude / max(peak, 1e-6) * taper
    grid = np.mgrid[0:h, 0:w].astype(np.float64)
    coords = (grid + field)[:, mask]
    changed = image.copy()
    changed[mask] = np.stack([ndimage.map_coordinates(image[..., c], coords, order=1, mode="reflect")
                              for c in range(3)], axis=-1)
    return changed, mask
