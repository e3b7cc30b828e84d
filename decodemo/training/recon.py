"""Training a ``recon`` model on a folder layout: wavelet statistics, the diffusion model,
map statistics and the decision threshold, all from normal training files only."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from decodemo.data.layout import Layout
from decodemo.io.spectrogram import MelConfig
from decodemo.methods.recon.config import ReconConfig
from decodemo.methods.recon.model import Recon
from decodemo.training.loop import TrainSettings, make_accelerator, train_loop
from decodemo.training.prepare import choose_image_fit, load_split
from decodemo.training.validation import add_candidate, adopt_selection, build_validation_set, choose, file_scores
from decodemo.training.validation import set_threshold, validation_figures

__all__ = ["train_recon", "reselect_recon", "candidate_values", "within_audio_budget", "AUDIO_NFE_BUDGET", "CANDIDATES"]

#: What ``select="auto"`` tries, in coordinate-search order; the first value of each is the
#: default reading of the paper (which fixes none of them).
CANDIDATES = {"t0": (300, 200, 400), "n_draws": (1, 4), "map_norm": ("global", "position")}
#: Network calls per spectrogram window an audio model may spend (``n_draws x reverse_steps``):
#: the real-time budget. A 30 s clip in at most 3 s for all three methods on 2 CPU cores
#: (real-time factor 0.1) is 16 windows at a whole-window hop. One call of the fan UNet is
#: 2.25 GFLOP (36 GFLOP for the 16 windows); at 3 calls a window recon's reconstruction was
#: 1.37 s of its 2.2 s and the comparison 3.6 s on a slow hour, so 2 calls take another 36 GFLOP
#: away. DDIM from t0 = 300 then runs at 300 and 150. An audio model's ``reverse_steps`` is cut
#: to the budget and only the ``n_draws`` within it are tried (README, "Any image shape, any
#: clip length", for what each cut cost on validation).
AUDIO_NFE_BUDGET = 2


def within_audio_budget(cfg: ReconConfig) -> ReconConfig:
    """An audio model's ``reverse_steps`` cut to :data:`AUDIO_NFE_BUDGET`, and its semantic
    features taken at the window's own side (``feature_size`` at most ``image_size``: a
    spectrogram window upsampled 2x for the frozen EfficientNet-Lite0 has nothing more to show,
    and the two feature passes cost 4x the FLOPs there). Images: unchanged. In place; returns ``cfg``."""
    if cfg.modality == "audio":
        cfg.reverse_steps = min(cfg.reverse_steps, AUDIO_NFE_BUDGET)
        cfg.feature_size = min(cfg.feature_size, cfg.image_size)
    return cfg


def candidate_values(key: str, cfg: ReconConfig) -> tuple:
    """The values of :data:`CANDIDATES` ``[key]`` that ``cfg``'s model may try: per-position map
    statistics are per frequency row for audio, and an audio model's ``n_draws`` keep
    ``n_draws x reverse_steps`` within :data:`AUDIO_NFE_BUDGET` (at least the smallest)."""
    audio = cfg.modality == "audio"
    vals = tuple("row" if audio and v == "position" else v for v in CANDIDATES[key])
    if audio and key == "n_draws":
        vals = tuple(v for v in vals if v * cfg.reverse_steps <= AUDIO_NFE_BUDGET) or (min(vals),)
    return vals


def _select(model: Recon, stats_inputs: torch.Tensor, synth, *, select: str, fixed: tuple[str, ...], log):
    """Coordinate search over :data:`CANDIDATES` on the synthetic validation set -> (candidates,
    chosen index). On each coordinate the incumbent (the paper reading's value) is kept unless
    another value beats it by more than the selection margin (:func:`choose`)."""
    cfg = model.config

    def values(key: str) -> tuple:
        return candidate_values(key, cfg)

    paper = {k: values(k)[0] for k in CANDIDATES}
    candidates: list[dict] = []
    seen: dict[tuple, int] = {}

    def run(setting: dict) -> int:
        key = tuple(sorted(setting.items()))
        if key not in seen:
            for k, v in setting.items():
                setattr(cfg, k, v)
            _resize_map_stats(model)
            model.fit_map_stats(stats_inputs)
            add_candidate(candidates, setting, validation_figures(model, synth)[cfg.score], paper=setting == paper,
                          log=log)
            seen[key] = len(candidates) - 1
        return seen[key]

    if select == "none":
        return candidates, run({k: getattr(cfg, k) for k in CANDIDATES})
    best = {k: getattr(cfg, k) if k in fixed else paper[k] for k in CANDIDATES}
    for key in CANDIDATES:
        if key in fixed:
            continue
        idx = [run({**best, key: v}) for v in values(key)]
        best = dict(candidates[idx[choose([candidates[i] for i in idx])]]["settings"])
    for k, v in best.items():
        setattr(cfg, k, v)
    _resize_map_stats(model)
    return candidates, seen[tuple(sorted(best.items()))]


def _resize_map_stats(model: Recon) -> None:
    """Give the map-statistics buffers the shape that ``config.map_norm`` needs."""
    s = model.config.image_size
    shape = {"position": (s, s), "row": (s, 1), "global": (1, 1)}[model.config.map_norm]
    for name in ("err", "sem", "abl_err", "abl_sem"):
        for part, fill in (("mean", 0.0), ("std", 1.0)):
            buf = getattr(model, f"{name}_{part}")
            if tuple(buf.shape) != shape:
                setattr(model, f"{name}_{part}", torch.full(shape, fill, device=buf.device))



@torch.no_grad()
def _wavelets(model: Recon, images: torch.Tensor, device, batch: int = 64) -> torch.Tensor:
    return torch.cat([model.to_wavelet(model._prepare(images[i : i + batch].to(device))).cpu()
                      for i in range(0, len(images), batch)])


@torch.no_grad()
def _finish(model: Recon, fit: torch.Tensor, val: list[torch.Tensor], *, layout_name: str, seed: int, stats_max: int,
            select_stats: int, select: str, fixed: tuple[str, ...], threshold_quantile: float, log) -> None:
    """After training: select the settings on the synthetic validation set made from ``val``, fit
    the map and ablation statistics on (up to ``stats_max``) ``fit`` inputs and set the threshold
    from the held-out normal files ``val``. In place."""
    cfg = model.config
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(fit), generator=g)[:stats_max]
    synth = build_validation_set(val, modality=cfg.modality, seed=seed)
    candidates, chosen = _select(model, fit[pick[:select_stats]].to(device), synth, select=select, fixed=fixed,
                                 log=log)
    adopt_selection(cfg, candidates, chosen, mode=select, sets=[synth], log=log)
    model.fit_map_stats(fit[pick].to(device))
    model.fit_ablation_stats(fit[pick].to(device))
    per_file = file_scores(lambda x: model.detect(x).scores, val, audio=cfg.modality == "audio",
                           reduce=cfg.clip_reduce, batch=16)
    set_threshold(cfg, per_file, threshold_quantile, layout_name,
                  f"; map statistics from {len(pick)} normal training inputs")


def _split_inputs(cfg: ReconConfig, layout: Layout, val_fraction: float, seed: int):
    """The training's fit indices, held-out indices, fit inputs (one tensor; audio at a
    quarter-window hop) and held-out files."""
    split = load_split(layout, cfg, val_fraction, seed)
    return split.fit_idx, split.val_idx, torch.cat(split.fit), split.val


def _prepare_config(cfg: ReconConfig, layout: Layout) -> ReconConfig:
    """``cfg`` set for ``layout``: its category and modality; audio is one channel with mel settings
    (the default ones when it has none), per-row maps, reverse steps and feature size within
    the real-time budget. In place; returns ``cfg``."""
    cfg.modality = layout.modality
    cfg.category = cfg.category or layout.root.name
    if layout.modality == "audio":
        cfg.mel = cfg.mel or MelConfig().to_dict()
        cfg.in_channels = 1
        cfg.shape_crops = 0
        if cfg.map_norm == "position":
            cfg.map_norm = "row"  # time positions are arbitrary in a window; frequency rows are not
        within_audio_budget(cfg)
    elif cfg.image_fit == "auto":
        cfg.image_fit = choose_image_fit([layout], shape_crops=cfg.shape_crops)
    return cfg


def reselect_recon(model: Recon, layout: Layout, *, select: str = "auto", fixed: tuple[str, ...] = (),
                   val_fraction: float = 0.1, threshold_quantile: float = 0.99, stats_max: int = 256,
                   select_stats: int = 64, log=print) -> Recon:
    """Run :func:`train_recon`'s selection and calibration on a trained model (e.g. one trained
    before the selection existed): every recon candidate is an inference setting, so the weights
    stay; the split is the training's own (its seed). In place; returns ``model``."""
    cfg = model.config
    steps, size = cfg.reverse_steps, cfg.feature_size
    within_audio_budget(cfg)
    if cfg.feature_size != size:
        model.set_feature_size(cfg.feature_size)  # its ablation statistics are fitted again below
    seed = int(cfg.training.get("seed", 0))
    _, _, fit, val = _split_inputs(cfg, layout, val_fraction, seed)
    model.eval()
    _finish(model, fit, val, layout_name=layout.root.name, seed=seed, stats_max=stats_max, select_stats=select_stats,
            select=select, fixed=fixed, threshold_quantile=threshold_quantile, log=log)
    cuts = ([f"reverse steps cut from {steps} to {cfg.reverse_steps}"] if cfg.reverse_steps != steps else []) + \
        ([f"semantic features from {size} to {cfg.feature_size} px"] if cfg.feature_size != size else [])
    cut = (f" with {' and '.join(cuts)} by the audio real-time budget ({AUDIO_NFE_BUDGET} network calls "
           f"per window, features at the window's side)" if cuts else "")
    cfg.selection["rerun"] = f"selection run on trained weights{cut}; the weights are the training's own"
    return model


def train_recon(
    layout: Layout,
    out_dir: str | Path,
    settings: TrainSettings,
    *,
    config: ReconConfig | None = None,
    val_fraction: float = 0.1,
    threshold_quantile: float = 0.99,
    stats_max: int = 256,
    select_stats: int = 64,
    resume: bool = False,
    select: str = "auto",
    fixed: tuple[str, ...] = (),
    log=print,
) -> tuple[Recon, dict[str, Any]]:
    """Train on ``layout.train`` (normal only) and write the model folder to ``out_dir``.

    A seeded ``val_fraction`` of the normal training files is held out for the threshold
    (``threshold_quantile`` of their scores). Wavelet statistics and the error / semantic map
    statistics come from (up to ``stats_max`` of) the remaining normal training inputs. No
    test data is used.

    The held-out files and synthetic anomalies made from them are the validation set
    (:mod:`decodemo.training.validation`): ``settings.validate_every`` reports on it, and
    ``select="auto"`` picks t0 (300, 200, 400), the number of averaged noise draws (1, 4) and the
    map normalisation (global, then per position for images or per frequency row for audio) by
    coordinate search in that order, each candidate's map statistics from ``select_stats``
    normal training inputs. Settings named in ``fixed`` keep ``config``'s value.
    """
    out_dir = Path(out_dir)
    cfg = _prepare_config(config or ReconConfig(), layout)
    acc = make_accelerator(settings.device, settings.mixed_precision)
    torch.manual_seed(settings.seed)  # the UNet's initialisation
    model = Recon(cfg).to(acc.device)

    t0 = time.perf_counter()
    fit_idx, val_idx, fit, val = _split_inputs(cfg, layout, val_fraction, settings.seed)
    model.fit_wavelet_stats(fit.to(acc.device))
    w0 = _wavelets(model, fit, acc.device)
    prep = time.perf_counter() - t0
    log(f"recon: {len(fit_idx)} training files ({len(w0)} inputs), {len(val_idx)} held-out; wavelet inputs "
        f"{tuple(w0.shape[1:])}, UNet {sum(p.numel() for p in model.unet.parameters()) / 1e6:.2f} M parameters.")

    val_synth = build_validation_set(val, modality=cfg.modality, seed=settings.seed) if settings.validate_every else None
    stats_probe = fit[torch.randperm(len(fit), generator=torch.Generator().manual_seed(settings.seed))[:32]]

    def validate(m: Recon) -> dict[str, float]:
        m.fit_map_stats(stats_probe.to(acc.device))
        return {f"val_{k}": v for k, v in validation_figures(m, val_synth)[m.config.score].items()}

    summary = train_loop(model, w0, settings, checkpoint_dir=out_dir / "checkpoint", resume=resume,
                         accelerator=acc, validate=validate, desc="recon")
    model = acc.unwrap_model(model).eval()

    t1 = time.perf_counter()
    _finish(model, fit, val, layout_name=layout.root.name, seed=settings.seed, stats_max=stats_max,
            select_stats=select_stats, select=select, fixed=fixed, threshold_quantile=threshold_quantile, log=log)
    cfg.training = {
        "data": layout.root.name,
        "train_files": len(fit_idx),
        "train_inputs": int(len(w0)),
        "heldout_normal_files": len(val_idx),
        "prepare_seconds": round(prep, 1),
        "train_seconds": round(summary["seconds"], 1),
        "calibrate_seconds": round(time.perf_counter() - t1, 1),
        "final_loss": summary["final_loss"],
        "history": summary["history"],
        **settings.record(acc.device),
    }
    model.save_pretrained(out_dir)
    log(f"recon written to {out_dir}; threshold {cfg.threshold:.3f}.")
    return model, summary
