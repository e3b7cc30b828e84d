"""Benchmark the three methods side by side: accuracy, network evaluations and speed.

For every dataset given with ``--data NAME=DIR`` and every method with a model for it, this
evaluates the model on the dataset's test split, then times it on the same preloaded test
files as the other methods (one run, one machine):

- accuracy: image AUROC (and pixel AUROC / AUPRO where the data has masks), or clip AUROC and
  pAUC (FPR <= 0.1) for audio, of the method's default score;
- NFE: diffusion-network evaluations per image, or per spectrogram window for audio;
- latency at batch 1: median seconds for one image (one window at a time for a clip, so a
  clip costs windows x NFE calls), over ``--repeats`` timed passes after a warm-up;
- throughput at batch 16: median images (or clips) per second with 16 inputs per call.

Models default to the shipped folders (``checkpoints/<name>/<method>``, else a multi-class
DeCo-Diff folder that lists the set among its categories: ``checkpoints/bottle_elpv/decodiff``
for elpv); ``--model NAME/METHOD=DIR``
overrides or adds one. It prints a Markdown table and writes ``--json``.

    python -m decodemo.bench.methods --data bottle=../shared/data/bottle --data fan=DIR/fan --json bench.json

Run it alone: timings on a shared 2-core machine vary by 10-20 %.
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
from decodemo.inference import detect_prepared, prepare_path
from decodemo.methods import load_model
from decodemo.methods.catalogue import DIFFUSION_METHODS

METHODS = DIFFUSION_METHODS
ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = ROOT / "checkpoints"


def default_model(name: str, method: str) -> tuple[Path, str | None] | None:
    """The shipped folder for ``name``/``method`` and the category to ask for, if any."""
    own = CHECKPOINTS / name / method
    if (own / "config.json").is_file():
        return own, None
    if method == "decodiff":
        for folder in sorted(CHECKPOINTS.glob("*/decodiff")):
            cfg = json.loads((folder / "config.json").read_text())
            if name in cfg.get("categories", []):
                return folder, name
    return None


def _median_time(fn, repeats: int) -> float:
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_speed(model, files: list[Path], *, modality: str, repeats: int, **kwargs) -> dict[str, float]:
    """Latency at batch 1 (s per image or clip) and throughput at batch 16 (images or clips per s)."""
    inputs = [prepare_path(f, model.config) for f in files[:16]]
    latency = _median_time(lambda: detect_prepared(model, inputs[0], batch_size=1, **kwargs), repeats)
    if modality == "audio":  # throughput: 16 spectrogram windows in one batch, counted in clips
        per_clip = len(inputs[0].windows)
        windows = torch.cat([c.windows for c in inputs])[:16]
        t = _median_time(lambda: model.detect(windows, **kwargs), repeats)
        return {"latency_b1_s": latency, "throughput_b16": len(windows) / t / per_clip, "windows_per_clip": per_clip}
    per_image = sum(len(i.tiles) for i in inputs) / len(inputs)  # inputs per image (tiles of a long one)
    x = torch.cat([i.tiles for i in inputs])[:16]
    t = _median_time(lambda: model.detect(x, **kwargs), repeats)
    return {"latency_b1_s": latency, "throughput_b16": len(x) / t / per_image}


def subset(layout, limit: int | None, seed: int = 0):
    """The layout with a seeded random ``limit`` of its test samples (all when ``limit`` is None
    or larger), the same for every method."""
    import dataclasses
    import random

    if not limit or len(layout.test) <= limit:
        return layout
    picked = sorted(random.Random(seed).sample(range(len(layout.test)), limit))
    test = [layout.test[i] for i in picked]
    return dataclasses.replace(layout, test=test, kinds=sorted({s.kind for s in test if s.kind != "good"}))


def run(data: dict[str, Path], models: dict[tuple[str, str], tuple[Path, str | None]], *, repeats: int = 5,
        device: str = "cpu", limits: dict[str, int] | None = None, log=print) -> list[dict]:
    with torch.no_grad():  # not a global switch: callers (and tests) keep autograd as it was
        return _run(data, models, repeats=repeats, device=device, limits=limits, log=log)


def _run(data, models, *, repeats, device, limits, log) -> list[dict]:
    rows = []
    for name, folder in data.items():
        layout = subset(scan_layout(folder, require_train=False, require_test=True), (limits or {}).get(name))
        files = [s.path for s in layout.test]
        speed_files = files[:16] if layout.modality == "image" else files[:4]
        for method in METHODS:
            entry = models.get((name, method))
            if entry is None:
                log(f"{name}/{method}: no model, skipped")
                continue
            path, category = entry
            model = load_model(path, device=device)
            kwargs = {"category": category} if category else {}
            t0 = time.perf_counter()
            rep = evaluate(model, layout, batch_size=16, **kwargs)
            main = rep["overall"][model.config.score]
            row = {"data": name, "method": method, "model": str(path), "category": category,
                   "modality": layout.modality, "score": model.config.score, "n_test": rep["n_test"],
                   "nfe": model.detect(torch.rand(1, 3, model.config.image_size, model.config.image_size),
                                       **kwargs).nfe,
                   "evaluate_seconds": round(time.perf_counter() - t0, 1)}
            for k in ("image_auroc", "pixel_auroc", "aupro", "auroc", "pauc"):
                if k in main:
                    row[k] = main[k]
            row.update(measure_speed(model, speed_files, modality=layout.modality, repeats=repeats, **kwargs))
            rows.append(row)
            log(f"{name}/{method}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                 for k, v in row.items() if k not in ("model", "data", "method")))
            del model
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| data | method | image / clip AUROC | pixel AUROC | AUPRO / pAUC | NFE | latency, batch 1 | "
            "throughput, batch 16 |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for r in rows:
        audio = r["modality"] == "audio"
        unit = "clip" if audio else "image"
        nfe = f"{r['nfe']} per window x {r['windows_per_clip']}" if audio else str(r["nfe"])
        lines.append(
            f"| {r['data']} | {r['method']} | {fmt(r.get('auroc', r.get('image_auroc')))} | {fmt(r.get('pixel_auroc'))} | "
            f"{fmt(r.get('pauc', r.get('aupro')))} | {nfe} | {r['latency_b1_s'] * 1000:.0f} ms per {unit} | "
            f"{r['throughput_b16']:.1f} {unit}s/s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m decodemo.bench.methods", description=__doc__.split("\n")[0])
    p.add_argument("--data", action="append", required=True, metavar="NAME=DIR",
                   help="a dataset in the folder layout, e.g. bottle=../shared/data/bottle (repeatable)")
    p.add_argument("--model", action="append", default=[], metavar="NAME/METHOD=DIR[#CATEGORY]",
                   help="a model folder for one cell, e.g. elpv/invad=runs/elpv_invad (repeatable)")
    p.add_argument("--repeats", type=int, default=5, help="timed passes per speed figure (median reported)")
    p.add_argument("--limit", action="append", default=[], metavar="NAME=N",
                   help="evaluate a seeded random N of NAME's test files (the same for every method)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    from decodemo.training import resolve_device

    device = str(resolve_device(args.device))
    data = {}
    for item in args.data:
        name, _, folder = item.partition("=")
        if not folder:
            p.error(f"--data takes NAME=DIR, got {item!r}")
        data[name] = Path(folder)
    models = {}
    for name in data:
        for method in METHODS:
            found = default_model(name, method)
            if found:
                models[(name, method)] = found
    for item in args.model:
        key, _, folder = item.partition("=")
        name, _, method = key.partition("/")
        if not folder or method not in METHODS:
            p.error(f"--model takes NAME/METHOD=DIR with METHOD in {METHODS}, got {item!r}")
        folder, _, category = folder.partition("#")
        models[(name, method)] = (Path(folder), category or None)
    limits = {k: int(v) for k, _, v in (item.partition("=") for item in args.limit)}
    rows = run(data, models, repeats=args.repeats, device=device, limits=limits)
    print()
    where = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"# {len(rows)} models on {where}")
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "device": where}, indent=1))
        print(f"\nFigures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
