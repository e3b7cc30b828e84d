"""The diffusion arithmetic the methods share: the noise schedule, the forward process and the
deterministic DDIM step (eta = 0), walked up (inversion) or down (reverse).

Pure tensor functions (no I/O, no weights). ``ab`` is alpha_bar_t = alphas_cumprod[t]:

- forward process: ``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps``;
- clean estimate: ``x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)``;
- DDIM step from t to s: ``x_s = sqrt(ab_s) x0_hat + sqrt(1 - ab_s) eps``, the same formula for
  s > t (inversion, towards noise) and s < t (reverse, towards data).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["make_alphas_cumprod", "add_noise", "predict_x0", "ddim_step", "ddim_walk", "ddim_invert", "ddim_reverse"]

#: ``eps_model(x, t)``: the network's noise prediction for ``x`` at timesteps ``t`` ``(B,)`` (long).
EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_alphas_cumprod(num_train_timesteps: int, beta_schedule: str = "linear", beta_start: float = 1e-4,
                        beta_end: float = 0.02) -> torch.Tensor:
    """``alphas_cumprod`` ``(T,)`` float32 of diffusers' ``DDPMScheduler`` with ``beta_schedule``
    (``"linear"`` from ``beta_start`` to ``beta_end``, or ``"squaredcos_cap_v2"``, the cosine one)."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
                          beta_schedule=beta_schedule)
    return sched.alphas_cumprod.clone().float()


def add_noise(x0: torch.Tensor, noise: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """The forward process ``sqrt(ab) x0 + sqrt(1 - ab) noise`` (``ab`` broadcast against ``x0``)."""
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """The clean estimate ``(x_t - sqrt(1 - ab) eps) / sqrt(ab)`` from a noise prediction ``eps``."""
    return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, ab: torch.Tensor, ab_next: torch.Tensor) -> torch.Tensor:
    """One deterministic DDIM step from alpha_bar ``ab`` to ``ab_next`` with the noise prediction
    ``eps``: ``sqrt(ab_next) x0_hat + sqrt(1 - ab_next) eps``. ``ab_next = 1`` gives ``x0_hat``;
    ``ab_next = 0`` gives ``eps``."""
    return ab_next.sqrt() * predict_x0(x_t, eps, ab) + (1 - ab_next).sqrt() * eps


def ddim_walk(eps_model: EpsModel, x: torch.Tensor, timesteps: Sequence[int], alpha_bars: torch.Tensor) -> torch.Tensor:
    """DDIM steps with one ``eps_model`` call at each of ``timesteps``: step ``i`` goes from
    ``alpha_bars[i]`` (the alpha_bar of ``timesteps[i]``) to ``alpha_bars[i + 1]``, so
    ``alpha_bars`` has ``len(timesteps) + 1`` values, the last one where the walk ends.
    The predictions are cast to ``x``'s dtype. NFE = ``len(timesteps)``."""
    for i, t in enumerate(timesteps):
        t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps = eps_model(x, t_batch).to(x.dtype)
        x = ddim_step(x, eps, alpha_bars[i], alpha_bars[i + 1])
    return x


def ddim_invert(eps_model: EpsModel, x0: torch.Tensor, alphas_cumprod: torch.Tensor,
                timesteps: Sequence[int]) -> torch.Tensor:
    """Deterministic DDIM inversion of clean ``x0`` ``(B, C, H, W)`` up ``timesteps`` (increasing,
    from t_0) to ``z`` at the last of them, in float32. The network is called at all points but
    the last (NFE = ``len(timesteps) - 1``); a last point t = T (``len(alphas_cumprod)``) stands
    for alpha_bar = 0, where the last step returns the predicted noise itself."""
    ab = alphas_cumprod.to(device=x0.device, dtype=torch.float32)
    ab = torch.cat([ab, ab.new_zeros(1)])  # index T: alpha_bar = 0
    return ddim_walk(eps_model, x0.float(), list(timesteps)[:-1], ab[list(timesteps)])


def ddim_reverse(eps_model: EpsModel, x_t: torch.Tensor, alphas_cumprod: torch.Tensor,
                 timesteps: Sequence[int]) -> torch.Tensor:
    """Deterministic DDIM from ``x_t`` at ``timesteps[0]`` down through the rest (decreasing) to
    t = 0, returning the clean estimate: one network call per timestep, the last step to
    alpha_bar = 1."""
    ts = list(timesteps)
    alpha_bars = torch.cat([alphas_cumprod[ts], alphas_cumprod.new_ones(1)])
    return ddim_walk(eps_model, x_t, ts, alpha_bars)
