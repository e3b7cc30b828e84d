"""DeCo-Diff: deviation-correction diffusion in a latent space (Beizaee et al., CVPR 2025).

Paper: "Correcting Deviations from Normality: A Reformulated Diffusion Model for Multi-Class
Unsupervised Anomaly Detection". See ``decodemo/methods/decodiff/README.md`` and METHODS.md
section 1. The math (targets, the correction loop, the maps) is in ``deviation.py``.

Kept from the paper: a latent space of a KL autoencoder scaled to unit standard deviation;
T = 10 cosine schedule; multi-scale patch masks with ratio U(0, 0.7); Gaussian noise mixed
with batch-shuffled latent patches (ratio U(0, 0.3)); the direction-of-deviation target D;
MSE over all positions; no mask given to the network; class conditioning so that one model
serves several categories; attention at low resolution; dropout 0.4; a zero-initialised
output layer. Inference: the clean input latent is x_8, steps 8, 6, 4, 2, 0 reuse D; pixel
map against decode(z_in), latent map, clip constants, blurs scaled to resolution,
geometric-mean fusion, image score = max of the map.

Deviations, and why (a pretrained Hub VAE can replace ours: ``VAEConfig.pretrained``):
- Our own small ``AutoencoderKL`` (about 1 M parameters, 128 px -> 4 x 16 x 16) trained on
  the normal images of the domains instead of Stable Diffusion's VAE: the Hub is not
  reachable offline and the SD VAE (84 M parameters) is slow on a laptop CPU.
- Class conditioning through ``UNet2DModel(num_class_embeds=...)`` (a class embedding added
  to the time embedding) instead of cross-attention on a class embedding.
- A UNet of a few million parameters instead of 395 M, trained a few thousand steps; the
  shipped model stores it in float16 (``storage_dtype``) and computes in float32.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DModel
from torch import nn

from decodemo.errors import InputError, ModelError
from decodemo.methods.base import DetectionResult, FolderModule, cast_for_storage, prefixed, unprefixed
from decodemo.methods.decodiff.config import DeCoDiffConfig, VAEConfig
from decodemo.methods.decodiff.deviation import (
    FUSIONS,
    choose_patch_size,
    correct,
    cosine_alphas_cumprod,
    deviation_noise,
    deviation_target,
    forward_process,
    fuse_maps,
    latent_map,
    patch_masks,
    pixel_map,
)
from decodemo.methods.unet import unet2d

__all__ = ["LatentVAE", "DeCoDiff", "build_vae", "build_unet"]


def load_pretrained_vae(cfg: VAEConfig) -> AutoencoderKL:
    """The Hub (or local diffusers-folder) ``AutoencoderKL`` that ``cfg.pretrained`` names, at
    ``cfg.revision``; safetensors only. Copies its network shape into ``cfg``."""
    try:
        vae = AutoencoderKL.from_pretrained(cfg.pretrained, revision=cfg.revision, subfolder=cfg.subfolder,
                                            use_safetensors=True)
    except (OSError, ValueError, EnvironmentError) as exc:
        where = cfg.pretrained + (f"@{cfg.revision}" if cfg.revision else "") + (f"/{cfg.subfolder}" if cfg.subfolder else "")
        raise ModelError(f"Could not load the pretrained VAE {where} (safetensors weights are required; "
                         f"offline, it must already be in the Hugging Face cache): {exc}") from exc
    c = vae.config
    cfg.block_out_channels = list(c.block_out_channels)
    cfg.layers_per_block = int(c.layers_per_block)
    cfg.latent_channels = int(c.latent_channels)
    cfg.norm_num_groups = int(c.norm_num_groups)
    cfg.in_channels = int(c.in_channels)
    return vae


def build_vae(cfg: VAEConfig) -> AutoencoderKL:
    if cfg.pretrained:
        return load_pretrained_vae(cfg)
    n = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=cfg.in_channels,
        out_channels=cfg.in_channels,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        sample_size=cfg.image_size,
    )


class LatentVAE(FolderModule):
    """The latent space: ``encode(images in [0, 1]) -> (B, 4, h, w)`` unit-variance latents and
    ``decode(latents) -> images in [0, 1]``. ``forward(images)`` is the training loss
    (L1 + MSE reconstruction + a small KL term)."""

    method_id = "vae"
    config_class = VAEConfig

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.vae = build_vae(config)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.training_terms(images)[0]

    def training_terms(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The pixel loss (L1 + MSE + KL) and, for a perceptual term, the reconstruction and the
        target, both in [0, 1] with the VAE's channels."""
        x = self._channels(images) * 2 - 1
        post = self.vae.encode(x).latent_dist
        z = post.sample()
        rec = self.vae.decode(z).sample
        kl = post.kl().mean() / x[0].numel()
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + self.config.kl_weight * kl
        return loss, (rec + 1) / 2, (x + 1) / 2

    def _channels(self, images: torch.Tensor) -> torch.Tensor:
        # spectrogram windows arrive as grey RGB: a one-channel VAE takes their mean
        return images.mean(1, keepdim=True) if self.config.in_channels == 1 and images.shape[1] != 1 else images

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        z = self.vae.encode(self._channels(images) * 2 - 1).latent_dist.mean
        return (z - self.config.latent_shift) * self.config.latent_scale

    @torch.no_grad()
    def encode_posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's mean and std in the same scaled units as :meth:`encode` (whose
        latents are the mean), for training on posterior samples as the official code does."""
        post = self.vae.encode(self._channels(images) * 2 - 1).latent_dist
        return (post.mean - self.config.latent_shift) * self.config.latent_scale, post.std * self.config.latent_scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents / self.config.latent_scale + self.config.latent_shift
        return ((self.vae.decode(z).sample + 1) / 2).clamp(0, 1)

    # ---------------------------------------------------------------- folders
    @property
    def stores_weights(self) -> bool:
        """False for a pretrained (Hub) VAE: its weights stay on the Hub."""
        return not self.config.pretrained

    def folder_tensors(self) -> dict[str, torch.Tensor]:
        return self.vae.state_dict() if self.stores_weights else {}

    def load_folder_tensors(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        self.vae.load_state_dict(tensors, strict=True)


def build_unet(cfg: DeCoDiffConfig) -> UNet2DModel:
    unet = unet2d(sample_size=cfg.latent_size, channels=cfg.latent_channels, block_out_channels=cfg.block_out_channels,
                  layers_per_block=cfg.layers_per_block, attention_levels=cfg.attention_levels,
                  norm_num_groups=cfg.norm_num_groups, dropout=cfg.dropout,
                  num_class_embeds=max(1, len(cfg.categories)))
    nn.init.zeros_(unet.conv_out.weight)  # zero-initialised output: D = 0 at the start
    nn.init.zeros_(unet.conv_out.bias)
    return unet


class DeCoDiff(FolderModule):
    """Deviation-correction diffusion on the latents of a :class:`LatentVAE`.

    ``detect(images, category=...)`` takes ``(B, 3, S, S)`` RGB in [0, 1] (``S =
    config.image_size``) and returns scores ``(B,)`` (max of the fused map), maps ``(B, S, S)``,
    the corrected image ``decode(z_corr)`` as ``reconstruction``, the image score of every
    fusion in ``variants`` and the pixel / latent maps in ``extras``. NFE = 5.
    """

    method_id = "decodiff"
    config_class = DeCoDiffConfig

    def __init__(self, config: DeCoDiffConfig, vae: LatentVAE | None = None) -> None:
        super().__init__()
        self.config = config
        self.vae = vae or LatentVAE(VAEConfig.from_dict(config.vae, where="config.vae"))
        self.vae.requires_grad_(False)
        self.unet = build_unet(config)
        self.register_buffer("alphas_cumprod", cosine_alphas_cumprod(config.num_train_timesteps))

    # ---------------------------------------------------------------- categories
    def category_index(self, category: str | int | None) -> int:
        cats = self.config.categories
        if category is None:
            if len(cats) <= 1:
                return 0
            raise InputError(f"This model serves several categories ({', '.join(cats)}); say which one.")
        if isinstance(category, int):
            if 0 <= category < max(1, len(cats)):
                return category
        elif category in cats:
            return cats.index(category)
        raise InputError(f"Unknown category {category!r}; this model knows: {', '.join(cats) or '(none)'}.")

    # ---------------------------------------------------------------- training
    def forward(self, x0: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss on unit-variance latents ``x0`` ``(B, 4, h, w)`` of class ``labels``."""
        return self.training_loss(x0, labels)

    def training_loss(self, x0: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, _, h, w = x0.shape
        cfg = self.config
        patch = choose_patch_size(h, generator)
        m = patch_masks(b, (h, w), patch, cfg.mask_ratio_max, generator, x0.device).to(x0.dtype)
        n, _ = deviation_noise(x0, patch, shuffle_ratio_max=cfg.shuffle_ratio_max, generator=generator)
        t = torch.randint(0, cfg.num_train_timesteps, (b,), generator=generator).to(x0.device)
        ab = self.alphas_cumprod[t].view(b, 1, 1, 1).to(x0.dtype)
        x_t = forward_process(x0, m, n, ab)
        target = deviation_target(x0, m, n, ab)
        pred = self.unet(x_t, t, class_labels=labels.long()).sample  # the mask is NOT an input
        return F.mse_loss(pred.float(), target.float())

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def correct_latents(self, z_in: torch.Tensor, label: int) -> torch.Tensor:
        labels = torch.full((z_in.shape[0],), label, device=z_in.device, dtype=torch.long)
        dtype = next(self.unet.parameters()).dtype
        return correct(lambda x, t: self.unet(x.to(dtype), t, class_labels=labels).sample, z_in,
                       self.alphas_cumprod, self.config.inference_timesteps)

    @torch.no_grad()
    def detect(self, images: torch.Tensor, *, category: str | int | None = None) -> DetectionResult:
        cfg = self.config
        label = self.category_index(category)
        images = images.to(self.alphas_cumprod.device, torch.float32)
        size = tuple(images.shape[-2:])
        z_in = self.vae.encode(images)
        z_corr = self.correct_latents(z_in, label)
        dec_in, dec_corr = self.vae.decode(z_in), self.vae.decode(z_corr)
        if tuple(dec_in.shape[-2:]) != size:
            dec_in = F.interpolate(dec_in, size=size, mode="bilinear", align_corners=False)
            dec_corr = F.interpolate(dec_corr, size=size, mode="bilinear", align_corners=False)
        pm = pixel_map(dec_corr, dec_in, clip=cfg.pixel_clip, sigma_at_256=cfg.pixel_sigma_at_256)
        if dec_corr.shape[1] == 1:  # show spectrograms as grey RGB, like the input
            dec_in, dec_corr = dec_in.expand(-1, 3, -1, -1), dec_corr.expand(-1, 3, -1, -1)
        lm = latent_map(z_corr, z_in, size, clip=cfg.latent_clip, sigma=cfg.latent_sigma)
        fused = {how: fuse_maps(pm, lm, how) for how in FUSIONS}
        variants = {how: m.flatten(1).amax(1) for how, m in fused.items()}
        return DetectionResult(
            scores=variants[cfg.fusion],
            maps=fused[cfg.fusion],
            nfe=len(cfg.inference_timesteps),
            variants=variants,
            reconstruction=dec_corr,
            extras={"pixel_map": pm, "latent_map": lm, "decoded_input": dec_in,
                    **{f"map_{how}": m for how, m in fused.items() if how != cfg.fusion}},
        )

    @torch.no_grad()
    def detect_ablation(self, images: torch.Tensor, *, category: str | int | None = None) -> DetectionResult:
        """The no-diffusion counterpart through the same code path: the VAE round trip alone (no
        correction steps). The map is the pixel map of the autoencoder's reconstruction error,
        ``decode(encode(x))`` against ``x``, with the same clip and blur; score = its max."""
        cfg = self.config
        self.category_index(category)  # the same checks as detect
        images = images.to(self.alphas_cumprod.device, torch.float32)
        size = tuple(images.shape[-2:])
        dec_in = self.vae.decode(self.vae.encode(images))
        if tuple(dec_in.shape[-2:]) != size:
            dec_in = F.interpolate(dec_in, size=size, mode="bilinear", align_corners=False)
        target = self.vae._channels(images)
        pm = pixel_map(dec_in, target, clip=cfg.pixel_clip, sigma_at_256=cfg.pixel_sigma_at_256)
        if dec_in.shape[1] == 1:
            dec_in = dec_in.expand(-1, 3, -1, -1)
        scores = pm.flatten(1).amax(1)
        return DetectionResult(scores=scores, maps=pm, nfe=0, variants={"vae_only": scores}, reconstruction=dec_in)

    @property
    def has_ablation(self) -> bool:
        return True

    # ---------------------------------------------------------------- folders
    @classmethod
    def from_config(cls, config: DeCoDiffConfig, *, where: str = "config") -> "DeCoDiff":
        """The model of ``config`` with the VAE its ``vae`` field describes."""
        return cls(config, LatentVAE(VAEConfig.from_dict(config.vae, where=f"{where} (vae)")))

    def folder_config(self) -> dict[str, Any]:
        """The config, with the VAE's config as it is now."""
        return {**self.config.to_dict(), "vae": self.vae.config.to_dict()}

    def folder_tensors(self) -> dict[str, torch.Tensor]:
        """The UNet and the VAE (a pretrained Hub VAE is referenced by repo id and revision instead)."""
        tensors = prefixed("unet.", cast_for_storage(self.unet.state_dict(), self.config.storage_dtype))
        if self.vae.stores_weights:
            tensors.update(prefixed("vae.", self.vae.vae.state_dict()))
        return tensors

    def load_folder_tensors(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        self.unet.load_state_dict({k: v.float() for k, v in unprefixed("unet.", tensors).items()}, strict=True)
        if self.vae.stores_weights:
            self.vae.vae.load_state_dict(unprefixed("vae.", tensors), strict=True)
