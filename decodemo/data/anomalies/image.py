"""Image anomalies: the registry of image kinds and :func:`image_anomaly`, which draws one."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from decodemo.data.anomalies.cutpaste import _cutpaste_patch, _cutpaste_scar
from decodemo.data.anomalies.donors import _check_donors
from decodemo.data.anomalies.ellipses import _blur, _colour, _warp
from decodemo.data.anomalies.textures import _perlin_texture
from decodemo.data.anomalies.visible import _MIN_CHANGE_COLOUR, _MIN_CHANGE_IMAGE, _check_kind, _draw_visible

IMAGE_KINDS = ("cutpaste_patch", "cutpaste_scar", "perlin_texture", "blur", "colour", "warp")

# (image, rng, donors, scale) -> (changed image, mask); only the pixels under the mask matter
_ImageGen = Callable[[np.ndarray, np.random.Generator, Sequence[np.ndarray], float], tuple[np.ndarray, np.ndarray]]

_IMAGE_GENERATORS: dict[str, _ImageGen] = {
    "cutpaste_patch": _cutpaste_patch,
    "cutpaste_scar": _cutpaste_scar,
    "perlin_texture": _perlin_texture,
    "blur": _blur,
    "colour": _colour,
    "warp": _warp,
}


def _check_image(image: np.ndarray) -> np.ndarray:
    """``image`` as a float32 (H, W, 3) array, refusing any other shape."""
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"image must be (H, W, 3), got shape {arr.shape}")
    return arr


def image_anomaly(image: np.ndarray, kind: str, rng: np.random.Generator, *,
                  donors: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic anomaly of ``kind`` (see :data:`IMAGE_KINDS` and the module docstring).

    ``image`` is float (H, W, 3) in [0, 1]; ``donors`` are other normal images of the same shape
    that patches and foreign textures are taken from (when empty, the image itself, flipped and
    shifted). Returns ``(anomalous image float32 (H, W, 3) in [0, 1], mask bool (H, W))``: the
    mask is non-empty, pixels outside it equal ``image`` (as float32) bit for bit, and the mean
    absolute change inside it is at least 0.05 (0.1 for ``colour``).
    """
    _check_kind(kind, IMAGE_KINDS, "image")
    img = _check_image(image)
    donor_list = _check_donors(donors, img.shape)
    scale = math.sqrt(img.shape[0] * img.shape[1]) / 256.0
    generate = _IMAGE_GENERATORS[kind]
    min_change = _MIN_CHANGE_COLOUR if kind == "colour" else _MIN_CHANGE_IMAGE
    return _draw_visible(lambda: generate(img, rng, donor_list, scale), img, min_change)
