"""Degrade, don't die: a registry entry that cannot be served is shown as unavailable and the
app serves the rest (the shipped texture models, one tampered with, beside a broken entry)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decodemo.data.synthetic import make_texture
from decodemo.errors import DecodemoError
from decodemo.hub import ModelRegistry
from decodemo.service import Service

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


@pytest.fixture(scope="module")
def broken_registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("degrade")
    shipped = json.loads((CHECKPOINTS / "registry.json").read_text())
    models = {n: e for n, e in shipped["models"].items() if e["domain"] == "texture"}
    for name in models:
        shutil.copytree(CHECKPOINTS / name, root / name)
    shutil.copytree(CHECKPOINTS / "texture" / "domain", root / "texture" / "domain")
    cfg = root / "texture" / "recon" / "config.json"  # tampered after it was pinned
    cfg.write_text(cfg.read_text().replace('"t0"', '"t0" ', 1) + " ")
    bad = dict(models["texture/invad"], bundled=None, hub={"repo_id": "not a repo id!", "revision": "0" * 40})
    domains = {"texture": shipped["domains"]["texture"]} if "texture" in shipped.get("domains", {}) else {}
    (root / "registry.json").write_text(json.dumps({"version": 1, "models": {**models, "texture/broken": bad},
                                                    "domains": domains}))
    return root / "registry.json"


def test_the_rest_serves_when_one_entry_is_broken_and_one_is_tampered_with(broken_registry, tmp_path):
    service = Service(ModelRegistry(broken_registry))
    assert "texture/broken" in service.unavailable() and "repo_id" in service.unavailable()["texture/broken"]
    seconds, failed = service.warm_up_available()
    assert set(failed) == {"texture/broken", "texture/recon"} and "config.json" in failed["texture/recon"]
    assert service.domains("image") == ["texture"] and list(service.models_for("texture")) == ["decodiff", "invad"]
    img, _ = make_texture(np.random.default_rng([3, 3]), size=256, defect="crack")
    Image.fromarray(img).save(tmp_path / "crack.png")
    comp = service.compare(tmp_path / "crack.png", domain="texture")
    assert [o.method for o in comp.outcomes] == ["decodiff", "invad"] and comp.summary()["n_methods"] == 2


def test_a_model_that_fails_at_first_use_is_left_out_from_then_on(broken_registry, tmp_path):
    service = Service(ModelRegistry(broken_registry))  # no warm-up: the tampered model fails when used
    img, _ = make_texture(np.random.default_rng([3, 4]), size=256)
    Image.fromarray(img).save(tmp_path / "part.png")
    with pytest.raises(DecodemoError, match="texture/recon is unavailable"):
        service.compare(tmp_path / "part.png", domain="texture")
    assert "texture/recon" in service.unavailable()
    assert len(service.compare(tmp_path / "part.png", domain="texture").outcomes) == 2


def test_the_app_starts_and_says_what_is_unavailable(broken_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("DECODEMO_DATA_DIR", str(tmp_path / "data"))
    from decodemo.app.blocks import build_app

    service = Service(ModelRegistry(broken_registry))
    service.warm_up_available()
    demo = build_app(service)
    notes = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "unavailable-models"]
    assert len(notes) == 1 and "texture/broken" in notes[0].value and "texture/recon" in notes[0].value
    assert "/work" not in notes[0].value.replace(str(tmp_path), "")  # no server path beyond the test's own
