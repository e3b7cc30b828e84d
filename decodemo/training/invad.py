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

__all__ = ["train_invad", "split_normal", "ABLATION_STEPS"]

ABLATION_STEPS = (1, 2, 3, 5, 10)


@torch.no_grad()
def _features(model: InvAD, tensors: list[torch.Tensor], device: torch.device, batch: int = 32) -> list[torch.Tensor]:
    out = []
    for t in tensors:
        parts = [model.raw_features(t[i : i + batch].to(device)).cpu() for i in range(0, len(t), batch)]
        out.append(torch.cat(parts))
    return out


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
    log=print,
) -> tuple[InvAD, dict[str, Any]]:
    """Train on ``layout.train`` (normal only) and write the model folder to ``out_dir``.

    A seeded ``val_fraction`` of the normal training files is held out: its scores give the
    NLL/Diff standardisation for every S in ``calibrate_steps`` and the decision threshold
    (``threshold_quantile`` of the held-out normal scores). No test data is used.
    """
    out_dir = Path(out_dir)
    cfg = config or InvADConfig()
    cfg.modality = layout.modality
    if layout.modality == "audio" and cfg.mel is None:
        cfg.mel = MelConfig().to_dict()
    mel = MelConfig.from_dict(cfg.mel) if cfg.mel else None
    acc = make_accelerator(settings.device, settings.mixed_precision)
    model = InvAD(cfg).to(acc.device)

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
    fit_feats = torch.cat(_features(model, train_t, acc.device))
    val_feats = _features(model, val_t, acc.device)
    model.fit_feature_stats(fit_feats.to(acc.device))
    x0 = model.standardise(fit_feats.to(acc.device)).cpu()
    prep_seconds = time.perf_counter() - t0
    log(f"{len(fit_idx)} training files ({len(x0)} inputs), {len(val_idx)} held-out normal files; "
        f"features {tuple(x0.shape[1:])} in {prep_seconds:.1f} s.")

    summary = train_loop(model, x0, settings, checkpoint_dir=out_dir / "checkpoint", resume=resume,
                         accelerator=acc, desc="invad")
    model = acc.unwrap_model(model).eval()

    # Calibrate on held-out normal inputs only.
    val_std = [model.standardise(v.to(acc.device)) for v in val_feats]
    steps_list = sorted(set(calibrate_steps) | {cfg.inversion_steps})
    model.calibrate(torch.cat(val_std), steps_list)
    per_file = []
    for v in val_std:
        nll, diff, _ = model.raw_scores(v, cfg.inversion_steps)
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
        "train_inputs": int(len(x0)),
        "heldout_normal_files": len(val_idx),
        "feature_seconds": round(prep_seconds, 1),
        "train_seconds": round(summary["seconds"], 1),
        "final_loss": summary["final_loss"],
        **{k: v for k, v in settings.to_dict().items() if k not in ("device",)},
        "device": str(acc.device),
    }
    model.save_pretrained(out_dir)
    return model, summary
