"""Commands for whole model sets (domains): ``fit`` (bring your own data) and ``domain-reference``."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from decodemo.errors import DecodemoError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
#: Relative cost of each stage of a fit (training, selection, threshold, evaluation), for the
#: ETA: the minutes the measured fits of ../shared/data/screw took (200 images, 2 threads; the
#: fan layout's quick fit split alike, its recon a little heavier).
_STAGE_MINUTES = {
    "quick": {"invad": 4.1, "recon": 8.1, "decodiff": 5.5, "baseline": 0.5, "in-domain reference": 0.5},
    "full": {"invad": 17.1, "recon": 15.4, "decodiff": 14.4, "baseline": 0.2, "in-domain reference": 0.3},
}


def add_parsers(sub) -> None:
    f = sub.add_parser("fit", help="fit a whole model set on your own folder layout: the three methods and the "
                                   "baseline, settings chosen on validation, thresholds, normal and in-domain "
                                   "references, evaluation on test/ when present, registered in the user registry")
    f.add_argument("--data", required=True, type=Path, help="a folder layout with train/good (images or audio)")
    f.add_argument("--name", required=True, help="the new domain's name (lower case letters, digits, _ and -)")
    f.add_argument("--preset", default="quick", choices=["quick", "full"],
                   help="training budget: quick (minutes) or full (each method's full training)")
    f.add_argument("--methods", default="invad,recon,decodiff,baseline", help="comma-separated (default: all four)")
    f.add_argument("--registry", type=Path, default=None,
                   help="the user registry to write (default: <data dir>/models/registry.json)")
    f.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    f.add_argument("--force", action="store_true", help="train again what an earlier fit of this name left")

    d = sub.add_parser("domain-reference", help="store a model set's in-domain reference (pooled frozen features "
                                                "of its normal training inputs and an out-of-domain threshold)")
    d.add_argument("domain", help="the domain, e.g. bottle")
    d.add_argument("--data", required=True, type=Path, help="a folder layout with train/good")
    d.add_argument("--manifest", type=Path, default=None,
                   help="the registry whose folder gets <domain>/domain (default: checkpoints/registry.json)")


def _mel_of(entries: dict, domain: str) -> dict | None:
    return next((e.input.get("mel") for e in entries.values() if e.domain == domain and e.modality == "audio"), None)


def write_domain_reference(domain: str, layout, root: Path, *, mel: dict | None, log=print) -> Path:
    """Fit ``domain``'s in-domain reference on every file of ``layout``'s train/good -> ``root/domain/domain``."""
    from decodemo.ood import REFERENCE_FOLDER, describe_paths, fit_reference

    t0 = time.perf_counter()
    files = [s.path for s in layout.train]
    normals, anomalies, sources = describe_paths(files, layout.modality, mel, desc=f"{domain}: in-domain features")
    ref = fit_reference(normals, anomalies, sources, domain=domain, modality=layout.modality, mel=mel,
                        training_data=f"all {len(files)} files of {layout.root.name}/train/good and "
                                      f"{len(sources)} synthetic anomalies made from them")
    out = ref.save(root / domain / REFERENCE_FOLDER)
    picked = ref.extra["selection"][ref.pooling]
    log(f"{domain}: in-domain reference of {len(files)} normal inputs, {ref.pooling} pooling, out-of-domain "
        f"threshold {ref.threshold:.3f} ({ref.threshold / max(ref.normal_distances):.2f} x the largest out-of-fold "
        f"normal distance; {picked['synthetic_anomalies_in_domain']:.0%} of {picked['n_synthetic_anomalies']} "
        f"synthetic anomalies in domain) in {time.perf_counter() - t0:.0f} s -> {out}")
    return out


def _cmd_domain_reference(args) -> int:
    from decodemo.data.layout import scan_layout
    from decodemo.hub import MANIFEST, load_manifest, pin_domain

    path = args.manifest or MANIFEST
    entries = load_manifest(path)
    if not any(e.domain == args.domain for e in entries.values()):
        raise DecodemoError(f"{path} has no models of domain {args.domain!r}.")
    layout = scan_layout(args.data, require_train=True)
    write_domain_reference(args.domain, layout, path.parent, mel=_mel_of(entries, args.domain))
    pin_domain(args.domain, path)  # the manifest pins the new reference's files (decodemo.ood verifies them)
    return 0


class _Eta:
    """Progress of the whole fit: stages done, time spent, and the time left from the cost so far."""

    def __init__(self, costs: dict[str, float], log=print) -> None:
        self.costs, self.done, self.log, self.t0 = costs, 0.0, log, time.perf_counter()

    def finished(self, stage: str) -> None:
        self.done += self.costs.get(stage, 0.0)
        spent = time.perf_counter() - self.t0
        total = sum(self.costs.values())
        left = spent / self.done * (total - self.done) if self.done > 0 else float("nan")
        eta = "" if self.done >= total or left != left else f", about {left / 60:.1f} min left"
        self.log(f"[fit] {stage} done: {self.done / total:.0%} of the work in {spent / 60:.1f} min{eta}")


def fit_domain(data: Path, name: str, *, preset: str = "quick", methods: list[str] | None = None,
               registry: Path | None = None, device: str = "auto", force: bool = False, log=print) -> dict:
    """Everything ``fit`` does (see its help); returns ``{"seconds", "models", "figures", "registry"}``."""
    from decodemo import settings
    from decodemo.bench.suite import train_method
    from decodemo.commands.registry import calibrate_entry
    from decodemo.data.layout import refuse_inside_repo, scan_layout
    from decodemo.evaluation import evaluate
    from decodemo.evaluation.reference import normal_reference
    from decodemo.hub import MANIFEST, entry_from_folder, load_manifest, pin_domain, save_manifest
    from decodemo.methods import load_model
    from decodemo.methods.catalogue import DETECTORS
    from decodemo.training.split import split_normal

    t_start = time.perf_counter()
    if not _NAME.match(name):
        raise DecodemoError(f"A domain name is 1 to 40 lower-case letters, digits, '_' or '-', starting with a letter "
                            f"or digit; got {name!r}.")
    methods = methods or list(DETECTORS)
    unknown = sorted(set(methods) - set(DETECTORS))
    if unknown:
        raise DecodemoError(f"Unknown method(s) {', '.join(unknown)}; choose from {', '.join(DETECTORS)}.")
    bundled = {e.domain for e in load_manifest(MANIFEST).values()}
    if name in bundled:
        raise DecodemoError(f"{name!r} is a bundled domain; give your model set another name.")
    path = Path(registry) if registry is not None else settings.user_registry()
    root = refuse_inside_repo(path.parent)
    layout = scan_layout(data, require_train=True)
    has_test = bool(layout.test)
    log(f"[fit] {name}: {len(layout.train)} normal training {layout.modality} files from {layout.root}"
        + (f", {len(layout.test)} test files" if has_test else ", no test/ (no evaluation)")
        + f"; preset {preset}; methods {', '.join(methods)}; registry {path}")
    costs = {m: _STAGE_MINUTES[preset][m] for m in [*methods, "in-domain reference"]}
    eta = _Eta(costs, log)
    entries = load_manifest(path) if path.is_file() else {}
    files = [s.path for s in layout.train]
    _, val = split_normal(len(files), 0.1, 0)
    held_out = [files[i] for i in val]
    figures: dict[str, dict] = {}
    for method in methods:
        out = root / name / method
        finished = (out / "config.json").is_file() and (out / "model.safetensors").is_file()
        if force or not finished:
            train_method(method, name, layout, out, preset=preset, device=device, log=log)
        model = load_model(out, device="cpu")
        report = evaluate(model, layout) if has_test else None
        fig = {}
        if report is not None:
            score = report["model"]["score"]
            fig = {"data": layout.root.name, "score": score, "n_test": report["n_test"],
                   **{k: round(float(v), 4) for k, v in report["overall"][score].items()}}
            (out / "evaluation.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
        entry = entry_from_folder(f"{name}/{method}", out, domain=name, figures=fig, root=root,
                                  training_data=f"{layout.root} train/good ({len(files)} files), fit --preset {preset}")
        entry.reference = normal_reference(model, held_out, source=f"{len(held_out)} held-out normal training files "
                                                                  f"of {layout.root.name} (val_fraction 0.1, seed 0)")
        calibrate_entry(entry, settings.fpr_target())  # the threshold for the false-positive target
        entries[entry.name] = entry
        save_manifest(entries, path)
        figures[method] = fig
        eta.finished(method)
    write_domain_reference(name, layout, root, mel=_mel_of(entries, name), log=log)
    pin_domain(name, path)  # the user registry pins the reference's files (decodemo.ood verifies them)
    eta.finished("in-domain reference")
    seconds = time.perf_counter() - t_start
    log(f"[fit] {name}: done in {seconds / 60:.1f} min; {len(methods)} models in {path}")
    for method, fig in figures.items():
        if fig:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in fig.items() if isinstance(v, float) and k != "n_test")
            log(f"  {name}/{method}: {shown} ({fig['n_test']} test inputs)")
    return {"seconds": seconds, "models": [f"{name}/{m}" for m in methods], "figures": figures, "registry": str(path)}


def _cmd_fit(args) -> int:
    res = fit_domain(args.data, args.name, preset=args.preset, methods=[m.strip() for m in args.methods.split(",")
                                                                         if m.strip()],
                     registry=args.registry, device=args.device, force=args.force)
    Path(res["registry"]).with_name(f"{args.name}_fit.json").write_text(json.dumps(res, indent=1) + "\n")
    return 0


HANDLERS = {"fit": _cmd_fit, "domain-reference": _cmd_domain_reference}
