"""Log-mel spectrograms and the bookkeeping between clips, windows and anomaly maps.

Pure numpy + librosa; no file I/O. Audio models see a clip as a *log-mel image*
``(n_mels, n_frames)`` with values in ``[0, 1]`` (row 0 = lowest frequency, column =
STFT frame). Long clips are cut into fixed-length overlapping windows
(:func:`window_starts`); per-window anomaly maps are averaged back into one clip-length
map (:func:`overlap_average`), whose per-column maximum is the score curve over time
(:func:`frame_scores`). :func:`tf_axes` and :func:`map_cell_to_time_freq` turn map cells
(also of lower-resolution maps) into seconds and Hz for display.

The dB range is **fixed** (``db_min..db_max`` relative to a mel power of 1.0 in librosa's
unnormalised power units, not to each clip's maximum), so loudness differences between
clips stay visible to the model. It is not full scale: a full-scale sine reaches about
+34 dB and saturates; the fan recordings sit at 0.56 on average and below 0.95 for normal
clips, with under 1 % of cells saturated in the loudest fault clips.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Sequence

import librosa
import numpy as np

from decodemo.errors import ModelError

__all__ = [
    "MelConfig",
    "log_mel",
    "frames_per_window",
    "window_hop_frames",
    "window_starts",
    "pad_to_window",
    "loop_waveform",
    "window_spectrogram",
    "frame_times",
    "mel_band_hz",
    "overlap_average",
    "frame_scores",
    "tf_axes",
    "map_cell_to_time_freq",
    "time_freq_to_cell",
]


SHORT_PADS = ("loop", "wrap", "reflect", "edge", "constant")


@dataclass(frozen=True)
class MelConfig:
    """How a clip becomes a log-mel image and how it is cut into windows.

    Stored with every audio model (``to_dict()`` in its JSON config), so that scoring uses
    exactly the training front end.

    Attributes:
        sample_rate: rate in Hz the audio is loaded at.
        n_fft: STFT size in samples (Hann window, centred frames).
        hop_length: samples between frames; one frame lasts ``hop_length / sample_rate`` s.
        n_mels: number of mel bands (rows of the image).
        fmin, fmax: frequency range of the mel filters in Hz; ``fmax=None`` is
            ``sample_rate / 2``.
        db_min, db_max: the fixed dB range (``power_to_db(ref=1.0)``) mapped to ``[0, 1]``;
            values outside are clipped.
        window_seconds: length of one model input window.
        window_hop_seconds: step between consecutive windows when a clip is scored (``<
            window_seconds`` overlaps). The default, one whole window, scores every frame once
            (the last window is aligned to the clip's end), which keeps a long clip within the
            real-time budget; training draws its windows at a quarter-window hop regardless.
        short_pad: how a clip shorter than one window is brought to one window: ``"loop"``
            (default) repeats the waveform with a short crossfade at each seam
            (:func:`loop_waveform`) before the spectrogram is taken, so a short recording of a
            steady machine still looks like that machine; ``"wrap"``, ``"reflect"``, ``"edge"``
            pad the spectrogram's frames, ``"constant"`` with digital silence
            (:func:`pad_to_window`). Maps keep the clip's own frames only.
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    db_min: float = -80.0
    db_max: float = 20.0
    window_seconds: float = 2.0
    window_hop_seconds: float = 2.0
    short_pad: str = "loop"

    def __post_init__(self) -> None:
        if self.short_pad not in SHORT_PADS:
            raise ValueError(f"MelConfig.short_pad must be one of {', '.join(SHORT_PADS)}, got {self.short_pad!r}")
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"MelConfig.{name} must be a positive integer, got {v!r}")
        if not 0.0 <= self.fmin < self.fmax_hz:
            raise ValueError(
                f"MelConfig needs 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin}, fmax={self.fmax_hz}"
            )
        if self.fmax_hz > self.sample_rate / 2:
            raise ValueError(f"MelConfig.fmax={self.fmax} is above the Nyquist frequency {self.sample_rate / 2}")
        if not self.db_max > self.db_min:
            raise ValueError(f"MelConfig needs db_max > db_min, got {self.db_min}..{self.db_max}")
        if not (self.window_seconds > 0 and self.window_hop_seconds > 0):
            raise ValueError("MelConfig.window_seconds and window_hop_seconds must be positive")
        if self.window_hop_seconds > self.window_seconds:  # windows must cover every frame
            raise ValueError(
                f"MelConfig.window_hop_seconds={self.window_hop_seconds} is longer than "
                f"window_seconds={self.window_seconds}: frames between windows would never be scored"
            )

    @property
    def fmax_hz(self) -> float:
        """The effective upper frequency in Hz (``fmax`` or ``sample_rate / 2``)."""
        return float(self.sample_rate) / 2.0 if self.fmax is None else float(self.fmax)

    @property
    def seconds_per_frame(self) -> float:
        """Time between two frames: ``hop_length / sample_rate``."""
        return self.hop_length / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict (``fmax`` may be ``None``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MelConfig":
        """Rebuild from :meth:`to_dict` output; missing keys take their defaults.

        Raises:
            ModelError: ``d`` is not a mapping, has unknown keys (named in the message),
                or holds invalid values.
        """
        if not isinstance(d, Mapping):
            raise ModelError(f"The mel settings must be a JSON object, got {type(d).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelError(
                f"The mel settings contain unknown keys: {', '.join(map(str, unknown))}. "
                f"Known keys: {', '.join(sorted(known))}."
            )
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key in ("sample_rate", "n_fft", "hop_length", "n_mels"):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
            elif value is not None and not isinstance(value, bool) and isinstance(value, (int, float)):
                value = float(value)
            kwargs[key] = value
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"The mel settings are invalid: {exc}") from exc


def log_mel(y: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """Log-mel image of a mono clip.

    Args:
        y: float mono signal, shape ``(n_samples,)``, at ``cfg.sample_rate``, full scale 1.0.
        cfg: the front-end settings.

    Returns:
        float32 array ``(cfg.n_mels, n_frames)`` with ``n_frames = 1 + n_samples // hop``
        (centred frames), values in ``[0, 1]``: ``(clip(dB, db_min, db_max) - db_min) /
        (db_max - db_min)`` with ``dB = 10 log10(max(power, 1e-10))`` of the mel power
        spectrogram (Slaney mel filters). Row 0 is the lowest frequency.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"log_mel expects a mono signal of shape (n_samples,), got shape {y.shape}")
    if y.size == 0:
        raise ValueError("log_mel got an empty signal")
    S = librosa.feature.melspectrogram(
        y=y.astype(np.float32, copy=False),
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax_hz,
        power=2.0,
        center=True,
    )
    db = librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=None)
    out = (np.clip(db, cfg.db_min, cfg.db_max) - cfg.db_min) / (cfg.db_max - cfg.db_min)
    return out.astype(np.float32)


def frames_per_window(cfg: MelConfig) -> int:
    """Frames in one model window: ``round(window_seconds * sample_rate / hop_length)``
    (125 with the defaults)."""
    return max(1, int(round(cfg.window_seconds * cfg.sample_rate / cfg.hop_length)))


def window_hop_frames(cfg: MelConfig) -> int:
    """Frames between window starts: ``round(window_hop_seconds * sample_rate / hop_length)``, >= 1."""
    return max(1, int(round(cfg.window_hop_seconds * cfg.sample_rate / cfg.hop_length)))


def window_starts(n_frames: int, cfg: MelConfig) -> list[int]:
    """First frame of each window so that the windows cover frames ``0 .. n_frames - 1``.

    Windows of :func:`frames_per_window` frames start every :func:`window_hop_frames`
    frames; when the last regular window stops short of the end, one more window aligned
    to the end (start ``n_frames - W``) is added. A clip of at most one window gives
    ``[0]``; pad its spectrogram with :func:`pad_to_window`.
    """
    if n_frames <= 0:
        raise ValueError(f"n_frames must be positive, got {n_frames}")
    w = frames_per_window(cfg)
    if n_frames <= w:
        return [0]
    starts = list(range(0, n_frames - w + 1, window_hop_frames(cfg)))
    if starts[-1] != n_frames - w:
        starts.append(n_frames - w)
    return starts


def pad_to_window(spec: np.ndarray, cfg: MelConfig, *, mode: str = "constant") -> np.ndarray:
    """Pad a spectrogram ``(n_mels, n_frames)`` on the right to at least one window.

    Args:
        spec: log-mel image from :func:`log_mel`.
        cfg: gives the window length (:func:`frames_per_window`).
        mode: ``"constant"`` pads with 0.0, the ``db_min`` floor (digital silence);
            ``"wrap"``, ``"reflect"`` and ``"edge"`` are :func:`numpy.pad` modes.

    Returns:
        ``spec`` itself when it already has ``>= W`` frames, else a float32 copy of shape
        ``(n_mels, W)``. Crop maps back to the original ``n_frames`` afterwards
        (:func:`overlap_average` does).
    """
    spec = np.asarray(spec)
    w = frames_per_window(cfg)
    n = spec.shape[-1]
    if n >= w:
        return spec
    if n == 0:
        raise ValueError("cannot pad an empty spectrogram")
    width = [(0, 0)] * (spec.ndim - 1) + [(0, w - n)]
    if mode == "constant":
        out = np.pad(spec, width, mode="constant", constant_values=0.0)
    elif mode in ("wrap", "reflect", "edge"):
        if mode == "reflect" and n < 2:
            mode = "edge"
        out = np.pad(spec, width, mode=mode)
    else:
        raise ValueError(f"unknown pad mode {mode!r}; use 'constant', 'wrap', 'reflect' or 'edge'")
    return out.astype(np.float32, copy=False)


#: Crossfade at each seam of a looped short clip (:func:`loop_waveform`), in seconds.
LOOP_FADE_SECONDS = 0.032


def loop_waveform(y: np.ndarray, n_samples: int, fade: int) -> np.ndarray:
    """``y`` repeated to ``n_samples`` samples, each seam a linear crossfade of ``fade`` samples
    (the end of one copy into the start of the next), so the loop adds no click."""
    y = np.asarray(y, dtype=np.float32)
    if len(y) == 0:
        raise ValueError("cannot loop an empty waveform")
    fade = int(max(0, min(fade, len(y) // 2)))
    out = y
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32) if fade else None
    while len(out) < n_samples:
        if fade:
            seam = out[-fade:] * (1 - ramp) + y[:fade] * ramp
            out = np.concatenate([out[:-fade], seam, y[fade:]])
        else:
            out = np.concatenate([out, y])
    return out[:n_samples]


def window_spectrogram(y: np.ndarray, spec: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """The spectrogram the windows are cut from: ``spec`` itself when the clip fills a window,
    else one window made by ``cfg.short_pad`` (``"loop"``: of the looped waveform ``y``)."""
    w = frames_per_window(cfg)
    if spec.shape[-1] >= w:
        return spec
    if cfg.short_pad != "loop":
        return pad_to_window(spec, cfg, mode=cfg.short_pad)
    n = int(np.ceil(cfg.window_seconds * cfg.sample_rate)) + cfg.hop_length
    looped = log_mel(loop_waveform(y, n, int(LOOP_FADE_SECONDS * cfg.sample_rate)), cfg)
    return pad_to_window(looped[:, :w], cfg, mode="edge")


def frame_times(n_frames: int, cfg: MelConfig) -> np.ndarray:
    """Centre time in seconds of each frame, shape ``(n_frames,)``: ``i * hop / sr``."""
    return librosa.frames_to_time(np.arange(n_frames), sr=cfg.sample_rate, hop_length=cfg.hop_length)


def mel_band_hz(cfg: MelConfig) -> np.ndarray:
    """Centre frequency in Hz of each mel row, shape ``(n_mels,)``, increasing.

    These are the peaks of librosa's (Slaney) mel filters: the inner ``n_mels`` of
    ``librosa.mel_frequencies(n_mels + 2, fmin, fmax)``.
    """
    edges = librosa.mel_frequencies(n_mels=cfg.n_mels + 2, fmin=cfg.fmin, fmax=cfg.fmax_hz)
    return edges[1:-1]


def overlap_average(window_maps: Sequence[np.ndarray], starts: Sequence[int], n_frames: int) -> np.ndarray:
    """Average per-window maps into one clip-length map.

    Args:
        window_maps: one map per window, each ``(n_rows, F)`` (normally
            ``(n_mels, frames_per_window)``), all the same shape.
        starts: the window start frames (from :func:`window_starts`), same length.
        n_frames: frames of the clip; columns past it (padding of a short clip) are dropped.

    Returns:
        float32 ``(n_rows, n_frames)``: at each frame, the mean of the windows covering it.

    Raises:
        ValueError: mismatched lengths/shapes, or a frame that no window covers.
    """
    if len(window_maps) != len(starts) or not window_maps:
        raise ValueError(f"need one start per map and at least one map, got {len(window_maps)} maps, {len(starts)} starts")
    shape = np.shape(window_maps[0])
    if len(shape) != 2:
        raise ValueError(f"window maps must be 2-D (n_rows, F), got shape {shape}")
    n_rows, f = shape
    total = np.zeros((n_rows, n_frames), dtype=np.float64)
    count = np.zeros(n_frames, dtype=np.int64)
    for m, s in zip(window_maps, starts):
        m = np.asarray(m)
        if m.shape != shape:
            raise ValueError(f"all window maps must have shape {shape}, got {m.shape}")
        s = int(s)
        lo, hi = max(s, 0), min(s + f, n_frames)
        if hi <= lo:
            continue
        total[:, lo:hi] += m[:, lo - s : hi - s]
        count[lo:hi] += 1
    if (count == 0).any():
        first = int(np.argmax(count == 0))
        raise ValueError(f"frame {first} of {n_frames} is covered by no window")
    return (total / count).astype(np.float32)


def frame_scores(tf_map: np.ndarray) -> np.ndarray:
    """Score curve over time: the maximum over frequency of a ``(n_rows, n_frames)`` map,
    shape ``(n_frames,)``, float32."""
    tf_map = np.asarray(tf_map)
    if tf_map.ndim != 2:
        raise ValueError(f"expected a 2-D (n_rows, n_frames) map, got shape {tf_map.shape}")
    return tf_map.max(axis=0).astype(np.float32)


def _row_to_hz(row: np.ndarray | float, n_rows: int, cfg: MelConfig) -> np.ndarray:
    """Fractional mel-row index (of a map with ``n_rows`` rows) -> centre frequency in Hz."""
    # Centre of the block of mel rows a map row covers, in mel-row units.
    mel_row = (np.asarray(row, dtype=np.float64) + 0.5) * cfg.n_mels / n_rows - 0.5
    m_lo = librosa.hz_to_mel(cfg.fmin)
    m_hi = librosa.hz_to_mel(cfg.fmax_hz)
    mel = m_lo + (mel_row + 1.0) * (m_hi - m_lo) / (cfg.n_mels + 1)
    return np.asarray(librosa.mel_to_hz(mel), dtype=np.float64)


def _col_to_seconds(col: np.ndarray | float, n_cols: int, n_frames: int, cfg: MelConfig) -> np.ndarray:
    frame = (np.asarray(col, dtype=np.float64) + 0.5) * n_frames / n_cols - 0.5
    return frame * cfg.hop_length / cfg.sample_rate


def tf_axes(map_shape: tuple[int, int], n_frames: int, cfg: MelConfig) -> tuple[np.ndarray, np.ndarray]:
    """Axes of a time-frequency map that spans the whole clip and all mel bands.

    Args:
        map_shape: ``(n_rows, n_cols)`` of the map; may be coarser (or finer) than the
            spectrogram ``(n_mels, n_frames)``: row ``r`` then stands for the block of mel
            rows ``[r * n_mels / n_rows, (r + 1) * n_mels / n_rows)``, column ``c`` likewise
            for frames.
        n_frames: frames of the clip's spectrogram.
        cfg: the front-end settings.

    Returns:
        ``(seconds_per_col, hz_per_row)``: the centre time (s) of each column, shape
        ``(n_cols,)``, and the centre frequency (Hz, on the mel scale) of each row, shape
        ``(n_rows,)``, row 0 lowest. At full resolution these equal
        :func:`frame_times` and :func:`mel_band_hz`.
    """
    n_rows, n_cols = (int(v) for v in map_shape[-2:])
    if n_rows <= 0 or n_cols <= 0 or n_frames <= 0:
        raise ValueError(f"invalid map shape {map_shape} or n_frames {n_frames}")
    seconds = _col_to_seconds(np.arange(n_cols), n_cols, n_frames, cfg)
    hz = _row_to_hz(np.arange(n_rows), n_rows, cfg)
    return seconds, hz


def map_cell_to_time_freq(
    row: int, col: int, map_shape: tuple[int, int], n_frames: int, cfg: MelConfig
) -> tuple[float, float]:
    """``(seconds, hz)`` at the centre of cell ``(row, col)`` of a clip-spanning map.

    See :func:`tf_axes` for how a coarser map relates to the spectrogram. Row 0 is the
    lowest frequency (flip the map vertically only when drawing it).

    Raises:
        IndexError: ``row``/``col`` outside ``map_shape``.
    """
    n_rows, n_cols = (int(v) for v in map_shape[-2:])
    if not (0 <= row < n_rows and 0 <= col < n_cols):
        raise IndexError(f"cell ({row}, {col}) is outside a map of shape ({n_rows}, {n_cols})")
    if n_frames <= 0:
        raise ValueError(f"n_frames must be positive, got {n_frames}")
    seconds = float(_col_to_seconds(col, n_cols, n_frames, cfg))
    hz = float(_row_to_hz(row, n_rows, cfg))
    return seconds, hz


def time_freq_to_cell(
    seconds: float, hz: float, map_shape: tuple[int, int], n_frames: int, cfg: MelConfig
) -> tuple[int, int]:
    """Inverse of :func:`map_cell_to_time_freq`: the ``(row, col)`` whose centre is nearest
    to ``(seconds, hz)`` (nearest in time and on the mel scale), clamped to the map."""
    n_rows, n_cols = (int(v) for v in map_shape[-2:])
    frame = seconds * cfg.sample_rate / cfg.hop_length
    col = (frame + 0.5) * n_cols / n_frames - 0.5
    m_lo = librosa.hz_to_mel(cfg.fmin)
    m_hi = librosa.hz_to_mel(cfg.fmax_hz)
    mel_row = (float(librosa.hz_to_mel(max(float(hz), 0.0))) - m_lo) * (cfg.n_mels + 1) / (m_hi - m_lo) - 1.0
    row = (mel_row + 0.5) * n_rows / cfg.n_mels - 0.5
    r = min(max(int(math.floor(row + 0.5)), 0), n_rows - 1)
    c = min(max(int(math.floor(col + 0.5)), 0), n_cols - 1)
    return r, c
