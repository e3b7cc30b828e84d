"""Evaluating a trained detector on a folder layout: every metric the data allows.

Images: image AUROC / AP / F1-max per test kind (that kind against ``test/good``) and overall,
and, where masks exist, pixel AUROC / AP / F1-max and AUPRO (FPR <= 0.3) at the model's input
resolution. Audio: clip AUROC and pAUC (FPR <= 0.1). Every score variant the method returns
(e.g. NLL, Diff, NLL+Diff) is evaluated, so ablations come from one run. Decisions use the
model's threshold, which came from normal training data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from decodemo.data.layout import Layout, Sample, load_mask
from decodemo.inference import detect_paths
from decodemo.metrics import clip_metrics, image_metrics, pixel_metrics

__all__ = ["collect_scores", "evaluate", "format_report", "model_threshold", "AblationView", "has_ablation",
           "diffusion_gain"]


class AblationView:
    """A detector seen through its no-diffusion counterpart: ``detect`` is the method's
    ``detect_ablation`` (invad at S = 0, recon against the mean normal input, decodiff's VAE
    round trip alone), so the ablation runs through exactly the same scoring code."""

    def __init__(self, detector) -> None:
        self.detector = detector
        self.config = detector.config

    def detect(self, images, **kwargs):
        kwargs.pop("steps", None)
        return self.detector.detect_ablation(images, **kwargs)


def has_ablation(detector) -> bool:
    """True when ``detector`` has a no-diffusion counterpart with its normal statistics."""
    return hasattr(detector, "detect_ablation") and bool(getattr(detector, "has_ablation", False))


def diffusion_gain(method: dict[str, float], ablation: dict[str, float]) -> dict[str, float]:
    """Metric-by-metric difference: the method's figure minus its no-diffusion ablation's."""
    return {k: float(method[k] - ablation[k]) for k in method if k in ablation
            and isinstance(method[k], (int, float)) and isinstance(ablation[k], (int, float))}


def model_threshold(detector, category: str | None = None) -> float | None:
    """The model's decision threshold (per category for multi-class models), or None."""
    th = detector.config.threshold
    if isinstance(th, dict):
        if category is None and len(th) == 1:
            return next(iter(th.values()))
        return th.get(category)
    return th


def collect_scores(detector, samples: list[Sample], *, modality: str, batch_size: int = 16,
                   with_maps: bool = True, desc: str = "scoring", **kwargs) -> dict[str, Any]:
    """Run ``detector`` on ``samples`` -> variants ``{name: (N,)}`` (numpy), maps ``(N, S, S)``
    float16 for images (None for audio; each image's map on its canvas, see :func:`_stack`), NFE per input and seconds spent in the detector.
    ``modality`` must be the detector's (checked)."""
    if modality != detector.config.modality:
        raise ValueError(f"The detector takes {detector.config.modality} input, not {modality}.")
    variants: dict[str, list[float]] = {}
    maps, variant_maps, seconds, nfe = [], {}, 0.0, 0
    for det in detect_paths(detector, [s.path for s in samples], batch_size=batch_size, desc=desc, **kwargs):
        seconds += det.seconds
        nfe = det.nfe
        for k, v in det.variants.items():
            variants.setdefault(k, []).append(v)
        if with_maps and modality == "image":
            maps.append(det.map.astype(np.float16))
            for k, v in det.variant_maps.items():
                variant_maps.setdefault(k, []).append(v.astype(np.float16))
    return {
        "variant_maps": {k: _stack(v) for k, v in variant_maps.items()},
        "variants": {k: np.asarray(v, dtype=np.float64) for k, v in variants.items()},
        "maps": _stack(maps) if maps else None,
        "nfe": nfe,
        "seconds": seconds,
    }


def _stack(maps: list[np.ndarray]) -> np.ndarray:
    """Maps -> ``(N, h, w)`` float32. Padded or tiled images of several shapes have maps of several
    canvas shapes: they are brought to the first one's (the masks are read at that shape too)."""
    shape = maps[0].shape
    if any(m.shape != shape for m in maps):
        import torch
        import torch.nn.functional as F

        maps = [m if m.shape == shape else F.interpolate(torch.from_numpy(m.astype(np.float32))[None, None], size=shape,
                                                         mode="bilinear", align_corners=False)[0, 0].numpy()
                for m in maps]
    return np.stack(maps).astype(np.float32)


#: What each method's no-diffusion counterpart is, for reports.
ABLATION_WHAT = {
    "invad": "S = 0: the standardised features scored directly (no inversion)",
    "recon": "maps against the per-position mean normal input (image and features), no reconstruction",
    "decodiff": "the VAE round trip alone (no correction steps): the autoencoder's reconstruction error",
}


def _metrics(labels: np.ndarray, scores: np.ndarray, modality: str) -> dict[str, float]:
    if modality == "audio":
        return clip_metrics(labels, scores)
    return image_metrics(labels, scores)


def evaluate(detector, layout: Layout, *, batch_size: int = 16, variants: list[str] | None = None,
             ablation: bool = True, **kwargs) -> dict[str, Any]:
    """Evaluate ``detector`` on ``layout.test`` (and ``layout.extra``, reported separately).

    With ``ablation`` (the default) the method's no-diffusion counterpart is evaluated on the
    same inputs through the same code (:class:`AblationView`) and the difference is reported as
    the diffusion gain.

    Returns a JSON-serialisable report: ``{"overall": {variant: metrics}, "per_kind": {kind:
    {variant: metrics}}, "ablation": {...}, "diffusion_gain": {...}, "extra": ..., "threshold":
    ..., "timing": ...}``.
    """
    cfg = detector.config
    modality = layout.modality
    test = layout.test
    if not test:
        raise ValueError(f"{layout.root} has no test samples.")
    res = collect_scores(detector, test, modality=modality, batch_size=batch_size,
                         with_maps=layout.has_masks, desc="test", **kwargs)
    labels = np.array([s.label for s in test])
    kinds = np.array([s.kind for s in test])
    names = variants or list(res["variants"])
    main = cfg.score if cfg.score in res["variants"] else names[0]

    report: dict[str, Any] = {
        "model": {"method": cfg.method, "category": kwargs.get("category", getattr(cfg, "category", None)),
                  "score": main},
        "data": str(layout.root),
        "modality": modality,
        "n_test": len(test),
        "n_good": int((labels == 0).sum()),
        "overall": {},
        "per_kind": {},
    }
    for name in names:
        report["overall"][name] = _metrics(labels, res["variants"][name], modality)
    for kind in layout.test_kinds():
        sel = (kinds == kind) | (labels == 0)
        report["per_kind"][kind] = {n: _metrics(labels[sel], res["variants"][n][sel], modality) for n in names}

    # pixel metrics: normal inputs and the anomalous ones that have a mask (an anomaly without a
    # mask file is left out rather than counted as all-normal pixels)
    pix = (labels == 0) | np.array([s.mask_path is not None for s in test])
    if res["maps"] is not None:
        all_maps = {main: res["maps"], **{k: v for k, v in res.get("variant_maps", {}).items() if k in names}}
        _add_pixel_metrics(report, layout, all_maps, labels, kinds, pix)
    if ablation and has_ablation(detector):
        _add_ablation(report, detector, layout, main, labels, pix, batch_size=batch_size, **kwargs)
    if layout.extra:
        report["extra"] = _extra_figures(detector, layout, res["variants"][main][labels == 0], main,
                                         batch_size=batch_size, **kwargs)
    threshold = model_threshold(detector, kwargs.get("category"))
    if threshold is not None:
        report["threshold"] = _threshold_figures(threshold, cfg.threshold_provenance, res["variants"][main], labels)
    report["timing"] = {
        "nfe_per_input": res["nfe"],
        "detector_seconds": round(res["seconds"], 3),
        "inputs_per_second": len(test) / res["seconds"] if res["seconds"] > 0 else math.nan,
        "batch_size": batch_size,
    }
    return report


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table: one row per (subset, variant), one column per metric."""
    rows = []
    for name, m in report["overall"].items():
        rows.append(("overall", name, m))
    for kind, d in report["per_kind"].items():
        for name, m in d.items():
            rows.append((kind, name, m))
    for kind, d in report.get("extra", {}).items():
        for name, m in d.items():
            rows.append((f"[other state] {kind}", name, m))
    cols: list[str] = []
    for _, _, m in rows:
        cols += [c for c in m if c not in cols]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    head = f"{'subset':<{w0}}  {'score':<{w1}}  " + "  ".join(f"{c:>13}" for c in cols)
    lines = [head, "-" * len(head)]
    for subset, name, m in rows:
        vals = "  ".join(f"{m[c]:>13.4f}" if c in m and m[c] == m[c] else f"{'-':>13}" for c in cols)
        lines.append(f"{subset:<{w0}}  {name:<{w1}}  {vals}")
    if "ablation" in report:
        a, gain = report["ablation"], report["diffusion_gain"]
        lines.append("")
        lines.append(f"No-diffusion ablation ({a['what']}; NFE {a['nfe_per_input']}):")
        lines.append("  " + "  ".join(f"{k} {v:.4f}" for k, v in a["overall"].items() if v == v))
        lines.append("Diffusion gain (method minus ablation): "
                     + "  ".join(f"{k} {v:+.4f}" for k, v in gain.items() if v == v))
    t = report["timing"]
    lines.append("")
    lines.append(f"{report['n_test']} test inputs ({report['n_good']} normal); NFE per input {t['nfe_per_input']}; "
                 f"{t['inputs_per_second']:.1f} inputs/s in the detector at batch {t['batch_size']}.")
    if "threshold" in report:
        th = report["threshold"]
        lines.append(f"Threshold {th['value']:.3f} ({th['provenance']}): false-positive rate "
                     f"{th['false_positive_rate']:.3f}, true-positive rate {th['true_positive_rate']:.3f} on this test set.")
    return "\n".join(lines)


def _add_pixel_metrics(report, layout: Layout, all_maps: dict, labels, kinds, pix) -> None:
    """Pixel AUROC / AP / F1-max and AUPRO of every variant's maps, overall and per kind."""
    masks = np.stack([load_mask(s, next(iter(all_maps.values())).shape[-2:]) for s in layout.test])
    for name, maps in all_maps.items():
        report["overall"][name].update(pixel_metrics(masks[pix], maps[pix]))
        for kind in layout.test_kinds():
            sel = ((kinds == kind) | (labels == 0)) & pix
            if (labels[sel] == 1).any():
                report["per_kind"][kind][name].update(pixel_metrics(masks[sel], maps[sel]))


def _add_ablation(report, detector, layout: Layout, main: str, labels, pix, *, batch_size: int, **kwargs) -> None:
    """The no-diffusion counterpart on the same inputs, and the diffusion gain over it."""
    cfg = detector.config
    abl = collect_scores(AblationView(detector), layout.test, modality=layout.modality, batch_size=batch_size,
                         with_maps=layout.has_masks, desc="test, no diffusion", **kwargs)
    abl_main = main if main in abl["variants"] else next(iter(abl["variants"]))
    figures = _metrics(labels, abl["variants"][abl_main], layout.modality)
    if abl["maps"] is not None:
        masks = np.stack([load_mask(s, abl["maps"].shape[-2:]) for s in layout.test])
        figures.update(pixel_metrics(masks[pix], abl["maps"][pix]))
    report["ablation"] = {"what": ABLATION_WHAT.get(cfg.method, "no diffusion"), "score": abl_main,
                          "overall": figures, "nfe_per_input": abl["nfe"],
                          "detector_seconds": round(abl["seconds"], 3)}
    report["diffusion_gain"] = diffusion_gain(report["overall"][main], figures)


def _extra_figures(detector, layout: Layout, good, main: str, *, batch_size: int, **kwargs) -> dict:
    """Each extra kind (``layout.extra``) against the test set's normal inputs."""
    ex = collect_scores(detector, layout.extra, modality=layout.modality, batch_size=batch_size,
                        with_maps=False, desc="extra", **kwargs)
    ex_kinds = np.array([s.kind for s in layout.extra])
    out = {}
    for kind in sorted(set(ex_kinds)):
        sc = ex["variants"][main][ex_kinds == kind]
        lab = np.r_[np.zeros(len(good)), np.ones(len(sc))]
        out[kind] = {main: _metrics(lab, np.r_[good, sc], layout.modality)}
    return out


def _threshold_figures(threshold: float, provenance, scores, labels) -> dict:
    """The model's threshold on the test set, under the product's rule ``score > threshold``."""
    pred = scores > threshold
    return {
        "value": threshold,
        "provenance": provenance,
        "false_positive_rate": float(pred[labels == 0].mean()) if (labels == 0).any() else math.nan,
        "true_positive_rate": float(pred[labels == 1].mean()) if (labels == 1).any() else math.nan,
    }
