"""``train``: fit a detector on train/good of one or more folder layouts."""

from __future__ import annotations

import argparse
from pathlib import Path

from decodemo.errors import DecodemoError
from decodemo.methods.catalogue import MODEL_KINDS


def _data_options(t: argparse.ArgumentParser) -> None:
    """The method, its data folders and the model folder to write."""
    t.add_argument("--method", required=True, choices=list(MODEL_KINDS),
                   help="method id (vae: the latent space that decodiff uses; baseline: the PatchCore-style "
                        "nearest-neighbour reference, not a diffusion method)")
    t.add_argument("--data", required=True, type=Path, action="append",
                   help="dataset folder (train/good, test/...); vae and decodiff take several, one per category")
    t.add_argument("--out", required=True, type=Path, help="model folder to write")


def _vae_source_options(t: argparse.ArgumentParser) -> None:
    """vae/decodiff: a trained VAE folder or a pretrained one from the Hub."""
    t.add_argument("--vae", type=Path, default=None, help="decodiff: a trained vae folder (else one is trained first)")
    t.add_argument("--vae-pretrained", default=None, metavar="REPO_ID",
                   help="vae/decodiff: use a pretrained diffusers AutoencoderKL from the Hub (or a local diffusers "
                        "folder) instead of training one, e.g. stabilityai/sd-vae-ft-mse")
    t.add_argument("--vae-revision", default=None, help="with --vae-pretrained: the pinned revision (a commit)")
    t.add_argument("--vae-subfolder", default=None, help="with --vae-pretrained: subfolder of the repo, e.g. vae")


def _loop_options(t: argparse.ArgumentParser) -> None:
    """The optimisation loop: steps, batch, learning rate, seed, checkpoints, EMA, validation."""
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


def _run_options(t: argparse.ArgumentParser) -> None:
    """Setting selection, resuming, device and mixed precision."""
    t.add_argument("--select", default="auto", choices=["auto", "none"],
                   help="auto (default): choose the settings that matter on the synthetic validation set (invad: "
                        "feature standardisation and S; recon: t0, averaged draws, map normalisation; decodiff: "
                        "fusion, latent blur) and record every candidate in the model's config; none: keep the "
                        "paper's settings. Settings given on the command line are kept either way")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "fp16", "bf16"])


def _network_options(t: argparse.ArgumentParser) -> None:
    """Input size and the networks' and training inputs' variants."""
    t.add_argument("--image-size", type=int, default=None, help="input size in pixels (invad 256, vae/decodiff 128)")
    t.add_argument("--shape-crops", type=int, default=None, metavar="N",
                   help="images: N random non-square crops of each training image, fitted like any upload "
                        "(default 1; 0: square inputs only, other shapes then squeezed)")
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


def _scoring_options(t: argparse.ArgumentParser) -> None:
    """invad's and recon's test-time settings, and the held-out share of train/good."""
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


def _output_options(t: argparse.ArgumentParser) -> None:
    """Category names and the dtype of the saved weights."""
    t.add_argument("--category", default=None, action="append",
                   help="category name per --data, in order (default: the data folders' names)")
    t.add_argument("--storage-dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="dtype of the saved UNet weights (float16 halves the file; computed in float32)")


TRAIN_OPTIONS = (_data_options, _vae_source_options, _loop_options, _run_options, _network_options,
                 _scoring_options, _output_options)  # in this order: it is the order of train --help


def add_parsers(sub) -> None:
    t = sub.add_parser("train", help="train a detector on train/good of one or more folder layouts")
    for add_options in TRAIN_OPTIONS:
        add_options(t)


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


def _crops(args) -> dict:
    """``--shape-crops`` as config fields (none given: each config's default)."""
    if args.shape_crops is None:
        return {}
    if args.shape_crops < 0:
        raise DecodemoError(f"--shape-crops must be 0 or more; got {args.shape_crops}.")
    return {"shape_crops": args.shape_crops}


def _train_invad(args, layouts: dict, size: int):
    """invad: one layout; the settings not given on the command line are selected."""
    from decodemo.methods.invad.config import InvADConfig
    from decodemo.training.invad import PAPER_SETTINGS, train_invad

    (name, layout), = _one_layout(layouts, "invad").items()
    given = {"feature_norm": args.feature_norm, "inversion_grid": args.inversion_grid,
             "inversion_steps": args.inversion_steps}
    cfg = InvADConfig(image_size=size, category=name, storage_dtype=args.storage_dtype, backbone=args.backbone,
                      **_crops(args),
                      **{k: PAPER_SETTINGS[k] if v is None else v for k, v in given.items()})
    _, summary = train_invad(layout, args.out, _settings(args, "invad"), config=cfg,
                             val_fraction=args.val_fraction, resume=args.resume, select=args.select,
                             fixed=tuple(k for k, v in given.items() if v is not None))
    return summary


def _train_baseline(args, layouts: dict, size: int):
    """baseline: one layout, no training steps."""
    from decodemo.methods.baseline.config import BaselineConfig
    from decodemo.training.baseline import train_baseline

    (name, layout), = _one_layout(layouts, "baseline").items()
    cfg = BaselineConfig(image_size=size, category=name, seed=args.seed, **_crops(args))
    _, summary = train_baseline(layout, args.out, _settings(args, "baseline"), config=cfg,
                                val_fraction=args.val_fraction)
    return summary


def _train_recon(args, layouts: dict, size: int):
    """recon: one layout; the settings not given on the command line are selected."""
    from decodemo.methods.recon.config import ReconConfig
    from decodemo.training.recon import train_recon

    (name, layout), = _one_layout(layouts, "recon").items()
    given = {"t0": args.t0, "n_draws": args.draws, "map_norm": args.map_norm}
    cfg = ReconConfig(image_size=size, reverse_steps=args.reverse_steps, category=name,
                      train_t_max=args.train_t_max, storage_dtype=args.storage_dtype, **_crops(args),
                      **{k: v for k, v in given.items() if v is not None})
    _, summary = train_recon(layout, args.out, _settings(args, "recon"), config=cfg,
                             val_fraction=args.val_fraction, resume=args.resume, select=args.select,
                             fixed=tuple(k for k, v in given.items() if v is not None))
    return summary


def _train_latent(args, layouts: dict, size: int):
    """vae, or decodiff on a trained, a pretrained or a first freshly trained vae; the summary, or None where
    a pretrained vae was only calibrated (and the line saying so printed)."""
    from decodemo.methods.decodiff.config import CPU_VAE_F4, GPU_VAE, DeCoDiffConfig, VAEConfig
    from decodemo.methods.decodiff.model import LatentVAE
    from decodemo.training.decodiff import pretrained_vae, train_decodiff, train_vae

    if args.gpu_config and args.vae_downsampling != 8:
        raise DecodemoError("--gpu-config has its own VAE (downsampling 8); leave out --vae-downsampling.")
    net = GPU_VAE if args.gpu_config else CPU_VAE_F4 if args.vae_downsampling == 4 else {}
    vae_cfg = VAEConfig(image_size=size, perceptual_weight=args.perceptual, **net, **_crops(args))
    if args.vae_pretrained:
        if args.vae is not None:
            raise DecodemoError("Give either --vae (a trained vae folder) or --vae-pretrained, not both.")
        vae_cfg = VAEConfig(image_size=size, pretrained=args.vae_pretrained, revision=args.vae_revision,
                            subfolder=args.vae_subfolder, **_crops(args))
        vae = pretrained_vae(layouts, args.out if args.method == "vae" else None, config=vae_cfg,
                             device=args.device, val_fraction=args.val_fraction, seed=args.seed)
        if args.method == "vae":
            print(f"Pretrained VAE {args.vae_pretrained} calibrated; written to {args.out}")
            return None
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
    return summary


TRAINERS = {"invad": _train_invad, "baseline": _train_baseline, "recon": _train_recon}  # else _train_latent


def _cmd_train(args) -> int:
    layouts = _layouts(args)
    size = args.image_size or DEFAULTS[args.method][3]
    summary = TRAINERS.get(args.method, _train_latent)(args, layouts, size)
    if summary is None:  # a pretrained vae, calibrated only
        return 0
    print(f"Trained {summary['steps']} steps in {summary['seconds']:.0f} s (final loss {summary['final_loss']}); "
          f"model written to {args.out}")
    return 0


HANDLERS = {"train": _cmd_train}
