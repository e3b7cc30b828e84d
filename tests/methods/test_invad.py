"""The reconstruction-free detector: inversion math, a tiny trained model, the model folder."""

from __future__ import annotations

import json
import math

import pytest
import torch

from decodemo.data.layout import scan_layout
from decodemo.data.synthetic import write_synthetic_layout
from decodemo.errors import ModelError, UnsafeWeightsError
from decodemo.methods import load_model
from decodemo.methods.invad import InvAD, InvADConfig
from decodemo.methods.invad.inversion import ddim_invert, diff_score, inversion_timesteps, nll_score, norm_map
from decodemo.training.invad import train_invad
from decodemo.training.split import split_normal
from decodemo.training import TrainSettings


def _alphas(T=1000):
    betas = torch.linspace(1e-4, 0.02, T)
    return torch.cumprod(1 - betas, 0)


def test_inversion_grid():
    assert inversion_timesteps(1000, 3) == [0, 333, 666, 999]
    assert inversion_timesteps(1000, 1) == [0, 999]
    assert len(inversion_timesteps(1000, 10)) == 11
    with pytest.raises(ValueError):
        inversion_timesteps(1000, 0)
    # the reference code's respaced grid: network at S points over 0..999, then alpha_bar = 0 (t = T)
    assert inversion_timesteps(1000, 3, "reference") == [0, 500, 999, 1000]
    assert inversion_timesteps(1000, 2, "reference") == [0, 999, 1000]
    assert inversion_timesteps(1000, 1, "reference") == [0, 1000]
    assert inversion_timesteps(1000, 5, "reference") == [0, 250, 500, 749, 999, 1000]
    with pytest.raises(ValueError, match="grid"):
        inversion_timesteps(1000, 3, "cosine")


def test_ddim_inversion_with_oracle_noise_is_exact():
    # If x_0 = sqrt(ab_0) a + sqrt(1 - ab_0) e and the model always predicts e, DDIM inversion
    # must land exactly on sqrt(ab_T) a + sqrt(1 - ab_T) e, whatever the grid.
    ab = _alphas()
    g = torch.Generator().manual_seed(0)
    a, e = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    x0 = ab[0].sqrt() * a + (1 - ab[0]).sqrt() * e
    for steps in (1, 3, 10):
        ts = inversion_timesteps(1000, steps)
        calls = []
        z = ddim_invert(lambda x, t: (calls.append(t), e)[1], x0, ab, ts)
        expected = ab[999].sqrt() * a + (1 - ab[999]).sqrt() * e
        torch.testing.assert_close(z, expected, rtol=1e-4, atol=1e-4)
        assert len(calls) == steps  # NFE = S
        # the reference grid ends at alpha_bar = 0: z_T is the (oracle) noise itself
        calls = []
        z = ddim_invert(lambda x, t: (calls.append(t), e)[1], x0, ab, inversion_timesteps(1000, steps, "reference"))
        torch.testing.assert_close(z, e, rtol=1e-4, atol=1e-4)
        assert len(calls) == steps and int(calls[-1][0]) == (0 if steps == 1 else 999)


def test_scores_match_gaussian_log_density():
    z = torch.randn(3, 5, 4, 4)
    ref = -torch.distributions.Normal(0.0, 1.0).log_prob(z).flatten(1).sum(1)
    torch.testing.assert_close(nll_score(z), ref, rtol=1e-5, atol=1e-4)
    z = torch.zeros(1, 2, 2, 2)
    z[0, :, 1, 1] = torch.tensor([3.0, 4.0])
    assert norm_map(z)[0, 1, 1] == 5.0
    assert diff_score(z).item() == pytest.approx(5.0)


def test_split_normal_is_seeded_and_disjoint():
    fit, val = split_normal(50, 0.1, seed=3)
    assert split_normal(50, 0.1, seed=3) == (fit, val)
    assert not set(fit) & set(val) and len(fit) + len(val) == 50 and len(val) == 5


def _tiny_config(**kw) -> InvADConfig:
    return InvADConfig(image_size=128, grid=8, block_out_channels=[32, 64], norm_num_groups=8, **kw)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("tex")
    write_synthetic_layout(root / "data", modality="image", n_train=24, n_test_good=8, n_test_per_kind=4, size=128, seed=1)
    layout = scan_layout(root / "data")
    settings = TrainSettings(steps=150, batch_size=16, lr=1e-3, warmup_steps=10, checkpoint_every=100, device="cpu")
    model, summary = train_invad(layout, root / "model", settings,
                                 config=_tiny_config(category="tex", feature_norm="position"),
                                 val_fraction=0.2, calibrate_steps=(1, 3), select="none", log=lambda *_: None)
    return model, layout, root / "model", summary


def test_tiny_invad_separates_defects(tiny_model):
    from decodemo.evaluation import evaluate

    model, layout, _, summary = tiny_model
    assert summary["steps"] == 150 and math.isfinite(summary["final_loss"])
    report = evaluate(model, layout, batch_size=8)
    assert report["overall"]["nll+diff"]["image_auroc"] >= 0.9
    # The map must point at the drawn defects better than chance.
    assert report["overall"]["nll+diff"]["pixel_auroc"] >= 0.75
    assert report["timing"]["nfe_per_input"] == 3


def test_training_lowers_the_denoising_loss(tiny_model):
    """The trained UNet predicts the noise on normal features better than a fresh one."""
    model, layout, _, _ = tiny_model
    from decodemo.inference import image_tensor

    x = torch.stack([image_tensor(s.path, model.config.image_size) for s in layout.samples("test", "good")])
    x0 = model.encode(x)
    fresh = InvAD(model.config)
    fresh.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    fresh.unet = type(model.unet).from_config(model.unet.config)

    def loss(m):
        g = torch.Generator().manual_seed(5)
        with torch.no_grad():
            return float(torch.stack([m.training_loss(x0, generator=g) for _ in range(8)]).mean())

    trained, untrained = loss(model), loss(fresh)
    assert trained < 0.95 * untrained


def test_model_folder_round_trip_and_refusals(tiny_model, tmp_path):
    model, layout, folder, _ = tiny_model
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["method"] == "invad" and cfg["threshold"] is not None and "no test data" in cfg["threshold_provenance"]
    assert cfg["inversion_grid"] == "reference" and set(cfg["normal_stats"]) == {"ref1", "ref3"}
    loaded = load_model(folder)
    x = torch.rand(2, 3, 128, 128)
    torch.testing.assert_close(loaded.detect(x).scores, model.detect(x).scores)
    # a folder written before the grid option was calibrated on the uniform grid and loads as such
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    legacy = {k: v for k, v in cfg.items() if k != "inversion_grid"}
    legacy["normal_stats"] = {k[3:]: v for k, v in cfg["normal_stats"].items()}
    (old / "config.json").write_text(json.dumps(legacy))
    assert load_model(old).config.inversion_grid == "uniform"
    with pytest.raises(ModelError, match="reference grid"):
        load_model(old).detect(x, inversion_grid="reference")
    with pytest.raises(ModelError, match="S=5"):
        loaded.detect(x, steps=5)
    # A folder with pickle weights is refused before anything is read.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((folder / "config.json").read_text())
    (bad / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(UnsafeWeightsError):
        load_model(bad)
    # A config naming an unknown field says which.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    (broken / "config.json").write_text(json.dumps({**cfg, "colour": "red"}))
    with pytest.raises(ModelError, match="colour"):
        load_model(broken)


def test_training_resumes_from_checkpoint(tmp_path):
    from decodemo.training import train_loop

    torch.manual_seed(0)
    data = torch.randn(64, 4)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))

    class AE(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return torch.nn.functional.mse_loss(self.net(x), x)

    s = TrainSettings(steps=40, batch_size=8, lr=1e-2, warmup_steps=2, checkpoint_every=20, device="cpu")
    full = AE(torch.nn.Sequential(*[m for m in net]))
    import copy

    a, b = copy.deepcopy(full), copy.deepcopy(full)
    train_loop(a, data, s, checkpoint_dir=tmp_path / "a")
    # Stop at 20, then resume to 40: same step count, checkpoint holds step 40, weights finite.
    half = TrainSettings(**{**s.to_dict(), "steps": 20})
    train_loop(b, data, half, checkpoint_dir=tmp_path / "b")
    state = json.loads((tmp_path / "b" / "trainer_state.json").read_text())
    assert state["step"] == 20
    c = copy.deepcopy(full)
    out = train_loop(c, data, s, checkpoint_dir=tmp_path / "b", resume=True)
    assert out["steps"] == 40
    assert json.loads((tmp_path / "b" / "trainer_state.json").read_text())["step"] == 40
    assert all(torch.isfinite(p).all() for p in c.parameters())
    assert not (tmp_path / "b" / "optimizer.bin").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_trains_and_detects_on_gpu_with_mixed_precision(tmp_path):
    write_synthetic_layout(tmp_path / "data", modality="image", n_train=12, n_test_good=4, n_test_per_kind=2, size=128, seed=3)
    layout = scan_layout(tmp_path / "data")
    settings = TrainSettings(steps=20, batch_size=8, lr=1e-3, warmup_steps=2, device="cuda", mixed_precision="auto")
    model, summary = train_invad(layout, tmp_path / "model", settings, config=_tiny_config(), calibrate_steps=(3,),
                                 select="none", log=lambda *_: None)
    assert math.isfinite(summary["final_loss"])
    assert next(model.unet.parameters()).is_cuda
    res = model.detect(torch.rand(2, 3, 128, 128, device="cuda"))
    assert res.scores.is_cuda and torch.isfinite(res.scores).all()
    loaded = load_model(tmp_path / "model", device="cpu")
    assert torch.isfinite(loaded.detect(torch.rand(1, 3, 128, 128)).scores).all()
