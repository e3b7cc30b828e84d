"""Synthetic machine hum with anomalies, and the rasterisation of its anomaly boxes.

:func:`make_hum` synthesises a ~120 Hz machine hum with harmonics plus low noise, and
optionally an anomaly (``click``, ``tone_shift`` or ``burst``), returning the
time-frequency boxes of the anomaly (events); :func:`events_to_tf_mask` rasterises those
boxes onto a spectrogram grid. numpy only. Also exported by :mod:`decodemo.data.synthetic`,
whose layout writer uses them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["AUDIO_ANOMALIES", "SAMPLE_RATE", "make_hum", "events_to_tf_mask"]

AUDIO_ANOMALIES = ("click", "tone_shift", "burst")
SAMPLE_RATE = 16000

_HARMONIC_AMPS = np.array([1.0, 0.6, 0.45, 0.3, 0.2, 0.12])


def _bandpass_noise(rng, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    """``n`` samples of white noise band-limited to [lo, hi] Hz (FFT mask), scaled to RMS 1."""
    spec = np.fft.rfft(rng.normal(size=n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    spec[(freqs < lo) | (freqs > hi)] = 0.0
    y = np.fft.irfft(spec, n)
    rms = float(np.sqrt(np.mean(y**2))) or 1.0
    return y / rms


class _Hum(NamedTuple):
    """The normal part of a hum clip: every draw happens here, before any anomaly draw."""

    f0: float  # fundamental, Hz
    amps: np.ndarray  # harmonic amplitudes
    phases: np.ndarray  # harmonic phases
    wobble: np.ndarray  # (n,) slow amplitude modulation
    noise: np.ndarray  # (n,) white background noise
    scale: float  # brings the harmonics' peak to about 0.35


def _draw_hum(rng: np.random.Generator, n: int, sr: int) -> _Hum:
    """Draw the normal hum of ``n`` samples at ``sr`` Hz: jittered ~120 Hz with 6 harmonics."""
    f0 = 120.0 * (1.0 + rng.uniform(-0.01, 0.01))
    amps = _HARMONIC_AMPS * (1.0 + rng.uniform(-0.1, 0.1, size=len(_HARMONIC_AMPS)))
    phases = rng.uniform(0.0, 2 * math.pi, size=len(_HARMONIC_AMPS))
    wob_rate, wob_phase = rng.uniform(0.5, 2.0), rng.uniform(0.0, 2 * math.pi)
    noise = rng.normal(0.0, 0.003, size=n)
    t = np.arange(n) / sr
    wobble = 1.0 + 0.03 * np.sin(2 * math.pi * wob_rate * t + wob_phase)
    return _Hum(f0, amps, phases, wobble, noise, 0.35 / float(amps.sum()))


def _harmonics(hum: _Hum, f_track: np.ndarray, sr: int) -> np.ndarray:
    """The hum's harmonics following the fundamental ``f_track`` (Hz per sample), phase-continuous."""
    phase = 2 * math.pi * np.cumsum(f_track) / sr
    out = np.zeros(f_track.size)
    for k, (a, p) in enumerate(zip(hum.amps, hum.phases), start=1):
        out += a * np.sin(k * phase + p)
    return out * hum.wobble * hum.scale


def _event(start: int, dur: int, sr: int, fmin_hz: float, fmax_hz: float) -> dict:
    """The time-frequency box of an anomaly of ``dur`` samples from sample ``start``."""
    return {"start_s": start / sr, "end_s": (start + dur) / sr, "fmin_hz": fmin_hz, "fmax_hz": fmax_hz}


def _event_span(rng: np.random.Generator, n: int, sr: int, seconds: float,
                shortest: float, longest: float) -> tuple[int, int]:
    """``(start, dur)`` in samples: ``shortest``-``longest`` s (at most half the clip), kept
    10 % of the clip away from its ends where possible."""
    dur = int(rng.uniform(shortest, min(longest, 0.5 * seconds)) * sr)
    start = int(rng.integers(int(0.1 * n), max(int(0.1 * n) + 1, n - dur - int(0.1 * n))))
    return start, dur


def _add_clicks(rng: np.random.Generator, extra: np.ndarray, sr: int) -> list[dict]:
    """Add 3-5 short (2-4 ms) broadband impulses to ``extra``, spread over the clip."""
    n = extra.size
    k = int(rng.integers(3, 6))
    slots = np.sort(rng.choice(np.arange(1, 2 * k + 1), size=k, replace=False))
    events = []
    for slot in slots:  # spread the clicks over the clip, never overlapping
        start = int((slot + rng.uniform(0.1, 0.6)) / (2 * k + 2) * n)
        dur = int(rng.uniform(0.002, 0.004) * sr)
        env = np.exp(-np.arange(dur) / (dur / 4.0))
        extra[start:start + dur] += rng.uniform(0.4, 0.7) * env * rng.choice([-1.0, 1.0], size=dur)
        events.append(_event(start, dur, sr, 0.0, sr / 2.0))
    return events


def _shift_tone(rng: np.random.Generator, f_track: np.ndarray, hum: _Hum, sr: int, seconds: float) -> list[dict]:
    """Move the fundamental in ``f_track`` by 20-40 % (up or down) for 0.3-0.6 s."""
    start, dur = _event_span(rng, f_track.size, sr, seconds, 0.3, 0.6)
    f0 = hum.f0
    ratio = rng.uniform(1.2, 1.4) if rng.uniform() < 0.5 else rng.uniform(0.6, 0.8)
    f_track[start:start + dur] = f0 * ratio
    lo, hi = min(f0, f0 * ratio), max(f0, f0 * ratio)
    return [_event(start, dur, sr, 0.9 * lo, min(sr / 2.0, 1.1 * len(hum.amps) * hi))]


def _add_burst(rng: np.random.Generator, extra: np.ndarray, sr: int, seconds: float) -> list[dict]:
    """Add to ``extra`` a 0.2-0.5 s band-limited noise burst under a Hann envelope."""
    start, dur = _event_span(rng, extra.size, sr, seconds, 0.2, 0.5)
    bw = rng.uniform(400.0, 1500.0)
    fc = rng.uniform(1500.0, min(5000.0, sr / 2.0 - bw))
    lo, hi = fc - bw / 2, fc + bw / 2
    burst = _bandpass_noise(rng, dur, sr, lo, hi) * rng.uniform(0.05, 0.08) * np.hanning(dur)
    extra[start:start + dur] += burst
    return [_event(start, dur, sr, lo, hi)]


def make_hum(
    rng_or_seed, *, seconds: float = 2.0, sample_rate: int = SAMPLE_RATE, anomaly: str | None = None
) -> tuple[np.ndarray, list[dict]]:
    """A synthetic machine hum ``(y float32 (n,), events)``.

    Normal sound: fundamental ~120 Hz (jittered by 1 %) with 6 harmonics of jittered
    amplitude and random phase, a slow 3 % amplitude wobble and low white background noise;
    peak about 0.35. The normal part is drawn from the generator first, so for ``'click'``
    and ``'burst'`` the signal differs from the ``anomaly=None`` one of the same seed only
    inside the events' time spans.

    Anomalies (``events`` lists their time-frequency boxes as dicts with ``start_s``,
    ``end_s``, ``fmin_hz``, ``fmax_hz``; empty when ``anomaly`` is None):

    * ``'click'``: 3-5 short (2-4 ms) broadband impulses, each box spanning 0..Nyquist;
    * ``'tone_shift'``: the fundamental moves by 20-40 % (up or down) for 0.3-0.6 s of the
      clip (phase-continuous); the box spans the harmonics of both pitches;
    * ``'burst'``: a 0.2-0.5 s band-limited noise burst (400-1500 Hz wide, centred in
      1.5-5 kHz) under a Hann envelope.
    """
    if anomaly is not None and anomaly not in AUDIO_ANOMALIES:
        raise ValueError(f"anomaly must be None or one of {AUDIO_ANOMALIES}, got {anomaly!r}")
    sr = int(sample_rate)
    n = int(round(seconds * sr))
    if n < int(0.5 * sr):
        raise ValueError(f"seconds must be >= 0.5, got {seconds}")
    rng = np.random.default_rng(rng_or_seed)  # a Generator is returned as it is
    hum = _draw_hum(rng, n, sr)  # first: the anomaly draws come after every normal draw

    f_track = np.full(n, hum.f0)
    extra = np.zeros(n)
    events: list[dict] = []
    if anomaly == "click":
        events = _add_clicks(rng, extra, sr)
    elif anomaly == "tone_shift":
        events = _shift_tone(rng, f_track, hum, sr, seconds)
    elif anomaly == "burst":
        events = _add_burst(rng, extra, sr, seconds)

    y = _harmonics(hum, f_track, sr) + hum.noise + extra
    y = np.clip(y, -0.99, 0.99).astype(np.float32)
    events = [{k: float(v) for k, v in e.items()} for e in events]
    return y, events


def _cell_edges(centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(centres, dtype=np.float64)
    if c.size == 1:
        return np.array([-np.inf]), np.array([np.inf])
    mids = (c[:-1] + c[1:]) / 2.0
    lo = np.concatenate([[c[0] - (mids[0] - c[0])], mids])
    hi = np.concatenate([mids, [c[-1] + (c[-1] - mids[-1])]])
    return lo, hi


def events_to_tf_mask(events, n_frames: int, mel_band_hz, frame_times) -> np.ndarray:
    """Rasterise event boxes onto a spectrogram grid: bool ``(n_mels, n_frames)``.

    ``mel_band_hz`` is the centre frequency of each spectrogram row (ascending) and
    ``frame_times`` the time in seconds of each frame (ascending, ``n_frames`` of them).
    Each cell stands for the interval between the midpoints to its neighbours; a cell is
    True when its interval overlaps an event's box (half-open ``[lo, hi)`` cells, so an
    event shorter than a hop or narrower than a band still marks at least one cell).
    """
    band = np.asarray(mel_band_hz, dtype=np.float64).ravel()
    times = np.asarray(frame_times, dtype=np.float64).ravel()
    if times.size != int(n_frames):
        raise ValueError(f"frame_times has {times.size} entries but n_frames is {n_frames}")
    mask = np.zeros((band.size, times.size), dtype=bool)
    if band.size == 0 or times.size == 0:
        return mask
    f_lo, f_hi = _cell_edges(band)
    t_lo, t_hi = _cell_edges(times)
    for e in events:
        s, t_end = float(e["start_s"]), float(e["end_s"])
        fmin, fmax = float(e["fmin_hz"]), float(e["fmax_hz"])
        rows = (f_lo <= fmax) & (f_hi > fmin)
        cols = (t_lo <= t_end) & (t_hi > s)
        mask |= rows[:, None] & cols[None, :]
    return mask
