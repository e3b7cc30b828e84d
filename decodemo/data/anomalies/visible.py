"""What makes a synthetic anomaly exact and visible: the kind check, the minimum change and the
redraw / brightness-push fallback shared by the image and the spectrogram kinds."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_MIN_CHANGE_IMAGE = 0.05  # minimum mean |change| inside the mask, images
_MIN_CHANGE_COLOUR = 0.10  # ... for the ``colour`` kind
_MIN_CHANGE_SPEC = 0.10  # ... for spectrograms
_ATTEMPTS = 4  # draws of one anomaly before the brightness fallback
_PUSH_STEPS = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0)  # brightness shifts tried by the fallback


def _check_kind(kind: str, known: tuple[str, ...], what: str) -> None:
    """Refuse a ``kind`` that is not one of ``known`` (naming the known ones)."""
    if kind not in known:
        raise ValueError(f"Unknown {what} anomaly kind {kind!r}; known kinds: {', '.join(known)}")


def _mean_change(original: np.ndarray, changed: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute change of the masked values."""
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
