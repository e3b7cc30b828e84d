"""Anomaly-map helpers shared by every method: resizing and Gaussian smoothing (pure torch)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["gaussian_kernel1d", "gaussian_blur", "upsample"]


def gaussian_kernel1d(sigma: float, *, truncate: float = 4.0) -> torch.Tensor:
    """Normalised 1-D Gaussian of standard deviation ``sigma`` (radius ``truncate * sigma``)."""
    radius = max(1, int(math.ceil(truncate * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, H, W)`` maps with reflect padding; ``sigma <= 0`` is a no-op."""
    if sigma <= 0:
        return maps
    k = gaussian_kernel1d(sigma).to(maps.device, maps.dtype)
    r = k.numel() // 2
    x = maps.unsqueeze(1)
    # Reflect padding needs pad < size; fall back to replicate for tiny maps.
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1))
    return x.squeeze(1)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(B, h, w)`` maps to ``(B, *size)``."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
