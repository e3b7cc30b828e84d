"""The DRAEM-style ``perlin_texture`` kind: a Perlin blob mask filled with a foreign texture."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from decodemo.data.anomalies.donors import _colour_jitter, _pick_donor, _self_donor
from decodemo.data.anomalies.perlin import _perlin_res, perlin_noise

_PERLIN_COVERAGE = (0.005, 0.30)  # accepted fraction of the image covered by a Perlin blob


def _perlin_mask(h: int, w: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    """A DRAEM-style blob mask: Perlin noise > 0.5, redrawn until it covers 0.5-30 % of the image;
    the fallback thresholds the last noise at a quantile (2-20 % coverage)."""
    lo, hi = _PERLIN_COVERAGE
    for _ in range(8):
        noise = perlin_noise((h, w), (_perlin_res(h, scale, rng), _perlin_res(w, scale, rng)), rng)
        mask = noise > 0.5
        if lo <= mask.mean() <= hi:
            return mask
    cover = rng.uniform(0.02, 0.20)
    mask = noise > np.quantile(noise, 1.0 - cover)
    mask[np.unravel_index(int(np.argmax(noise)), noise.shape)] = True
    return mask


def _two_colour(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Map ``t`` in [0, 1] (H, W) between two random colours -> (H, W, 3)."""
    c0, c1 = rng.uniform(0.0, 1.0, size=(2, 3))
    return c0 + t[..., None] * (c1 - c0)


def _foreign_texture(image: np.ndarray, donors: Sequence[np.ndarray], rng: np.random.Generator,
                     scale: float) -> np.ndarray:
    """A texture foreign to ``image``: a recoloured flipped/shifted donor, a colourised Perlin
    noise or colour stripes (one of the three at random)."""
    h, w = image.shape[:2]
    choice = int(rng.integers(0, 3))
    if choice == 0:
        tex = _self_donor(_pick_donor(image, donors, rng), rng)[..., rng.permutation(3)]
        tex = _colour_jitter(tex, rng, 0.4)
        return 1.0 - tex if rng.random() < 0.3 else tex
    if choice == 1:
        res = (_perlin_res(h, scale, rng), _perlin_res(w, scale, rng))
        return _two_colour((perlin_noise((h, w), res, rng) + 1.0) / 2.0, rng)
    period = max(3.0, rng.uniform(6.0, 24.0) * scale)
    phi, phase = rng.uniform(0.0, math.pi), rng.uniform(0.0, 2.0 * math.pi)
    proj = (np.arange(h)[:, None] * math.sin(phi) + np.arange(w)[None, :] * math.cos(phi))
    return _two_colour(0.5 + 0.5 * np.sin(2.0 * math.pi * proj / period + phase), rng)


def _perlin_texture(image: np.ndarray, rng: np.random.Generator, donors: Sequence[np.ndarray],
                    scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A foreign texture blended over a Perlin blob: ``(1 - beta) * texture + beta * image``."""
    h, w = image.shape[:2]
    mask = _perlin_mask(h, w, rng, scale)
    texture = _foreign_texture(image, donors, rng, scale)
    beta = rng.uniform(0.0, 0.6)
    return (1.0 - beta) * texture + beta * image, mask

