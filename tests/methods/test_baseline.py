"""The PatchCore-style reference (``baseline``): greedy coreset, the detect contract, the model
folder, and a tiny fitted model that separates synthetic defects from normal textures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import decodemo.methods.baseline.model as baseline_model
from decodemo.data.layout import load_mask, scan_layout
from decodemo.data.synthetic import write_synthetic_layout
from decodemo.errors import ModelError, UnsafeWeightsError
from decodemo.inference import image_tensor
from decodemo.methods import load_model
from decodemo.methods.base import read_weights
from decodemo.methods.baseline import BaselineConfig, PatchCore
from decodemo.methods.baseline.model import greedy_coreset, nearest_distances
from decodemo.metrics import auroc, pixel_auroc
from decodemo.training import TrainSettings
from decodemo.training.baseline import train_baseline

QUIET = lambda *_: None  # noqa: E731


def _plain_greedy(x: torch.Tensor, k: int, start: int) -> list[int]:
    """The textbook k-center greedy: a running min-distance vector updated at every step."""
    min_d = torch.full((len(x),), math.inf, dtype=torch.float64)
    chosen = [start]
    for _ in range(k - 1):
        min_d = torch.minimum(min_d, ((x.double() - x[chosen[-1]].double()) ** 2).sum(1))
        min_d[chosen] = -1.0
        chosen.append(int(min_d.argmax()))
    return chosen


def _clusters(n_per: int = 60, k: int = 5, dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(k, dim) * 100.0
    labels = torch.arange(k).repeat_interleave(n_per)
    return centres[labels] + torch.randn(k * n_per, dim, generator=g), labels


# ----------------------------------------------------------------------------- coreset


def test_greedy_coreset_is_the_plain_algorithm(monkeypatch):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1500, 8, generator=g) * torch.rand(1500, 1, generator=g) * 3
    # a small candidate list forces many deferred full updates
    for candidates in (4096, 40):
        monkeypatch.setattr(baseline_model, "_CANDIDATES", candidates)
        idx = greedy_coreset(x, 300, start=7)
        assert idx.tolist() == _plain_greedy(x, 300, 7)
        assert len(set(idx.tolist())) == 300 and idx[0] == 7
    assert torch.equal(greedy_coreset(x, 300, start=7), greedy_coreset(x, 300, start=7))
    assert len(greedy_coreset(x, 5000, start=0)) == 1500  # never more than there are rows


def test_greedy_coreset_takes_one_point_per_cluster_and_no_duplicates():
    x, labels = _clusters()
    for start in (0, 123, 299):
        idx = greedy_coreset(x, 5, start=start)
        assert sorted(labels[idx].tolist()) == [0, 1, 2, 3, 4]
    same = torch.ones(50, 4)  # all rows equal: still distinct rows
    assert len(set(greedy_coreset(same, 10, start=3).tolist())) == 10


@pytest.fixture(scope="module")
def tiny_model():
    """A model at 64 px with an 8 x 8 grid, fitted on four synthetic textures."""
    from decodemo.data.synthetic import make_texture

    cfg = BaselineConfig(image_size=64, grid=8, coreset_fraction=0.25)
    model = PatchCore(cfg)
    imgs = torch.stack([torch.from_numpy(make_texture(s, size=64)[0]).permute(2, 0, 1).float() / 255 for s in range(4)])
    model.fit(model.patch_features(imgs), progress=False)
    return model


def test_fit_is_seeded_and_covers_clusters(tiny_model):
    cfg = tiny_model.config
    assert cfg.feature_channels == 152 and tuple(tiny_model.memory.shape) == (cfg.coreset_size(4 * 64), 152)
    x, labels = _clusters(n_per=20, dim=152, seed=1)  # 100 patch vectors as (25, 152, 2, 2) features
    feats = x.view(25, 2, 2, 152).permute(0, 3, 1, 2)
    model = PatchCore(BaselineConfig(image_size=64, grid=2, coreset_max=5, storage_dtype="float32"))
    idx = model.fit(feats, generator=torch.Generator().manual_seed(3), progress=False)
    assert sorted(labels[idx].tolist()) == [0, 1, 2, 3, 4]
    assert torch.equal(model.memory, x[idx])  # the original (unprojected) vectors
    again = model.fit(feats, generator=torch.Generator().manual_seed(3), progress=False)
    assert torch.equal(idx, again)
    with pytest.raises(ModelError, match="152"):
        model.fit(torch.zeros(2, 7, 2, 2))


def test_nearest_distances_are_euclidean():
    g = torch.Generator().manual_seed(0)
    q, m = torch.randn(37, 5, generator=g), torch.randn(11, 5, generator=g)
    torch.testing.assert_close(nearest_distances(q, m), torch.cdist(q, m).amin(1), rtol=1e-4, atol=1e-4)
    assert float(nearest_distances(m[:3], m).max()) < 1e-3


# ----------------------------------------------------------------------------- contract


def test_detect_contract(tiny_model):
    x = torch.rand(2, 3, 64, 64)
    res = tiny_model.detect(x, category="anything")
    assert res.scores.shape == (2,) and res.maps.shape == (2, 64, 64)
    assert res.scores.dtype == torch.float32 and res.maps.dtype == torch.float32
    assert torch.isfinite(res.scores).all() and torch.isfinite(res.maps).all()
    assert res.nfe == 0 and res.reconstruction is None
    assert torch.equal(res.variants["nn"], res.scores) and set(res.variants) == {"nn"}
    grid = res.extras["patch_distance"]
    assert grid.shape == (2, 8, 8) and torch.equal(res.scores, grid.flatten(1).amax(1))
    # a larger (and non-square) input: resized for the backbone, the map at the input's size
    big = tiny_model.detect(torch.rand(3, 3, 96, 80))
    assert big.scores.shape == (3,) and big.maps.shape == (3, 96, 80)
    from decodemo.methods import base

    if hasattr(base, "Detector"):  # the shared protocol
        assert isinstance(tiny_model, base.Detector)
    empty = PatchCore(tiny_model.config)
    with pytest.raises(ModelError, match="empty memory"):
        empty.detect(x)


def test_config_validation_and_dict_round_trip():
    cfg = BaselineConfig(category="tex", feature_blocks=(4, 10))
    assert cfg.feature_blocks == [4, 10] and BaselineConfig(**cfg.to_dict()) == cfg
    assert json.loads(json.dumps(cfg.to_dict()))["method"] == "baseline"
    assert cfg.coreset_size(200_000) == 10_000 and cfg.coreset_size(1000) == 100 and cfg.coreset_size(3) == 1
    for field, value in [("local_pool", 2), ("coreset_fraction", 0.0), ("coreset_fraction", 1.5),
                         ("feature_blocks", [4, 16]), ("feature_blocks", []), ("storage_dtype", "int8"),
                         ("clip_reduce", "median"), ("image_size", 16), ("grid", 0), ("projection_dim", -1),
                         ("modality", "video"), ("score", "nll"), ("threshold", float("nan"))]:
        with pytest.raises(ValueError, match=field):
            BaselineConfig(**{field: value})


def test_model_folder_round_trip_and_refusals(tiny_model, tmp_path):
    folder = tiny_model.save_pretrained(tmp_path / "m")
    tensors = read_weights(folder)
    assert set(tensors) == {"memory"} and tensors["memory"].dtype == torch.float16  # no backbone weights
    loaded = load_model(folder)
    assert isinstance(loaded, PatchCore) and loaded.memory.dtype == torch.float32
    x = torch.rand(2, 3, 64, 64)
    a, b = tiny_model.detect(x), loaded.detect(x)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.maps, b.maps)  # memory rounded at fit time
    cfg = json.loads((folder / "config.json").read_text())

    def folder_with(name, config=cfg, weights=None):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps(config))
        if weights is None:
            (d / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
        else:
            from safetensors.torch import save_file

            save_file(weights, str(d / "model.safetensors"))
        return d

    bad = folder_with("pickle")
    (bad / "memory.pt").write_bytes(b"\x80\x04not really")
    with pytest.raises(UnsafeWeightsError):
        load_model(bad)
    with pytest.raises(ModelError, match="expected 'baseline'"):
        PatchCore.from_pretrained(folder_with("other", {**cfg, "method": "invad"}))
    with pytest.raises(ModelError, match="local_pool"):
        load_model(folder_with("value", {**cfg, "local_pool": 4}))
    with pytest.raises(ModelError, match="152"):
        load_model(folder_with("shape", weights={"memory": torch.zeros(5, 7)}))
    with pytest.raises(ModelError, match="exactly one"):
        load_model(folder_with("extra", weights={"memory": torch.zeros(5, 152), "unet.w": torch.zeros(1)}))


# ----------------------------------------------------------------------------- trained


@pytest.fixture(scope="module")
def textures(tmp_path_factory):
    root = tmp_path_factory.mktemp("baseline_tex")
    write_synthetic_layout(root / "data", modality="image", n_train=16, n_test_good=8, n_test_per_kind=4,
                           size=128, seed=2)
    layout = scan_layout(root / "data")
    cfg = BaselineConfig(image_size=128, grid=16, category="tex")
    model, summary = train_baseline(layout, root / "model", TrainSettings(device="cpu", seed=5), config=cfg,
                                    val_fraction=0.25, log=QUIET)
    return model, layout, root / "model", summary


def test_separates_synthetic_defects(textures):
    model, layout, _, summary = textures
    assert summary["steps"] == 0 and summary["final_loss"] is None and summary["history"] == []
    x = torch.stack([image_tensor(s.path, 128) for s in layout.test])
    labels = np.array([s.label for s in layout.test])
    res = model.detect(x)
    assert auroc(labels, res.scores.numpy()) >= 0.9
    masks = np.stack([load_mask(s, (128, 128)) for s in layout.test])
    assert pixel_auroc(masks, res.maps.numpy()) >= 0.8  # the map points at the drawn defects
    # the held-out threshold flags the defective images (with 4 held-out files it is about
    # their maximum, too noisy to bound the false-alarm rate of the 8 normal test images)
    assert (res.scores.numpy()[labels == 1] > model.config.threshold).all()


def test_threshold_and_training_record_come_from_heldout_normals(textures):
    model, layout, folder, _ = textures
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["method"] == "baseline" and cfg["threshold"] == model.config.threshold is not None
    assert "held-out normal" in cfg["threshold_provenance"] and "no test data" in cfg["threshold_provenance"]
    t = cfg["training"]
    # 12 fit images and their 12 shape crops (shape_crops = 1), 16 x 16 patches each
    assert t["train_files"] == 12 and t["heldout_normal_files"] == 4 and t["train_patches"] == 24 * 16 * 16
    assert t["coreset_size"] == math.ceil(0.1 * 24 * 16 * 16) == len(model.memory) and t["device"] == "cpu"
    # the held-out files are not in the memory bank: their scores are well above zero, and the
    # threshold is their 0.99 quantile
    from decodemo.training.split import split_normal

    _, val_idx = split_normal(16, 0.25, 5)
    held = torch.stack([image_tensor(layout.train[i].path, 128) for i in val_idx])
    scores = model.detect(held).scores.numpy()
    # float32 scores of a batch of 4 here against the training's own batching: equal to ~1e-6
    assert scores.min() > 0 and cfg["threshold"] == pytest.approx(np.quantile(scores.astype(np.float64), 0.99),
                                                                  rel=1e-5)


def test_audio_layout_gets_mel_settings_and_a_threshold(tmp_path):
    from decodemo.inference import audio_input
    from decodemo.io.spectrogram import MelConfig
    from decodemo.inference import detect_clip

    layout = scan_layout(write_synthetic_layout(tmp_path / "hum", modality="audio", n_train=6, n_test_good=1,
                                                n_test_per_kind=1, seconds=2.0, seed=3))
    model, _ = train_baseline(layout, tmp_path / "model", TrainSettings(device="cpu"),
                              config=BaselineConfig(image_size=64, grid=8), val_fraction=0.3, log=QUIET)
    assert model.config.modality == "audio" and model.config.mel == MelConfig().to_dict()
    assert model.config.threshold is not None and "held-out normal" in model.config.threshold_provenance
    clip = audio_input(layout.test[0].path, MelConfig.from_dict(model.config.mel), 64)
    out = detect_clip(load_model(tmp_path / "model"), clip)
    assert math.isfinite(out.score) and out.nfe == 0 and out.tf_map.shape == clip.spectrogram.shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fits_and_detects_on_gpu(tiny_model):
    cfg = BaselineConfig(**{**tiny_model.config.to_dict(), "training": {}})
    gpu = PatchCore(cfg).to("cuda")
    x = torch.rand(3, 3, 64, 64)
    idx = gpu.fit(gpu.patch_features(x.cuda()), progress=False)
    assert idx.is_cuda and len(set(idx.tolist())) == len(idx) == cfg.coreset_size(3 * 64)
    gpu.memory = tiny_model.memory.cuda()  # the same bank on both devices
    res = gpu.detect(x)  # a CPU input goes to the memory's device
    assert res.scores.is_cuda and res.maps.shape == (3, 64, 64) and torch.isfinite(res.scores).all()
    torch.testing.assert_close(res.scores.cpu(), tiny_model.detect(x).scores, rtol=1e-2, atol=1e-2)
