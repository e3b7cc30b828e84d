"""Perlin (gradient) noise: the smooth random fields behind blob masks, textures and warps."""

from __future__ import annotations

import math

import numpy as np


def _fade(t: np.ndarray) -> np.ndarray:
    """Perlin's quintic fade curve 6t^5 - 15t^4 + 10t^3 (smooth at 0 and 1)."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Classic 2-D gradient (Perlin) noise of shape ``shape``, float32 in about [-1, 1].

    ``res = (periods along rows, periods along columns)``: random unit gradients are drawn on a
    ``(res[0] + 1) x (res[1] + 1)`` lattice spread evenly over the image, so ``shape`` need not
    be divisible by ``res`` (a lattice cell simply spans a non-integer number of pixels). The
    noise is zero on lattice points and is scaled by sqrt(2), its theoretical bound, so it lies
    within [-1, 1].
    """
    h, w = int(shape[0]), int(shape[1])
    ry, rx = int(res[0]), int(res[1])
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    if ry < 1 or rx < 1:
        raise ValueError(f"res must be at least 1 period per axis, got {res}")
    angles = rng.uniform(0.0, 2.0 * math.pi, size=(ry + 1, rx + 1))
    gy, gx = np.sin(angles), np.cos(angles)
    y = np.arange(h) * (ry / h)
    x = np.arange(w) * (rx / w)
    iy, ix = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    fy, fx = (y - iy)[:, None], (x - ix)[None, :]
    iy, ix = iy[:, None], ix[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        return gy[iy + dy, ix + dx] * (fy - dy) + gx[iy + dy, ix + dx] * (fx - dx)

    uy, ux = _fade(fy), _fade(fx)
    top = corner(0, 0) * (1.0 - ux) + corner(0, 1) * ux
    bottom = corner(1, 0) * (1.0 - ux) + corner(1, 1) * ux
    noise = (top * (1.0 - uy) + bottom * uy) * math.sqrt(2.0)
    return np.clip(noise, -1.0, 1.0).astype(np.float32)


def _perlin_res(n: int, scale: float, rng: np.random.Generator) -> int:
    """Random 2**k periods along an axis of ``n`` px: k <= 5 and periods of at least 8 px
    (at 256 px; at least 4 px)."""
    min_period = max(4.0, 8.0 * scale)
    k_max = int(min(5, max(0, math.floor(math.log2(max(1.0, n / min_period))))))
    return 2 ** int(rng.integers(0, k_max + 1))
