"""Where foreign pixels come from: donor images (other normals, or the image itself flipped and
shifted) and the colour jitter applied to what is taken from them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _colour_jitter(pixels: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Brightness, contrast and per-channel (hue-like) gains of relative size ``strength`` on
    ``(..., 3)`` pixels, clipped to [0, 1]."""
    mean = pixels.reshape(-1, 3).mean(axis=0)
    contrast = rng.uniform(1.0 - strength, 1.0 + strength)
    brightness = rng.uniform(1.0 - strength, 1.0 + strength)
    gains = rng.uniform(1.0 - strength / 2, 1.0 + strength / 2, size=3)
    out = ((pixels - mean) * contrast + mean) * brightness * gains
    return np.clip(out, 0.0, 1.0)


def _self_donor(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The image itself, flipped and/or circularly shifted (a donor when none is given)."""
    out = image
    if rng.random() < 0.5:
        out = out[::-1]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    h, w = image.shape[:2]
    shift = (int(rng.integers(0, h)), int(rng.integers(0, w)))
    return np.roll(out, shift, axis=(0, 1))


def _pick_donor(image: np.ndarray, donors: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One of ``donors`` at random, or the image itself flipped / shifted when there are none."""
    if len(donors) == 0:
        return _self_donor(image, rng)
    return donors[int(rng.integers(0, len(donors)))]


def _check_donors(donors: Sequence[np.ndarray], shape: tuple[int, ...]) -> list[np.ndarray]:
    """The donors as float32 arrays, refusing any whose shape is not the image's."""
    out = [np.asarray(d, dtype=np.float32) for d in donors]
    for d in out:
        if d.shape != shape:
            raise ValueError(f"donor images must have the image's shape {shape}, got {d.shape}")
    return out
