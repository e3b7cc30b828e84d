"""The shipped model folders: safe to load, usable without data, and (when the bottle data is
next to the repository, as on the development machine) reproducing their bottle figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from decodemo.data.layout import scan_layout
from decodemo.evaluation import evaluate
from decodemo.methods import load_model

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "checkpoints"
BOTTLE = ROOT.parent / "shared" / "data" / "bottle"
SHIPPED = sorted(p.parent for p in CHECKPOINTS.glob("*/*/config.json"))


def test_every_shipped_model_is_safetensors_and_small():
    assert SHIPPED, "no model folders under checkpoints/"
    for folder in SHIPPED:
        names = {p.name for p in folder.iterdir() if p.is_file()}
        assert names == {"config.json", "model.safetensors"}, folder
    total = sum(p.stat().st_size for p in CHECKPOINTS.rglob("*") if p.is_file())
    assert total < 150e6


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_model_scores_an_image(folder):
    model = load_model(folder)
    cfg = model.config
    if cfg.modality != "image":
        pytest.skip("audio model")
    kwargs = {"category": cfg.categories[0]} if getattr(cfg, "categories", None) else {}
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, cfg.image_size, cfg.image_size, generator=g)
    res = model.detect(x, **kwargs)
    assert res.scores.shape == (2,) and all(math.isfinite(float(s)) for s in res.scores)
    assert res.maps.shape == (2, cfg.image_size, cfg.image_size)
    thresholds = cfg.threshold if isinstance(cfg.threshold, dict) else {"": cfg.threshold}
    assert thresholds and all(math.isfinite(float(t)) for t in thresholds.values())
    assert "no test data" in json.loads((folder / "config.json").read_text())["threshold_provenance"]


@pytest.mark.skipif(not BOTTLE.is_dir(), reason="needs ../shared/data/bottle (MVTec AD bottle)")
@pytest.mark.parametrize("folder, floor, pixel_floor", [("bottle/invad", 0.99, 0.97), ("bottle_elpv/decodiff", 0.93, 0.92),
                                                       ("bottle/recon", 0.96, 0.73)])
def test_shipped_bottle_models_reproduce_their_figures(folder, floor, pixel_floor):
    model = load_model(CHECKPOINTS / folder)
    kwargs = {"category": "bottle"} if getattr(model.config, "categories", None) else {}
    report = evaluate(model, scan_layout(BOTTLE, require_train=False), batch_size=16, **kwargs)
    main = report["overall"][model.config.score]
    assert main["image_auroc"] >= floor
    assert main["pixel_auroc"] >= pixel_floor
