"""Training an ``invad`` model on a folder layout: features, diffusion, calibration, threshold."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from decodemo.data.layout import Layout
from decodemo.errors import ModelError
from decodemo.methods.invad.config import InvADConfig
from decodemo.methods.invad.model import InvAD
from decodemo.training.loop import TrainSettings, make_accelerator, train_loop
from decodemo.training.prepare import load_inputs, load_split, set_modality
from decodemo.training.split import split_normal
from decodemo.training.validation import add_candidate, adopt_selection, build_validation_set, choose, file_scores
from decodemo.training.validation import set_threshold, validation_figures

__all__ = ["train_invad", "reselect_invad", "ABLATION_STEPS", "PAPER_SETTINGS", "CANDIDATES", "AUDIO_NORMS"]

ABLATION_STEPS = (0, 1, 2, 3, 5, 10)  # S = 0: the no-diffusion ablation


@torch.no_grad()
def _features(model: InvAD, tensors: list[torch.Tensor], device: torch.device, batch: int = 32) -> list[torch.Tensor]:
    out = []
    for t in tensors:
        parts = [model.raw_features(t[i : i + batch].to(device)).cpu() for i in range(0, len(t), batch)]
        out.append(torch.cat(parts))
    return out


#: The paper's settings (Sakai & Hasegawa 2025): per-channel feature standardisation, S = 3 on
#: the reference code's DDIM grid.
PAPER_SETTINGS = {"feature_norm": "channel", "inversion_grid": "reference", "inversion_steps": 3}
#: The backbone of every default (the paper's EfficientNet-B4 is not available offline).
PAPER_BACKBONE = "efficientnet-lite0"
#: What ``select="auto"`` tries, the paper's value first. Only the feature norm needs a training
#: of its own; the grid and S are inference settings.
CANDIDATES = {"feature_norm": ("channel", "position"), "inversion_grid": ("reference", "uniform"),
              "inversion_steps": (3, 1, 2, 5)}
#: For audio the second standardisation is per frequency row: time positions in a window are arbitrary.
AUDIO_NORMS = ("channel", "row")


def _norms(modality: str) -> tuple[str, ...]:
    return AUDIO_NORMS if modality == "audio" else CANDIDATES["feature_norm"]


def _candidates(cfg: InvADConfig, key: str, select: str, fixed: tuple[str, ...]) -> list:
    if select == "none" or key in fixed:
        return [getattr(cfg, key)]
    return list(_norms(cfg.modality) if key == "feature_norm" else CANDIDATES[key])


def train_invad(
    layout: Layout,
    out_dir: str | Path,
    settings: TrainSettings,
    *,
    config: InvADConfig | None = None,
    val_fraction: float = 0.1,
    threshold_quantile: float = 0.99,
    resume: bool = False,
    calibrate_steps: tuple[int, ...] = ABLATION_STEPS,
    select: str = "auto",
    fixed: tuple[str, ...] = (),
    log=print,
) -> tuple[InvAD, dict[str, Any]]:
    """Train on ``layout.train`` (normal only) and write the model folder to ``out_dir``.

    A seeded ``val_fraction`` of the normal training files is held out. Its files give the
    NLL/Diff standardisation for every S in ``calibrate_steps`` and the decision threshold
    (``threshold_quantile`` of the held-out normal scores), and, with synthetic anomalies made
    from them, the validation set (:mod:`decodemo.training.validation`) that
    ``settings.validate_every`` reports on and that ``select="auto"`` chooses the settings on:
    feature standardisation per channel (the paper) or per channel and position (audio: per
    channel and frequency row; one UNet is trained for each), the inversion grid and S in 1, 2,
    3, 5. Settings named in ``fixed`` keep ``config``'s value;
    ``select="none"`` keeps ``config`` as given. No test data is used.
    """
    if select not in ("auto", "none"):
        raise ValueError(f"select must be 'auto' or 'none', not {select!r}.")
    out_dir = Path(out_dir)
    cfg = set_modality(config or InvADConfig(), layout)
    acc = make_accelerator(settings.device, settings.mixed_precision)
    probe = InvAD(cfg).to(acc.device)

    t0 = time.perf_counter()
    # Audio: a denser window hop for training (a quarter window) is the only augmentation.
    split = load_split(layout, cfg, val_fraction, settings.seed)
    fit_feats = torch.cat(_features(probe, split.fit, acc.device))
    val_feats = _features(probe, split.val, acc.device)
    synth = build_validation_set(split.val, modality=cfg.modality, seed=settings.seed)
    prep_seconds = time.perf_counter() - t0
    log(f"{len(split.fit_idx)} training files ({len(fit_feats)} inputs), {len(split.val_idx)} held-out normal files; "
        f"features {tuple(fit_feats.shape[1:])} in {prep_seconds:.1f} s; validation set of "
        f"{int((synth.labels == 0).sum())} normal and {int(synth.labels.sum())} synthetic anomalous inputs.")

    norms = _candidates(cfg, "feature_norm", select, fixed)
    grids = _candidates(cfg, "inversion_grid", select, fixed)
    steps = _candidates(cfg, "inversion_steps", select, fixed)
    models, summaries = {}, {}
    for norm in norms:
        c = InvADConfig(**{**cfg.to_dict(), "feature_norm": norm, "normal_stats": {}, "selection": {}})
        models[norm], summaries[norm] = _train_one(
            c, fit_feats, val_feats, synth, settings, acc,
            out_dir / ("checkpoint" if len(norms) == 1 else f"checkpoint-{norm}"), resume=resume,
            steps_list=sorted(set(calibrate_steps) | set(steps)), grids=grids, log=log)
    model = _choose_and_finish(models, {cfg.backbone: val_feats}, synth, grids, steps, layout_name=layout.root.name,
                               select=select, threshold_quantile=threshold_quantile, device=acc.device, log=log)
    summary = summaries[model.config.feature_norm]
    model.config.training = {
        "data": str(layout.root.name),
        "train_files": len(split.fit_idx),
        "train_inputs": int(len(fit_feats)),
        "heldout_normal_files": len(split.val_idx),
        "feature_seconds": round(prep_seconds, 1),
        "train_seconds": round(sum(s_["seconds"] for s_ in summaries.values()), 1),
        "trainings": len(summaries),
        "final_loss": summary["final_loss"],
        "history": summary["history"],
        **settings.record(acc.device),
    }
    model.save_pretrained(out_dir)
    return model, {**summary, "seconds": model.config.training["train_seconds"], "selection": model.config.selection}


def _choose_and_finish(models: dict[str, InvAD], val_feats: dict[str, list[torch.Tensor]], synth, grids: list[str],
                       steps: list[int], *, layout_name: str, select: str, threshold_quantile: float, device,
                       log) -> InvAD:
    """Score every (model, grid, S) candidate on the validation set, keep one by the selection
    rule, and set its threshold from the held-out normal files -> the chosen model. ``models``
    are the trained variants (one per feature norm, and per backbone when several compete);
    ``val_feats`` the held-out normals' features per backbone."""
    candidates = []
    backbones = {m.config.backbone for m in models.values()}
    for label, model in models.items():
        norm = model.config.feature_norm
        for grid in grids:
            for s_ in steps:
                figures = validation_figures(model, synth, steps=s_, inversion_grid=grid)[model.config.score]
                setting = {"feature_norm": norm, "inversion_grid": grid, "inversion_steps": s_}
                paper = setting == PAPER_SETTINGS and model.config.backbone == PAPER_BACKBONE
                if len(backbones) > 1:  # models of several backbones compete: the backbone is a setting
                    setting = {"backbone": model.config.backbone, **setting}
                add_candidate(candidates, setting, figures, paper=paper, log=log)["model"] = label
    # the paper's setting (or the first candidate when it is not among them) goes first
    candidates.sort(key=lambda c: not c["paper"])
    chosen = choose(candidates) if select == "auto" else 0
    model = models[candidates[chosen]["model"]]
    for c in candidates:
        del c["model"]
    cfg = model.config
    # the chosen model has the chosen feature norm and backbone: this sets the grid and S
    adopt_selection(cfg, candidates, chosen, mode=select, sets=[synth], log=log)
    # keep the statistics of the chosen grid (and S = 0, the ablation) only
    cfg.normal_stats = {k: v for k, v in cfg.normal_stats.items()
                        if k == "0" or (k.startswith("ref") == (cfg.inversion_grid == "reference"))}

    def score(feats: torch.Tensor) -> torch.Tensor:
        nll, diff, _ = model.raw_scores(model.standardise(feats.to(device)), cfg.inversion_steps)
        return model.score_variants(nll, diff, cfg.inversion_steps)[cfg.score]

    per_file = file_scores(score, val_feats[cfg.backbone], audio=cfg.modality == "audio", reduce=cfg.clip_reduce)
    set_threshold(cfg, per_file, threshold_quantile, layout_name,
                  f" (S={cfg.inversion_steps}, {cfg.inversion_grid} grid)")
    return model


@torch.no_grad()
def reselect_invad(models: list[InvAD], layout: Layout, *, select: str = "auto", val_fraction: float = 0.1,
                   threshold_quantile: float = 0.99, calibrate_steps: tuple[int, ...] = ABLATION_STEPS,
                   log=print) -> InvAD:
    """Run :func:`train_invad`'s selection and calibration on already trained UNets of the same
    data and split -> the chosen model, its ``selection`` and threshold rewritten.

    The models may differ in feature standardisation (e.g. a model trained before the selection
    existed and one trained with the other norm) and in backbone (EfficientNet-Lite0, -Lite1 or
    -Lite2 features, each with its own UNet); then the backbone is a recorded setting too. The
    grid and S candidates need no training; a variant without a model is not a candidate. The
    fit / held-out split is the training's own (its seed), so all models must share it."""
    if not models:
        raise ModelError("reselect_invad needs at least one trained invad model.")
    variants: dict[str, InvAD] = {}
    first = models[0].config
    seed = int(first.training.get("seed", 0))
    several = len({m.config.backbone for m in models}) > 1
    for m in models:
        c = m.config
        label = f"{c.feature_norm}/{c.backbone}" if several else c.feature_norm
        if label in variants:
            raise ModelError(f"Two models with feature_norm={c.feature_norm} and backbone={c.backbone}; give one "
                             "per feature standardisation and backbone.")
        same = ("image_size", "modality", "mel", "grid")
        if any(getattr(c, k) != getattr(first, k) for k in same) or int(c.training.get("seed", 0)) != seed:
            raise ModelError("The models differ in their inputs or split (" + ", ".join(same) + ", seed); they "
                             "must come from the same data and training split.")
        variants[label] = m.eval()
    device = next(models[0].parameters()).device
    _, val_idx = split_normal(len(layout.train), val_fraction, seed)
    val_t = load_inputs(layout, val_idx, first, desc="held-out normal inputs")
    # the held-out normals' features, once per backbone
    val_feats = {}
    for m in variants.values():
        if m.config.backbone not in val_feats:
            val_feats[m.config.backbone] = _features(m, val_t, device)
    synth = build_validation_set(val_t, modality=first.modality, seed=seed)
    steps = list(CANDIDATES["inversion_steps"]) if select == "auto" else [first.inversion_steps]
    grids = list(CANDIDATES["inversion_grid"]) if select == "auto" else [first.inversion_grid]
    for m in variants.values():
        val_std = torch.cat([m.standardise(v.to(device)) for v in val_feats[m.config.backbone]])
        for grid in grids:
            m.calibrate(val_std, sorted(set(calibrate_steps) | set(steps)), inversion_grid=grid)
    # the method's candidates first (the paper's per-channel one on Lite0 leading), then the others
    rank = {n: i for i, n in enumerate(_norms(first.modality))}
    order = sorted(variants, key=lambda k: (variants[k].config.backbone != PAPER_BACKBONE,
                                            rank.get(variants[k].config.feature_norm, len(rank))))
    ordered = {k: variants[k] for k in order}
    model = _choose_and_finish(ordered, val_feats, synth, grids, steps, layout_name=layout.root.name, select=select,
                               threshold_quantile=threshold_quantile, device=device, log=log)
    model.config.selection["rerun"] = (f"selection run on trained weights ({', '.join(ordered)}); "
                                       "the weights are the trainings' own")
    return model


def _train_one(cfg: InvADConfig, fit_feats: torch.Tensor, val_feats: list[torch.Tensor], synth, settings: TrainSettings,
               acc, checkpoint_dir: Path, *, resume: bool, steps_list: list[int], grids: list[str],
               log) -> tuple[InvAD, dict[str, Any]]:
    """Train one UNet for ``cfg.feature_norm`` and calibrate it on the held-out normals for every
    S on every grid."""
    torch.manual_seed(settings.seed)  # the UNet's initialisation: one training per norm, in any order
    model = InvAD(cfg).to(acc.device)
    model.fit_feature_stats(fit_feats.to(acc.device))
    x0 = model.standardise(fit_feats.to(acc.device)).cpu()
    val_std = torch.cat([model.standardise(v.to(acc.device)) for v in val_feats])

    def validate(m: InvAD) -> dict[str, float]:
        m.calibrate(val_std, [cfg.inversion_steps])
        fig = validation_figures(m, synth, steps=cfg.inversion_steps)[cfg.score]
        return {f"val_{k}": v for k, v in fig.items()}

    log(f"invad: training with feature_norm={cfg.feature_norm}.")
    summary = train_loop(model, x0, settings, checkpoint_dir=checkpoint_dir, resume=resume, accelerator=acc,
                         validate=validate, desc=f"invad ({cfg.feature_norm})")
    model = acc.unwrap_model(model).eval()
    for grid in grids:
        model.calibrate(val_std, steps_list, inversion_grid=grid)
    return model, summary
