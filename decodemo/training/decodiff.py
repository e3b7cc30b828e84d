"""Training DeCo-Diff: first its latent space (``vae``), then the class-conditioned deviation model.

One model serves several categories: pass several layouts (e.g. bottle and solar cells), each
becomes a class id. Only ``train/good`` is used for training; a seeded share of it is held out
for the latent scale check, the decision thresholds and (for the VAE) PSNR.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from decodemo.data.layout import Layout
from decodemo.errors import DatasetError
from decodemo.features.efficientnet import PerceptualLoss
from decodemo.inputs import sample_tensors
from decodemo.io.spectrogram import MelConfig, frames_per_window
from decodemo.methods.decodiff.config import DeCoDiffConfig, VAEConfig
from decodemo.methods.decodiff.model import DeCoDiff, LatentVAE
from decodemo.training.split import split_normal
from decodemo.training.validation import (
    SELECTION_RULE,
    Candidate,
    build_validation_set,
    choose,
    format_candidate,
    selection_record,
    validation_figures,
)
from decodemo.metrics import threshold_at_normal_quantile
from decodemo.scoring import reduce_windows
from decodemo.training.loop import TrainSettings, make_accelerator, train_loop

__all__ = ["train_vae", "pretrained_vae", "train_decodiff", "reselect_decodiff", "jitter", "psnr", "CANDIDATES"]

#: What ``select="auto"`` tries: the paper's value first.
CANDIDATES = {"fusion": ("geometric", "arithmetic", "pixel", "latent"), "latent_sigma": (1.0, 0.5, 2.0)}


def _select(model: DeCoDiff, synth: dict, *, select: str, fixed: tuple[str, ...], log) -> tuple[list[dict], int]:
    """Every (fusion, latent blur) pair on the synthetic validation sets (one pass per blur gives
    all fusions) -> (candidates with the paper's first, chosen index)."""
    cfg = model.config
    sigmas = [cfg.latent_sigma] if select == "none" or "latent_sigma" in fixed else list(CANDIDATES["latent_sigma"])
    fusions = [cfg.fusion] if select == "none" or "fusion" in fixed else list(CANDIDATES["fusion"])
    candidates = []
    for sigma in sigmas:
        cfg.latent_sigma = sigma
        per_cat = [validation_figures(model, ss, category=name) for name, ss in synth.items()]
        for fusion in fusions:
            figures = {k: float(np.mean([f[fusion][k] for f in per_cat])) for k in per_cat[0][fusion]}
            paper = fusion == CANDIDATES["fusion"][0] and sigma == CANDIDATES["latent_sigma"][0]
            candidates.append(Candidate.make({"fusion": fusion, "latent_sigma": sigma}, figures, paper=paper))
            log(f"  candidate fusion={fusion}, latent_sigma={sigma}: {format_candidate(candidates[-1])}")
    candidates.sort(key=lambda c: not c["paper"])
    return candidates, (choose(candidates) if select == "auto" else 0)


def _modality(layouts: dict[str, Layout]) -> str:
    kinds = {layout.modality for layout in layouts.values()}
    if len(kinds) != 1:
        raise DatasetError(f"One DeCo-Diff model takes one kind of input; these folders mix {sorted(kinds)}.")
    return kinds.pop()


def _per_file(layout: Layout, size: int, split: str = "train", kind: str | None = None, *,
              mel: dict | None = None, dense: bool = False) -> list[torch.Tensor]:
    """One tensor per file: ``(1, 3, S, S)`` per image, ``(W, 3, S, S)`` windows per audio clip
    (``dense``: a quarter-window hop, the training augmentation for audio)."""
    samples = layout.train if split == "train" else layout.samples(split, kind)
    if not samples:
        return []
    mc = MelConfig.from_dict(mel) if mel else None
    hop = max(1, frames_per_window(mc) // 4) if (mc is not None and dense) else None
    return sample_tensors([s.path for s in samples], modality=layout.modality, size=size, mel=mc, hop_frames=hop,
                          desc=f"{layout.root.name} {split}")


def _split_files(files: list[torch.Tensor], val_fraction: float, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    f, v = split_normal(len(files), val_fraction, seed)
    return [files[i] for i in f], [files[i] for i in v]


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image of ``(B, C, H, W)`` tensors in [0, 1]."""
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


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


def jitter(images: torch.Tensor, copies: int, *, seed: int, modality: str = "image") -> torch.Tensor:
    """``copies`` seeded, slightly moved copies of each of ``images`` ``(N, C, H, W)`` in [0, 1],
    as the official DeCo-Diff loader augments its normal training images: a translation of up to
    H / 72 pixels (4 px at its 288 px) with the border repeated, and brightness and contrast
    within 5 %. Spectrogram windows move along time only and keep their levels (the level is the
    signal). Returns ``(copies * N, C, H, W)``, copy-major."""
    if copies <= 0:
        return images[:0]
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = images.shape
    m = max(1, round(h / 72))
    padded = F.pad(images, (m, m, m, m), mode="replicate")
    out = []
    for _ in range(copies):
        dx = torch.randint(-m, m + 1, (n,), generator=g)
        dy = torch.zeros(n, dtype=torch.long) if modality == "audio" else torch.randint(-m, m + 1, (n,), generator=g)
        moved = torch.stack([padded[k, :, m + int(dy[k]) : m + int(dy[k]) + h, m + int(dx[k]) : m + int(dx[k]) + w]
                             for k in range(n)])
        if modality != "audio":
            bright = (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * 0.05
            contrast = 1 + (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * 0.05
            mean = moved.mean((1, 2, 3), keepdim=True)
            moved = ((moved - mean) * contrast + mean + bright).clamp(0, 1)
        out.append(moved)
    return torch.cat(out)


@torch.no_grad()
def _encode_all(vae: LatentVAE, images: torch.Tensor, device, batch: int = 32) -> torch.Tensor:
    return torch.cat([vae.encode(images[i : i + batch].to(device)).cpu() for i in range(0, len(images), batch)])


@torch.no_grad()
def _encode_posterior_all(vae: LatentVAE, images: torch.Tensor, device, batch: int = 32):
    parts = [vae.encode_posterior(images[i : i + batch].to(device)) for i in range(0, len(images), batch)]
    return torch.cat([m.cpu() for m, _ in parts]), torch.cat([s.cpu() for _, s in parts])


class _PosteriorSample(nn.Module):
    """The DeCo-Diff loss on a fresh sample of each latent's VAE posterior at every step."""

    def __init__(self, model: DeCoDiff) -> None:
        super().__init__()
        self.model = model

    def forward(self, mean: torch.Tensor, std: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.model(mean + std * torch.randn_like(mean), labels)


@torch.no_grad()
def _file_scores(model: DeCoDiff, files: list[torch.Tensor], category: str, reduce: str) -> list[float]:
    """One score per file: the image's, or the clip's windows reduced by ``reduce``."""
    if all(len(f) == 1 for f in files):
        x = torch.cat(files) if files else torch.empty(0)
        return torch.cat([model.detect(x[i : i + 16], category=category).scores.cpu()
                          for i in range(0, len(x), 16)]).tolist() if len(x) else []
    return [reduce_windows(torch.cat([model.detect(f[i : i + 16], category=category).scores.cpu()
                                      for i in range(0, len(f), 16)]), reduce) for f in files]


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
    fit, held = {}, {}
    for name, layout in layouts.items():
        f, v = _split_files(_per_file(layout, cfg.image_size, mel=cfg.mel, dense=True), val_fraction, settings.seed)
        fit[name], held[name] = torch.cat(f), v
    data = torch.cat(list(fit.values()))
    log(f"VAE: {len(data)} normal training images from {', '.join(layouts)} at {cfg.image_size} px "
        f"(latents {cfg.latent_channels} x {cfg.latent_size} x {cfg.latent_size}), "
        f"{sum(p.numel() for p in vae.parameters()) / 1e6:.2f} M parameters, crops of {crop} px"
        + (f", perceptual weight {cfg.perceptual_weight:g}." if cfg.perceptual_weight > 0 else "."))
    summary = train_loop(_CropLoss(vae, crop), data, settings, checkpoint_dir=out_dir / "checkpoint", resume=resume,
                         accelerator=acc, desc="vae")
    vae = vae.to(acc.device).eval()
    _calibrate(vae, layouts, data, held, acc.device)
    cfg.training = {"train_images": len(data), "crop": crop, "train_seconds": round(summary["seconds"], 1),
                    "final_loss": summary["final_loss"], **settings.to_dict(), "device": str(acc.device)}
    vae.save_pretrained(out_dir)
    _log_quality(log, out_dir, cfg)
    return vae, summary


def _set_modality(cfg: VAEConfig, layouts: dict[str, Layout]) -> None:
    cfg.modality = _modality(layouts)
    if cfg.modality == "audio":
        cfg.mel = cfg.mel or MelConfig().to_dict()
        if not cfg.pretrained:
            cfg.in_channels = 1


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
    z = _encode_all(vae, fit, device)
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
    from decodemo.training import resolve_device

    if not config.pretrained:
        raise DatasetError("pretrained_vae needs config.pretrained (a Hub repo id or a diffusers folder).")
    dev = resolve_device(device)
    config.categories = list(layouts)
    _set_modality(config, layouts)
    vae = LatentVAE(config).to(dev).eval()
    fit, held = [], {}
    for name, layout in layouts.items():
        f, v = _split_files(_per_file(layout, config.image_size, mel=config.mel), val_fraction, seed)
        fit.append(torch.cat(f))
        held[name] = v
    _calibrate(vae, layouts, torch.cat(fit), held, dev)
    config.training = {"pretrained": config.pretrained, "revision": config.revision, "train_seconds": 0.0}
    if out_dir is not None:
        vae.save_pretrained(out_dir)
    _log_quality(log, out_dir or "(memory)", config)
    return vae


@torch.no_grad()
def _finish(model: DeCoDiff, held: dict[str, list[torch.Tensor]], synth: dict, *, select: str, fixed: tuple[str, ...],
            threshold_quantile: float, log) -> None:
    """After training: select fusion and latent blur on the synthetic validation sets, then each
    category's threshold from its held-out normal files ``held``. In place."""
    cfg = model.config
    candidates, chosen = _select(model, synth, select=select, fixed=fixed, log=log)
    cfg.selection = selection_record(candidates, chosen, mode=select,
                                     n_normals=sum(int((ss.labels == 0).sum()) for ss in synth.values()),
                                     n_anomalies=sum(int(ss.labels.sum()) for ss in synth.values()))
    for k, v in candidates[chosen]["settings"].items():
        setattr(cfg, k, v)
    log("selected " + ", ".join(f"{k}={v}" for k, v in candidates[chosen]["settings"].items()) + f" ({SELECTION_RULE}).")
    thresholds = {}
    for name, files in held.items():
        scores = _file_scores(model, files, name, cfg.clip_reduce)
        thresholds[name] = float(threshold_at_normal_quantile(np.array(scores), q=threshold_quantile))
    cfg.threshold = thresholds
    cfg.threshold_provenance = (f"{threshold_quantile:.2f} quantile of the {cfg.fusion} score of held-out normal training "
                                f"files per category ({', '.join(f'{n}: {len(held[n])}' for n in held)}); no test data used")


def reselect_decodiff(model: DeCoDiff, layouts: dict[str, Layout], *, select: str = "auto", fixed: tuple[str, ...] = (),
                      val_fraction: float = 0.1, threshold_quantile: float = 0.99, log=print) -> DeCoDiff:
    """Run :func:`train_decodiff`'s selection and thresholds on a trained model: fusion and latent
    blur are inference settings, so the weights stay. ``layouts`` maps each of the model's
    categories to its folder; the split is the training's own (its seed). In place."""
    cfg = model.config
    missing = [c for c in cfg.categories if c not in layouts]
    if missing or len(layouts) != len(cfg.categories):
        raise DatasetError(f"The model's categories are {cfg.categories}; give one folder for each "
                           f"(named after it), not {sorted(layouts)}.")
    if _modality(layouts) != cfg.modality:
        raise DatasetError(f"The model takes {cfg.modality} input.")
    seed = int(cfg.training.get("seed", 0))
    held = {}
    for name in cfg.categories:
        _, held[name] = _split_files(_per_file(layouts[name], cfg.image_size, mel=cfg.mel, dense=True),
                                     val_fraction, seed)
    synth = {name: build_validation_set(held[name], modality=cfg.modality, seed=seed) for name in cfg.categories}
    model.eval()
    _finish(model, held, synth, select=select, fixed=fixed, threshold_quantile=threshold_quantile, log=log)
    cfg.selection["rerun"] = "selection run on trained weights; the weights are the training's own"
    return model


def train_decodiff(
    layouts: dict[str, Layout],
    vae: LatentVAE,
    out_dir: str | Path,
    settings: TrainSettings,
    *,
    config: DeCoDiffConfig | None = None,
    val_fraction: float = 0.1,
    threshold_quantile: float = 0.99,
    resume: bool = False,
    select: str = "auto",
    fixed: tuple[str, ...] = (),
    posterior: bool = False,
    augment: int = 0,
    log=print,
) -> tuple[DeCoDiff, dict[str, Any]]:
    """Train one class-conditioned DeCo-Diff model on the normal training latents of all
    ``layouts`` (``{category: layout}``; categories are oversampled to equal weight).

    The held-out normal files of each category and synthetic anomalies made from them are the
    validation set (:mod:`decodemo.training.validation`): ``settings.validate_every`` reports
    image AUROC, pixel AUROC and AUPRO on it every that many steps, and ``select="auto"`` picks
    the fusion (geometric, the paper's, then arithmetic, pixel, latent) and the latent-map blur
    (sigma 1, the paper's, then 0.5 and 2) on it, scored as the mean over categories. Settings in
    ``fixed`` keep ``config``'s value. Thresholds: the ``threshold_quantile`` of each
    category's held-out normal scores. No test data is used. With ``posterior``, every step
    trains on a fresh sample of each latent's VAE posterior (the official training) instead of
    its mean. ``augment`` adds that many seeded translated copies of each training input
    (:func:`jitter`, the official loader's small translations and brightness/contrast), encoded
    once.
    """
    out_dir = Path(out_dir)
    cfg = config or DeCoDiffConfig()
    cfg.categories = list(layouts)
    cfg.vae = vae.config.to_dict()
    cfg.modality = _modality(layouts)
    if cfg.modality != vae.config.modality:
        raise DatasetError(f"The VAE was trained on {vae.config.modality} inputs but these folders hold {cfg.modality}.")
    cfg.mel = vae.config.mel
    acc = make_accelerator(settings.device, settings.mixed_precision)
    torch.manual_seed(settings.seed)  # the UNet's initialisation
    model = DeCoDiff(cfg, vae).to(acc.device)
    t0 = time.perf_counter()
    lat, lab, stds, held = [], [], [], {}
    for idx, (name, layout) in enumerate(layouts.items()):
        f, v = _split_files(_per_file(layout, cfg.image_size, mel=cfg.mel, dense=True), val_fraction, settings.seed)
        held[name] = v
        x = torch.cat(f)
        x = torch.cat([x, jitter(x, augment, seed=settings.seed + idx, modality=cfg.modality)])
        if posterior:
            z, z_std = _encode_posterior_all(vae, x, acc.device)
            stds.append(z_std)
        else:
            z = _encode_all(vae, x, acc.device)
        lat.append(z)
        lab.append(torch.full((len(z),), idx, dtype=torch.long))
    most = max(len(z) for z in lat)
    reps = [int(np.ceil(most / len(z))) for z in lat]
    latents = torch.cat([z.repeat(r, 1, 1, 1)[:most] for z, r in zip(lat, reps)])
    labels = torch.cat([y.repeat(r)[:most] for y, r in zip(lab, reps)])
    if posterior:
        latent_std = torch.cat([z.repeat(r, 1, 1, 1)[:most] for z, r in zip(stds, reps)])
        data, module = TensorDataset(latents, latent_std, labels), _PosteriorSample(model)
    else:
        data, module = TensorDataset(latents, labels), model
    log(f"DeCo-Diff: categories {cfg.categories}; {sum(len(z) for z in lat)} normal training latents "
        f"{tuple(latents.shape[1:])} (balanced to {len(latents)}), UNet "
        f"{sum(p.numel() for p in model.unet.parameters()) / 1e6:.2f} M parameters; encoded in {time.perf_counter() - t0:.0f} s.")

    synth = {name: build_validation_set(held[name], modality=cfg.modality, seed=settings.seed) for name in layouts}

    def validate(m: DeCoDiff) -> dict[str, float]:
        out = {}
        for name, ss in synth.items():
            for k, v in validation_figures(m, ss, category=name)[cfg.fusion].items():
                out[f"{name}_val_{k}"] = v
        return out

    summary = train_loop(module, data, settings, checkpoint_dir=out_dir / "checkpoint", resume=resume,
                         validate=(lambda m: validate(m.model)) if posterior else validate, accelerator=acc,
                         desc="decodiff")
    unwrapped = acc.unwrap_model(module)
    model = (unwrapped.model if posterior else unwrapped).eval()
    _finish(model, held, synth, select=select, fixed=fixed, threshold_quantile=threshold_quantile, log=log)
    cfg.training = {"train_latents": int(sum(len(z) for z in lat)), "posterior_sampling": posterior,
                    "augment_copies": augment,
                    "train_seconds": round(summary["seconds"], 1),
                    "final_loss": summary["final_loss"], "history": summary["history"], **settings.to_dict(),
                    "device": str(acc.device)}
    model.save_pretrained(out_dir)
    return model, summary
