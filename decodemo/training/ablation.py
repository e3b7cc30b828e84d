"""Normal-data statistics of a trained model's no-diffusion ablation, for models trained
before the ablation existed (new trainings compute them themselves).

- ``invad``: NLL / Diff mean and std at S = 0 on the held-out normal training files.
- ``recon``: the per-position mean normal input (image and features) and the mean / std of the
  maps against it, from (up to ``stats_max`` of) the fit normal training files.
- ``decodiff`` needs none: its ablation is the VAE round trip.

The split is the training's own (``val_fraction`` and ``seed`` from the model's config).
"""

from __future__ import annotations

import torch

from decodemo.data.layout import Layout
from decodemo.errors import ModelError
from decodemo.training.prepare import load_inputs
from decodemo.training.split import split_normal

__all__ = ["fit_ablation"]


@torch.no_grad()
def fit_ablation(model, layout: Layout, *, val_fraction: float = 0.1, seed: int | None = None,
                 stats_max: int = 256) -> str:
    """Compute ``model``'s ablation statistics from ``layout.train`` in place; returns what was done."""
    cfg = model.config
    method = cfg.method
    if method == "decodiff":
        return "decodiff's ablation (the VAE round trip) needs no statistics"
    if method not in ("invad", "recon"):
        raise ModelError(f"{method} has no no-diffusion ablation.")
    seed = cfg.training.get("seed", 0) if seed is None else seed
    fit_idx, val_idx = split_normal(len(layout.train), val_fraction, seed)
    device = next(model.buffers()).device
    if method == "invad":
        val = load_inputs(layout, val_idx, cfg, desc="held-out normal inputs")
        feats = torch.cat([model.encode(v.to(device)) for v in val])
        model.calibrate(feats, [0])
        return f"invad: S = 0 statistics from {len(val_idx)} held-out normal files"
    fit = torch.cat(load_inputs(layout, fit_idx, cfg, desc="training inputs"))
    pick = torch.randperm(len(fit), generator=torch.Generator().manual_seed(seed))[:stats_max]
    model.fit_ablation_stats(fit[pick].to(device))
    return f"recon: mean normal input and map statistics from {len(pick)} normal training inputs"
