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

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = ROOT / "checkpoints"
BOTTLE = ROOT.parent / "shared" / "data" / "bottle"
SHIPPED = sorted(p.parent for p in CHECKPOINTS.glob("*/*/config.json") if p.parent.name != "domain")
#: each domain's in-domain reference (decodemo.ood), beside its models
DOMAIN_REFS = sorted(CHECKPOINTS.glob("*/domain"))


def test_every_shipped_model_is_safetensors_and_small():
    assert SHIPPED, "no model folders under checkpoints/"
    for folder in SHIPPED + DOMAIN_REFS:
        names = {p.name for p in folder.iterdir() if p.is_file()}
        assert names == {"config.json", "model.safetensors"}, folder
    total = sum(p.stat().st_size for p in CHECKPOINTS.rglob("*") if p.is_file())
    assert total < 250e6  # raised from 150 MB when screw, ball_screw and fabric got their own models


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
@pytest.mark.parametrize("name", ["bottle/invad", "bottle/decodiff", "bottle/recon", "bottle/baseline"])
def test_shipped_bottle_models_reproduce_their_figures(name):
    """The registry's recorded bottle figures (from the benchmark run) hold for the shipped weights."""
    from decodemo.hub import load_manifest

    entry = load_manifest(CHECKPOINTS / "registry.json")[name]
    model = load_model(CHECKPOINTS / entry.bundled)
    kwargs = {"category": entry.class_id} if getattr(model.config, "categories", None) else {}
    report = evaluate(model, scan_layout(BOTTLE, require_train=False), batch_size=16, ablation=False, **kwargs)
    main = report["overall"][model.config.score]
    assert entry.figures["n_test"] == report["n_test"] == 83
    assert main["image_auroc"] == pytest.approx(entry.figures["image_auroc"], abs=2e-3)
    assert main["pixel_auroc"] == pytest.approx(entry.figures["pixel_auroc"], abs=2e-3)
    assert main["aupro"] == pytest.approx(entry.figures["aupro"], abs=5e-3)


@pytest.fixture(scope="module")
def texture_test_set(tmp_path_factory):
    """The synthetic texture test set the shipped texture models were evaluated on (seed 0)."""
    from decodemo.data.synthetic import write_synthetic_layout

    root = tmp_path_factory.mktemp("texture")
    write_synthetic_layout(root, modality="image", n_train=0, n_test_good=20, n_test_per_kind=10, size=256, seed=0)
    return scan_layout(root, require_train=False)


@pytest.mark.parametrize("method", ["invad", "decodiff", "recon"])
def test_shipped_texture_models_reproduce_their_figures(method, texture_test_set):
    """No data needed: the test set is regenerated, and the registry's recorded figures must hold."""
    from decodemo.hub import load_manifest

    entry = load_manifest(CHECKPOINTS / "registry.json")[f"texture/{method}"]
    model = load_model(CHECKPOINTS / entry.bundled)
    kwargs = {"category": entry.class_id} if getattr(model.config, "categories", None) else {}
    report = evaluate(model, texture_test_set, batch_size=16, **kwargs)
    main = report["overall"][model.config.score]
    assert main["image_auroc"] == pytest.approx(entry.figures["image_auroc"], abs=1e-3)
    assert main["pixel_auroc"] == pytest.approx(entry.figures["pixel_auroc"], abs=1e-3)
    assert main["image_auroc"] >= 0.9 and main["pixel_auroc"] >= 0.95
