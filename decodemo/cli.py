"""Command line: ``python -m decodemo {train,evaluate,score} ...`` for every method."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from decodemo.errors import DecodemoError
from decodemo.methods.catalogue import MODEL_KINDS

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m decodemo", description="Diffusion-based anomaly detection.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a detector on train/good of one or more folder layouts")
    t.add_argument("--method", required=True, choices=list(MODEL_KINDS),
                   help="method id (vae: the latent space that decodiff uses; baseline: the PatchCore-style "
                        "nearest-neighbour reference, not a diffusion method)")
    t.add_argument("--data", required=True, type=Path, action="append",
                   help="dataset folder (train/good, test/...); vae and decodiff take several, one per category")
    t.add_argument("--out", required=True, type=Path, help="model folder to write")
    t.add_argument("--vae", type=Path, default=None, help="decodiff: a trained vae folder (else one is trained first)")
    t.add_argument("--vae-pretrained", default=None, metavar="REPO_ID",
                   help="vae/decodiff: use a pretrained diffusers AutoencoderKL from the Hub (or a local diffusers "
                        "folder) instead of training one, e.g. stabilityai/sd-vae-ft-mse")
    t.add_argument("--vae-revision", default=None, help="with --vae-pretrained: the pinned revision (a commit)")
    t.add_argument("--vae-subfolder", default=None, help="with --vae-pretrained: subfolder of the repo, e.g. vae")
    t.add_argument("--steps", type=int, default=None, help="optimiser steps (invad 1500, vae 1500, decodiff 3000)")
    t.add_argument("--vae-steps", type=int, default=1500, help="decodiff without --vae: steps of the vae stage")
    t.add_argument("--batch-size", type=int, default=None, help="invad 32, vae 16, decodiff 64")
    t.add_argument("--lr", type=float, default=None, help="invad 2e-4, vae 1e-3, decodiff 1e-4 (AdamW)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--checkpoint-every", type=int, default=250)
    t.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="keep an exponential moving average of the weights with this decay (the InvAD reference: "
                        "0.999) and use it as the trained model; default: none")
    t.add_argument("--grad-clip", type=float, default=None, metavar="NORM",
                   help="clip the gradient norm to NORM (the InvAD reference: 1.0); default: no clipping")
    t.add_argument("--validate-every", type=int, default=0,
                   help="print image AUROC, pixel AUROC and AUPRO on the synthetic validation set (held-out "
                        "normal training files and synthetic anomalies made from them; never test/) every N steps")
    t.add_argument("--select", default="auto", choices=["auto", "none"],
                   help="auto (default): choose the settings that matter on the synthetic validation set (invad: "
                        "feature standardisation and S; recon: t0, averaged draws, map normalisation; decodiff: "
                        "fusion, latent blur) and record every candidate in the model's config; none: keep the "
                        "paper's settings. Settings given on the command line are kept either way")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "fp16", "bf16"])
    t.add_argument("--image-size", type=int, default=None, help="input size in pixels (invad 256, vae/decodiff 128)")
    t.add_argument("--posterior", action="store_true",
                   help="decodiff: train on a fresh sample of each latent's VAE posterior every step (the official "
                        "training) instead of its mean")
    t.add_argument("--gpu-config", action="store_true", help="vae/decodiff: the larger GPU-sized networks")
    t.add_argument("--vae-downsampling", type=int, choices=[4, 8], default=8,
                   help="vae/decodiff: the VAE's downsampling factor; 4 gives the paper's 32 x 32 latents at 128 px "
                        "(default 8: 16 x 16)")
    t.add_argument("--perceptual", type=float, default=0.0, metavar="WEIGHT",
                   help="vae/decodiff: add a perceptual loss on frozen EfficientNet-Lite0 features to the VAE's "
                        "pixel loss, with this weight (default 0: pixels only)")
    t.add_argument("--augment", type=int, default=0, metavar="COPIES",
                   help="decodiff: add this many seeded translated copies of each training input (the official "
                        "loader's small translations, brightness and contrast; default 0)")
    t.add_argument("--inversion-steps", type=int, default=None,
                   help="invad: S, DDIM inversion steps at test time (paper 3; selected with --select auto)")
    t.add_argument("--backbone", default="efficientnet-lite0",
                   choices=["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"],
                   help="invad: the frozen feature extractor (Lite0, the default; Lite1 and Lite2 are larger members "
                        "of the same family, from their pip wheels)")
    t.add_argument("--inversion-grid", default=None, choices=["reference", "uniform"],
                   help="invad: DDIM grid of the inversion: the reference code's (S = 3: t = 0, 500, 999, last step "
                        "to alpha_bar 0) or uniform (0, 333, 666 -> 999); selected with --select auto")
    t.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of train/good held out for score statistics and the threshold")
    t.add_argument("--t0", type=int, default=None,
                   help="recon: partial noising level of T = 1000 (300; selected with --select auto)")
    t.add_argument("--draws", type=int, default=None,
                   help="recon: average the reconstructions of this many noise draws (1; selected with --select auto)")
    t.add_argument("--map-norm", default=None, choices=["global", "position", "row"],
                   help="recon: map standardisation (global; selected with --select auto)")
    t.add_argument("--reverse-steps", type=int, default=5, help="recon: DDIM reverse steps (NFE)")
    t.add_argument("--train-t-max", type=int, default=500,
                   help="recon: training timesteps are drawn from [0, N); keep N above the largest t0 candidate "
                        "(400) so every t0 is trained (default 500)")
    t.add_argument("--feature-norm", default=None, choices=["channel", "position", "row"],
                   help="invad: standardise features per channel (the paper), per channel and grid position, or "
                        "per channel and row (a spectrogram's frequency band); selected with --select auto "
                        "(images: channel or position; audio: channel or row)")
    t.add_argument("--category", default=None, action="append",
                   help="category name per --data, in order (default: the data folders' names)")
    t.add_argument("--storage-dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="dtype of the saved UNet weights (float16 halves the file; computed in float32)")

    e = sub.add_parser("evaluate", help="evaluate a model on test/ of a folder layout")
    e.add_argument("--model", required=True, help="a model folder or a registry name (bottle/invad)")
    e.add_argument("--data", required=True, type=Path)
    e.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--inversion-steps", type=int, default=None, help="override S (invad)")
    e.add_argument("--category", default=None, help="which category of a multi-class model (decodiff)")
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    e.add_argument("--no-ablation", action="store_true",
                   help="skip the no-diffusion ablation (by default it runs on the same inputs and the diffusion "
                        "gain is reported)")

    a = sub.add_parser("calibrate", help="add the no-diffusion ablation's normal statistics to a model trained "
                                         "before the ablation existed (from train/good, the training's own split)")
    a.add_argument("--model", required=True, type=Path, help="the model folder (rewritten in place unless --out)")
    a.add_argument("--data", required=True, type=Path, help="the folder layout the model was trained on")
    a.add_argument("--out", type=Path, default=None)
    a.add_argument("--val-fraction", type=float, default=0.1, help="the training's held-out share (default 0.1)")

    sel = sub.add_parser("select", help="run train's setting selection and calibration on trained weights (a model "
                                      "trained before the selection existed), from train/good only")
    sel.add_argument("--model", required=True, type=Path, action="append",
                     help="the model folder; invad takes several (one per feature standardisation and backbone) as "
                          "candidates")
    sel.add_argument("--data", required=True, type=Path, action="append",
                     help="the folder layout the model was trained on (decodiff: one per category, in any order)")
    sel.add_argument("--out", type=Path, default=None, help="where to write the chosen model (default: the first --model)")
    sel.add_argument("--select", default="auto", choices=["auto", "none"],
                     help="auto: choose by the selection rule; none: keep the model's settings, recalibrate only")
    sel.add_argument("--val-fraction", type=float, default=0.1, help="the training's held-out share (default 0.1)")

    s = sub.add_parser("score", help="score files: one line per file with the score and decision")
    s.add_argument("--model", required=True, help="a model folder or a registry name (bottle/invad)")
    s.add_argument("files", nargs="+", type=Path)
    s.add_argument("--json", type=Path, default=None)
    s.add_argument("--category", default=None, help="which category of a multi-class model (decodiff)")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    c = sub.add_parser("convert", help="re-save a model folder with its UNet weights in another storage dtype")
    c.add_argument("--model", required=True, type=Path, help="the model folder to read")
    c.add_argument("--out", required=True, type=Path, help="the folder to write (may be the same)")
    c.add_argument("--storage-dtype", default="float16", choices=["float32", "float16", "bfloat16"])

    k = sub.add_parser("compare", help="run a domain's three detectors on one image or audio clip")
    k.add_argument("file", type=Path)
    k.add_argument("--domain", default=None, help="model set (default: bottle for images, fan for audio)")
    k.add_argument("--out", type=Path, default=None, help="also write each method's map (.npy) and normal version here")

    n = sub.add_parser("reference", help="store a registry model's normal reference (scores and map quantiles "
                                          "on normal inputs) in the manifest")
    n.add_argument("name", help="registry name, e.g. bottle/invad")
    n.add_argument("--data", required=True, type=Path, help="a folder layout with train/good")
    n.add_argument("--all-normal", action="store_true",
                   help="use every file of train/good (a folder of extra normal inputs) instead of the held-out "
                        "split the training used")
    n.add_argument("--val-fraction", type=float, default=0.1, help="the training's held-out share (default 0.1)")
    n.add_argument("--seed", type=int, default=0, help="the training's seed (default 0)")
    n.add_argument("--threshold-quantile", type=float, default=None,
                   help="also set the entry's threshold to this quantile of the reference scores")
    n.add_argument("--manifest", type=Path, default=None)

    m = sub.add_parser("models", help="list the model registry and where each entry would load from")
    m.add_argument("--manifest", type=Path, default=None, help="default: checkpoints/registry.json")
    m.add_argument("--json", action="store_true", help="print JSON instead of a table")

    cd = sub.add_parser("card", help="print a registry model's model card (what push uploads): figures, how its "
                                     "settings were chosen with every validation candidate, deviations")
    cd.add_argument("name", help="registry name, e.g. bottle/invad")
    cd.add_argument("--out", type=Path, default=None, help="write it to this file instead")
    cd.add_argument("--manifest", type=Path, default=None)

    u = sub.add_parser("push", help="upload a registry model with a generated model card to the Hugging Face Hub")
    u.add_argument("--model", required=True, help="registry name, e.g. bottle/invad")
    u.add_argument("--repo-id", required=True, help="ORG/NAME on the Hub (created if needed)")
    u.add_argument("--private", action="store_true")
    u.add_argument("--no-record", action="store_true", help="do not pin the new commit in the manifest")
    u.add_argument("--manifest", type=Path, default=None)

    r = sub.add_parser("register", help="add or update a registry entry from a model folder")
    r.add_argument("name", help="registry name, e.g. fan/recon")
    r.add_argument("folder", type=Path, help="the model folder (under checkpoints/ to be bundled)")
    r.add_argument("--domain", required=True)
    r.add_argument("--class-id", default=None, help="the category of a multi-class model")
    r.add_argument("--figures", type=Path, default=None, help="an evaluate --json report: its default score's figures")
    r.add_argument("--training-data", default="")
    r.add_argument("--licence", default="")
    r.add_argument("--manifest", type=Path, default=None)
    return p


DEFAULTS = {  # method -> (steps, batch size, lr, image size)
    "invad": (1500, 32, 2e-4, 256),
    "baseline": (0, 1, 0.0, 256),
    "recon": (1500, 8, 2e-4, 128),
    "vae": (1500, 16, 1e-3, 128),
    "decodiff": (3000, 64, 1e-4, 128),
}


def _settings(args, method: str, steps: int | None = None):
    from decodemo.training import TrainSettings

    d_steps, d_batch, d_lr, _ = DEFAULTS[method]
    return TrainSettings(steps=steps or args.steps or d_steps, batch_size=args.batch_size or d_batch,
                         lr=args.lr or d_lr, weight_decay=1e-4 if method == "decodiff" else 0.0, seed=args.seed,
                         checkpoint_every=args.checkpoint_every, device=args.device,
                         mixed_precision=args.mixed_precision,
                         validate_every=args.validate_every, ema_decay=args.ema or 0.0,
                         grad_clip=args.grad_clip or 0.0)


def _layouts(args) -> dict:
    from decodemo.data.layout import scan_layout

    names = args.category or [d.resolve().name for d in args.data]
    if len(names) != len(args.data):
        raise DecodemoError(f"Give one --category per --data folder ({len(args.data)} folders, {len(names)} names).")
    if len(set(names)) != len(names):
        raise DecodemoError(f"Category names must differ: {names}. Name them with --category.")
    return {n: scan_layout(d) for n, d in zip(names, args.data)}


def _one_layout(layouts: dict, method: str) -> dict:
    if len(layouts) != 1:
        raise DecodemoError(f"{method} trains one model per dataset: give one --data folder.")
    return layouts


def _cmd_train(args) -> int:
    layouts = _layouts(args)
    size = args.image_size or DEFAULTS[args.method][3]
    if args.method == "invad":
        from decodemo.methods.invad.config import InvADConfig
        from decodemo.training.invad import PAPER_SETTINGS, train_invad

        (name, layout), = _one_layout(layouts, "invad").items()
        given = {"feature_norm": args.feature_norm, "inversion_grid": args.inversion_grid,
                 "inversion_steps": args.inversion_steps}
        cfg = InvADConfig(image_size=size, category=name, storage_dtype=args.storage_dtype, backbone=args.backbone,
                          **{k: PAPER_SETTINGS[k] if v is None else v for k, v in given.items()})
        _, summary = train_invad(layout, args.out, _settings(args, "invad"), config=cfg,
                                 val_fraction=args.val_fraction, resume=args.resume, select=args.select,
                                 fixed=tuple(k for k, v in given.items() if v is not None))
    elif args.method == "baseline":
        from decodemo.methods.baseline.config import BaselineConfig
        from decodemo.training.baseline import train_baseline

        (name, layout), = _one_layout(layouts, "baseline").items()
        cfg = BaselineConfig(image_size=size, category=name, seed=args.seed)
        _, summary = train_baseline(layout, args.out, _settings(args, "baseline"), config=cfg,
                                    val_fraction=args.val_fraction)
    elif args.method == "recon":
        from decodemo.methods.recon.config import ReconConfig
        from decodemo.training.recon import train_recon

        (name, layout), = _one_layout(layouts, "recon").items()
        given = {"t0": args.t0, "n_draws": args.draws, "map_norm": args.map_norm}
        cfg = ReconConfig(image_size=size, reverse_steps=args.reverse_steps, category=name,
                          train_t_max=args.train_t_max, storage_dtype=args.storage_dtype,
                          **{k: v for k, v in given.items() if v is not None})
        _, summary = train_recon(layout, args.out, _settings(args, "recon"), config=cfg,
                                 val_fraction=args.val_fraction, resume=args.resume, select=args.select,
                                 fixed=tuple(k for k, v in given.items() if v is not None))
    else:
        from decodemo.methods.decodiff.config import CPU_VAE_F4, GPU_VAE, DeCoDiffConfig, VAEConfig
        from decodemo.methods.decodiff.model import LatentVAE
        from decodemo.training.decodiff import pretrained_vae, train_decodiff, train_vae

        if args.gpu_config and args.vae_downsampling != 8:
            raise DecodemoError("--gpu-config has its own VAE (downsampling 8); leave out --vae-downsampling.")
        net = GPU_VAE if args.gpu_config else CPU_VAE_F4 if args.vae_downsampling == 4 else {}
        vae_cfg = VAEConfig(image_size=size, perceptual_weight=args.perceptual, **net)
        if args.vae_pretrained:
            if args.vae is not None:
                raise DecodemoError("Give either --vae (a trained vae folder) or --vae-pretrained, not both.")
            vae_cfg = VAEConfig(image_size=size, pretrained=args.vae_pretrained, revision=args.vae_revision,
                                subfolder=args.vae_subfolder)
            vae = pretrained_vae(layouts, args.out if args.method == "vae" else None, config=vae_cfg,
                                 device=args.device, val_fraction=args.val_fraction, seed=args.seed)
            if args.method == "vae":
                print(f"Pretrained VAE {args.vae_pretrained} calibrated; written to {args.out}")
                return 0
        if args.method == "vae":
            _, summary = train_vae(layouts, args.out, _settings(args, "vae"), config=vae_cfg,
                                   val_fraction=args.val_fraction, resume=args.resume)
        else:
            if args.vae is not None:
                vae = LatentVAE.from_pretrained(args.vae)
            elif not args.vae_pretrained:  # (a pretrained VAE was calibrated above)
                vae_dir = args.out / "vae"
                vae, _ = train_vae(layouts, vae_dir, _settings(args, "vae", args.vae_steps), config=vae_cfg,
                                   val_fraction=args.val_fraction, resume=args.resume)
            cfg = DeCoDiffConfig(storage_dtype=args.storage_dtype)
            if args.gpu_config:
                cfg.block_out_channels = [128, 256, 256, 512]
                cfg.attention_levels = [2, 3]
                cfg.layers_per_block = 2
            _, summary = train_decodiff(layouts, vae, args.out, _settings(args, "decodiff"), config=cfg,
                                        val_fraction=args.val_fraction, resume=args.resume, select=args.select,
                                        posterior=args.posterior, augment=args.augment)
    print(f"Trained {summary['steps']} steps in {summary['seconds']:.0f} s (final loss {summary['final_loss']}); "
          f"model written to {args.out}")
    return 0


def _cmd_evaluate(args) -> int:
    from decodemo.data.layout import scan_layout
    from decodemo.evaluation import evaluate, format_report
    from decodemo.training import resolve_device

    model, args.category = load_cli_model(args.model, str(resolve_device(args.device)), args.category)
    layout = scan_layout(args.data, require_train=False, require_test=True)
    if layout.modality != model.config.modality:
        raise DecodemoError(f"The model takes {model.config.modality} input but {args.data} holds {layout.modality}.")
    kwargs = {"steps": args.inversion_steps} if args.inversion_steps else {}
    if getattr(model.config, "categories", None):
        kwargs["category"] = model.config.categories[model.category_index(args.category)]
    t0 = time.perf_counter()
    report = evaluate(model, layout, batch_size=args.batch_size, ablation=not args.no_ablation, **kwargs)
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
    from decodemo.scoring import detect_clip
    from decodemo.training import resolve_device

    from decodemo.evaluation import model_threshold

    model, args.category = load_cli_model(args.model, str(resolve_device(args.device)), args.category)
    cfg = model.config
    kwargs = {}
    if getattr(cfg, "categories", None):
        kwargs["category"] = cfg.categories[model.category_index(args.category)]
    threshold = model_threshold(model, kwargs.get("category"))
    rows, failures = [], 0
    for path in args.files:
        try:
            if cfg.modality == "audio":
                if not is_audio_path(path):
                    raise DecodemoError(f"{path.name}: this model scores audio clips (.wav, .flac, .ogg, .mp3).")
                score = detect_clip(model, audio_input(path, MelConfig.from_dict(cfg.mel), cfg.image_size), **kwargs).score
            else:
                score = float(model.detect(image_tensor(path, cfg.image_size)[None], **kwargs).scores[0])
        except DecodemoError as exc:
            failures += 1
            rows.append({"file": str(path), "error": str(exc)})
            print(f"{path}\terror: {exc}", file=sys.stderr)
            continue
        decision = None if threshold is None else ("anomalous" if score > threshold else "normal")
        rows.append({"file": str(path), "score": score, "threshold": threshold, "decision": decision})
        print(f"{path}\t{score:.4f}\t{decision or 'no threshold'}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if failures else 0


def _cmd_calibrate(args) -> int:
    from decodemo.data.layout import scan_layout
    from decodemo.methods import load_model
    from decodemo.training.ablation import fit_ablation

    model = load_model(args.model)
    what = fit_ablation(model, scan_layout(args.data), val_fraction=args.val_fraction)
    out = args.out or args.model
    model.save_pretrained(out)
    print(f"{what}; written to {out}")
    return 0


def _cmd_select(args) -> int:
    from decodemo.data.layout import scan_layout
    from decodemo.methods import load_model

    models = [load_model(m) for m in args.model]
    methods = {m.config.method for m in models}
    if len(methods) != 1:
        raise DecodemoError(f"The --model folders hold different methods ({sorted(methods)}).")
    method = methods.pop()
    if len(models) > 1 and method != "invad":
        raise DecodemoError("Only invad takes several --model folders (one per feature standardisation and backbone).")
    layouts = [scan_layout(d) for d in args.data]
    out = args.out or args.model[0]
    if method in ("invad", "recon") and len(layouts) != 1:
        raise DecodemoError(f"{method} is trained on one folder layout; give one --data.")
    if method == "invad":
        from decodemo.training.invad import reselect_invad

        model = reselect_invad(models, layouts[0], select=args.select, val_fraction=args.val_fraction)
    elif method == "recon":
        from decodemo.training.recon import reselect_recon

        model = reselect_recon(models[0], layouts[0], select=args.select, val_fraction=args.val_fraction)
    elif method == "decodiff":
        from decodemo.training.decodiff import reselect_decodiff

        cats = set(models[0].config.categories)
        names = [d.name if d.name in cats else d.resolve().name for d in args.data]  # a folder is its category
        model = reselect_decodiff(models[0], dict(zip(names, layouts)), select=args.select,
                                  val_fraction=args.val_fraction)
    else:
        raise DecodemoError(f"{method} has no settings to select.")
    model.save_pretrained(out)
    chosen = model.config.selection["chosen_settings"]
    print("selected " + ", ".join(f"{k}={v}" for k, v in chosen.items()) + f"; written to {out}")
    return 0


def _cmd_convert(args) -> int:
    from decodemo.methods import load_model
    from decodemo.methods.base import WEIGHTS_NAME

    model = load_model(args.model)
    before = (args.model / WEIGHTS_NAME).stat().st_size
    model.config.storage_dtype = args.storage_dtype
    model.save_pretrained(args.out)
    after = (args.out / WEIGHTS_NAME).stat().st_size
    print(f"{args.model} -> {args.out}: UNet stored as {args.storage_dtype}; "
          f"{before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")
    return 0


def _cmd_compare(args) -> int:
    from decodemo.service import METHOD_TITLES, Service

    comp = Service().compare(args.file, domain=args.domain)
    res = comp.to_json(args.out)
    print(f"{comp.name} ({comp.modality}, {comp.domain} models), {comp.seconds:.2f} s in all")
    for m in res["methods"]:
        pct = "-" if m["percentile"] is None else f"{m['percentile']:.0f}"
        print(f"  {METHOD_TITLES[m['method']]:<26} score {m['score']:>9.4g}  threshold {m['threshold']:>9.4g}  "
              f"{m['decision']:<9}  normal percentile {pct:>3}  NFE {m['nfe']:>3}  {m['latency_ms']:.0f} ms")
    s = res["summary"]
    print(f"  verdict: {s['verdict']} ({s['votes_anomalous']} of {s['n_methods']} say anomalous)")
    if args.out:
        (args.out / "result.json").write_text(json.dumps(res, indent=1) + "\n")
        print(f"Maps and result.json written to {args.out}")
    return 0


def _cmd_reference(args) -> int:
    import numpy as np

    from decodemo.data.layout import scan_layout
    from decodemo.training.split import split_normal
    from decodemo.reference import normal_reference
    from decodemo.hub import ModelRegistry, load_manifest, save_manifest

    path = _manifest(args)
    entries = load_manifest(path)
    reg = ModelRegistry(entries, root=path.parent, device="cpu")
    entry = reg.entry(args.name)
    layout = scan_layout(args.data, require_train=True, require_test=False)
    files = [s.path for s in layout.train]
    if args.all_normal:
        chosen = files
        source = f"all {len(files)} files of {layout.root.name}/train/good (normal inputs not used in training)"
    else:
        _, val = split_normal(len(files), args.val_fraction, args.seed)
        chosen = [files[i] for i in val]
        source = (f"{len(chosen)} held-out normal training files of {layout.root.name} "
                  f"(val_fraction {args.val_fraction}, seed {args.seed})")
    ref = normal_reference(reg.get(args.name), chosen, category=entry.class_id, source=source)
    entry.reference = ref
    if args.threshold_quantile is not None:
        old = entry.threshold
        entry.threshold = float(np.quantile(ref["scores"], args.threshold_quantile))
        entry.threshold_provenance = (f"{args.threshold_quantile:g} quantile of the scores of {source}; "
                                      "no test data used")
        print(f"{args.name}: threshold {old:.4g} -> {entry.threshold:.4g}")
    save_manifest(entries, path)
    s = np.asarray(ref["scores"])
    print(f"{args.name}: normal reference of {ref['n']} inputs (scores {s.min():.4g} .. {s.max():.4g}, "
          f"median {np.median(s):.4g}); written to {path}")
    return 0


def _manifest(args):
    from decodemo.hub import MANIFEST

    return args.manifest or MANIFEST


def _cmd_models(args) -> int:
    from decodemo.hub import load_manifest, where

    path = _manifest(args)
    entries = load_manifest(path)
    rows = [{"name": n, "method": e.method, "modality": e.modality, "domain": e.domain, "class_id": e.class_id,
             "threshold": e.threshold, "loads_from": where(e, root=path.parent)} for n, e in entries.items()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'name':<18} {'method':<9} {'modality':<8} {'threshold':>10}  loads from")
    for r in rows:
        print(f"{r['name']:<18} {r['method']:<9} {r['modality']:<8} {r['threshold']:>10.4g}  {r['loads_from']}")
    return 0


def _cmd_card(args) -> int:
    from decodemo.errors import ModelError
    from decodemo.methods.base import read_config
    from decodemo.hub import load_manifest, model_card, resolve

    path = _manifest(args)
    entries = load_manifest(path)
    if args.name not in entries:
        raise ModelError(f"Unknown model {args.name!r}; the registry has: {', '.join(entries)}.")
    entry = entries[args.name]
    folder, _ = resolve(entry, root=path.parent)
    card = model_card(entry, read_config(folder))
    if args.out:
        args.out.write_text(card)
        print(f"Model card of {args.name} written to {args.out}")
    else:
        print(card)
    return 0


def _cmd_push(args) -> int:
    from decodemo.hub import push

    sha = push(args.model, args.repo_id, manifest=_manifest(args), root=_manifest(args).parent, private=args.private,
               record=not args.no_record)
    print(f"Pushed {args.model} to {args.repo_id} at commit {sha}"
          + ("" if args.no_record else "; the manifest now pins that revision."))
    return 0


def _cmd_register(args) -> int:
    from decodemo.hub import RegistryError, entry_from_folder, load_manifest, save_manifest

    path = _manifest(args)
    entries = load_manifest(path) if path.is_file() else {}
    figures = {}
    if args.figures:
        report = json.loads(args.figures.read_text())
        score = report["model"]["score"]
        figures = {"data": Path(report["data"]).name, "score": score, "n_test": report["n_test"],
                   **{k: round(float(v), 4) for k, v in report["overall"][score].items()}}
    old = entries.get(args.name)
    entry = entry_from_folder(args.name, args.folder, domain=args.domain, class_id=args.class_id, figures=figures,
                              training_data=args.training_data or (old.training_data if old else ""),
                              licence=args.licence or (old.licence if old else ""),
                              hub=old.hub if old else None)
    if entry.bundled is None and entry.hub is None:
        raise RegistryError(f"{args.folder} is not under checkpoints/ and {args.name} has no Hub source.")
    if old is not None and old.sha256 == entry.sha256:
        entry.reference = old.reference  # same weights: the normal reference still holds
    entries[args.name] = entry
    save_manifest(entries, path)
    print(f"{args.name}: {entry.method} ({entry.modality}), threshold {entry.threshold:.4g}, sha256 "
          f"{entry.sha256[:12]}...; written to {path}")
    return 0


def load_cli_model(spec, device: str, category: str | None = None):
    """A model folder path, or a registry name (``bottle/invad``) -> (model, category)."""
    from decodemo.methods import load_model

    path = Path(spec)
    if path.is_dir():
        return load_model(path, device=device), category
    from decodemo.hub import MANIFEST, load_on_device, load_manifest, resolve

    entries = load_manifest(MANIFEST) if MANIFEST.is_file() else {}
    if str(spec) not in entries:
        raise DecodemoError(f"{spec} is neither a model folder nor a registry name "
                            f"({', '.join(entries) or 'the registry is empty'}).")
    entry = entries[str(spec)]
    folder, _ = resolve(entry)
    return load_on_device(folder, device), category or entry.class_id


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"train": _cmd_train, "evaluate": _cmd_evaluate, "score": _cmd_score, "models": _cmd_models,
               "push": _cmd_push, "register": _cmd_register, "convert": _cmd_convert, "calibrate": _cmd_calibrate,
               "select": _cmd_select, "card": _cmd_card,
               "reference": _cmd_reference, "compare": _cmd_compare}[args.command]
    try:
        return handler(args)
    except DecodemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
