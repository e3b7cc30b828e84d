"""Benchmark a trained ``invad`` model: the NLL / Diff / both ablation over S, and throughput.

Prints what it measures (nothing is copied from elsewhere):

- for every S in ``--steps`` (default 1, 2, 3, 5, 10): image (or clip) AUROC of NLL, Diff
  and NLL+Diff, plus pixel AUROC / AUPRO of the map where the data has masks, or pAUC
  (FPR <= 0.1) for audio;
- inference speed at batch 1 and batch 16 at the model's own S: the median of ``--repeats``
  timed passes over the same preloaded inputs (after one warm-up pass), in inputs/second;
- the training time recorded in the model's config.

    python -m decodemo.bench.invad_steps --model checkpoints/bottle/invad --data ../shared/data/bottle
    python -m decodemo.bench.invad_steps --model runs/fan_invad --data runs/fan --json fan.json

Run it alone on a quiet machine: timings on a shared 2-core machine vary by 10-20 %.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from decodemo.data.layout import scan_layout
from decodemo.evaluation import evaluate
from decodemo.inference import sample_tensors
from decodemo.io.spectrogram import MelConfig
from decodemo.methods import load_model


def throughput(model, inputs: torch.Tensor, batch: int, repeats: int, **detect_kwargs) -> tuple[float, list[float]]:
    """Median inputs/second of ``repeats`` passes of ``model.detect`` over ``inputs``."""
    n = len(inputs) - len(inputs) % batch or len(inputs)
    inputs = inputs[:n]

    def one_pass() -> float:
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            model.detect(inputs[i : i + batch], **detect_kwargs)
        return n / (time.perf_counter() - t0)

    one_pass()  # warm-up
    runs = [one_pass() for _ in range(repeats)]
    return statistics.median(runs), runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m decodemo.bench.invad_steps", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--steps", default="1,2,3,5,10", help="comma-separated S values for the ablation")
    p.add_argument("--repeats", type=int, default=5, help="timed passes per batch size (median reported)")
    p.add_argument("--speed-inputs", type=int, default=32, help="inputs per timed pass")
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = p.parse_args(argv)

    torch.set_grad_enabled(False)
    model = load_model(args.model)
    cfg = model.config
    layout = scan_layout(args.data, require_test=True)
    audio = layout.modality == "audio"
    steps_list = [int(s) for s in args.steps.split(",")]

    ablation = []
    for s in steps_list:
        rep = evaluate(model, layout, steps=s)
        row = {"S": s, "nfe": rep["timing"]["nfe_per_input"]}
        for v in ("nll", "diff", "nll+diff"):
            m = rep["overall"][v]
            row[f"{v}_auroc"] = m["auroc"] if audio else m["image_auroc"]
            if audio:
                row[f"{v}_pauc"] = m["pauc"]
        both = rep["overall"]["nll+diff"]
        for k in ("pixel_auroc", "aupro"):
            if k in both:
                row[k] = both[k]
        ablation.append(row)
        print(f"S={s:>2}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float)), flush=True)

    # Speed at the model's own S on preloaded test inputs (images, or spectrogram windows).
    paths = [smp.path for smp in layout.test][: args.speed_inputs]
    mel = MelConfig.from_dict(cfg.mel) if cfg.mel else None
    inputs = torch.cat(sample_tensors(paths, modality=cfg.modality, size=cfg.image_size, mel=mel, desc="speed inputs"))
    inputs = inputs[: max(args.speed_inputs, 16)]
    speed = {}
    for b in (1, 16):
        med, runs = throughput(model, inputs, b, args.repeats)
        speed[f"batch_{b}"] = {"median_inputs_per_s": med, "runs": runs}
    unit = "spectrogram windows" if audio else "images"

    train = cfg.training
    print()
    print(f"# invad on {layout.root.name} ({cfg.modality}; model {args.model})")
    print(f"Training: {train.get('train_steps', train.get('steps'))} steps at batch {train.get('batch_size')} in "
          f"{train.get('train_seconds', float('nan')):.0f} s on {train.get('device')} "
          f"(+ {train.get('feature_seconds', float('nan')):.0f} s of feature extraction), "
          f"{train.get('train_files')} normal training files.")
    print(f"Speed at S={cfg.inversion_steps} ({torch.get_num_threads()} threads): "
          + ", ".join(f"batch {b}: {speed[f'batch_{b}']['median_inputs_per_s']:.1f} {unit}/s" for b in (1, 16))
          + f" (median of {args.repeats}).")
    print()
    metric = "clip AUROC" if audio else "image AUROC"
    head = ["S", f"NLL {metric}", f"Diff {metric}", f"NLL+Diff {metric}"]
    keys = ["nll_auroc", "diff_auroc", "nll+diff_auroc"]
    if audio:
        head += ["NLL+Diff pAUC"]
        keys += ["nll+diff_pauc"]
    if "pixel_auroc" in ablation[0]:
        head += ["pixel AUROC", "AUPRO"]
        keys += ["pixel_auroc", "aupro"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in ablation:
        print(f"| {row['S']} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |")

    if args.json:
        args.json.write_text(json.dumps({"data": str(args.data), "model": str(args.model), "ablation": ablation,
                                         "speed": speed, "speed_unit": unit, "training": train}, indent=1))
        print(f"\nFigures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
