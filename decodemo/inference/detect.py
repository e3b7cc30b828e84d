"""Running a detector: on a loaded upload, on files, on batches of images, on audio clips window
by window. Every caller (the service, the command line, evaluation, references, benchmarks)
goes through :func:`detect_prepared` / :func:`detect_paths`, so images and sounds are told
apart in one place (:mod:`decodemo.inference.inputs`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from decodemo.inference.inputs import AudioInput, ImageInput, Loaded, prepare, prepare_path
from decodemo.inference.shapes import stitch
from decodemo.io.spectrogram import frame_scores, frames_per_window, overlap_average

__all__ = ["ClipResult", "Detection", "detect_batched", "detect_clip", "detect_prepared", "detect_loaded",
           "detect_paths", "reduce_windows"]


def detect_batched(detector, images: torch.Tensor, *, batch_size: int = 16, with_variant_maps: bool = False,
                   reconstructions: list | None = None, progress=None, **kwargs):
    """``detector.detect`` over ``images`` in chunks; returns scores, maps, variants and NFE on
    CPU, plus (``with_variant_maps``) the maps of other score variants that the detector puts
    in ``extras`` as ``map_<variant>``. A list passed as ``reconstructions`` receives the
    detector's reconstructions ``(b, 3, H, W)`` chunk by chunk (nothing for detectors without).
    ``progress(done, total)`` is called after each chunk."""
    scores, maps, variants, nfe = [], [], {}, 0
    variant_maps: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(images), batch_size):
        res = detector.detect(images[i : i + batch_size], **kwargs)
        if progress is not None:
            progress(min(len(images), i + batch_size), len(images))
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


def detect_clip(detector, clip: AudioInput, *, batch_size: int = 16, reduce: str | None = None, progress=None,
                **kwargs) -> ClipResult:
    """Score every window of ``clip``, ``batch_size`` windows at a time (``progress(done, total)``
    after each batch); the clip score reduces the window scores (config's ``clip_reduce``), the
    map is the overlap average of the window maps at spectrogram size."""
    t0 = time.perf_counter()
    recs: list[torch.Tensor] = []
    scores, maps, variants, nfe = detect_batched(detector, clip.windows, batch_size=batch_size,
                                                 reconstructions=recs, progress=progress, **kwargs)
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


@dataclass
class Detection:
    """A detector's answer for one input (an image or a whole clip)."""

    score: float
    variants: dict[str, float]
    #: image: ``(h, w)`` float32 on the image's canvas (its aspect at the model's scale, ``S x S``
    #: for a square image; :mod:`decodemo.inference.shapes`); audio: ``(n_mels, frames)`` of the clip
    map: np.ndarray
    #: image: ``(3, h, w)`` float in [0, 1]; audio: ``(n_mels, frames)`` in [0, 1]; None without one
    reconstruction: np.ndarray | None
    nfe: int
    seconds: float
    frame_scores: np.ndarray | None = None  # audio: (frames,) max of the map over frequency
    variant_maps: dict[str, np.ndarray] = field(default_factory=dict)  # image: other variants' maps
    geometry: dict | None = None  # image: how it became inputs (mode, input and canvas size, inputs)


def _from_clip(res: ClipResult) -> Detection:
    return Detection(score=res.score, variants=res.variants, map=res.tf_map, reconstruction=res.reconstruction,
                     nfe=res.nfe, seconds=res.seconds, frame_scores=res.frame_scores)


def _image_detections(detector, x: torch.Tensor, *, batch_size: int, **kwargs) -> list[Detection]:
    """One :class:`Detection` per image of the batch ``x`` ``(B, 3, S, S)``."""
    t0 = time.perf_counter()
    recs: list[torch.Tensor] = []
    scores, maps, variants, nfe, vmaps = detect_batched(detector, x, batch_size=batch_size, with_variant_maps=True,
                                                        reconstructions=recs, **kwargs)
    seconds = (time.perf_counter() - t0) / max(1, len(x))
    rec = torch.cat(recs) if recs else None
    return [Detection(score=float(scores[j]), variants={k: float(v[j]) for k, v in variants.items()},
                      map=maps[j].float().numpy(), reconstruction=None if rec is None else rec[j].numpy(),
                      nfe=nfe, seconds=seconds, variant_maps={k: v[j].float().numpy() for k, v in vmaps.items()})
            for j in range(len(x))]


def _merge_tiles(dets: list[Detection], image: ImageInput) -> Detection:
    """An image's per-input detections -> one: the highest score (each variant's highest), the
    maps and reconstruction stitched back onto the image's canvas."""
    g = image.geometry
    best = max(range(len(dets)), key=lambda k: dets[k].score)
    recs = [d.reconstruction for d in dets]
    return Detection(
        score=dets[best].score,
        variants={k: max(d.variants[k] for d in dets) for k in dets[0].variants},
        map=stitch(np.stack([d.map for d in dets]), g),
        reconstruction=None if recs[0] is None else np.clip(stitch(np.stack(recs), g), 0, 1),
        nfe=dets[0].nfe * len(dets),
        seconds=sum(d.seconds for d in dets),
        variant_maps={k: stitch(np.stack([d.variant_maps[k] for d in dets]), g) for k in dets[0].variant_maps},
        geometry=g.to_dict(),
    )


def _detect_images(detector, images: list[ImageInput], *, batch_size: int, **kwargs) -> list[Detection]:
    """Every input of ``images`` in batches of ``batch_size`` -> one :class:`Detection` per image."""
    x = torch.cat([im.tiles for im in images])
    dets = _image_detections(detector, x, batch_size=batch_size, **kwargs)
    out, k = [], 0
    for im in images:
        n = len(im.tiles)
        out.append(_merge_tiles(dets[k : k + n], im))
        k += n
    return out


def detect_prepared(detector, prepared: ImageInput | AudioInput | torch.Tensor, *, batch_size: int = 16,
                    **kwargs) -> Detection:
    """Run ``detector`` on what :func:`~decodemo.inference.inputs.prepare` returned (a bare
    ``(1, 3, S, S)`` tensor is one square input). ``progress(done, total)``: a clip's windows."""
    if isinstance(prepared, AudioInput):
        return _from_clip(detect_clip(detector, prepared, batch_size=batch_size, **kwargs))
    kwargs.pop("progress", None)
    if isinstance(prepared, ImageInput):
        return _detect_images(detector, [prepared], batch_size=batch_size, **kwargs)[0]
    return _image_detections(detector, prepared, batch_size=batch_size, **kwargs)[0]


def detect_loaded(detector, loaded: Loaded, **kwargs) -> Detection:
    """Run ``detector`` on an upload from :func:`~decodemo.inference.inputs.load_input`."""
    return detect_prepared(detector, prepare(loaded, detector.config), **kwargs)


def detect_paths(detector, paths: Iterable, *, batch_size: int = 16, desc: str = "scoring",
                 **kwargs) -> Iterator[Detection]:
    """Run ``detector`` on files, one :class:`Detection` per file in order; images are run
    ``batch_size`` at a time, clips one by one (their windows ``batch_size`` at a time).
    Shows a progress bar."""
    from tqdm.auto import tqdm

    paths = list(paths)
    cfg = detector.config
    bar = tqdm(total=len(paths), desc=desc, leave=False, dynamic_ncols=True)
    try:
        if cfg.modality == "audio":
            for p in paths:
                yield detect_prepared(detector, prepare_path(p, cfg), batch_size=batch_size, **kwargs)
                bar.update(1)
            return
        for i in range(0, len(paths), batch_size):
            chunk = paths[i : i + batch_size]
            yield from _detect_images(detector, [prepare_path(p, cfg) for p in chunk], batch_size=batch_size,
                                      **kwargs)
            bar.update(len(chunk))
    finally:
        bar.close()
