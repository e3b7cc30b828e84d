"""Running a detector on files: batches of images, and audio clips scored window by window."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from decodemo.inputs import AudioInput
from decodemo.io.spectrogram import frame_scores, frames_per_window, overlap_average

__all__ = ["ClipResult", "detect_batched", "detect_clip", "reduce_windows"]


def detect_batched(detector, images: torch.Tensor, *, batch_size: int = 16, with_variant_maps: bool = False,
                   reconstructions: list | None = None, **kwargs):
    """``detector.detect`` over ``images`` in chunks; returns scores, maps, variants and NFE on
    CPU, plus (``with_variant_maps``) the maps of other score variants that the detector puts
    in ``extras`` as ``map_<variant>``. A list passed as ``reconstructions`` receives the
    detector's reconstructions ``(b, 3, H, W)`` chunk by chunk (nothing for detectors without)."""
    scores, maps, variants, nfe = [], [], {}, 0
    variant_maps: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(images), batch_size):
        res = detector.detect(images[i : i + batch_size], **kwargs)
        if reconstructions is not None and res.reconstruction is not None:
            reconstructions.append(res.reconstruction.float().cpu())
        scores.append(res.scores.cpu())
        maps.append(res.maps.cpu())
        for k, v in res.variants.items():
            variants.setdefault(k, []).append(v.cpu())
        for k, v in res.extras.items():
            if k.startswith("map_"):
                variant_maps.setdefault(k[4:], []).append(v.cpu())
        nfe = res.nfe
    out = (
        torch.cat(scores),
        torch.cat(maps),
        {k: torch.cat(v) for k, v in variants.items()},
        nfe,
    )
    if with_variant_maps:
        return (*out, {k: torch.cat(v) for k, v in variant_maps.items()})
    return out


def reduce_windows(values: torch.Tensor, how: str) -> float:
    if how == "max":
        return float(values.max())
    if how == "mean":
        return float(values.mean())
    raise ValueError(f"Unknown window reduction {how!r}: use 'max' or 'mean'.")


@dataclass
class ClipResult:
    """A detector's answer for one audio clip."""

    score: float
    variants: dict[str, float]
    tf_map: np.ndarray  # (n_mels, n_frames), row 0 = lowest frequency
    reconstruction: np.ndarray | None  # (n_mels, n_frames) in [0, 1], the method's normal version, if any
    frame_scores: np.ndarray  # (n_frames,) max of the map over frequency
    window_scores: np.ndarray  # (W,)
    nfe: int
    seconds: float = 0.0
    extras: dict = field(default_factory=dict)


def detect_clip(detector, clip: AudioInput, *, batch_size: int = 16, reduce: str | None = None, **kwargs) -> ClipResult:
    """Score every window of ``clip``; the clip score reduces the window scores (config's
    ``clip_reduce``), the map is the overlap average of the window maps at spectrogram size."""
    t0 = time.perf_counter()
    recs: list[torch.Tensor] = []
    scores, maps, variants, nfe = detect_batched(detector, clip.windows, batch_size=batch_size,
                                                 reconstructions=recs, **kwargs)
    reduce = reduce or getattr(detector.config, "clip_reduce", "max")
    width = frames_per_window(clip.mel)
    n_mels = clip.spectrogram.shape[0]

    def to_tf(windows: torch.Tensor) -> np.ndarray:
        # Windows are drawn with low frequencies at the bottom: flip back, resize to the window.
        w = F.interpolate(windows.flip(1).unsqueeze(1).float(), size=(n_mels, width), mode="bilinear",
                          align_corners=False)[:, 0]
        return overlap_average([m.numpy() for m in w], clip.starts, clip.n_frames)

    tf = to_tf(maps)
    rec = np.clip(to_tf(torch.cat(recs).mean(1)), 0, 1) if recs else None
    return ClipResult(
        score=reduce_windows(scores, reduce),
        variants={k: reduce_windows(v, reduce) for k, v in variants.items()},
        tf_map=tf,
        reconstruction=rec,
        frame_scores=frame_scores(tf),
        window_scores=scores.numpy(),
        nfe=nfe * len(clip.starts),
        seconds=time.perf_counter() - t0,
    )
