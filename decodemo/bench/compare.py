"""Latency of one full comparison (the three methods of a model set on one input), as the app
runs it: ``python -m decodemo.bench.compare [--repeat 7] [--threads N] [--json FILE]``.

Inputs are generated (a 256 px synthetic texture with a crack, a 5 s machine hum with clicks)
and, when given with ``--image`` / ``--audio``, real files with their model sets. Models are
loaded before timing; each figure is the median (and min / max) over ``--repeat`` runs of
:meth:`decodemo.service.Service.compare`, which includes reading and checking the file,
every method's preprocessing and detection, and resizing the maps to the input's size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["main"]


def _inputs(tmp: Path) -> list[tuple[str, Path, str]]:
    import soundfile as sf
    from PIL import Image

    from decodemo.data.synthetic import SAMPLE_RATE, make_hum, make_texture

    img, _ = make_texture(np.random.default_rng([9, 9]), size=256, defect="crack")
    Image.fromarray(img).save(tmp / "texture_256.png")
    y, _ = make_hum(np.random.default_rng(9), seconds=5.0, sample_rate=SAMPLE_RATE, anomaly="click")
    sf.write(tmp / "hum_5s.wav", y, SAMPLE_RATE)
    return [("256 px image", tmp / "texture_256.png", "texture"), ("5 s clip", tmp / "hum_5s.wav", "hum")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m decodemo.bench.compare", description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    ap.add_argument("--image", action="append", default=[], metavar="DOMAIN=FILE",
                    help="also time a real image with a model set, e.g. bottle=../shared/data/bottle/test/good/000.png")
    ap.add_argument("--audio", action="append", default=[], metavar="DOMAIN=FILE")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from decodemo.service import Service

    if args.threads:
        torch.set_num_threads(args.threads)
    service = Service()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = _inputs(Path(tmp))
        for spec in args.image + args.audio:
            dom, _, file = spec.partition("=")
            cases.append((Path(file).name, Path(file), dom))
        for label, path, domain in cases:
            service.warm_up([domain])
            service.compare(path, domain=domain)  # first call: allocations, caches
            totals, per_method = [], {}
            for _ in range(args.repeat):
                comp = service.compare(path, domain=domain)
                totals.append(comp.seconds)
                for o in comp.outcomes:
                    per_method.setdefault(o.method, []).append(o.latency_ms)
            row = {"input": label, "domain": domain, "shape": list(comp.size), "repeat": args.repeat,
                   "median_s": statistics.median(totals), "min_s": min(totals), "max_s": max(totals),
                   "methods_ms": {m: statistics.median(v) for m, v in per_method.items()},
                   "nfe": {o.method: o.nfe for o in comp.outcomes}}
            rows.append(row)
            ms = ", ".join(f"{m} {v:.0f} ms" for m, v in row["methods_ms"].items())
            print(f"{label:<16} {domain:<8} full comparison median {row['median_s']:.2f} s "
                  f"(min {row['min_s']:.2f}, max {row['max_s']:.2f}, n={args.repeat}); {ms}")
    print(f"torch threads: {torch.get_num_threads()}, device: {service.registry.device}")
    if args.json:
        args.json.write_text(json.dumps({"threads": torch.get_num_threads(), "device": service.registry.device,
                                         "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
