"""Command line: ``python -m decodemo {train,evaluate,score} ...``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from decodemo.errors import DecodemoError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m decodemo", description="Diffusion-based anomaly detection.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a detector on train/good of a folder layout")
    t.add_argument("--method", required=True, choices=["invad"], help="method id")
    t.add_argument("--data", required=True, type=Path, help="dataset folder (train/good, test/...)")
    t.add_argument("--out", required=True, type=Path, help="model folder to write")
    t.add_argument("--steps", type=int, default=1500, help="optimiser steps (default 1500)")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--checkpoint-every", type=int, default=250)
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "fp16", "bf16"])
    t.add_argument("--image-size", type=int, default=256)
    t.add_argument("--inversion-steps", type=int, default=3, help="S, DDIM inversion steps at test time")
    t.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of train/good held out for score statistics and the threshold")
    t.add_argument("--feature-norm", default="position", choices=["position", "channel"],
                   help="standardise features per channel and grid position (default) or per channel")
    t.add_argument("--category", default=None, help="name recorded in the model (default: the data folder's)")

    e = sub.add_parser("evaluate", help="evaluate a model on test/ of a folder layout")
    e.add_argument("--model", required=True, type=Path)
    e.add_argument("--data", required=True, type=Path)
    e.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--inversion-steps", type=int, default=None, help="override S (invad)")
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])

    s = sub.add_parser("score", help="score files: one line per file with the score and decision")
    s.add_argument("--model", required=True, type=Path)
    s.add_argument("files", nargs="+", type=Path)
    s.add_argument("--json", type=Path, default=None)
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    return p


def _cmd_train(args) -> int:
    from decodemo.data.layout import scan_layout
    from decodemo.methods.invad.config import InvADConfig
    from decodemo.methods.invad.train import train_invad
    from decodemo.training import TrainSettings

    layout = scan_layout(args.data)
    settings = TrainSettings(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             checkpoint_every=args.checkpoint_every, device=args.device,
                             mixed_precision=args.mixed_precision)
    cfg = InvADConfig(image_size=args.image_size, inversion_steps=args.inversion_steps,
                      feature_norm=args.feature_norm, category=args.category or layout.root.name)
    _, summary = train_invad(layout, args.out, settings, config=cfg, val_fraction=args.val_fraction, resume=args.resume)
    print(f"Trained {summary['steps']} steps in {summary['seconds']:.0f} s (final loss {summary['final_loss']}); "
          f"model written to {args.out}")
    return 0


def _cmd_evaluate(args) -> int:
    from decodemo.data.layout import scan_layout
    from decodemo.evaluation import evaluate, format_report
    from decodemo.methods import load_model
    from decodemo.training import resolve_device

    model = load_model(args.model, device=str(resolve_device(args.device)))
    layout = scan_layout(args.data, require_train=False, require_test=True)
    if layout.modality != model.config.modality:
        raise DecodemoError(f"The model takes {model.config.modality} input but {args.data} holds {layout.modality}.")
    kwargs = {"steps": args.inversion_steps} if args.inversion_steps else {}
    t0 = time.perf_counter()
    report = evaluate(model, layout, batch_size=args.batch_size, **kwargs)
    report["timing"]["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print(format_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=float) + "\n")
        print(f"Report written to {args.json}")
    return 0


def _cmd_score(args) -> int:
    from decodemo.inputs import audio_input, image_tensor, is_audio_path
    from decodemo.io.spectrogram import MelConfig
    from decodemo.methods import load_model
    from decodemo.scoring import detect_clip
    from decodemo.training import resolve_device

    model = load_model(args.model, device=str(resolve_device(args.device)))
    cfg = model.config
    rows, failures = [], 0
    for path in args.files:
        try:
            if cfg.modality == "audio":
                if not is_audio_path(path):
                    raise DecodemoError(f"{path.name}: this model scores audio clips (.wav, .flac, .ogg, .mp3).")
                score = detect_clip(model, audio_input(path, MelConfig.from_dict(cfg.mel), cfg.image_size)).score
            else:
                score = float(model.detect(image_tensor(path, cfg.image_size)[None]).scores[0])
        except DecodemoError as exc:
            failures += 1
            rows.append({"file": str(path), "error": str(exc)})
            print(f"{path}\terror: {exc}", file=sys.stderr)
            continue
        decision = None if cfg.threshold is None else ("anomalous" if score > cfg.threshold else "normal")
        rows.append({"file": str(path), "score": score, "threshold": cfg.threshold, "decision": decision})
        print(f"{path}\t{score:.4f}\t{decision or 'no threshold'}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"train": _cmd_train, "evaluate": _cmd_evaluate, "score": _cmd_score}[args.command]
    try:
        return handler(args)
    except DecodemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
