"""Training DeCo-Diff's latent space (``vae``), or calibrating a pretrained one.

One VAE serves several categories: pass several layouts (e.g. bottle and solar cells). Only
``train/good`` is used; a seeded share of it is held out for PSNR. The latent scale is
1 / std of the normal training latents. :mod:`decodemo.training.decodiff` trains the deviation
model on these latents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from decodemo.data.layout import Layout
from decodemo.errors import DatasetError
from decodemo.features.efficientnet import PerceptualLoss
from decodemo.io.spectrogram import MelConfig
from decodemo.methods.decodiff.config import VAEConfig
from decodemo.methods.decodiff.model import LatentVAE
from decodemo.training.loop import TrainSettings, make_accelerator, resolve_device, train_loop
from decodemo.training.prepare import choose_image_fit, load_inputs
from decodemo.training.split import split_normal

__all__ = ["train_vae", "pretrained_vae", "psnr", "modality_of", "split_layout", "encode_all"]


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image of ``(B, C, H, W)`` tensors in [0, 1]."""
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


def modality_of(layouts: dict[str, Layout]) -> str:
    """The one modality of ``layouts`` (a DeCo-Diff model and its VAE take one kind of input)."""
    kinds = {layout.modality for layout in layouts.values()}
    if len(kinds) != 1:
        raise DatasetError(f"One DeCo-Diff model takes one kind of input; these folders mix {sorted(kinds)}.")
    return kinds.pop()


def split_layout(layout: Layout, config: Any, val_fraction: float, seed: int, *,
                 dense: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Every normal training file of ``layout`` as ``config``'s inputs (``dense``: audio at a
    quarter-window hop; images with their shape crops, fit files only), split by
    :func:`~decodemo.training.split.split_normal` -> (fit files,
    held-out files)."""
    if not layout.train:
        return [], []
    f, v = split_normal(len(layout.train), val_fraction, seed)
    fit = load_inputs(layout, f, config, dense=dense, desc=f"{layout.root.name} train")
    held = load_inputs(layout, v, config, dense=dense, crops=False, desc=f"{layout.root.name} held-out")
    return fit, held


def _split_layouts(layouts: dict[str, Layout], config: VAEConfig, val_fraction: float, seed: int, *,
                   dense: bool = False) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
    """:func:`split_layout` of every layout -> (all fit inputs in one tensor, {name: held-out files})."""
    fit, held = [], {}
    for name, layout in layouts.items():
        f, held[name] = split_layout(layout, config, val_fraction, seed, dense=dense)
        fit.append(torch.cat(f))
    return torch.cat(fit), held


class _CropLoss(nn.Module):
    """The VAE loss on random ``crop x crop`` windows: the autoencoder is convolutional, so
    training on crops costs a fraction of full images on a CPU and it still runs on full images.
    With ``config.perceptual_weight`` > 0, a perceptual loss on frozen EfficientNet-Lite0
    features of the reconstruction and the input is added (the frozen network is not saved)."""

    def __init__(self, vae: LatentVAE, crop: int) -> None:
        super().__init__()
        self.vae, self.crop = vae, crop
        self.weight = float(vae.config.perceptual_weight)
        side = min(crop, vae.config.image_size) if crop else vae.config.image_size
        # a plain attribute list keeps the frozen network out of the checkpoint's state dict
        self._perceptual = [PerceptualLoss(image_size=side)] if self.weight > 0 else []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        s = images.shape[-1]
        if self.crop and self.crop < s:
            i, j = (int(v) for v in torch.randint(0, s - self.crop + 1, (2,)))
            images = images[..., i : i + self.crop, j : j + self.crop]
        if not self._perceptual:
            return self.vae(images)
        loss, rec, target = self.vae.training_terms(images)
        perceptual = self._perceptual[0] = self._perceptual[0].to(images.device)
        return loss + self.weight * perceptual(rec, target)


@torch.no_grad()
def encode_all(vae: LatentVAE, images: torch.Tensor, device, batch: int = 32) -> torch.Tensor:
    """The latents ``(N, c, h, w)`` on CPU of ``images`` ``(N, C, S, S)``, encoded in batches on ``device``."""
    return torch.cat([vae.encode(images[i : i + batch].to(device)).cpu() for i in range(0, len(images), batch)])


def train_vae(
    layouts: dict[str, Layout],
    out_dir: str | Path,
    settings: TrainSettings,
    *,
    config: VAEConfig | None = None,
    crop: int = 64,
    val_fraction: float = 0.1,
    resume: bool = False,
    log=print,
) -> tuple[LatentVAE, dict[str, Any]]:
    """Train a small ``AutoencoderKL`` on the normal training images of ``layouts``
    (``{category: layout}``), set the latent scale to 1 / std of the training latents and
    record PSNR on held-out normal training images."""
    out_dir = Path(out_dir)
    cfg = config or VAEConfig()
    cfg.categories = list(layouts)
    _set_modality(cfg, layouts)
    acc = make_accelerator(settings.device, settings.mixed_precision)
    vae = LatentVAE(cfg)
    data, held = _split_layouts(layouts, cfg, val_fraction, settings.seed, dense=True)
    log(f"VAE: {len(data)} normal training images from {', '.join(layouts)} at {cfg.image_size} px "
        f"(latents {cfg.latent_channels} x {cfg.latent_size} x {cfg.latent_size}), "
        f"{sum(p.numel() for p in vae.parameters()) / 1e6:.2f} M parameters, crops of {crop} px"
        + (f", perceptual weight {cfg.perceptual_weight:g}." if cfg.perceptual_weight > 0 else "."))
    summary = train_loop(_CropLoss(vae, crop), data, settings, checkpoint_dir=out_dir / "checkpoint", resume=resume,
                         accelerator=acc, desc="vae")
    vae = vae.to(acc.device).eval()
    _calibrate(vae, layouts, data, held, acc.device)
    cfg.training = {"train_images": len(data), "crop": crop, "train_seconds": round(summary["seconds"], 1),
                    "final_loss": summary["final_loss"], **settings.record(acc.device)}
    vae.save_pretrained(out_dir)
    _log_quality(log, out_dir, cfg)
    return vae, summary


def _set_modality(cfg: VAEConfig, layouts: dict[str, Layout]) -> None:
    cfg.modality = modality_of(layouts)
    if cfg.modality == "audio":
        cfg.mel = cfg.mel or MelConfig().to_dict()
        cfg.shape_crops = 0
        if not cfg.pretrained:
            cfg.in_channels = 1
    elif cfg.image_fit == "auto":
        cfg.image_fit = choose_image_fit(list(layouts.values()), shape_crops=cfg.shape_crops)


def _log_quality(log, out_dir, cfg: VAEConfig) -> None:
    log(f"VAE written to {out_dir}; latent scale {cfg.latent_scale:.4f}; PSNR " +
        ", ".join(f"{n}: " + ", ".join(f"{k[5:]} {v:.2f} dB" for k, v in q.items()) for n, q in cfg.quality.items()))


@torch.no_grad()
def _calibrate(vae: LatentVAE, layouts: dict[str, Layout], fit: torch.Tensor, held: dict[str, list[torch.Tensor]],
               device) -> None:
    """Set the latent scale to 1 / std of the normal training latents (``fit``) and record PSNR
    on the held-out normal training images of each layout (training never reads ``test/``)."""
    cfg = vae.config
    cfg.latent_scale, cfg.latent_shift = 1.0, 0.0
    z = encode_all(vae, fit, device)
    cfg.latent_scale = float(1.0 / z.std())
    quality: dict[str, Any] = {}
    for name, layout in layouts.items():
        q = {}
        for split, files in (("heldout_train_good", held[name]),):
            if not files:
                continue
            imgs = vae._channels(torch.cat(files))
            rec = torch.cat([vae.decode(vae.encode(imgs[i : i + 16].to(device))).cpu() for i in range(0, len(imgs), 16)])
            q[f"psnr_{split}"] = float(psnr(rec, imgs).mean())
        quality[name] = q
    cfg.quality = quality


def pretrained_vae(
    layouts: dict[str, Layout],
    out_dir: str | Path | None,
    *,
    config: VAEConfig,
    device: str = "auto",
    val_fraction: float = 0.1,
    seed: int = 0,
    log=print,
) -> LatentVAE:
    """Use a pretrained ``AutoencoderKL`` (``config.pretrained``: a Hub repo id at
    ``config.revision``, or a local diffusers folder) as the latent space: no training, only
    the latent scale (1 / std of the normal training latents) and PSNR are computed. Written
    to ``out_dir`` (a config that references the Hub weights) when given."""
    if not config.pretrained:
        raise DatasetError("pretrained_vae needs config.pretrained (a Hub repo id or a diffusers folder).")
    dev = resolve_device(device)
    config.categories = list(layouts)
    _set_modality(config, layouts)
    vae = LatentVAE(config).to(dev).eval()
    fit, held = _split_layouts(layouts, config, val_fraction, seed)
    _calibrate(vae, layouts, fit, held, dev)
    config.training = {"pretrained": config.pretrained, "revision": config.revision, "train_seconds": 0.0}
    if out_dir is not None:
        vae.save_pretrained(out_dir)
    _log_quality(log, out_dir or "(memory)", config)
    return vae
