"""The math of DeCo-Diff: deviation-correction training targets, the correction loop, the maps.

Pure tensor functions (no I/O, no weights). Symbols follow Beizaee et al., "Correcting
Deviations from Normality: A Reformulated Diffusion Model for Multi-Class Unsupervised
Anomaly Detection", CVPR 2025, and METHODS.md section 1:

- schedule: T = 10, cosine ("squaredcos_cap_v2"), ``ab_t`` = alphas_cumprod[t];
- masks ``m`` (1 = clean patch, 0 = corrupted) of one patch size per batch, a ratio
  r ~ U(0, 0.7) of patches corrupted per sample;
- noise ``n = nm * N(0, I) + (1 - nm) * shuffle(x0)``, a ratio r2 ~ U(0, 0.3) of patches
  taking latent patches shuffled across the batch and positions;
- forward ``x_t = m x0 + (1 - m)(sqrt(ab_t) x0 + sqrt(1 - ab_t) n)``;
- target ``D = (1 - m)(n - c_t x0)``, ``c_t = (1 - sqrt(ab_t)) / sqrt(1 - ab_t)``, so that
  ``x_t = x0 + sqrt(1 - ab_t) D`` exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from decodemo.ops.maps import gaussian_blur, upsample
from decodemo.ops.ddim import add_noise, make_alphas_cumprod

__all__ = [
    "PATCH_SIZES",
    "cosine_alphas_cumprod",
    "choose_patch_size",
    "patch_masks",
    "shuffled_patches",
    "deviation_noise",
    "forward_process",
    "deviation_target",
    "correct",
    "pixel_map",
    "latent_map",
    "fuse_maps",
    "FUSIONS",
]

#: Patch sizes (latent pixels) and their probabilities for 16 x 16 latents; 16 is added for 32 x 32.
PATCH_SIZES: dict[int, float] = {1: 0.3, 2: 0.25, 4: 0.2, 8: 0.15}
FUSIONS = ("geometric", "arithmetic", "pixel", "latent")


def cosine_alphas_cumprod(num_train_timesteps: int = 10) -> torch.Tensor:
    """``alphas_cumprod`` of diffusers' ``DDPMScheduler`` with the cosine schedule.

    For T = 10: [.972 .899 .787 .648 .494 .341 .203 .094 .024 ~0].
    """
    return make_alphas_cumprod(num_train_timesteps, "squaredcos_cap_v2")


def choose_patch_size(latent_size: int, generator: torch.Generator | None = None) -> int:
    """One patch size for the batch: {1, 2, 4, 8} (and 16 for latents of 32 or more)."""
    sizes = dict(PATCH_SIZES)
    if latent_size >= 32:
        sizes[16] = 0.1
    sizes = {p: w for p, w in sizes.items() if p <= latent_size}
    probs = torch.tensor(list(sizes.values()))
    idx = int(torch.multinomial(probs / probs.sum(), 1, generator=generator))
    return list(sizes)[idx]


def patch_masks(
    batch: int, size: tuple[int, int], patch: int, ratio_max: float, generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Binary masks ``(B, 1, H, W)``: per sample a ratio r ~ U(0, ratio_max) of ``patch x patch``
    patches set to 0 (corrupted), the rest 1. The same mask applies to every channel."""
    h, w = size
    gh, gw = -(-h // patch), -(-w // patch)
    ratio = torch.rand(batch, 1, 1, 1, generator=generator) * ratio_max
    cells = (torch.rand(batch, 1, gh, gw, generator=generator) >= ratio).float()
    m = cells.repeat_interleave(patch, 2).repeat_interleave(patch, 3)[:, :, :h, :w]
    return m.to(device)


def shuffled_patches(x0: torch.Tensor, patch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x0`` ``(B, C, H, W)`` cut into ``patch x patch`` patches, shuffled across the batch and
    positions, and put back together: realistic but misplaced latent content."""
    b, c, h, w = x0.shape
    if h % patch or w % patch:
        raise ValueError(f"patch size {patch} must divide the latent size {h}x{w}")
    cols = F.unfold(x0, kernel_size=patch, stride=patch)  # (B, C*p*p, L)
    L = cols.shape[-1]
    flat = cols.permute(0, 2, 1).reshape(b * L, -1)
    perm = torch.randperm(b * L, generator=generator).to(x0.device)
    cols = flat[perm].reshape(b, L, -1).permute(0, 2, 1)
    return F.fold(cols, output_size=(h, w), kernel_size=patch, stride=patch)


def deviation_noise(
    x0: torch.Tensor, patch: int, *, shuffle_ratio_max: float = 0.3, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n = nm * N(0, I) + (1 - nm) * shuffle(x0)`` with an independent patch mask ``nm``
    (ratio r2 ~ U(0, shuffle_ratio_max) of shuffled patches). Returns ``(n, nm)``."""
    b, c, h, w = x0.shape
    gauss = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    nm = patch_masks(b, (h, w), patch, shuffle_ratio_max, generator, x0.device).to(x0.dtype)
    return nm * gauss + (1 - nm) * shuffled_patches(x0, patch, generator), nm


def _c(ab: torch.Tensor) -> torch.Tensor:
    return (1 - ab.sqrt()) / (1 - ab).sqrt()


def forward_process(x0: torch.Tensor, m: torch.Tensor, n: torch.Tensor, ab_t: torch.Tensor) -> torch.Tensor:
    """``x_t = m x0 + (1 - m)(sqrt(ab_t) x0 + sqrt(1 - ab_t) n)``; ``ab_t`` shaped ``(B, 1, 1, 1)``."""
    return m * x0 + (1 - m) * add_noise(x0, n, ab_t)


def deviation_target(x0: torch.Tensor, m: torch.Tensor, n: torch.Tensor, ab_t: torch.Tensor) -> torch.Tensor:
    """The direction of deviation ``D = (1 - m)(n - c_t x0)``, so ``x_t = x0 + sqrt(1 - ab_t) D``."""
    return (1 - m) * (n - _c(ab_t) * x0)


def correct(
    deviation_model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    z_in: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    timesteps: Sequence[int] = (8, 6, 4, 2, 0),
) -> torch.Tensor:
    """The deviation-correction loop from the clean input latent, treated as ``x_{t_0}``.

    For each t (next t'): D = model(x, t); x0 = x - sqrt(1 - ab_t) D; x = x0 + sqrt(1 - ab_t') D
    (the same D reused); after the last step x = x0. NFE = ``len(timesteps)``.
    """
    ab = alphas_cumprod.to(z_in.device, torch.float32)
    x = z_in.float()
    for i, t in enumerate(timesteps):
        t_batch = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
        d = deviation_model(x, t_batch).float()
        x0 = x - (1 - ab[t]).sqrt() * d
        if i + 1 < len(timesteps):
            x = x0 + (1 - ab[timesteps[i + 1]]).sqrt() * d
        else:
            x = x0
    return x


def pixel_map(decoded_corr: torch.Tensor, decoded_in: torch.Tensor, *, clip: float = 0.2, sigma_at_256: float = 3.0) -> torch.Tensor:
    """``|decode(z_corr) - decode(z_in)|`` of images in [0, 1], max over colour channels, clipped
    to [0, clip], scaled to [0, 1] and blurred (sigma 3 px at 256 px, scaled with size):
    ``(B, H, W)``. The default 0.2 is the paper's 0.4 on images in [-1, 1]."""
    diff = (decoded_corr - decoded_in).abs().amax(1).clamp(0, clip) / clip
    return gaussian_blur(diff, sigma_at_256 * diff.shape[-1] / 256)


def latent_map(z_corr: torch.Tensor, z_in: torch.Tensor, size: tuple[int, int], *, clip: float = 0.2, sigma: float = 1.0) -> torch.Tensor:
    """``|z_corr - z_in|`` averaged over channels, clipped to [0, clip], scaled to [0, 1],
    blurred (sigma 1 at latent size) and bilinearly upsampled to ``size``: ``(B, *size)``."""
    diff = (z_corr - z_in).abs().mean(1).clamp(0, clip) / clip
    return upsample(gaussian_blur(diff, sigma), size)


def fuse_maps(pixel: torch.Tensor, latent: torch.Tensor, how: str = "geometric") -> torch.Tensor:
    """Final map: geometric mean ``sqrt(pixel * latent)`` (the paper), or the ablations
    ``arithmetic`` mean, ``pixel`` only, ``latent`` only."""
    if how == "geometric":
        return (pixel.clamp_min(0) * latent.clamp_min(0)).sqrt()
    if how == "arithmetic":
        return 0.5 * (pixel + latent)
    if how == "pixel":
        return pixel
    if how == "latent":
        return latent
    raise ValueError(f"Unknown fusion {how!r}; use one of {', '.join(FUSIONS)}.")
