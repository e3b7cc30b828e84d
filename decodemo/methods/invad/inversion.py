"""The math of the reconstruction-free detector: DDIM inversion and latent-likelihood scores.

Pure tensor functions (no I/O, no weights). Symbols follow Sakai & Hasegawa (2025),
"Reconstruction-Free Anomaly Detection with Diffusion Models via Direct Latent Likelihood
Evaluation" (arXiv 2504.05662), section 3.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["inversion_timesteps", "ddim_invert", "nll_score", "diff_score", "norm_map"]


def inversion_timesteps(num_train_timesteps: int, steps: int) -> list[int]:
    """Uniform grid from t = 0 to t = T - 1 with ``steps`` intervals: ``steps + 1`` points.

    ``inversion_timesteps(1000, 3) == [0, 333, 666, 999]``.
    """
    if steps < 1:
        raise ValueError(f"The number of inversion steps must be >= 1, got {steps}.")
    last = num_train_timesteps - 1
    return [round(i * last / steps) for i in range(steps + 1)]


def ddim_invert(
    eps_model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    timesteps: list[int],
) -> torch.Tensor:
    """Deterministic DDIM inversion of clean ``x0`` ``(B, C, H, W)`` to ``z_T``.

    For each interval (t_i -> t_{i+1}), with one network call (NFE = len(timesteps) - 1):
        eps    = eps_model(x, t_i)
        x0_hat = (x - sqrt(1 - ab_i) eps) / sqrt(ab_i)
        x      = sqrt(ab_{i+1}) x0_hat + sqrt(1 - ab_{i+1}) eps
    """
    ab = alphas_cumprod.to(device=x0.device, dtype=torch.float32)
    x = x0.float()
    for t, t_next in zip(timesteps[:-1], timesteps[1:]):
        t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps = eps_model(x, t_batch).float()
        x0_hat = (x - (1 - ab[t]).sqrt() * eps) / ab[t].sqrt()
        x = ab[t_next].sqrt() * x0_hat + (1 - ab[t_next]).sqrt() * eps
    return x


def nll_score(z: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of ``z`` ``(B, ...)`` under N(0, I): 0.5 ||z||^2 + D/2 log(2 pi)."""
    flat = z.flatten(1).float()
    return 0.5 * flat.pow(2).sum(1) + 0.5 * flat.shape[1] * math.log(2 * math.pi)


def norm_map(z: torch.Tensor) -> torch.Tensor:
    """Per-position norm ``||z[:, :, i, j]||`` over channels: ``(B, C, H, W) -> (B, H, W)``."""
    return z.float().pow(2).sum(1).sqrt()


def diff_score(z: torch.Tensor) -> torch.Tensor:
    """Spread of the per-position norms: max over positions minus min, ``(B,)``."""
    m = norm_map(z).flatten(1)
    return m.max(1).values - m.min(1).values
