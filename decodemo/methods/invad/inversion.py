"""The math of the reconstruction-free detector: the DDIM inversion grid and latent-likelihood scores.

Pure tensor functions (no I/O, no weights). Symbols follow Sakai & Hasegawa (2025),
"Reconstruction-Free Anomaly Detection with Diffusion Models via Direct Latent Likelihood
Evaluation" (arXiv 2504.05662), section 3.
"""

from __future__ import annotations

import math

import torch

from decodemo.ops.ddim import ddim_invert  # the DDIM inversion itself is shared: decodemo.ops.ddim

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
