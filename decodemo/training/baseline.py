"""Fitting a ``baseline`` (PatchCore-style) model on a folder layout: features, coreset, threshold.

There is no iterative training: the normal training files give patch features, a greedy
coreset of them becomes the memory bank, and the held-out normal files give the threshold.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from decodemo.data.layout import Layout
from decodemo.methods.baseline.config import BaselineConfig
from decodemo.methods.baseline.model import PatchCore
from decodemo.training.loop import TrainSettings, resolve_device
from decodemo.training.prepare import load_split, set_modality
from decodemo.training.validation import file_scores, set_threshold

__all__ = ["train_baseline"]


@torch.no_grad()
def _features(model: PatchCore, tensors: list[torch.Tensor], batch: int = 32) -> torch.Tensor:
    """Patch features ``(sum of inputs, C, g, g)`` on CPU of every input of every file."""
    parts = [model.patch_features(t[i : i + batch]).cpu() for t in tensors for i in range(0, len(t), batch)]
    return torch.cat(parts)


def _fit_coreset(model: PatchCore, feats: torch.Tensor, n_patches: int, log) -> float:
    """The memory bank: the seeded (``config.seed``) coreset of ``feats`` -> seconds it took."""
    t1 = time.perf_counter()
    model.fit(feats, generator=torch.Generator().manual_seed(model.config.seed))
    seconds = time.perf_counter() - t1
    log(f"baseline: coreset of {model.memory.shape[0]} patches ({model.memory.shape[0] / n_patches:.1%}) "
        f"in {seconds:.1f} s.")
    return seconds


def _set_threshold(model: PatchCore, val_t: list[torch.Tensor], quantile: float, data_name: str, log) -> None:
    """The ``quantile`` of the held-out normal files' scores, or none when nothing is held out."""
    cfg = model.config
    if not val_t:  # val_fraction = 0 or a single training file: nothing held out, so no honest threshold
        cfg.threshold, cfg.threshold_provenance = None, None
        log("baseline: no held-out normal files, so no threshold is set.")
        return
    per_file = file_scores(lambda x: model.detect(x).scores, val_t, audio=cfg.modality == "audio",
                           reduce=cfg.clip_reduce, batch=32)
    set_threshold(cfg, per_file, quantile, data_name, " (not in the memory bank)")


def train_baseline(
    layout: Layout,
    out_dir: str | Path,
    settings: TrainSettings,
    *,
    config: BaselineConfig | None = None,
    val_fraction: float = 0.1,
    threshold_quantile: float = 0.99,
    resume: bool = False,
    log=print,
) -> tuple[PatchCore, dict[str, Any]]:
    """Fit on ``layout.train`` (normal only) and write the model folder to ``out_dir``.

    A seeded (``settings.seed``) ``val_fraction`` of the normal training files is held out; the
    others' patch features are reduced to the coreset memory bank (seeded with ``config.seed``).
    The threshold is the ``threshold_quantile`` of the held-out files' scores. No test data is
    used. ``resume`` is accepted for the shared trainer signature and ignored: fitting is one
    pass. Returns the model and ``{"steps": 0, "seconds", "final_loss": None, "history": []}``.
    """
    del resume  # nothing to resume: no iterative training
    out_dir = Path(out_dir)
    cfg = set_modality(config or BaselineConfig(), layout)
    device = resolve_device(settings.device)
    model = PatchCore(cfg).to(device)

    t0 = time.perf_counter()
    if not layout.train:
        raise ValueError(f"{layout.root} has no normal training files.")
    # Audio: a denser window hop for the memory bank (a quarter window), as invad trains on.
    split = load_split(layout, cfg, val_fraction, settings.seed, disjoint=True)
    feats = _features(model, split.fit)
    feature_seconds = time.perf_counter() - t0
    n_patches = feats.shape[0] * feats.shape[2] * feats.shape[3]
    log(f"baseline: {len(split.fit_idx)} training files ({len(feats)} inputs, {n_patches} patches of "
        f"{feats.shape[1]} channels), {len(split.val_idx)} held-out normal files; features in {feature_seconds:.1f} s.")
    coreset_seconds = _fit_coreset(model, feats, n_patches, log)
    del feats
    _set_threshold(model, split.val, threshold_quantile, layout.root.name, log)
    seconds = time.perf_counter() - t0
    cfg.training = {
        "data": str(layout.root.name),
        "train_files": len(split.fit_idx),
        "train_inputs": int(sum(len(t) for t in split.fit)),
        "train_patches": int(n_patches),
        "heldout_normal_files": len(split.val_idx),
        "coreset_size": int(model.memory.shape[0]),
        "feature_seconds": round(feature_seconds, 1),
        "coreset_seconds": round(coreset_seconds, 1),
        "seconds": round(seconds, 1),
        "seed": settings.seed,
        "device": str(device),
    }
    model.save_pretrained(out_dir)
    model.eval()
    return model, {"steps": 0, "seconds": seconds, "final_loss": None, "history": []}
