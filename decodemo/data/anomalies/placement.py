"""Where an anomaly goes: random runs of indices, centres, rotated frames and ellipses, and the
helper that writes new values into a region and returns the region's mask."""

from __future__ import annotations

import math

import numpy as np


def _span(n: int, length: int, rng: np.random.Generator) -> slice:
    """A random run of ``length`` (clipped to 1..n) indices out of ``n``."""
    length = int(min(max(length, 1), n))
    start = int(rng.integers(0, n - length + 1))
    return slice(start, start + length)


def _random_centre(n: int, extent: float, rng: np.random.Generator) -> float:
    """A centre coordinate in ``[0, n - 1]`` keeping ``extent`` away from both ends when possible."""
    lo, hi = extent, (n - 1) - extent
    if lo > hi:
        lo = hi = (n - 1) / 2.0
    return float(rng.uniform(lo, hi))


def _rotated_frame(h: int, w: int, cy: float, cx: float, cos: float, sin: float) -> tuple[np.ndarray, np.ndarray]:
    """``(u, v)``: the coordinates of every pixel of an ``h x w`` image in a frame centred on
    ``(cy, cx)`` and rotated by the angle whose cosine and sine are ``cos`` and ``sin``."""
    dy = np.arange(h, dtype=np.float64)[:, None] - cy
    dx = np.arange(w, dtype=np.float64)[None, :] - cx
    return dy * cos + dx * sin, -dy * sin + dx * cos


def _random_ellipse(h: int, w: int, rng: np.random.Generator,
                    area: tuple[float, float] = (0.01, 0.10)) -> tuple[np.ndarray, np.ndarray]:
    """A random rotated ellipse inside an ``h x w`` image covering a fraction ``area`` of it.
    Returns ``(mask, r2)``: r2 is the squared normalised radius (< 1 inside); the centre pixel is
    always in the mask."""
    frac = rng.uniform(*area)
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    limit = 0.48 * min(h, w)
    a = min(math.sqrt(frac * h * w / math.pi * aspect), limit)
    b = min(math.sqrt(frac * h * w / math.pi / aspect), limit)
    theta = rng.uniform(0.0, math.pi)
    cos, sin = math.cos(theta), math.sin(theta)
    ext_y, ext_x = math.hypot(a * cos, b * sin), math.hypot(a * sin, b * cos)
    cy = _random_centre(h, ext_y, rng)
    cx = _random_centre(w, ext_x, rng)
    u, v = _rotated_frame(h, w, cy, cx, cos, sin)
    r2 = (u / a) ** 2 + (v / b) ** 2
    mask = r2 <= 1.0
    mask[int(round(cy)), int(round(cx))] = True
    return mask, r2


def _replace_region(original: np.ndarray, region, values) -> tuple[np.ndarray, np.ndarray]:
    """``(changed, mask)``: a copy of ``original`` whose ``region`` (an index such as a pair of
    slices) is set to ``values``, and the bool mask of that region over the first two axes."""
    changed = original.copy()
    changed[region] = values
    mask = np.zeros(original.shape[:2], dtype=bool)
    mask[region] = True
    return changed, mask
