"""Input checks shared by every metric: array-likes and torch tensors in, validated numpy out.

Labels / masks must be binary (bool or numbers equal to 0/1); scores / maps must be real
numbers without NaN. Empty inputs and mismatched shapes raise :class:`ValueError`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


def _to_numpy(x: Any) -> np.ndarray:
    """Convert an array-like or a torch tensor (or a list of tensors) to a numpy array."""
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):
        t = x.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            t = t.float()
        return t.numpy()
    if isinstance(x, (list, tuple)) and len(x) > 0 and hasattr(x[0], "detach"):
        return np.stack([_to_numpy(e) for e in x])
    return np.asarray(x)


def _as_binary(x: Any, name: str) -> NDArray[np.bool_]:
    """Binary labels/masks (bool or numbers equal to 0/1) as a bool array, same shape."""
    arr = _to_numpy(x)
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be bool or numeric 0/1, got dtype {arr.dtype}.")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        raise ValueError(
            f"{name} must be binary (0/1 or bool, 1 = anomalous); found value "
            f"{arr[bad].flat[0]!r}. Binarise first, e.g. `{name} > 0`."
        )
    return arr != 0


def _as_scores(x: Any, name: str) -> np.ndarray:
    """Real-valued scores without NaN, same shape; bool is widened to uint8."""
    arr = _to_numpy(x)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}.")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; scores must be real numbers.")
    return arr


def _as_vector(arr: np.ndarray, name: str) -> np.ndarray:
    """Ravel an array that is 1-D up to singleton axes, e.g. (N,), (N, 1) or (1, N)."""
    if sum(d != 1 for d in arr.shape) > 1:
        raise ValueError(f"{name} must be 1-D (one value per sample), got shape {arr.shape}.")
    return arr.ravel()


def _image_inputs(labels: Any, scores: Any) -> tuple[NDArray[np.bool_], np.ndarray]:
    """Per-sample labels and scores: two non-empty 1-D arrays of the same length."""
    y = _as_vector(_as_binary(labels, "labels"), "labels")
    s = _as_vector(_as_scores(scores, "scores"), "scores")
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}.")
    if y.size == 0:
        raise ValueError("labels and scores are empty.")
    return y, s


def _pixel_inputs(masks: Any, maps: Any) -> tuple[NDArray[np.bool_], np.ndarray]:
    """Per-pixel masks and maps: two non-empty arrays of the same shape."""
    m = _as_binary(masks, "masks")
    a = _as_scores(maps, "maps")
    if m.shape != a.shape:
        raise ValueError(f"masks and maps differ in shape: {m.shape} vs {a.shape}.")
    if m.size == 0:
        raise ValueError("masks and maps are empty.")
    return m, a


def _as_stack(m: NDArray[np.bool_], a: np.ndarray) -> tuple[NDArray[np.bool_], np.ndarray]:
    """Bring equal-shaped masks/maps to (N, H, W): accepts (H, W), (N, H, W), (N, 1, H, W)."""
    if m.ndim == 2:
        return m[None], a[None]
    if m.ndim == 3:
        return m, a
    if m.ndim == 4 and m.shape[1] == 1:
        return m[:, 0], a[:, 0]
    raise ValueError(
        f"masks/maps must have shape (H, W), (N, H, W) or (N, 1, H, W), got {m.shape}."
    )


def _check_fraction(value: float, name: str) -> float:
    """``value`` as a float in (0, 1], else :class:`ValueError`."""
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value}.")
    return value
