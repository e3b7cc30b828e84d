"""Training a ``recon`` model on a folder layout: wavelet statistics, the diffusion model,
map statistics and the decision threshold, all from normal training files only."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from decodemo.data.layout import Layout
from decodemo.inputs import sample_tensors
from decodemo.io.spectrogram import MelConfig, frames_per_window
from decodemo.training.split import split_normal
from decodemo.methods.recon.config import ReconConfig
from decodemo.methods.recon.model import Recon
from decodemo.metrics import threshold_at_normal_quantile
from decodemo.scoring import reduce_windows
from decodemo.training.loop import TrainSettings, make_accelerator, train_loop

__all__ = ["train_recon"]


@torch.no_grad()
def _wavelets(model: Recon, images: torch.Tensor, device, batch: int = 64) -> torch.Tensor:
    return torch.cat([model.to_wavelet(model._prepare(images[i : i + batch].to(device))).cpu()
                      for i in range(0, len(images), batch)])


def train_recon(
    layout: Layout,
    out_dir: str | Path,
    settings: TrainSettings,
    *,
    config: ReconConfig | None = None,
    val_fraction: float = 0.1,
    threshold_quantile: float = 0.99,
    stats_max: int = 256,
    resume: bool = False,
    log=print,
) -> tuple[Recon, dict[str, Any]]:
    """Train on ``layout.train`` (normal only) and write the model folder to ``out_dir``.

    A seeded ``val_fraction`` of the normal training files is held out for the threshold
    (``threshold_quantile`` of their scores). Wavelet statistics and the error / semantic map
    statistics come from (up to ``stats_max`` of) the remaining normal training inputs. No
    test data is used.
    """
    out_dir = Path(out_dir)
    cfg = config or ReconConfig()
    cfg.modality = layout.modality
    cfg.category = cfg.category or layout.root.name
    if layout.modality == "audio":
        cfg.mel = cfg.mel or MelConfig().to_dict()
        cfg.in_channels = 1
        if cfg.map_norm == "position":
            cfg.map_norm = "row"  # time positions are arbitrary in a window; frequency rows are not
    mel = MelConfig.from_dict(cfg.mel) if cfg.mel else None
    acc = make_accelerator(settings.device, settings.mixed_precision)
    model = Recon(cfg).to(acc.device)

    t0 = time.perf_counter()
    paths = [s.path for s in layout.train]
    fit_idx, val_idx = split_normal(len(paths), val_fraction, settings.seed)
    hop = max(1, frames_per_window(mel) // 4) if mel is not None else None  # audio: denser windows
    fit = torch.cat(sample_tensors([paths[i] for i in fit_idx], modality=cfg.modality, size=cfg.image_size,
                                   mel=mel, hop_frames=hop, desc="training inputs"))
    val = sample_tensors([paths[i] for i in val_idx], modality=cfg.modality, size=cfg.image_size, mel=mel,
                         desc="held-out normal inputs")
    model.fit_wavelet_stats(fit.to(acc.device))
    w0 = _wavelets(model, fit, acc.device)
    prep = time.perf_counter() - t0
    log(f"recon: {len(fit_idx)} training files ({len(w0)} inputs), {len(val_idx)} held-out; wavelet inputs "
        f"{tuple(w0.shape[1:])}, UNet {sum(p.numel() for p in model.unet.parameters()) / 1e6:.2f} M parameters.")

    summary = train_loop(model, w0, settings, checkpoint_dir=out_dir / "checkpoint", resume=resume,
                         accelerator=acc, desc="recon")
    model = acc.unwrap_model(model).eval()

    t1 = time.perf_counter()
    g = torch.Generator().manual_seed(settings.seed)
    pick = torch.randperm(len(fit), generator=g)[:stats_max]
    model.fit_map_stats(fit[pick].to(acc.device))
    per_file = []
    for v in val:
        s = torch.cat([model.detect(v[i : i + 16]).scores.cpu() for i in range(0, len(v), 16)])
        per_file.append(reduce_windows(s, cfg.clip_reduce) if cfg.modality == "audio" else float(s[0]))
    cfg.threshold = float(threshold_at_normal_quantile(per_file, q=threshold_quantile))
    cfg.threshold_provenance = (
        f"{threshold_quantile:.2f} quantile of the {cfg.score} score of {len(per_file)} held-out normal training "
        f"files of {layout.root.name}; map statistics from {len(pick)} normal training inputs; no test data used"
    )
    cfg.training = {
        "data": layout.root.name,
        "train_files": len(fit_idx),
        "train_inputs": int(len(w0)),
        "heldout_normal_files": len(val_idx),
        "prepare_seconds": round(prep, 1),
        "train_seconds": round(summary["seconds"], 1),
        "calibrate_seconds": round(time.perf_counter() - t1, 1),
        "final_loss": summary["final_loss"],
        **{k: v for k, v in settings.to_dict().items() if k != "device"},
        "device": str(acc.device),
    }
    model.save_pretrained(out_dir)
    log(f"recon written to {out_dir}; threshold {cfg.threshold:.3f}.")
    return model, summary
