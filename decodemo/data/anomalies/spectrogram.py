"""Spectrogram (audio) anomalies: the audio kinds and :func:`spectrogram_anomaly`.

Each kind changes a box of a log-mel picture ``spec`` (rows = frequency, cols = time) in
[0, 1]: a ``click`` (a short broadband impulse), a ``tone_burst`` (a narrow raised band), a
``band_noise`` (noise energy added over a band) or a ``dropout`` (a time span attenuated).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from decodemo.data.anomalies.placement import _replace_region, _span
from decodemo.data.anomalies.visible import _MIN_CHANGE_SPEC, _check_kind, _draw_visible

AUDIO_KINDS = ("click", "tone_burst", "band_noise", "dropout")

_SpecGen = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _spec_sizes(n: int) -> float:
    """Size factor of an axis of ``n`` bins relative to 256 (at least 1)."""
    return max(1.0, n / 256.0)


def _click(spec: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """1-3 columns over 60-100 % of the rows set to a high, slightly decaying energy."""
    rows, cols = spec.shape
    cs = _span(cols, round(rng.uniform(1.0, 3.0) * _spec_sizes(cols)), rng)
    rs = _span(rows, round(rng.uniform(0.6, 1.0) * rows), rng)
    n_cols = cs.stop - cs.start
    level = rng.uniform(0.8, 1.0)
    decay = np.linspace(1.0, rng.uniform(0.85, 1.0), n_cols)[None, :]
    values = level * decay + rng.normal(0.0, 0.04, size=(rs.stop - rs.start, n_cols))
    return _replace_region(spec, (rs, cs), values)


def _tone_burst(spec: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """1-3 rows raised to a level of 0.75-1.0 over 10-50 % of the columns."""
    rows, cols = spec.shape
    rs = _span(rows, round(rng.uniform(1.0, 3.0) * _spec_sizes(rows)), rng)
    cs = _span(cols, round(rng.uniform(0.10, 0.50) * cols), rng)
    level = rng.uniform(0.75, 1.0)
    values = level + rng.normal(0.0, 0.03, size=(rs.stop - rs.start, cs.stop - cs.start))
    return _replace_region(spec, (rs, cs), np.maximum(spec[rs, cs], values))


def _band_noise(spec: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random noise energy added over 10-30 % of the rows and 10-40 % of the columns."""
    rows, cols = spec.shape
    rs = _span(rows, round(rng.uniform(0.10, 0.30) * rows), rng)
    cs = _span(cols, round(rng.uniform(0.10, 0.40) * cols), rng)
    energy = rng.uniform(0.15, 0.35)  # mean added energy
    noise = rng.uniform(0.3, 1.7, size=(rs.stop - rs.start, cs.stop - cs.start)) * energy
    return _replace_region(spec, (rs, cs), spec[rs, cs] + noise)


def _dropout(spec: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """5-20 % of the columns (all rows) multiplied by 0.0-0.3."""
    cs = _span(spec.shape[1], round(rng.uniform(0.05, 0.20) * spec.shape[1]), rng)
    return _replace_region(spec, (slice(None), cs), spec[:, cs] * rng.uniform(0.0, 0.3))


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
