"""Images of any shape as square model inputs, and the maps back at the image's own shape.

Every detector takes ``S x S`` inputs. How an ``H x W`` image becomes them is a model's
``image_fit`` (recorded in its config, applied the same way in training and at inference):

- ``"pad"``: resize so the longer side is ``S`` (aspect kept), then mirror-pad the shorter side
  to ``S``, content centred. One input. Mirroring continues textures and backgrounds where a
  constant border would itself look like a defect.
- ``"tile"``: resize so the shorter side is ``S`` (aspect kept), then overlapping ``S x S``
  tiles along the longer side, at most half a tile apart, evenly spread from one end to the
  other. Several inputs; the image's score is the highest tile score (as a clip's is the
  highest window score), its map the overlap average of the tile maps.
- ``"auto"`` (the default): ``pad`` up to an aspect ratio of :data:`TILE_ASPECT`, ``tile``
  beyond it, decided per image.
- ``"squash"``: resize to ``S x S`` whatever the aspect (models trained that way keep it).

A square image is one input resized to ``S x S`` under every mode, so square data sets are
unaffected by the choice. :func:`fit_geometry` says where everything goes; :func:`to_inputs`
cuts the inputs; :func:`stitch` puts per-input maps back on the image's canvas (its aspect, the
model's scale), which callers resize to the exact input size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["IMAGE_FITS", "TILE_ASPECT", "Geometry", "fit_geometry", "to_inputs", "stitch", "check_image_fit"]

IMAGE_FITS = ("auto", "pad", "tile", "squash")
#: ``auto`` tiles images longer than this many times their width (or wider than high), pads the rest.
TILE_ASPECT = 2.0


def check_image_fit(mode: str) -> str:
    if mode not in IMAGE_FITS:
        raise ValueError(f"image_fit must be one of {', '.join(IMAGE_FITS)}; got {mode!r}.")
    return mode


@dataclass(frozen=True)
class Geometry:
    """How one ``height x width`` image maps onto ``size x size`` inputs.

    ``canvas`` is the image resized with its aspect kept (``squash``: ``size x size``);
    ``boxes`` are ``(top, left)`` of each input's ``size x size`` square on the canvas (``pad``:
    negative or overhanging by the padding, given by ``pad`` as top, bottom, left, right).
    """

    height: int
    width: int
    size: int
    mode: str  # resolved: "pad", "tile" or "squash"
    canvas: tuple[int, int]
    boxes: tuple[tuple[int, int], ...]
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def n_inputs(self) -> int:
        return len(self.boxes)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "input": [self.height, self.width], "canvas": list(self.canvas),
                "inputs": self.n_inputs}


def fit_geometry(height: int, width: int, size: int, mode: str = "auto") -> Geometry:
    """Where an ``height x width`` image goes under ``mode`` (see the module docstring)."""
    check_image_fit(mode)
    if height <= 0 or width <= 0 or size <= 0:
        raise ValueError(f"Sizes must be positive; got {height}x{width} for {size}.")
    aspect = max(height, width) / min(height, width)
    if mode == "auto":
        mode = "tile" if aspect > TILE_ASPECT else "pad"
    if mode == "squash" or height == width:
        return Geometry(height, width, size, mode, (size, size), ((0, 0),))
    if mode == "pad":
        scale = size / max(height, width)
        ch, cw = max(1, round(height * scale)), max(1, round(width * scale))
        top, left = (size - ch) // 2, (size - cw) // 2
        pad = (top, size - ch - top, left, size - cw - left)
        return Geometry(height, width, size, "pad", (ch, cw), ((-top, -left),), pad)
    scale = size / min(height, width)
    ch, cw = max(size, round(height * scale)), max(size, round(width * scale))
    long = max(ch, cw)
    n = 1 + math.ceil((long - size) / (size / 2)) if long > size else 1
    offsets = sorted({round(i * (long - size) / (n - 1)) for i in range(n)}) if n > 1 else [0]
    boxes = tuple((o, 0) if ch >= cw else (0, o) for o in offsets)
    return Geometry(height, width, size, "tile", (ch, cw), boxes)


def to_inputs(img: Image.Image, geometry: Geometry) -> torch.Tensor:
    """An RGB PIL image -> its inputs ``(n, 3, size, size)`` float in [0, 1] under ``geometry``
    (resizing is Pillow bicubic in 8 bits, as :func:`decodemo.io.images.image_to_array`)."""
    from decodemo.io.images import image_to_array

    s = geometry.size
    arr = image_to_array(img, geometry.canvas)  # (h, w, 3)
    if geometry.mode == "pad":
        t, b, l, r = geometry.pad
        arr = np.pad(arr, ((t, b), (l, r), (0, 0)), mode="reflect" if min(arr.shape[:2]) > 1 else "edge")
        tiles = [arr]
    else:
        tiles = [arr[y : y + s, x : x + s] for y, x in geometry.boxes]
    return torch.from_numpy(np.ascontiguousarray(np.stack(tiles).transpose(0, 3, 1, 2)))


def stitch(maps: torch.Tensor | np.ndarray, geometry: Geometry) -> np.ndarray:
    """Per-input maps ``(n, s, s)`` or ``(n, c, s, s)`` (any ``s``: they are brought to the input
    size first) -> the image's canvas ``(h, w)`` / ``(c, h, w)``: the padding cut off, tiles
    averaged where they overlap."""
    m = torch.as_tensor(np.asarray(maps, dtype=np.float32) if isinstance(maps, np.ndarray) else maps).float()
    squeeze = m.dim() == 3
    if squeeze:
        m = m[:, None]
    s = geometry.size
    if m.shape[-2:] != (s, s):
        m = F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False)
    ch, cw = geometry.canvas
    if geometry.mode == "squash":
        out = m[0]
    elif geometry.mode == "pad":
        t, _, l, _ = geometry.pad
        out = m[0, :, t : t + ch, l : l + cw]
    else:
        acc = torch.zeros(m.shape[1], ch, cw)
        count = torch.zeros(1, ch, cw)
        for k, (y, x) in enumerate(geometry.boxes):
            acc[:, y : y + s, x : x + s] += m[k]
            count[:, y : y + s, x : x + s] += 1
        out = acc / count.clamp_min(1)
    out = out.numpy()
    return out[0] if squeeze else out
