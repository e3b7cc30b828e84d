"""Seeded synthetic anomalies with exact masks, for a validation set made of normal images only.

Training never reads ``test/``. To validate and select settings anyway, held-out *normal*
training inputs are corrupted with synthetic anomalies (DRAEM / CutPaste style) whose masks
are known exactly; :func:`make_validation_set` puts the normals and their corrupted copies
together in a :class:`SyntheticSet`.

Image kinds (:data:`IMAGE_KINDS`; pixel sizes are given at 256 px and scale with
``sqrt(H * W) / 256``):

``cutpaste_patch``
    A rectangle of 2-10 % of the image area (aspect ratio 0.3-3.3, log-uniform) is cut from a
    donor at a random place, colour-jittered with probability 1/2, and pasted at another random
    place. Mask: the pasted rectangle.
``cutpaste_scar``
    A thin long rectangle (width 2-16 px, length 10-25 % of the side) is cut from a donor,
    rotated by a random angle together with its rectangle mask (the mask is the exact set of
    pixel centres inside the rotated rectangle; the patch is sampled bilinearly), optionally
    colour-jittered and pasted. Mask: the rotated scar's pixels.
``perlin_texture``
    DRAEM style: a Perlin noise map (random 2**k periods per axis) thresholded at 0.5 gives a
    blob mask covering 0.5-30 % of the image (redrawn when outside that range; a quantile
    threshold is the fallback). A foreign texture (a flipped / shifted donor with permuted,
    jittered or inverted colours, a colourised second Perlin noise, or colour stripes) is
    blended in: ``out = (1 - beta) * texture + beta * image`` inside the mask, beta ~ U(0, 0.6).
    Mask: the binary blob.
``blur``
    A random ellipse (1-10 % of the area) is replaced by a Gaussian-blurred copy
    (sigma 2-6 px, at least 1.5 px). Mask: the ellipse.
``colour``
    A random ellipse (1-10 %) gets per-channel gains, a brightness gain, a contrast change and
    per-channel offsets (clipped to [0, 1]); its mean absolute change is at least 0.1.
    Mask: the ellipse.
``warp``
    Inside a random ellipse (1-10 %) pixels are displaced by a smooth Perlin displacement field
    (peak amplitude 3-10 px, at least 2 px) tapered to zero at the ellipse border and resampled
    bilinearly. Mask: the ellipse.

Spectrogram kinds (:data:`AUDIO_KINDS`; ``spec`` is ``(rows = frequency, cols = time)`` in
[0, 1], either row orientation; the 1-3 row / column sizes are given at 256 bins and grow
with larger spectrograms, never below the given count; other sizes are fractions):

``click``
    A short broadband impulse: 1-3 columns over a contiguous 60-100 % of the rows are set to a
    high energy (0.8-1.0, with a little per-pixel variation and a decay over the columns).
``tone_burst``
    A narrow band of 1-3 rows is raised (``max(spec, level)``, level 0.75-1.0) over a time
    span of 10-50 % of the columns.
``band_noise``
    A band of 10-30 % of the rows over 10-40 % of the columns gets random noise energy added
    (mean increase 0.15-0.35, clipped to [0, 1]).
``dropout``
    A time span of 5-20 % of the columns (all rows) is multiplied by 0.0-0.3.

Exactness: every generator draws its mask first and returns
``where(mask, changed, original)``, so pixels outside the mask are bit-for-bit unchanged
and the mask is never empty. A mask must not label an invisible change: when a draw changes
its region by less than a minimum mean absolute difference (0.05 for images, 0.1 for
``colour`` and for spectrograms; e.g. a blur on a flat area), the anomaly is redrawn a few
times and, failing that, the best draw's region is additionally shifted in brightness (towards
the side with more head-room) until the minimum is reached.

Everything is drawn from the :class:`numpy.random.Generator` passed in (no global state).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "IMAGE_KINDS",
    "AUDIO_KINDS",
    "perlin_noise",
    "image_anomaly",
    "spectrogram_anomaly",
    "SyntheticSet",
    "make_validation_set",
]

IMAGE_KINDS = ("cutpaste_patch", "cutpaste_scar", "perlin_texture", "blur", "colour", "warp")
AUDIO_KINDS = ("click", "tone_burst", "band_noise", "dropout")

_MIN_CHANGE_IMAGE = 0.05  # minimum mean |change| inside the mask, images
_MIN_CHANGE_COLOUR = 0.10  # ... for the ``colour`` kind
_MIN_CHANGE_SPEC = 0.10  # ... for spectrograms
_ATTEMPTS = 4  # draws of one anomaly before the brightness fallback
_PUSH_STEPS = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0)  # brightness shifts tried by the fallback
_PERLIN_COVERAGE = (0.005, 0.30)  # accepted fraction of the image covered by a Perlin blob

# (image, rng, donors, scale) -> (changed image, mask); only the pixels under the mask matter
_ImageGen = Callable[[np.ndarray, np.random.Generator, Sequence[np.ndarray], float], tuple[np.ndarray, np.ndarray]]
_SpecGen = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


# ----------------------------------------------------------------------------- Perlin noise


def _fade(t: np.ndarray) -> np.ndarray:
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


# ----------------------------------------------------------------------------- shared helpers


def _check_kind(kind: str, known: tuple[str, ...], what: str) -> None:
    if kind not in known:
        raise ValueError(f"Unknown {what} anomaly kind {kind!r}; known kinds: {', '.join(known)}")


def _mean_change(original: np.ndarray, changed: np.ndarray, mask: np.ndarray) -> float:
    return float(np.abs(changed[mask] - original[mask]).mean())


def _push_visible(original: np.ndarray, changed: np.ndarray, mask: np.ndarray, min_change: float) -> np.ndarray:
    """Shift the masked values of ``changed`` in brightness until their mean absolute change
    from ``original`` reaches ``min_change``. The shift goes towards the side with more head-room
    (brighter when the region's mean is <= 0.5), so the largest shift (1.0, a saturated region)
    always changes the region by at least 0.5."""
    o, c = original[mask], changed[mask]
    sign = 1.0 if o.mean() <= 0.5 else -1.0
    for step in _PUSH_STEPS:
        pushed = np.clip(c + sign * step, 0.0, 1.0)
        if np.abs(pushed - o).mean() >= min_change:
            break
    out = changed.copy()
    out[mask] = pushed
    return out


def _draw_visible(draw: Callable[[], tuple[np.ndarray, np.ndarray]], original: np.ndarray,
                  min_change: float) -> tuple[np.ndarray, np.ndarray]:
    """Call ``draw() -> (changed, mask)`` up to :data:`_ATTEMPTS` times and return the first
    draw that changes its region visibly (else the best draw, brightness-pushed), as
    ``(where(mask, changed, original), mask)``."""
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(_ATTEMPTS):
        changed, mask = draw()
        changed = np.clip(changed, 0.0, 1.0).astype(np.float32)
        change = _mean_change(original, changed, mask)
        if best is None or change > best[0]:
            best = (change, changed, mask)
        if change >= min_change:
            break
    change, changed, mask = best
    if change < min_change:
        changed = _push_visible(original, changed, mask, min_change)
    sel = mask if original.ndim == 2 else mask[..., None]
    return np.where(sel, changed, original).astype(np.float32), mask


def _span(n: int, length: int, rng: np.random.Generator) -> slice:
    """A random run of ``length`` (clipped to 1..n) indices out of ``n``."""
    length = int(min(max(length, 1), n))
    start = int(rng.integers(0, n - length + 1))
    return slice(start, start + length)


# ----------------------------------------------------------------------------- image helpers


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
    dy = np.arange(h, dtype=np.float64)[:, None] - cy
    dx = np.arange(w, dtype=np.float64)[None, :] - cx
    u, v = dy * cos + dx * sin, -dy * sin + dx * cos
    r2 = (u / a) ** 2 + (v / b) ** 2
    mask = r2 <= 1.0
    mask[int(round(cy)), int(round(cx))] = True
    return mask, r2


def _random_centre(n: int, extent: float, rng: np.random.Generator) -> float:
    """A centre coordinate in ``[0, n - 1]`` keeping ``extent`` away from both ends when possible."""
    lo, hi = extent, (n - 1) - extent
    if lo > hi:
        lo = hi = (n - 1) / 2.0
    return float(rng.uniform(lo, hi))


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
    if len(donors) == 0:
        return _self_donor(image, rng)
    return donors[int(rng.integers(0, len(donors)))]


def _check_image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"image must be (H, W, 3), got shape {arr.shape}")
    return arr


def _check_donors(donors: Sequence[np.ndarray], shape: tuple[int, ...]) -> list[np.ndarray]:
    out = [np.asarray(d, dtype=np.float32) for d in donors]
    for d in out:
        if d.shape != shape:
            raise ValueError(f"donor images must have the image's shape {shape}, got {d.shape}")
    return out


# ----------------------------------------------------------------------------- image kinds


def _cutpaste_patch(image: np.ndarray, rng: np.random.Generator, donors: Sequence[np.ndarray],
                    scale: float) -> tuple[np.ndarray, np.ndarray]:
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
    changed = image.copy()
    changed[dst_y, dst_x] = patch
    mask = np.zeros((h, w), dtype=bool)
    mask[dst_y, dst_x] = True
    return changed, mask


def _cutpaste_scar(image: np.ndarray, rng: np.random.Generator, donors: Sequence[np.ndarray],
                   scale: float) -> tuple[np.ndarray, np.ndarray]:
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
    dy = np.arange(h, dtype=np.float64)[:, None] - cy
    dx = np.arange(w, dtype=np.float64)[None, :] - cx
    u, v = dy * cos + dx * sin, -dy * sin + dx * cos  # rectangle frame of each image pixel
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


def _perlin_res(n: int, scale: float, rng: np.random.Generator) -> int:
    """Random 2**k periods along an axis of ``n`` px: k <= 5 and periods of at least 8 px
    (at 256 px; at least 4 px)."""
    min_period = max(4.0, 8.0 * scale)
    k_max = int(min(5, max(0, math.floor(math.log2(max(1.0, n / min_period))))))
    return 2 ** int(rng.integers(0, k_max + 1))


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
    h, w = image.shape[:2]
    mask = _perlin_mask(h, w, rng, scale)
    texture = _foreign_texture(image, donors, rng, scale)
    beta = rng.uniform(0.0, 0.6)
    return (1.0 - beta) * texture + beta * image, mask


def _blur(image: np.ndarray, rng: np.random.Generator, donors: Sequence[np.ndarray],
          scale: float) -> tuple[np.ndarray, np.ndarray]:
    mask, _ = _random_ellipse(*image.shape[:2], rng)
    sigma = max(1.5, rng.uniform(2.0, 6.0) * scale)
    return ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0.0), mode="reflect"), mask


def _colour(image: np.ndarray, rng: np.random.Generator, donors: Sequence[np.ndarray],
            scale: float) -> tuple[np.ndarray, np.ndarray]:
    mask, _ = _random_ellipse(*image.shape[:2], rng)
    mean = image[mask].mean(axis=0)
    contrast = rng.uniform(0.6, 1.4)
    gains = rng.uniform(0.6, 1.4, size=3) * rng.uniform(0.7, 1.3)
    offset = rng.uniform(-0.2, 0.2, size=3)
    return ((image - mean) * contrast + mean) * gains + offset, mask


def _warp(image: np.ndarray, rng: np.random.Generator, donors: Sequence[np.ndarray],
          scale: float) -> tuple[np.ndarray, np.ndarray]:
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


_IMAGE_GENERATORS: dict[str, _ImageGen] = {
    "cutpaste_patch": _cutpaste_patch,
    "cutpaste_scar": _cutpaste_scar,
    "perlin_texture": _perlin_texture,
    "blur": _blur,
    "colour": _colour,
    "warp": _warp,
}


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


# ----------------------------------------------------------------------------- spectrogram kinds


def _spec_sizes(n: int) -> float:
    """Size factor of an axis of ``n`` bins relative to 256 (at least 1)."""
    return max(1.0, n / 256.0)


def _click(spec: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = spec.shape
    cs = _span(cols, round(rng.uniform(1.0, 3.0) * _spec_sizes(cols)), rng)
    rs = _span(rows, round(rng.uniform(0.6, 1.0) * rows), rng)
    n_cols = cs.stop - cs.start
    level = rng.uniform(0.8, 1.0)
    decay = np.linspace(1.0, rng.uniform(0.85, 1.0), n_cols)[None, :]
    values = level * decay + rng.normal(0.0, 0.04, size=(rs.stop - rs.start, n_cols))
    changed = spec.copy()
    changed[rs, cs] = values
    mask = np.zeros(spec.shape, dtype=bool)
    mask[rs, cs] = True
    return changed, mask


def _tone_burst(spec: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = spec.shape
    rs = _span(rows, round(rng.uniform(1.0, 3.0) * _spec_sizes(rows)), rng)
    cs = _span(cols, round(rng.uniform(0.10, 0.50) * cols), rng)
    level = rng.uniform(0.75, 1.0)
    values = level + rng.normal(0.0, 0.03, size=(rs.stop - rs.start, cs.stop - cs.start))
    changed = spec.copy()
    changed[rs, cs] = np.maximum(spec[rs, cs], values)
    mask = np.zeros(spec.shape, dtype=bool)
    mask[rs, cs] = True
    return changed, mask


def _band_noise(spec: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = spec.shape
    rs = _span(rows, round(rng.uniform(0.10, 0.30) * rows), rng)
    cs = _span(cols, round(rng.uniform(0.10, 0.40) * cols), rng)
    energy = rng.uniform(0.15, 0.35)  # mean added energy
    noise = rng.uniform(0.3, 1.7, size=(rs.stop - rs.start, cs.stop - cs.start)) * energy
    changed = spec.copy()
    changed[rs, cs] = spec[rs, cs] + noise
    mask = np.zeros(spec.shape, dtype=bool)
    mask[rs, cs] = True
    return changed, mask


def _dropout(spec: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    cs = _span(spec.shape[1], round(rng.uniform(0.05, 0.20) * spec.shape[1]), rng)
    changed = spec.copy()
    changed[:, cs] = spec[:, cs] * rng.uniform(0.0, 0.3)
    mask = np.zeros(spec.shape, dtype=bool)
    mask[:, cs] = True
    return changed, mask


_SPEC_GENERATORS: dict[str, _SpecGen] = {
    "click": _click,
    "tone_burst": _tone_burst,
    "band_noise": _band_noise,
    "dropout": _dropout,
}


def spectrogram_anomaly(spec: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic anomaly of ``kind`` (see :data:`AUDIO_KINDS` and the module docstring) drawn
    on a log-mel spectrogram picture ``spec`` (rows = frequency, cols = time) in [0, 1].

    Returns ``(spec' float32 (rows, cols) in [0, 1], mask bool (rows, cols))``: the mask is
    non-empty, values outside it equal ``spec`` (as float32) bit for bit, and the mean absolute
    change inside it is at least 0.1.
    """
    _check_kind(kind, AUDIO_KINDS, "audio")
    arr = np.asarray(spec, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"spec must be (rows, cols), got shape {arr.shape}")
    generate = _SPEC_GENERATORS[kind]
    return _draw_visible(lambda: generate(arr, rng), arr, _MIN_CHANGE_SPEC)


# ----------------------------------------------------------------------------- validation set


@dataclass
class SyntheticSet:
    """A synthetic validation set: normals followed by synthetic anomalies made from them."""

    images: torch.Tensor  # (N, 3, H, W) float32 in [0, 1]
    masks: torch.Tensor  # (N, H, W) bool
    labels: np.ndarray  # (N,) int64, 0 = normal, 1 = synthetic anomaly
    kinds: list[str]  # per sample: "good" or the anomaly kind


def _sample_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    """The generator of one anomaly: keyed by the seed, the kind (its place in the full kind
    list, so choosing other kinds does not change this kind's anomalies) and the index."""
    code = (IMAGE_KINDS + AUDIO_KINDS).index(kind)
    return np.random.default_rng([int(seed) % 2**63, code, index])


def make_validation_set(normals: torch.Tensor, *, modality: str = "image", seed: int = 0,
                        kinds: Sequence[str] | None = None, per_kind: int | None = None,
                        donors: torch.Tensor | None = None) -> SyntheticSet:
    """The N held-out ``normals`` ((N, 3, H, W) in [0, 1]; label 0, empty masks) followed by
    ``per_kind`` anomalies of each of ``kinds`` (label 1), the j-th made from normal ``j % N``.

    ``modality`` is ``"image"`` (default kinds :data:`IMAGE_KINDS`) or ``"audio"`` (default
    :data:`AUDIO_KINDS`; normals are spectrogram windows drawn as grey images: the anomaly is
    drawn on channel 0 and copied to all three channels). ``per_kind`` defaults to N (at least
    2). Image donors default to the normals other than the one being corrupted (none when
    N == 1: the image itself, flipped and shifted); ``donors`` ((M, 3, H, W)) replaces them.
    Deterministic for a given ``seed``.
    """
    if modality not in ("image", "audio"):
        raise ValueError(f"modality must be 'image' or 'audio', got {modality!r}")
    known = IMAGE_KINDS if modality == "image" else AUDIO_KINDS
    kinds = tuple(known if kinds is None else kinds)
    for kind in kinds:
        _check_kind(kind, known, modality)
    if normals.ndim != 4 or normals.shape[1] != 3 or len(normals) == 0:
        raise ValueError(f"normals must be a non-empty (N, 3, H, W) tensor, got shape {tuple(normals.shape)}")
    n = len(normals)
    per_kind = max(n, 2) if per_kind is None else int(per_kind)
    base = normals.detach().cpu().float()
    hwc = np.ascontiguousarray(base.permute(0, 2, 3, 1).numpy())
    donor_pool = None if donors is None else list(np.ascontiguousarray(
        donors.detach().cpu().float().permute(0, 2, 3, 1).numpy()))

    images, masks, names = [], [], []
    for kind in kinds:
        for j in range(per_kind):
            i = j % n
            rng = _sample_rng(seed, kind, j)
            if modality == "audio":
                spec, mask = spectrogram_anomaly(hwc[i, ..., 0], kind, rng)
                img = np.repeat(spec[..., None], 3, axis=-1)
            else:
                pool = donor_pool if donor_pool is not None else [hwc[d] for d in range(n) if d != i]
                img, mask = image_anomaly(hwc[i], kind, rng, donors=pool)
            images.append(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))))
            masks.append(torch.from_numpy(mask))
            names.append(kind)

    h, w = base.shape[-2:]
    all_images = torch.cat([base, torch.stack(images)]) if images else base.clone()
    normal_masks = torch.zeros((n, h, w), dtype=torch.bool)
    all_masks = torch.cat([normal_masks, torch.stack(masks)]) if masks else normal_masks
    labels = np.concatenate([np.zeros(n, dtype=np.int64), np.ones(len(images), dtype=np.int64)])
    return SyntheticSet(images=all_images, masks=all_masks, labels=labels, kinds=["good"] * n + names)
