"""One contract for every detector class, the baseline included: the ``Detector`` protocol,
``detect`` shapes and dtypes, finite scores, NFE, the no-diffusion ablation and the model folder."""

from __future__ import annotations

import inspect

import pytest
import torch

from decodemo.methods import DETECTOR_CLASSES, detector_class
from decodemo.methods.base import Detector


def _invad():
    from decodemo.methods.invad import InvAD, InvADConfig

    m = InvAD(InvADConfig(image_size=64, grid=8, block_out_channels=[16, 32], norm_num_groups=8))
    feats = m.raw_features(torch.rand(6, 3, 64, 64))
    m.fit_feature_stats(feats)
    m.calibrate(m.standardise(feats), [0, 3])
    return m, {"nfe": 3}


def _recon():
    from decodemo.methods.recon.config import ReconConfig
    from decodemo.methods.recon.model import Recon

    m = Recon(ReconConfig(image_size=32, block_out_channels=[16, 32, 32], norm_num_groups=8, feature_size=64,
                          n_draws=2, reverse_steps=2))
    normals = torch.rand(4, 3, 32, 32)
    m.fit_wavelet_stats(normals)
    m.fit_map_stats(normals)
    m.fit_ablation_stats(normals)
    return m, {"nfe": 4}


def _decodiff():
    from decodemo.methods.decodiff.config import DeCoDiffConfig, VAEConfig
    from decodemo.methods.decodiff.model import DeCoDiff, LatentVAE

    vae = LatentVAE(VAEConfig(image_size=32, block_out_channels=[16, 32, 32], layers_per_block=1, norm_num_groups=8))
    m = DeCoDiff(DeCoDiffConfig(categories=["a"], block_out_channels=[32, 64], attention_levels=[1],
                                norm_num_groups=8, vae=vae.config.to_dict()), vae)
    return m, {"nfe": 5}


def _baseline():
    from decodemo.methods.baseline.config import BaselineConfig
    from decodemo.methods.baseline.model import PatchCore

    m = PatchCore(BaselineConfig(image_size=64, grid=8))
    m.fit(m.patch_features(torch.rand(4, 3, 64, 64)))
    return m, {"nfe": 0}


BUILDERS = {"invad": _invad, "recon": _recon, "decodiff": _decodiff, "baseline": _baseline}


def test_every_registered_detector_has_a_builder_here():
    assert set(DETECTOR_CLASSES) == set(BUILDERS)


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def built(request):
    torch.manual_seed(0)
    model, expect = BUILDERS[request.param]()
    return request.param, model.eval(), expect


def test_class_follows_the_protocol(built):
    method, model, _ = built
    cls = detector_class(method)
    assert cls.method_id == method and isinstance(model, cls) and isinstance(model, Detector)
    assert model.config.method == method and isinstance(model.config, cls.config_class)
    params = inspect.signature(cls.detect).parameters
    assert params["category"].kind is inspect.Parameter.KEYWORD_ONLY and params["category"].default is None
    assert "map_location" in inspect.signature(cls.from_pretrained).parameters


@pytest.mark.parametrize("scale", [1, 2])
def test_detect_contract(built, scale):
    method, model, expect = built
    side = model.config.image_size * scale  # maps come back at the input's size
    x = torch.rand(2, 3, side, side)
    res = model.detect(x, category=None)
    assert res.scores.shape == (2,) and res.scores.dtype == torch.float32
    assert res.maps.shape == (2, side, side) and res.maps.dtype == torch.float32
    assert torch.isfinite(res.scores).all() and torch.isfinite(res.maps).all()
    assert res.nfe == expect["nfe"]
    assert res.variants and all(v.shape == (2,) for v in res.variants.values())
    assert any(torch.equal(v, res.scores) for v in res.variants.values())
    if res.reconstruction is not None:
        assert res.reconstruction.shape[:2] == (2, 3)


def test_ablation_contract(built):
    method, model, _ = built
    if method == "baseline":
        assert not hasattr(model, "detect_ablation")  # the baseline is itself no-diffusion
        return
    assert model.has_ablation
    x = torch.rand(2, 3, model.config.image_size, model.config.image_size)
    res = model.detect_ablation(x, category=None)
    assert res.nfe == 0
    assert res.scores.shape == (2,) and torch.isfinite(res.scores).all()
    assert res.maps.shape == (2, *x.shape[-2:]) and torch.isfinite(res.maps).all()
    assert not torch.equal(res.scores, model.detect(x).scores)


def test_save_load_round_trip(built, tmp_path):
    method, model, _ = built
    from decodemo.methods import load_model

    x = torch.rand(2, 3, model.config.image_size, model.config.image_size)
    folder = model.save_pretrained(tmp_path / method)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_model(folder)
    assert type(loaded) is type(model)
    torch.testing.assert_close(loaded.detect(x).scores, model.detect(x).scores, rtol=2e-3, atol=2e-3)
    if method != "baseline":
        torch.testing.assert_close(loaded.detect_ablation(x).scores, model.detect_ablation(x).scores,
                                   rtol=2e-3, atol=2e-3)
