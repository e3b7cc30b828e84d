"""Training an ``invad`` model on a folder layout: features, diffusion, calibration, threshold."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from decodemo.data.layout import Layout
from decodemo.inputs import sample_tensors
from decodemo.io.spectrogram import MelConfig
from decodemo.methods.invad.config import InvADConfig
from decodemo.methods.invad.model import InvAD
from decodemo.metrics import threshold_at_normal_quantile
from decodemo.scoring import reduce_windows
from decodemo.training.loop import TrainSettings, make_accelerator, train_loop
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

__all__ = ["train_invad", "ABLATION_STEPS", "PAPER_SETTINGS", "CANDIDATES"]

ABLATION_STEPS = (0, 1, 2, 3, 5, 10)  # S = 0: the no-diffusion ablation


@torch.no_grad()
def _features(model: InvAD, tensors: list[torch.Tensor], device: torch.device, batch: int = 32) -> list[torch.Tensor]:
    out = []
    for t in tensors:
        parts = [model.raw_features(t[i : i + batch].to(device)).cpu() for i in range(0, len(t), batch)]
        out.append(torch.cat(parts))
    return out


#: The paper's settings (Sakai & Hasegawa 2025): per-channel feature standardisation, S = 3.
PAPER_SETTINGS = {"feature_norm": "channel", "inversion_steps": 3}
#: What ``select="auto"`` tries, the paper's value first.
CANDIDATES = {"feature_norm": ("channel", "position"), "inversion_steps": (3, 1, 2, 5)}


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
    feature standardisation per channel (the paper) or per channel and position (one UNet is
    trained for each) and S in 1, 2, 3, 5. Settings named in ``fixed`` keep ``config``'s value;
    ``select="none"`` keeps ``config`` as given. No test data is used.
    """
    if select not in ("auto", "none"):
        raise ValueError(f"select must be 'auto' or 'none', not {select!r}.")
    out_dir = Path(out_dir)
    cfg = config or InvADConfig()
    cfg.modality = layout.modality
    if layout.modality == "audio" and cfg.mel is None:
        cfg.mel = MelConfig().to_dict()
    mel = MelConfig.from_dict(cfg.mel) if cfg.mel else None
    acc = make_accelerator(settings.device, settings.mixed_precision)
    probe = InvAD(cfg).to(acc.device)

    t0 = time.perf_counter()
    paths = [s.path for s in layout.train]
    fit_idx, val_idx = split_normal(len(paths), val_fraction, settings.seed)
    # Audio: a denser window hop for training (a quarter window) is the only augmentation.
    hop = None
    if mel is not None:
        from decodemo.io.spectrogram import frames_per_window

        hop = max(1, frames_per_window(mel) // 4)
    train_t = sample_tensors([paths[i] for i in fit_idx], modality=cfg.modality, size=cfg.image_size, mel=mel,
                             hop_frames=hop, desc="training inputs")
    val_t = sample_tensors([paths[i] for i in val_idx], modality=cfg.modality, size=cfg.image_size, mel=mel,
                           desc="held-out normal inputs")
    fit_feats = torch.cat(_features(probe, train_t, acc.device))
    val_feats = _features(probe, val_t, acc.device)
    synth = build_validation_set(val_t, modality=cfg.modality, seed=settings.seed)
    prep_seconds = time.perf_counter() - t0
    log(f"{len(fit_idx)} training files ({len(fit_feats)} inputs), {len(val_idx)} held-out normal files; "
        f"features {tuple(fit_feats.shape[1:])} in {prep_seconds:.1f} s; validation set of "
        f"{int((synth.labels == 0).sum())} normal and {int(synth.labels.sum())} synthetic anomalous inputs.")

    norms = [cfg.feature_norm] if select == "none" or "feature_norm" in fixed else list(CANDIDATES["feature_norm"])
    steps = ([cfg.inversion_steps] if select == "none" or "inversion_steps" in fixed
             else list(CANDIDATES["inversion_steps"]))
    candidates, models, summaries = [], {}, {}
    for norm in norms:
        c = InvADConfig(**{**cfg.to_dict(), "feature_norm": norm, "normal_stats": {}, "selection": {}})
        model, summary = _train_one(c, fit_feats, val_feats, synth, settings, acc,
                                    out_dir / ("checkpoint" if len(norms) == 1 else f"checkpoint-{norm}"),
                                    resume=resume, steps_list=sorted(set(calibrate_steps) | set(steps)), log=log)
        models[norm], summaries[norm] = model, summary
        for s_ in steps:
            figures = validation_figures(model, synth, steps=s_)[c.score]
            paper = norm == PAPER_SETTINGS["feature_norm"] and s_ == PAPER_SETTINGS["inversion_steps"]
            candidates.append(Candidate.make({"feature_norm": norm, "inversion_steps": s_}, figures, paper=paper))
            log(f"  candidate feature_norm={norm}, S={s_}: " + format_candidate(candidates[-1]))
    # the paper's setting (or the first candidate when it is not among them) goes first
    candidates.sort(key=lambda c: not c["paper"])
    chosen = choose(candidates) if select == "auto" else 0
    pick = candidates[chosen]["settings"]
    model, summary = models[pick["feature_norm"]], summaries[pick["feature_norm"]]
    cfg = model.config
    cfg.inversion_steps = pick["inversion_steps"]
    cfg.selection = selection_record(candidates, chosen, mode=select, n_normals=int((synth.labels == 0).sum()),
                                     n_anomalies=int(synth.labels.sum()))
    log(f"selected feature_norm={pick['feature_norm']}, S={pick['inversion_steps']} ({SELECTION_RULE}).")

    per_file = []
    for v in val_feats:
        nll, diff, _ = model.raw_scores(model.standardise(v.to(acc.device)), cfg.inversion_steps)
        s = model.score_variants(nll, diff, cfg.inversion_steps)[cfg.score].cpu()
        per_file.append(reduce_windows(s, cfg.clip_reduce) if cfg.modality == "audio" else float(s[0]))
    cfg.threshold = float(threshold_at_normal_quantile(per_file, q=threshold_quantile))
    cfg.threshold_provenance = (
        f"{threshold_quantile:.2f} quantile of the {cfg.score} score of {len(per_file)} held-out normal "
        f"training files of {layout.root.name} (S={cfg.inversion_steps}); no test data used"
    )
    cfg.training = {
        "data": str(layout.root.name),
        "train_files": len(fit_idx),
        "train_inputs": int(len(fit_feats)),
        "heldout_normal_files": len(val_idx),
        "feature_seconds": round(prep_seconds, 1),
        "train_seconds": round(sum(s_["seconds"] for s_ in summaries.values()), 1),
        "trainings": len(summaries),
        "final_loss": summary["final_loss"],
        "history": summary["history"],
        **{k: v for k, v in settings.to_dict().items() if k not in ("device",)},
        "device": str(acc.device),
    }
    model.save_pretrained(out_dir)
    return model, {**summary, "seconds": cfg.training["train_seconds"], "selection": cfg.selection}



def _train_one(cfg: InvADConfig, fit_feats: torch.Tensor, val_feats: list[torch.Tensor], synth, settings: TrainSettings,
               acc, checkpoint_dir: Path, *, resume: bool, steps_list: list[int], log) -> tuple[InvAD, dict[str, Any]]:
    """Train one UNet for ``cfg.feature_norm`` and calibrate it on the held-out normals for every S."""
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
    model.calibrate(val_std, steps_list)
    return model, summary
