"""Commands on trained model folders: evaluate, calibrate, select, score, convert."""

from __future__ import annotations

import json
import time
from pathlib import Path

from decodemo.commands.common import load_cli_model
from decodemo.errors import DecodemoError


def add_parsers(sub) -> None:
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

    s = sub.add_parser("score", help="score files, folders or zip archives: one row per file (the three methods of "
                                     "a model set, or one --model), as CSV or JSON with --out")
    from decodemo.commands.score import add_score_arguments

    add_score_arguments(s)
    c = sub.add_parser("convert", help="re-save a model folder with its UNet weights in another storage dtype")
    c.add_argument("--model", required=True, type=Path, help="the model folder to read")
    c.add_argument("--out", required=True, type=Path, help="the folder to write (may be the same)")
    c.add_argument("--storage-dtype", default="float16", choices=["float32", "float16", "bfloat16"])


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
    from decodemo.commands.score import cmd_score

    return cmd_score(args)


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


HANDLERS = {"evaluate": _cmd_evaluate, "calibrate": _cmd_calibrate, "select": _cmd_select, "score": _cmd_score,
            "convert": _cmd_convert}
