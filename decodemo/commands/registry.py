"""Commands on the model registry (the manifest): compare, reference, models, card, push, register."""

from __future__ import annotations

import json
from pathlib import Path


def add_parsers(sub) -> None:
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
    n.add_argument("--fpr-target", type=float, default=None,
                   help="also set the entry's threshold to the split-conformal threshold of the reference scores "
                        "for this false-positive target (e.g. 0.01)")
    n.add_argument("--manifest", type=Path, default=None)

    c = sub.add_parser("calibrate-thresholds", help="set registry thresholds to the split-conformal threshold of their normal "
                                         "reference scores for a false-positive target (no model is run)")
    c.add_argument("names", nargs="*", help="registry names (default: every entry with a normal reference)")
    c.add_argument("--target", type=float, default=None, help="false-positive target (default 0.01, or "
                                                              "DECODEMO_FPR_TARGET)")
    c.add_argument("--manifest", type=Path, default=None)

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


def _manifest(args):
    from decodemo.hub import MANIFEST

    return args.manifest or MANIFEST


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
    from decodemo.evaluation.reference import normal_reference
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
    if args.fpr_target is not None:
        old = entry.threshold
        calibrate_entry(entry, args.fpr_target)
        print(f"{args.name}: threshold {old:.4g} -> {entry.threshold:.4g} ({entry.threshold_provenance})")
    save_manifest(entries, path)
    s = np.asarray(ref["scores"])
    print(f"{args.name}: normal reference of {ref['n']} inputs (scores {s.min():.4g} .. {s.max():.4g}, "
          f"median {np.median(s):.4g}); written to {path}")
    return 0


def calibrate_entry(entry, target: float) -> None:
    """Set ``entry``'s threshold to the split-conformal threshold of its normal reference scores
    for the false-positive ``target``, with its provenance and calibration."""
    from decodemo.errors import DecodemoError
    from decodemo.metrics.calibration import conformal_threshold, provenance

    ref = entry.reference or {}
    if not ref.get("scores"):
        raise DecodemoError(f"{entry.name} has no normal reference; run `python -m decodemo reference` first.")
    entry.threshold, info = conformal_threshold(ref["scores"], target)
    entry.calibration = info
    entry.threshold_provenance = provenance(info, ref.get("source") or "normal inputs")


def _cmd_calibrate_thresholds(args) -> int:
    from decodemo import settings
    from decodemo.hub import load_manifest, save_manifest

    path = _manifest(args)
    entries = load_manifest(path)
    target = args.target if args.target is not None else settings.fpr_target()
    names = args.names or [n for n, e in entries.items() if e.reference.get("scores")]
    unknown = [n for n in names if n not in entries]
    if unknown:
        raise SystemExit(f"Unknown registry name(s): {', '.join(unknown)}")
    for n in names:
        e = entries[n]
        old = e.threshold
        calibrate_entry(e, target)
        c = e.calibration
        print(f"{n:<22} {old:>10.4g} -> {e.threshold:<10.4g} n {c['n']:>3}  guaranteed FPR {c['fpr_bound']:.1%} "
              f"({c['level']:.0%}: {c['fpr_interval'][0]:.1%}-{c['fpr_interval'][1]:.1%})"
              + ("" if c["achievable"] else f"  target {target:.1%} not reachable with {c['n']} scores"))
    save_manifest(entries, path)
    print(f"{len(names)} thresholds calibrated for a false-positive target of {target:.1%}; written to {path}")
    return 0


def _cmd_models(args) -> int:
    from decodemo.hub import load_manifest, where

    path = _manifest(args)
    broken: dict[str, str] = {}
    entries = load_manifest(path, broken=broken)  # a broken entry is listed with why, the others load
    rows = [{"name": n, "method": e.method, "modality": e.modality, "domain": e.domain, "class_id": e.class_id,
             "threshold": e.threshold, "loads_from": where(e, root=path.parent)} for n, e in entries.items()]
    if args.json:
        print(json.dumps(rows + [{"name": n, "broken": why} for n, why in broken.items()], indent=1))
        return 0
    print(f"{'name':<18} {'method':<9} {'modality':<8} {'threshold':>10}  loads from")
    for r in rows:
        print(f"{r['name']:<18} {r['method']:<9} {r['modality']:<8} {r['threshold']:>10.4g}  {r['loads_from']}")
    for n, why in broken.items():
        print(f"{n:<18} broken: {why}")
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
    if old is not None and (old.files == entry.files if old.files else old.sha256 == entry.sha256):
        entry.reference = old.reference  # same files (or, pinned before files, weights): the reference holds
    entries[args.name] = entry
    save_manifest(entries, path)
    print(f"{args.name}: {entry.method} ({entry.modality}), threshold {entry.threshold:.4g}, {len(entry.files)} "
          f"files pinned (model.safetensors {entry.sha256[:12]}...); written to {path}")
    return 0


HANDLERS = {"compare": _cmd_compare, "reference": _cmd_reference, "calibrate-thresholds": _cmd_calibrate_thresholds,
            "models": _cmd_models, "card": _cmd_card,
            "push": _cmd_push, "register": _cmd_register}
