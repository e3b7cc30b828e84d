"""The out-of-domain check, measured: per model set, the share of its own test normals flagged
out of domain, of its own test anomalies, and of every other set's test inputs of the same kind
(images against image sets, sounds against audio sets).

    python -m decodemo.bench.domains --data bottle=../shared/data/bottle --data fan=DIR/fan ... \\
        [--limit NAME=N] [--out FILE.json]

Each set's in-domain reference is the registry's (``<root>/<domain>/domain``); the inputs are
read once and described once per front end. Everything printed is measured.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from decodemo.data.layout import scan_layout

__all__ = ["measure", "markdown", "main"]


def measure(data: dict[str, Path], *, limit: dict[str, int] | None = None, service=None, log=print) -> dict:
    """``{domain: {"own_normal": share, "own_anomalous": share, "others": share, counts...}}``."""
    from decodemo.inference import load_input
    from decodemo.ood import loaded_features
    from decodemo.service import Service

    service = service or Service()
    limit = limit or {}
    refs = {d: service.domain_reference(d) for d in data}
    missing = [d for d, r in refs.items() if r is None]
    if missing:
        raise SystemExit(f"No in-domain reference for {', '.join(missing)} (python -m decodemo domain-reference).")
    t0 = time.perf_counter()
    inputs: dict[str, list[tuple[str, object]]] = {}
    for name, folder in data.items():
        layout = scan_layout(folder, require_test=True)
        rng = np.random.default_rng(0)
        good = [s.path for s in layout.test if s.kind == "good"]
        bad = [s.path for s in layout.test if s.kind != "good"]
        n = limit.get(name)
        if n is not None:  # a seeded share of each, for large sets
            good = [good[i] for i in sorted(rng.permutation(len(good))[: n // 2])]
            bad = [bad[i] for i in sorted(rng.permutation(len(bad))[: n - len(good)])]
        inputs[name] = [("good", p) for p in good] + [("bad", p) for p in bad]
    # one description per input and front end (all image sets share one; audio sets their mel settings)
    keys = {d: json.dumps(r.mel, sort_keys=True) for d, r in refs.items()}
    feats: dict[tuple[str, str], np.ndarray] = {}
    for name, items in inputs.items():
        modality = refs[name].modality
        wanted = {keys[d] for d in data if refs[d].modality == modality}
        mels = {keys[d]: refs[d].mel for d in data if refs[d].modality == modality}
        for key in wanted:
            described = [loaded_features(load_input(p, mel=mels[key]), mels[key]) for _, p in items]
            feats[(name, key)] = {pool: np.stack([f[pool] for f in described]) for pool in described[0]}
        log(f"{name}: {len(items)} test inputs described ({time.perf_counter() - t0:.0f} s)")
    out = {}
    for d, ref in refs.items():
        own = feats[(d, keys[d])][ref.pooling]
        kinds = np.array([k for k, _ in inputs[d]])
        flag = ref.stats.distance(own) > ref.threshold
        others = [feats[(o, keys[d])][ref.pooling] for o in data if o != d and refs[o].modality == ref.modality]
        oflag = np.concatenate([ref.stats.distance(x) > ref.threshold for x in others]) if others else np.array([])
        out[d] = {"modality": ref.modality, "threshold": ref.threshold, "pooling": ref.pooling,
                  "own_normal": float(flag[kinds == "good"].mean()) if (kinds == "good").any() else None,
                  "n_own_normal": int((kinds == "good").sum()),
                  "own_anomalous": float(flag[kinds == "bad"].mean()) if (kinds == "bad").any() else None,
                  "n_own_anomalous": int((kinds == "bad").sum()),
                  "others": float(oflag.mean()) if oflag.size else None, "n_others": int(oflag.size)}
    return out


def markdown(res: dict) -> str:
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    rows = ["| model set | input | pooling | own test normals flagged | own test anomalies flagged | "
            "other sets' inputs flagged |", "|---|---|---|---|---|---|"]
    for d, r in res.items():
        rows.append(f"| {d} | {r['modality']} | {r['pooling']} | {pct(r['own_normal'])} of {r['n_own_normal']} | "
                    f"{pct(r['own_anomalous'])} of {r['n_own_anomalous']} | {pct(r['others'])} of {r['n_others']} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m decodemo.bench.domains", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", action="append", required=True, metavar="NAME=DIR")
    p.add_argument("--limit", action="append", default=[], metavar="NAME=N", help="a seeded N test inputs of NAME")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = p.parse_args(argv)
    data = {k: Path(v) for k, v in (s.split("=", 1) for s in args.data)}
    limit = {k: int(v) for k, v in (s.split("=", 1) for s in args.limit)}
    t0 = time.perf_counter()
    res = measure(data, limit=limit)
    print(markdown(res))
    print(f"measured in {time.perf_counter() - t0:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
