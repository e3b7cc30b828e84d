"""Training DeCo-Diff's class-conditioned deviation model on the latents of its VAE
(:mod:`decodemo.training.vae` trains or calibrates that latent space first).

One model serves several categories: pass several layouts (e.g. bottle and solar cells), each
becomes a class id. Only ``train/good`` is used for training; a seeded share of it is held out
for the synthetic validation set and the decision thresholds.
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
from decodemo.methods.decodiff.config import DeCoDiffConfig
from decodemo.methods.decodiff.model import DeCoDiff, LatentVAE
from decodemo.metrics import threshold_at_normal_quantile
from decodemo.training.loop import TrainSettings, make_accelerator, train_loop
from decodemo.training.validation import add_candidate, adopt_selection, build_validation_set, choose, file_scores
from decodemo.training.validation import validation_figures
from decodemo.training.vae import encode_all, modality_of, pretrained_vae, psnr, split_layout, train_vae

# train_vae, pretrained_vae and psnr live in decodemo.training.vae and stay importable from here
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
            add_candidate(candidates, {"fusion": fusion, "latent_sigma": sigma}, figures, paper=paper, log=log)
    candidates.sort(key=lambda c: not c["paper"])
    return candidates, (choose(candidates) if select == "auto" else 0)


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
    if all(len(f) == 1 for f in files):  # images: scored 16 at a time across files
        x = torch.cat(files) if files else torch.empty(0)
        return torch.cat([model.detect(x[i : i + 16], category=category).scores.cpu()
                          for i in range(0, len(x), 16)]).tolist() if len(x) else []
    return file_scores(lambda x: model.detect(x, category=category).scores, files, audio=True, reduce=reduce,
                       batch=16)


@torch.no_grad()
def _finish(model: DeCoDiff, held: dict[str, list[torch.Tensor]], synth: dict, *, select: str, fixed: tuple[str, ...],
            threshold_quantile: float, log) -> None:
    """After training: select fusion and latent blur on the synthetic validation sets, then each
    category's threshold from its held-out normal files ``held``. In place."""
    cfg = model.config
    candidates, chosen = _select(model, synth, select=select, fixed=fixed, log=log)
    adopt_selection(cfg, candidates, chosen, mode=select, sets=list(synth.values()), log=log)
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
    if modality_of(layouts) != cfg.modality:
        raise DatasetError(f"The model takes {cfg.modality} input.")
    seed = int(cfg.training.get("seed", 0))
    held = {name: split_layout(layouts[name], cfg, val_fraction, seed, dense=True)[1] for name in cfg.categories}
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
    cfg = _prepare_config(config or DeCoDiffConfig(), layouts, vae)
    acc = make_accelerator(settings.device, settings.mixed_precision)
    torch.manual_seed(settings.seed)  # the UNet's initialisation
    model = DeCoDiff(cfg, vae).to(acc.device)
    t0 = time.perf_counter()
    data, held, n_latents = _training_latents(vae, layouts, cfg, val_fraction=val_fraction, seed=settings.seed,
                                              posterior=posterior, augment=augment, device=acc.device)
    module = _PosteriorSample(model) if posterior else model
    log(f"DeCo-Diff: categories {cfg.categories}; {n_latents} normal training latents "
        f"{tuple(data.tensors[0].shape[1:])} (balanced to {len(data)}), UNet "
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
    cfg.training = {"train_latents": n_latents, "posterior_sampling": posterior, "augment_copies": augment,
                    "train_seconds": round(summary["seconds"], 1), "final_loss": summary["final_loss"],
                    "history": summary["history"], **settings.record(acc.device)}
    model.save_pretrained(out_dir)
    return model, summary


def _prepare_config(cfg: DeCoDiffConfig, layouts: dict[str, Layout], vae: LatentVAE) -> DeCoDiffConfig:
    """``cfg`` set for ``layouts`` (its categories, in order) and ``vae`` (its config, modality and
    mel settings). In place; returns ``cfg``."""
    cfg.categories = list(layouts)
    cfg.vae = vae.config.to_dict()
    cfg.modality = modality_of(layouts)
    if cfg.modality != vae.config.modality:
        raise DatasetError(f"The VAE was trained on {vae.config.modality} inputs but these folders hold {cfg.modality}.")
    cfg.mel = vae.config.mel
    cfg.image_fit = vae.config.image_fit  # the latents are the VAE's: images are cut as it was trained
    cfg.shape_crops = vae.config.shape_crops
    return cfg


def _training_latents(vae: LatentVAE, layouts: dict[str, Layout], cfg: DeCoDiffConfig, *, val_fraction: float,
                      seed: int, posterior: bool, augment: int, device) -> tuple[TensorDataset, dict, int]:
    """The normal training latents of every layout (with ``augment`` :func:`jitter` copies of each
    input; with ``posterior``, the posterior's mean and std), each category repeated to the
    largest one's count -> (``(latents[, stds], labels)`` dataset, held-out files per category,
    latents before balancing)."""
    lat, lab, stds, held = [], [], [], {}
    for idx, (name, layout) in enumerate(layouts.items()):
        f, held[name] = split_layout(layout, cfg, val_fraction, seed, dense=True)
        x = torch.cat(f)
        x = torch.cat([x, jitter(x, augment, seed=seed + idx, modality=cfg.modality)])
        if posterior:
            z, z_std = _encode_posterior_all(vae, x, device)
            stds.append(z_std)
        else:
            z = encode_all(vae, x, device)
        lat.append(z)
        lab.append(torch.full((len(z),), idx, dtype=torch.long))
    most = max(len(z) for z in lat)
    reps = [int(np.ceil(most / len(z))) for z in lat]

    def balanced(parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([t.repeat(r, *[1] * (t.ndim - 1))[:most] for t, r in zip(parts, reps)])

    tensors = (balanced(lat), balanced(stds), balanced(lab)) if posterior else (balanced(lat), balanced(lab))
    return TensorDataset(*tensors), held, sum(len(z) for z in lat)
