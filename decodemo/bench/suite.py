"""The benchmark: every method and the baseline on every data set, in one run, with ablations.

For each ``--data NAME=DIR`` and each method (``invad``, ``decodiff``, ``recon`` and the
``baseline`` nearest-neighbour reference), the model is, in this order:

1. the folder given with ``--model NAME/METHOD=DIR[#CATEGORY]``;
2. a finished training under ``--runs DIR/NAME/METHOD`` (from an earlier ``--train`` run);
3. with ``--train``, trained now on ``DIR/train/good`` with ``--preset`` (settings selected on
   the synthetic validation set, never on ``test/``) and kept under ``--runs``;
4. otherwise the shipped model (``checkpoints/``), when there is one.

Every model is then evaluated on the same test inputs, together with its no-diffusion ablation
(invad at S = 0, recon against the mean normal input, decodiff's VAE round trip), and timed at
batch 1 on the same preloaded inputs. The figures go to ``--out``: ``bench.md`` (a Markdown
table), ``bench.html`` (self-contained, with plotly charts: AUROC per set with the baseline
as a line, diffusion gain, latency), ``bench.json`` and ``reports/NAME_METHOD.json`` (each
model's full evaluation report, which ``python -m decodemo register --figures`` reads).
Everything printed is measured.

    python -m decodemo.bench --data bottle=../shared/data/bottle --data screw=../shared/data/screw \\
        --runs runs/bench --train --preset quick --out runs/bench/report

``--train-only`` trains what is missing and stops (to prepare long trainings in the background).

To show a change beside what it replaced, ``--before NAME/METHOD=DIR[#CATEGORY]`` names the
earlier model of a cell: it is timed again in this run, on the same inputs (timings on one
machine are only comparable within one run), and ``--before-figures FILE`` (the ``bench.json``
of the earlier run) adds its accuracy figures. The table then has before columns and the
latency ratio after / before.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from decodemo.bench.methods import default_model, measure_speed, subset
from decodemo.data.layout import Layout, scan_layout
from decodemo.evaluation import evaluate
from decodemo.methods import load_model
from decodemo.methods.catalogue import DETECTORS

__all__ = ["METHODS", "PRESETS", "train_method", "run", "markdown", "html_report", "main"]

METHODS = DETECTORS
#: Training budgets: steps (and batch sizes) per method, and the settings a budget does not search
#: (``fixed``: they keep the method's default, the paper's reading). ``full`` is each method's
#: default training with the whole selection; ``quick`` trains one invad UNet (the paper's
#: per-channel feature standardisation, no second UNet per position) on the paper's inversion grid
#: (S is still selected), and keeps recon at one noise
#: draw (the four-draw candidate quadruples every validation and evaluation pass), so that a set
#: of about 200 images is fitted in minutes.
PRESETS: dict[str, dict[str, dict]] = {
    "quick": {"invad": {"steps": 250, "batch_size": 32, "fixed": ("feature_norm", "inversion_grid")},
              "recon": {"steps": 300, "batch_size": 8, "fixed": ("n_draws",)},
              "vae": {"steps": 250, "batch_size": 16}, "decodiff": {"steps": 300, "batch_size": 32},
              "baseline": {"steps": 0, "batch_size": 1}},
    "full": {"invad": {"steps": 1500, "batch_size": 32}, "recon": {"steps": 1500, "batch_size": 8},
             "vae": {"steps": 1500, "batch_size": 16}, "decodiff": {"steps": 2000, "batch_size": 32},
             "baseline": {"steps": 0, "batch_size": 1}},
}
LR = {"invad": 2e-4, "recon": 2e-4, "vae": 1e-3, "decodiff": 1e-4, "baseline": 0.0}


def _settings(method: str, preset: str, device: str, seed: int = 0):
    from decodemo.training.loop import TrainSettings

    p = PRESETS[preset][method]
    return TrainSettings(steps=p["steps"], batch_size=p["batch_size"], lr=LR[method],
                         weight_decay=1e-4 if method == "decodiff" else 0.0, warmup_steps=min(100, p["steps"] // 10),
                         seed=seed, device=device)


def train_method(method: str, name: str, layout: Layout, out: Path, *, preset: str, device: str, log=print) -> Path:
    """Train ``method`` on ``layout`` with ``preset`` (``select="auto"``) into ``out``."""
    from decodemo.training import invad, recon
    from decodemo.training.baseline import train_baseline

    def fixed(m: str) -> tuple[str, ...]:
        return tuple(PRESETS[preset][m].get("fixed", ()))

    t0 = time.perf_counter()
    if method == "invad":
        from decodemo.methods.invad.config import InvADConfig

        invad.train_invad(layout, out, _settings("invad", preset, device), config=InvADConfig(category=name),
                          fixed=fixed("invad"), log=log)
    elif method == "recon":
        from decodemo.methods.recon.config import ReconConfig

        recon.train_recon(layout, out, _settings("recon", preset, device), config=ReconConfig(category=name),
                          fixed=fixed("recon"), log=log)
    elif method == "baseline":
        from decodemo.methods.baseline.config import BaselineConfig

        train_baseline(layout, out, _settings("baseline", preset, device), config=BaselineConfig(category=name),
                       log=log)
    elif method == "decodiff":
        from decodemo.methods.decodiff.config import VAEConfig
        from decodemo.training.decodiff import train_decodiff, train_vae

        vae, _ = train_vae({name: layout}, out / "vae", _settings("vae", preset, device), config=VAEConfig(), log=log)
        train_decodiff({name: layout}, vae, out, _settings("decodiff", preset, device), fixed=fixed("decodiff"), log=log)
    else:
        raise ValueError(f"Unknown method {method!r}.")
    (out / "bench_training.json").write_text(json.dumps({"preset": preset, "seconds": time.perf_counter() - t0}))
    log(f"{name}/{method}: trained in {time.perf_counter() - t0:.0f} s -> {out}")
    return out


def _finished(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def resolve_models(data: dict[str, Path], given: dict[tuple[str, str], tuple[Path, str | None]], *,
                   runs: Path | None, train: bool, preset: str, device: str, methods=METHODS,
                   log=print) -> dict[tuple[str, str], tuple[Path, str | None, str]]:
    """(name, method) -> (folder, category, where it came from), training what is missing."""
    out = {}
    for name, folder in data.items():
        layout = None
        for method in methods:
            if (name, method) in given:
                path, cat = given[(name, method)]
                out[(name, method)] = (path, cat, "given")
                continue
            run_dir = runs / name / method if runs else None
            if run_dir is not None and _finished(run_dir):
                out[(name, method)] = (run_dir, None, f"trained ({_preset_of(run_dir)})")
                continue
            if train and run_dir is not None:
                layout = layout or scan_layout(folder)
                train_method(method, name, layout, run_dir, preset=preset, device=device, log=log)
                out[(name, method)] = (run_dir, None, f"trained ({preset})")
                continue
            found = default_model(name, method)
            if found:
                out[(name, method)] = (*found, "shipped")
    return out


def _preset_of(folder: Path) -> str:
    p = folder / "bench_training.json"
    return json.loads(p.read_text()).get("preset", "?") if p.is_file() else "?"


def _figures(metrics: dict[str, float], audio: bool) -> dict[str, float | None]:
    if audio:
        return {"auroc": metrics.get("auroc"), "pixel_auroc": None, "aupro": metrics.get("pauc")}
    return {"auroc": metrics.get("image_auroc"), "pixel_auroc": metrics.get("pixel_auroc"),
            "aupro": metrics.get("aupro")}


@torch.no_grad()
def run(data: dict[str, Path], models: dict, *, device: str = "cpu", limits: dict[str, int] | None = None,
        repeats: int = 3, reports: Path | None = None, before: dict | None = None,
        before_rows: list[dict] | None = None, log=print) -> list[dict[str, Any]]:
    """Evaluate every resolved model (with its ablation) on its set's test inputs -> one row each.
    With ``reports``, each model's full evaluation report (the ``evaluate --json`` format, which
    ``register --figures`` reads) is written there as ``NAME_METHOD.json``. ``before`` maps
    (NAME, METHOD) to (DIR, CATEGORY) of the model a cell replaces: it is timed on the same inputs
    in this run, and its accuracy figures are taken from ``before_rows`` (an earlier run's rows)."""
    earlier = {(r["data"], r["method"]): r for r in before_rows or []}
    rows = []
    for name, folder in data.items():
        layout = subset(scan_layout(folder, require_train=False, require_test=True), (limits or {}).get(name))
        audio = layout.modality == "audio"
        speed_files = [s.path for s in layout.test][: 4 if audio else 16]
        for method in METHODS:
            if (name, method) not in models:
                continue
            path, category, source = models[(name, method)]
            model = load_model(path, device=device)
            kwargs = {"category": category} if category else {}
            if getattr(model.config, "categories", None) and not category:
                kwargs["category"] = model.config.categories[0]
            t0 = time.perf_counter()
            rep = evaluate(model, layout, batch_size=16, **kwargs)
            if reports is not None:
                reports.mkdir(parents=True, exist_ok=True)
                (reports / f"{name}_{method}.json").write_text(json.dumps(rep, indent=1, default=float) + "\n")
            cfg = model.config
            selection = getattr(cfg, "selection", None) or {}
            if method != "baseline" and not selection:
                source += ", settings not selected"  # trained before validation-based selection
            elif "rerun" in selection:
                source += ", selected after training"  # `decodemo select` on the trained weights
            main = rep["overall"][rep["model"]["score"]]
            row: dict[str, Any] = {
                "data": name, "method": method, "model": str(path), "source": source, "modality": layout.modality,
                "n_test": rep["n_test"], "n_good": rep["n_good"], "score": rep["model"]["score"],
                "settings": _settings_of(cfg), "selection": bool(getattr(cfg, "selection", None)),
                "nfe": rep["timing"]["nfe_per_input"], **_figures(main, audio),
                "evaluate_seconds": round(time.perf_counter() - t0, 1),
            }
            if "ablation" in rep:
                row["ablation"] = _figures(rep["ablation"]["overall"], audio)
                row["ablation_what"] = rep["ablation"]["what"]
                row["gain"] = {k: (row[k] - v if row[k] is not None and v is not None else None)
                               for k, v in row["ablation"].items()}
            row.update(measure_speed(model, speed_files, modality=layout.modality, repeats=repeats, **kwargs))
            if (name, method) in (before or {}):
                row["before"] = _before(before[(name, method)], earlier.get((name, method)), speed_files,
                                        layout.modality, repeats, device)
            rows.append(row)
            log(f"{name}/{method}: AUROC {_f(row['auroc'])}, pixel AUROC {_f(row['pixel_auroc'])}, "
                f"AUPRO/pAUC {_f(row['aupro'])}" + (f"; no diffusion {_f(row['ablation']['auroc'])}, gain "
                                                     f"{_f(row['gain']['auroc'], True)}" if "ablation" in row else "")
                + f"; {row['latency_b1_s'] * 1000:.0f} ms at batch 1")
            del model
    return rows


def _before(spec, earlier: dict | None, files, modality: str, repeats: int, device: str) -> dict[str, Any]:
    path, category = spec
    old = load_model(path, device=device)
    kwargs = {"category": category} if category else {}
    if getattr(old.config, "categories", None) and not category:
        kwargs["category"] = old.config.categories[0]
    out: dict[str, Any] = {"model": str(path), "settings": _settings_of(old.config),
                           **measure_speed(old, files, modality=modality, repeats=repeats, **kwargs)}
    if earlier:
        out.update({k: earlier.get(k) for k in ("auroc", "pixel_auroc", "aupro")})
    del old
    return out


def _settings_of(cfg) -> str:
    keys = {"invad": ("feature_norm", "inversion_grid", "inversion_steps"), "recon": ("t0", "n_draws", "map_norm"),
            "decodiff": ("fusion", "latent_sigma"), "baseline": ("coreset_fraction",)}.get(cfg.method, ())
    names = {"inversion_steps": "S", "inversion_grid": "grid", "feature_norm": "norm", "n_draws": "draws", "latent_sigma": "latent blur",
             "coreset_fraction": "coreset"}
    return ", ".join(f"{names.get(k, k)} {getattr(cfg, k)}" for k in keys if hasattr(cfg, k))


def _f(v, signed: bool = False) -> str:
    if v is None or v != v:
        return "-"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    """One table: per set and method, figures, the no-diffusion ablation and the gain."""
    has_before = any("before" in r for r in rows)
    head = ("| data | method | settings | image / clip AUROC | pixel AUROC | AUPRO / pAUC | no diffusion: AUROC "
            "/ pixel / AUPRO | diffusion gain (AUROC / pixel / AUPRO) | NFE | latency, batch 1 | throughput, batch 16 |")
    if has_before:
        head += " before: AUROC / pixel / AUPRO | before: latency, throughput (this run) | latency after / before |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        a, g = r.get("ablation"), r.get("gain")
        abl = " / ".join(_f(a[k]) for k in ("auroc", "pixel_auroc", "aupro")) if a else "-"
        gain = " / ".join(_f(g[k], True) for k in ("auroc", "pixel_auroc", "aupro")) if g else "-"
        unit = "clip" if r["modality"] == "audio" else "image"
        label = f"**{r['method']}** (reference)" if r["method"] == "baseline" else r["method"]
        lines.append(f"| {r['data']} | {label} | {r['settings']} ({r['source']}) | {_f(r['auroc'])} | "
                     f"{_f(r['pixel_auroc'])} | {_f(r['aupro'])} | {abl} | {gain} | {r['nfe']} | "
                     f"{r['latency_b1_s'] * 1000:.0f} ms per {unit} | {r['throughput_b16']:.1f} {unit}s/s |")
        if has_before:
            b = r.get("before")
            if b:
                acc = " / ".join(_f(b.get(k)) for k in ("auroc", "pixel_auroc", "aupro"))
                lines[-1] += (f" {acc} | {b['latency_b1_s'] * 1000:.0f} ms, {b['throughput_b16']:.1f} {unit}s/s | "
                              f"{r['latency_b1_s'] / b['latency_b1_s']:.2f}x |")
            else:
                lines[-1] += " - | - | - |"
    return "\n".join(lines)


def html_report(rows: list[dict[str, Any]], *, title: str, where: str) -> str:
    """A self-contained HTML page (plotly's JavaScript inlined) with the table and three charts."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    sets = list(dict.fromkeys(r["data"] for r in rows))
    diffusion = [m for m in METHODS if m != "baseline"]
    fig = make_subplots(rows=3, cols=1, vertical_spacing=0.09, subplot_titles=(
        "Image / clip AUROC per set (line: the nearest-neighbour baseline)",
        "Diffusion gain: AUROC of the method minus its no-diffusion ablation",
        "Latency at batch 1 (ms per image or clip)"))
    colours = {"invad": "#4C72B0", "decodiff": "#DD8452", "recon": "#55A868", "baseline": "#8C8C8C"}

    def cell(data, method, key, sub=None):
        for r in rows:
            if r["data"] == data and r["method"] == method:
                v = r.get(sub, {}).get(key) if sub else r.get(key)
                return v
        return None

    for m in diffusion:
        fig.add_bar(x=sets, y=[cell(s, m, "auroc") for s in sets], name=m, marker_color=colours[m],
                    legendgroup=m, row=1, col=1)
        fig.add_bar(x=sets, y=[cell(s, m, "auroc", "gain") for s in sets], name=m, marker_color=colours[m],
                    legendgroup=m, showlegend=False, row=2, col=1)
    for m in METHODS:
        fig.add_bar(x=sets, y=[(cell(s, m, "latency_b1_s") or 0) * 1000 for s in sets], name=m,
                    marker_color=colours[m], legendgroup=m, showlegend=m == "baseline", row=3, col=1)
    fig.add_trace(go.Scatter(x=sets, y=[cell(s, "baseline", "auroc") for s in sets], mode="lines+markers",
                             name="baseline AUROC", line={"color": "black", "dash": "dash"}), row=1, col=1)
    fig.update_layout(barmode="group", height=1100, template="plotly_white", title=title)
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    table = markdown(rows).splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table if not line.startswith("|---")]
    html_table = "<table><tr>" + "".join(f"<th>{c}</th>" for c in cells[0]) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{c.replace('**', '')}</td>" for c in row) + "</tr>" for row in cells[1:]) + "</table>"
    style = ("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:4px 8px}</style>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>{style}</head><body>"
            f"<h1>{title}</h1><p>{where}. Settings were selected on synthetic anomalies made from held-out normal "
            f"training files; thresholds and statistics come from normal data only. The baseline is a "
            f"PatchCore-style nearest-neighbour reference, not a diffusion method.</p>{html_table}"
            + fig.to_html(full_html=False, include_plotlyjs=True) + "</body></html>")


def _cells(items, what) -> dict[tuple[str, str], tuple[Path, str | None]]:
    out = {}
    for key, value in _parse_pairs(items, what).items():
        name, _, method = key.partition("/")
        folder, _, category = value.partition("#")
        out[(name, method)] = (Path(folder), category or None)
    return out


def _parse_pairs(items, what):
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not value:
            raise SystemExit(f"{what} takes KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m decodemo.bench", description=__doc__.split("\n")[0])
    p.add_argument("--data", action="append", required=True, metavar="NAME=DIR", help="a data set (repeatable)")
    p.add_argument("--model", action="append", default=[], metavar="NAME/METHOD=DIR[#CATEGORY]",
                   help="use this model folder for one cell (repeatable)")
    p.add_argument("--runs", type=Path, default=None, help="where trained models are kept (NAME/METHOD)")
    p.add_argument("--train", action="store_true", help="train the models that --runs does not hold yet")
    p.add_argument("--train-only", action="store_true", help="train what is missing, then stop")
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS), help="training budget (default quick)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods (default: all four)")
    p.add_argument("--limit", action="append", default=[], metavar="NAME=N",
                   help="evaluate a seeded random N of NAME's test files (the same for every method)")
    p.add_argument("--before", action="append", default=[], metavar="NAME/METHOD=DIR[#CATEGORY]",
                   help="the model a cell replaces: timed again in this run and shown beside it (repeatable)")
    p.add_argument("--before-figures", type=Path, default=None, metavar="BENCH_JSON",
                   help="an earlier run's bench.json: the accuracy figures of the --before models")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per latency figure (median)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", type=Path, default=None, help="folder for bench.md, bench.html and bench.json")
    args = p.parse_args(argv)
    from decodemo.training import resolve_device

    device = str(resolve_device(args.device))
    data = {k: Path(v) for k, v in _parse_pairs(args.data, "--data").items()}
    methods = tuple(m for m in args.methods.split(",") if m)
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"Unknown method(s) {sorted(unknown)}; known: {', '.join(METHODS)}.")
    given, before = _cells(args.model, "--model"), _cells(args.before, "--before")
    before_rows = json.loads(args.before_figures.read_text())["rows"] if args.before_figures else None
    if (args.train or args.train_only) and args.runs is None:
        raise SystemExit("--train needs --runs DIR (where the trained models are kept).")
    models = resolve_models(data, given, runs=args.runs, train=args.train or args.train_only, preset=args.preset,
                            device=device, methods=methods)
    if args.train_only:
        print(f"{len(models)} models ready.")
        return 0
    limits = {k: int(v) for k, v in _parse_pairs(args.limit, "--limit").items()}
    t0 = time.perf_counter()
    rows = run(data, models, device=device, limits=limits, repeats=args.repeats,
               reports=args.out / "reports" if args.out else None, before=before, before_rows=before_rows)
    where = (torch.cuda.get_device_name() if device.startswith("cuda") else
             f"CPU, {torch.get_num_threads()} threads") + f"; evaluated in {time.perf_counter() - t0:.0f} s"
    table = markdown(rows)
    print(f"\n# {len(rows)} models, one run ({where})\n")
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench.md").write_text(f"# Benchmark ({where})\n\n{table}\n")
        (args.out / "bench.json").write_text(json.dumps({"rows": rows, "where": where}, indent=1, default=float))
        (args.out / "bench.html").write_text(html_report(rows, title="decodemo benchmark", where=where))
        print(f"\nbench.md, bench.html, bench.json and reports/ (one evaluation report per model) written to "
              f"{args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
