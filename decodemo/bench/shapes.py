"""Do non-square crops of normal images score as normal? ``python -m decodemo.bench.shapes
--model texture/invad --normals DIR [--crops 8] [--fits pad,squash]``.

The model's threshold is recomputed here as the 0.99 quantile of the scores of every image in
``DIR`` (a folder of normal images the model did not train on, whole, under the model's own
``image_fit``). Then the two centre crops that cut one side of the first ``--crops`` images to
200/256 of it (wide and tall) are scored under each fit, and printed as multiples of that
threshold with the share flagged. Normal data only: no test set is read.

For a registry model whose normal reference holds a shape calibration (``python -m decodemo
reference``; :func:`decodemo.evaluation.reference.shape_calibrated`), the crops under the model's
own ``image_fit`` are also given calibrated, as multiples of the registry threshold, as the app
decides them. ``--anomalies DIR`` adds the same crops of the images in ``DIR`` (for example a
test folder of defects: reported, never used to choose anything), to show what the calibration
costs in sensitivity.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["crop_scores", "main"]


def _centre_crops(img, ratio: float = 200 / 256):
    w, h = img.size
    ch, cw = round(h * ratio), round(w * ratio)
    top, left = (h - ch) // 2, (w - cw) // 2
    return [img.crop((0, top, w, top + ch)), img.crop((left, 0, left + cw, h))]


def crop_scores(model, normals: list[Path], *, crops: int = 8, fits=("pad", "squash"), entry=None,
                anomalies: list[Path] | None = None) -> dict:
    """{"threshold", fit: [score / threshold of each crop]} for ``model`` (see the module docstring);
    with a registry ``entry`` whose reference has a shape calibration, also ``"calibrated"`` (and
    ``"anomalies_calibrated"``, ``"anomalies_raw"`` for ``anomalies``) as multiples of its threshold."""
    import numpy as np
    from PIL import Image

    from decodemo.evaluation.reference import shape_calibrated
    from decodemo.inference import detect_prepared, image_input

    cfg = model.config

    def detect(img, fit):
        return detect_prepared(model, image_input(img, cfg.image_size, fit))

    def score(img, fit) -> float:
        return float(detect(img, fit).score)

    whole = [score(Image.open(p).convert("RGB"), cfg.image_fit) for p in normals]
    thr = float(np.quantile(whole, 0.99))
    out: dict = {"threshold": thr, "image_fit": cfg.image_fit, "shape_crops": getattr(cfg, "shape_crops", 0)}
    for fit in fits:
        out[fit] = [score(c, fit) / thr for p in normals[:crops] for c in _centre_crops(Image.open(p).convert("RGB"))]
    ref = getattr(entry, "reference", None) or {}
    if ref.get("shape"):
        t = float(entry.threshold)

        def calibrated(paths):
            raw, cal = [], []
            for p in paths:
                for c in _centre_crops(Image.open(p).convert("RGB")):
                    d = detect(c, cfg.image_fit)
                    raw.append(float(d.score) / t)
                    cal.append(shape_calibrated(float(d.score), d.geometry, ref)[0] / t)
            return raw, cal

        out["registry_threshold"] = t
        out["whole_flagged"] = sum(w > t for w in whole)
        out["raw"], out["calibrated"] = calibrated(normals[:crops])
        if anomalies:
            out["anomalies_raw"], out["anomalies_calibrated"] = calibrated(anomalies)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m decodemo.bench.shapes", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a registry name or a model folder")
    ap.add_argument("--normals", required=True, type=Path, help="a folder of normal images not used in training")
    ap.add_argument("--crops", type=int, default=8, help="crop the first N images (two crops each)")
    ap.add_argument("--fits", default="pad,squash")
    ap.add_argument("--anomalies", type=Path, help="a folder of anomalous images: their crops are reported too")
    args = ap.parse_args(argv)

    from decodemo.hub import ModelRegistry
    from decodemo.io.images import IMAGE_EXTENSIONS
    from decodemo.methods import load_model

    registry = None if Path(args.model).is_dir() else ModelRegistry(device="cpu")
    model = load_model(args.model, device="cpu") if registry is None else registry.get(args.model)
    entry = None if registry is None else registry.entry(args.model)

    def images(folder: Path) -> list[Path]:
        return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)

    normals = images(args.normals)
    anomalies = images(args.anomalies) if args.anomalies else None
    res = crop_scores(model, normals, crops=args.crops, fits=tuple(args.fits.split(",")), entry=entry,
                      anomalies=anomalies)
    print(f"{args.model}: image_fit {res['image_fit']}, shape_crops {res['shape_crops']}; threshold "
          f"{res['threshold']:.4g} (0.99 quantile of {len(normals)} whole normal images)")

    def line(what: str, r: list[float]) -> None:
        print(f"  {what}: {len(r)} crops at {min(r):.2f} to {max(r):.2f} x threshold, "
              f"{sum(x > 1 for x in r)} of {len(r)} flagged")

    for fit in args.fits.split(","):
        line(fit, res[fit])
    if "calibrated" in res:
        print(f"  registry threshold {res['registry_threshold']:.4g}: {res['whole_flagged']} of {len(normals)} "
              f"whole normal images flagged; under image_fit {res['image_fit']}:")
        line("raw", res["raw"])
        line("shape-calibrated", res["calibrated"])
        if anomalies:
            line(f"anomalies raw ({len(anomalies)} images)", res["anomalies_raw"])
            line(f"anomalies shape-calibrated ({len(anomalies)} images)", res["anomalies_calibrated"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
