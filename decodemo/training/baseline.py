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
from decodemo.inputs import sample_tensors
from decodemo.io.spectrogram import MelConfig
from decodemo.methods.baseline.config import BaselineConfig
from decodemo.methods.baseline.model import PatchCore
from decodemo.metrics import threshold_at_normal_quantile
from decodemo.scoring import reduce_windows
from decodemo.training.loop import TrainSettings, resolve_device
from decodemo.training.split import split_normal

__all__ = ["train_baseline"]


@torch.no_grad()
def _features(model: PatchCore, tensors: list[torch.Tensor], batch: int = 32) -> torch.Tensor:
    """Patch features ``(sum of inputs, C, g, g)`` on CPU of every input of every file."""
    parts = [model.patch_features(t[i : i + batch]).cpu() for t in tensors for i in range(0, len(t), batch)]
    return torch.cat(parts)


@torch.no_grad()
def _file_scores(model: PatchCore, tensors: list[torch.Tensor], batch: int = 32) -> list[float]:
    """One score per file: the image's score, or the clip's window scores reduced (``clip_reduce``)."""
    cfg, out = model.config, []
    for t in tensors:
        s = torch.cat([model.detect(t[i : i + batch]).scores.cpu() for i in range(0, len(t), batch)])
        out.append(reduce_windows(s, cfg.clip_reduce) if cfg.modality == "audio" else float(s[0]))
    return out


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
    cfg = config or BaselineConfig()
    cfg.modality = layout.modality
    if layout.modality == "audio" and cfg.mel is None:
        cfg.mel = MelConfig().to_dict()
    mel = MelConfig.from_dict(cfg.mel) if cfg.mel else None
    device = resolve_device(settings.device)
    model = PatchCore(cfg).to(device)

    t0 = time.perf_counter()
    paths = [s.path for s in layout.train]
    if not paths:
        raise ValueError(f"{layout.root} has no normal training files.")
    fit_idx, val_idx = split_normal(len(paths), val_fraction, settings.seed)
    # split_normal returns the same file for both with one training file: not held out then
    val_idx = [i for i in val_idx if i not in set(fit_idx)]
    # Audio: a denser window hop for the memory bank (a quarter window), as invad trains on.
    hop = None
    if mel is not None:
        from decodemo.io.spectrogram import frames_per_window

        hop = max(1, frames_per_window(mel) // 4)
    fit_t = sample_tensors([paths[i] for i in fit_idx], modality=cfg.modality, size=cfg.image_size, mel=mel,
                           hop_frames=hop, desc="training inputs")
    val_t = sample_tensors([paths[i] for i in val_idx], modality=cfg.modality, size=cfg.image_size, mel=mel,
                           desc="held-out normal inputs")
    feats = _features(model, fit_t)
    feature_seconds = time.perf_counter() - t0
    n_patches = feats.shape[0] * feats.shape[2] * feats.shape[3]
    log(f"baseline: {len(fit_idx)} training files ({len(feats)} inputs, {n_patches} patches of "
        f"{feats.shape[1]} channels), {len(val_idx)} held-out normal files; features in {feature_seconds:.1f} s.")

    t1 = time.perf_counter()
    model.fit(feats, generator=torch.Generator().manual_seed(cfg.seed))
    coreset_seconds = time.perf_counter() - t1
    del feats
    log(f"baseline: coreset of {model.memory.shape[0]} patches ({model.memory.shape[0] / n_patches:.1%}) "
        f"in {coreset_seconds:.1f} s.")

    if val_t:
        per_file = _file_scores(model, val_t)
        cfg.threshold = float(threshold_at_normal_quantile(per_file, q=threshold_quantile))
        cfg.threshold_provenance = (
            f"{threshold_quantile:.2f} quantile of the nn score of {len(per_file)} held-out normal "
            f"training files of {layout.root.name} (not in the memory bank); no test data used"
        )
    else:  # val_fraction = 0 or a single training file: nothing held out, so no honest threshold
        cfg.threshold, cfg.threshold_provenance = None, None
        log("baseline: no held-out normal files, so no threshold is set.")
    seconds = time.perf_counter() - t0
    cfg.training = {
        "data": str(layout.root.name),
        "train_files": len(fit_idx),
        "train_inputs": int(sum(len(t) for t in fit_t)),
        "train_patches": int(n_patches),
        "heldout_normal_files": len(val_idx),
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
