"""A comparison as JSON, with its maps and normal versions as files where asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from decodemo.methods.catalogue import TITLES

__all__ = ["comparison_json"]


def comparison_json(comp, out_dir: str | Path | None = None, *, map_files: dict[str, str] | None = None) -> dict[str, Any]:
    """A JSON-serialisable result of comparison ``comp``. With ``out_dir``, each method's map is
    written there as ``<method>_map.npy`` (float32, the input's size, the method's units) and,
    where the method has one, ``<method>_normal.png`` (its normal version of the input); the
    result names them. ``map_files`` (method -> path) names maps already written elsewhere (the
    review store), which are then not written again."""
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    methods = []
    for o in comp.outcomes:
        row = {
            "method": o.method, "title": TITLES.get(o.method, o.method), "model": o.model,
            "revision": o.revision, "score": o.score, "threshold": o.threshold,
            "default_threshold": o.default_threshold, "decision": o.decision, "percentile": o.percentile,
            "nfe": o.nfe, "latency_ms": round(o.latency_ms, 1), "pixel_threshold": o.pixel_threshold,
            "map_shape": list(o.map.shape), "map_file": None, "normal_file": None, "shape": o.shape,
            "calibration": o.calibration,
        }
        if map_files and o.method in map_files:
            row["map_file"] = str(map_files[o.method])
        elif out is not None:
            np.save(out / f"{o.method}_map.npy", o.map.astype(np.float32), allow_pickle=False)
            row["map_file"] = str(out / f"{o.method}_map.npy")
        if out is not None:
            if o.reconstruction is not None:
                from PIL import Image

                rec = o.reconstruction
                if rec.ndim == 2:  # spectrogram, low frequencies at the bottom
                    rec = (np.flipud(rec) * 255).round().astype(np.uint8)
                Image.fromarray(rec).save(out / f"{o.method}_normal.png", compress_level=1)  # fast; a download
                row["normal_file"] = str(out / f"{o.method}_normal.png")
        if o.frame_scores is not None:
            row["frame_scores"] = [round(float(v), 5) for v in o.frame_scores]
        methods.append(row)
    res = {
        "id": comp.id, "modality": comp.modality, "domain": comp.domain, "name": comp.name,
        "sha256": comp.sha256, "input_shape": list(comp.size), "seconds": round(comp.seconds, 3),
        "methods": methods, "summary": comp.summary(),
        # the out-of-domain flag: False means the results are not meaningful for this model set
        "in_domain": comp.in_domain, "domain_check": comp.domain_check,
    }
    if comp.reference is not None:
        r = comp.reference
        res["reference"] = {"method": r.method, "title": TITLES.get(r.method, r.method), "model": r.model,
                            "score": r.score, "threshold": r.threshold, "decision": r.decision,
                            "percentile": r.percentile, "latency_ms": round(r.latency_ms, 1),
                            "counts_in_verdict": False}
    if comp.modality == "audio":
        res["sample_rate"] = comp.sample_rate
        res["duration_s"] = round(len(comp.waveform) / comp.sample_rate, 3) if comp.waveform is not None else None
        res["frame_times"] = [round(float(t), 4) for t in comp.frame_times]
    return res


