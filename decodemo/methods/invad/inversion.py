"""The math of the reconstruction-free detector: DDIM inversion and latent-likelihood scores.

Pure tensor functions (no I/O, no weights). Symbols follow Sakai & Hasegawa (2025),
"Reconstruction-Free Anomaly Detection with Diffusion Models via Direct Latent Likelihood
Evaluation" (arXiv 2504.05662), section 3.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["GRIDS", "stats_key", "inversion_timesteps", "ddim_invert", "nll_score", "diff_score", "norm_map"]


GRIDS = ("reference", "uniform")


def inversion_timesteps(num_train_timesteps: int, steps: int, grid: str = "uniform") -> list[int]:
    """The ``steps + 1`` points of an S-step inversion; the network is called at all but the last.

    - ``"uniform"``: t = 0 to t = T - 1 in ``steps`` equal intervals,
      ``inversion_timesteps(1000, 3) == [0, 333, 666, 999]``.
    - ``"reference"``: the reference code's respaced grid (guided-diffusion's ``space_timesteps``):
      the network at ``steps`` points spread over 0 .. T - 1 and a last step to alpha_bar = 0,
      written as t = T: ``inversion_timesteps(1000, 3, "reference") == [0, 500, 999, 1000]``,
      ``(1000, 1, "reference") == [0, 1000]``. At alpha_bar = 0 the last step returns the
      predicted noise itself.
    """
    if steps < 1:
        raise ValueError(f"The number of inversion steps must be >= 1, got {steps}.")
    last = num_train_timesteps - 1
    if grid == "uniform":
        return [round(i * last / steps) for i in range(steps + 1)]
    if grid == "reference":
        inner = [0] if steps == 1 else [round(i * last / (steps - 1)) for i in range(steps)]
        return inner + [num_train_timesteps]
    raise ValueError(f"Unknown inversion grid {grid!r}; known: {', '.join(GRIDS)}.")


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
    A last point t = T (``len(alphas_cumprod)``) stands for alpha_bar = 0.
    """
    ab = alphas_cumprod.to(device=x0.device, dtype=torch.float32)
    ab = torch.cat([ab, ab.new_zeros(1)])  # index T: alpha_bar = 0
    x = x0.float()
    for t, t_next in zip(timesteps[:-1], timesteps[1:]):
        t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps = eps_model(x, t_batch).float()
        x0_hat = (x - (1 - ab[t]).sqrt() * eps) / ab[t].sqrt()
        x = ab[t_next].sqrt() * x0_hat + (1 - ab[t_next]).sqrt() * eps
    return x


def stats_key(steps: int, grid: str = "uniform") -> str:
    """The key of the normal-data statistics for S = ``steps`` on ``grid``: ``"3"`` (uniform, as
    models have always stored it), ``"ref3"`` (reference); S = 0 (no inversion) is ``"0"``."""
    if steps == 0 or grid == "uniform":
        return str(steps)
    return f"ref{steps}"


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
