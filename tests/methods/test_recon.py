"""Diffusion reconstruction (``recon``): the Haar transform, the DDIM reverse, a tiny trained
model on synthetic textures, and the model folder."""

from __future__ import annotations

import math

import pytest
import torch

from decodemo.data.layout import scan_layout
from decodemo.data.synthetic import write_synthetic_layout
from decodemo.errors import InputError, ModelError, UnsafeWeightsError
from decodemo.methods import load_model
from decodemo.methods.recon.config import ReconConfig
from decodemo.methods.recon.model import Recon, ddim_reconstruct, reverse_timesteps
from decodemo.training.recon import train_recon
from decodemo.methods.recon.wavelet import haar_dwt, haar_idwt
from decodemo.training import TrainSettings


@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (2, 3, 8, 6), (3, 2, 64, 64)])
def test_haar_round_trip_is_exact_and_orthonormal(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    w = haar_dwt(x)
    assert w.shape == (shape[0], 4 * shape[1], shape[2] // 2, shape[3] // 2)
    torch.testing.assert_close(haar_idwt(w), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(w.pow(2).sum(), x.pow(2).sum())  # energy preserved


def test_haar_sub_bands_of_a_known_block():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # a b / c d
    ll, lh, hl, hh = haar_dwt(x).flatten().tolist()
    assert (ll, lh, hl, hh) == (5.0, -2.0, -1.0, 0.0)
    with pytest.raises(InputError, match="even"):
        haar_dwt(torch.zeros(1, 1, 3, 4))


def test_reverse_grid_and_oracle_ddim_is_exact():
    assert reverse_timesteps(300, 5) == [300, 240, 180, 120, 60]
    assert reverse_timesteps(10, 1) == [10]
    with pytest.raises(ModelError):
        reverse_timesteps(0, 5)
    ab = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64)
    eps = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64)
    x_t = ab[300].sqrt() * x0 + (1 - ab[300]).sqrt() * eps
    calls = []

    def oracle(x, t):  # the true noise: DDIM then walks back to x0 exactly
        calls.append(int(t[0]))
        return eps

    torch.testing.assert_close(ddim_reconstruct(oracle, x_t, ab, reverse_timesteps(300, 5)), x0)
    assert calls == [300, 240, 180, 120, 60]


TINY = dict(image_size=64, block_out_channels=[16, 32, 32], norm_num_groups=8, feature_size=128, t0=250)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("recon")
    write_synthetic_layout(root / "data", modality="image", n_train=24, n_test_good=8, n_test_per_kind=4, size=64, seed=3)
    layout = scan_layout(root / "data")
    settings = TrainSettings(steps=200, batch_size=8, lr=2e-3, warmup_steps=10, checkpoint_every=100, device="cpu")
    model, summary = train_recon(layout, root / "model", settings, config=ReconConfig(**TINY, map_norm="position"),
                                 val_fraction=0.2, select="none", log=lambda *_: None)
    return model, layout, root / "model", summary


def test_tiny_recon_separates_and_localises_defects(tiny):
    from decodemo.evaluation import evaluate

    model, layout, _, summary = tiny
    assert summary["steps"] == 200 and summary["final_loss"] < 0.5  # an untrained UNet starts near 1
    report = evaluate(model, layout, batch_size=8)
    assert set(report["overall"]) == {"error", "semantic", "combined"}
    assert report["overall"]["combined"]["image_auroc"] >= 0.85
    assert report["overall"]["combined"]["pixel_auroc"] >= 0.75
    assert report["timing"]["nfe_per_input"] == 5


def test_detect_returns_reconstruction_and_is_reproducible(tiny):
    model, layout, _, _ = tiny
    from decodemo.inference import image_tensor

    x = torch.stack([image_tensor(s.path, 64) for s in layout.test[:3]])
    a, b = model.detect(x), model.detect(x)
    torch.testing.assert_close(a.scores, b.scores)  # the partial noising is seeded
    assert a.reconstruction.shape == (3, 3, 64, 64) and a.maps.shape == (3, 64, 64) and a.nfe == 5
    assert set(a.variants) == {"error", "semantic", "combined"}
    assert all(math.isfinite(float(s)) for s in a.scores)
    # a normal image is reconstructed closer than its noisy start
    normal = torch.stack([image_tensor(s.path, 64) for s in layout.samples("test", "good")[:4]])
    rec = model.detect(normal).reconstruction
    assert float((rec - normal).abs().mean()) < 0.08



def test_averaged_draws_are_one_batch_equal_to_draw_by_draw(tiny):
    """n_draws reconstructions run as one batch of n_draws x B, and equal the average of the
    draws computed one by one with the same seeds."""
    import copy

    from decodemo.methods.recon.model import ddim_reconstruct, reverse_timesteps

    model, layout, _, _ = tiny
    from decodemo.inference import image_tensor

    m = copy.deepcopy(model)
    m.config.n_draws = 3
    x = torch.stack([image_tensor(s.path, 64) for s in layout.test[:2]])
    calls = []
    real = m.unet.forward
    m.unet.forward = lambda a, t, *args, **kw: (calls.append(a.shape[0]), real(a, t, *args, **kw))[1]
    _, w, w_hat = m.reconstruct(x)
    assert calls == [6] * m.config.reverse_steps  # one call per step for all three draws of both inputs
    m.unet.forward = real
    ab = m.alphas_cumprod[m.config.t0]
    ts = reverse_timesteps(m.config.t0, m.config.reverse_steps)
    one_by_one = []
    for k in range(3):
        noise = torch.randn(w.shape[1:], generator=torch.Generator().manual_seed(m.config.noise_seed + k))
        w_t = ab.sqrt() * w + (1 - ab).sqrt() * noise.expand_as(w)
        one_by_one.append(ddim_reconstruct(lambda a, t: m.unet(a, t).sample, w_t, m.alphas_cumprod, ts))
    torch.testing.assert_close(w_hat, torch.stack(one_by_one).mean(0), rtol=1e-4, atol=1e-5)

def test_folder_round_trip_and_refusals(tiny, tmp_path):
    model, layout, folder, _ = tiny
    again = load_model(folder)
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(again.detect(x).scores, model.detect(x).scores)
    assert again.config.threshold is not None and "no test data" in again.config.threshold_provenance
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in folder.iterdir():
        if f.is_file():
            (bad / f.name).write_bytes(f.read_bytes())
    (bad / "model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(UnsafeWeightsError):
        load_model(bad)
    with pytest.raises(ModelError, match="map_norm"):
        Recon(ReconConfig(**{**TINY, "map_norm": "nonsense"}))
    with pytest.raises(ModelError, match="train_t_max"):
        Recon(ReconConfig(**{**TINY, "train_t_max": 0}))


def test_benchmark_table_measures_a_model(tiny):
    from decodemo.bench.methods import markdown, run

    _, layout, folder, _ = tiny
    rows = run({"syn": layout.root}, {("syn", "recon"): (folder, None)}, repeats=1, log=lambda *_: None)
    (row,) = rows
    assert row["method"] == "recon" and row["nfe"] == 5 and row["n_test"] == len(layout.test)
    assert 0.0 <= row["image_auroc"] <= 1.0 and row["latency_b1_s"] > 0 and row["throughput_b16"] > 0
    table = markdown(rows)
    assert "| syn | recon |" in table and "ms per image" in table
    assert torch.is_grad_enabled()  # the benchmark must not switch autograd off for the caller
