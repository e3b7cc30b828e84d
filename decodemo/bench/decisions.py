"""The app's decisions on a labelled test set: ``python -m decodemo.bench.decisions --data DIR
--domain NAME [--before MANIFEST] [--json FILE]``.

Every file of ``DIR/test`` goes through :meth:`decodemo.service.Service.compare`, the app's own
decision path (the registry's thresholds, the shape calibration, the fused vote). Printed per
method and for the fused verdict: the false-positive rate on ``test/good`` and the recall on the
defects, each with its count. ``--before`` judges the same scores against the thresholds of
another manifest too (the models must be the same: only the thresholds differ), so before and
after come from one run. Test labels are read for reporting only; nothing is chosen on them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["decision_rates", "main"]


def decision_rates(comparisons: list, labels: list[int], reference_thresholds: dict[str, float] | None = None
                   ) -> dict[str, dict]:
    """``{method, "fused" or "baseline": {"fpr", "false_positives", "n_normal", "recall", "detected",
    "n_anomalous"}}`` of ``comparisons`` (label 1: anomalous). "baseline" is the nearest-neighbour
    reference the app shows beside the vote (it does not vote), judged against its own threshold
    or the one ``reference_thresholds`` gives its model."""
    rows: dict[str, list[tuple[int, bool]]] = {}
    for comp, y in zip(comparisons, labels):
        for o in comp.outcomes:
            rows.setdefault(o.method, []).append((y, o.decision == "anomalous"))
        rows.setdefault("fused", []).append((y, comp.summary()["verdict"] == "anomalous"))
        ref = getattr(comp, "reference", None)
        if ref is not None:
            thr = (reference_thresholds or {}).get(ref.model, ref.threshold)
            rows.setdefault("baseline", []).append((y, ref.score > thr))
    out = {}
    for key, r in rows.items():
        neg = [flag for y, flag in r if y == 0]
        pos = [flag for y, flag in r if y == 1]
        out[key] = {"fpr": round(sum(neg) / len(neg), 4) if neg else None, "false_positives": int(sum(neg)),
                    "n_normal": len(neg), "recall": round(sum(pos) / len(pos), 4) if pos else None,
                    "detected": int(sum(pos)), "n_anomalous": len(pos)}
    return out


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from decodemo.data.layout import scan_layout
    from decodemo.hub import ModelRegistry, load_manifest
    from decodemo.service import Service

    ap = argparse.ArgumentParser(prog="python -m decodemo.bench.decisions", description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="a folder layout with test/")
    ap.add_argument("--domain", required=True, help="the model set, e.g. bottle")
    ap.add_argument("--before", type=Path, default=None, help="a manifest whose thresholds are judged too")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    service = Service(ModelRegistry())
    layout = scan_layout(args.data, require_train=False, require_test=True)
    comps, labels = [], []
    for sample in tqdm(layout.test, desc=f"{args.domain}: compare", unit="file"):
        comps.append(service.compare(sample.path, domain=args.domain))
        labels.append(int(sample.label))
    sets, ref_thresholds = {"now": comps}, {"now": None}
    ref = comps[0].reference if comps else None
    if args.before is not None:
        old = load_manifest(args.before)
        sets = {"before": [c.with_thresholds({o.method: old[o.model].threshold for o in c.outcomes}) for c in comps],
                **sets}
        ref_thresholds["before"] = {ref.model: old[ref.model].threshold} if ref is not None and ref.model in old else None
    thresholds = {k: {o.method: o.threshold for o in v[0].outcomes} for k, v in sets.items()}
    if ref is not None:
        for k in sets:
            thresholds[k]["baseline"] = (ref_thresholds.get(k) or {}).get(ref.model, ref.threshold)
    report = {"data": str(args.data), "domain": args.domain, "n": len(comps), "thresholds": thresholds,
              "rates": {k: decision_rates(v, labels, ref_thresholds.get(k)) for k, v in sets.items()}}
    print(f"{args.domain}: {len(comps)} test files ({labels.count(0)} normal, {labels.count(1)} anomalous)")
    print(f"{'thresholds':<10} {'method':<10} {'threshold':>10} {'FPR on good':>16} {'recall on defects':>20}")
    for k, rates in report["rates"].items():
        for m, r in rates.items():
            thr = report["thresholds"][k].get(m)
            print(f"{k:<10} {m:<10} {'' if thr is None else format(thr, '.4g'):>10} "
                  f"{r['fpr']:>7.3f} ({r['false_positives']:>2}/{r['n_normal']}) "
                  f"{r['recall']:>10.3f} ({r['detected']:>3}/{r['n_anomalous']})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
