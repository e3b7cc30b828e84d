"""DeCo-Diff end to end on a tiny latent space and UNet trained in the test on synthetic textures."""

from __future__ import annotations

import json
import math

import pytest
import torch

from decodemo.data.layout import scan_layout
from decodemo.data.synthetic import write_synthetic_layout
from decodemo.errors import InputError, ModelError
from decodemo.evaluation import evaluate
from decodemo.methods import load_model
from decodemo.methods.decodiff.config import DeCoDiffConfig, VAEConfig
from decodemo.training.decodiff import train_decodiff, train_vae
from decodemo.training import TrainSettings

TINY_VAE = dict(image_size=64, block_out_channels=[16, 32, 32], layers_per_block=1, norm_num_groups=8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("deco")
    layouts = {}
    for name, seed in (("tex_a", 1), ("tex_b", 2)):
        write_synthetic_layout(root / name, modality="image", n_train=24, n_test_good=6, n_test_per_kind=3,
                               size=64, seed=seed)
        layouts[name] = scan_layout(root / name)
    quiet = lambda *_: None  # noqa: E731
    vae, _ = train_vae(layouts, root / "vae", TrainSettings(steps=150, batch_size=8, lr=2e-3, warmup_steps=10,
                                                             device="cpu"), config=VAEConfig(**TINY_VAE), crop=32,
                       val_fraction=0.15, log=quiet)
    cfg = DeCoDiffConfig(block_out_channels=[32, 64], attention_levels=[1], norm_num_groups=8, dropout=0.1)
    settings = TrainSettings(steps=160, batch_size=16, lr=1e-3, weight_decay=1e-4, warmup_steps=10, device="cpu",
                             validate_every=80)
    model, summary = train_decodiff(layouts, vae, root / "model", settings, config=cfg, val_fraction=0.15,
                                    log=quiet)
    return model, vae, layouts, root, summary


def test_vae_latents_have_unit_std_and_reconstruct(tiny):
    _, vae, layouts, root, _ = tiny
    cfg = json.loads((root / "vae" / "config.json").read_text())
    assert cfg["method"] == "vae" and cfg["categories"] == ["tex_a", "tex_b"]
    assert cfg["quality"]["tex_a"]["psnr_heldout_train_good"] > 15.0
    from decodemo.inference import image_tensor

    x = torch.stack([image_tensor(s.path, 64) for s in layouts["tex_a"].train[:12]])
    z = vae.encode(x)
    assert z.shape == (12, 4, 16, 16) and 0.7 < float(z.std()) < 1.3


def test_training_reports_validation_and_thresholds(tiny):
    model, _, _, root, summary = tiny
    assert [h["step"] for h in summary["history"]] == [80, 160]
    # validation on synthetic anomalies of held-out normals, per category: never test data
    assert {"tex_a_val_image_auroc", "tex_b_val_pixel_auroc", "tex_a_val_aupro"} <= set(summary["history"][-1])
    cfg = json.loads((root / "model" / "config.json").read_text())
    assert set(cfg["threshold"]) == {"tex_a", "tex_b"} and "no test data" in cfg["threshold_provenance"]


def test_correction_localises_drawn_defects(tiny):
    model, _, layouts, _, _ = tiny
    report = evaluate(model, layouts["tex_a"], batch_size=16, category="tex_a")
    overall = report["overall"]
    assert set(overall) == {"geometric", "arithmetic", "pixel", "latent"}
    assert report["timing"]["nfe_per_input"] == 5
    # better than chance at finding the drawn defects, for the paper's fusion
    assert overall["geometric"]["pixel_auroc"] > 0.65
    assert all("aupro" in overall[f] for f in overall)


def test_detect_returns_the_corrected_image_and_refuses_unknown_categories(tiny):
    model, _, layouts, root, _ = tiny
    x = torch.rand(2, 3, 64, 64)
    res = model.detect(x, category="tex_b")
    assert res.reconstruction.shape == (2, 3, 64, 64) and res.maps.shape == (2, 64, 64) and res.nfe == 5
    assert set(res.extras) >= {"pixel_map", "latent_map"}
    with pytest.raises(InputError, match="tex_a"):
        model.detect(x)
    with pytest.raises(InputError, match="Unknown category"):
        model.detect(x, category="bottle")
    loaded = load_model(root / "model")
    torch.testing.assert_close(loaded.detect(x, category="tex_b").scores, res.scores)
    from decodemo.methods.decodiff.model import DeCoDiff, LatentVAE

    with pytest.raises(ModelError, match="expected 'vae'"):
        LatentVAE.from_pretrained(root / "model")
    with pytest.raises(ModelError, match="expected 'decodiff'"):
        DeCoDiff.from_pretrained(root / "vae")


def test_a_pretrained_diffusers_vae_can_replace_our_own(tiny, tmp_path):
    """``VAEConfig.pretrained`` names a diffusers AutoencoderKL (a Hub repo id; here a local
    diffusers folder, which ``from_pretrained`` resolves the same way): only the latent scale
    is computed, the model folder references the VAE instead of copying its weights."""
    from safetensors import safe_open

    from decodemo.methods.decodiff.model import LatentVAE
    from decodemo.training.decodiff import pretrained_vae

    _, vae, layouts, _, _ = tiny
    hub_dir = tmp_path / "hub_vae"
    vae.vae.save_pretrained(hub_dir, safe_serialization=True)  # what a Hub repo holds
    cfg = VAEConfig(image_size=64, pretrained=str(hub_dir))
    pre = pretrained_vae(layouts, tmp_path / "vae_ref", config=cfg, device="cpu", log=lambda *_: None)
    assert cfg.block_out_channels == [16, 32, 32] and cfg.quality["tex_a"]["psnr_heldout_train_good"] > 15.0
    x = torch.rand(3, 3, 64, 64)
    torch.testing.assert_close(pre.vae.decode(pre.vae.encode(x).latent_dist.mean).sample,
                               vae.vae.decode(vae.vae.encode(x).latent_dist.mean).sample)
    # the calibrated folder holds no copy of the weights and reloads from the reference
    with safe_open(str(tmp_path / "vae_ref" / "model.safetensors"), "pt") as f:
        assert list(f.keys()) == []
    again = LatentVAE.from_pretrained(tmp_path / "vae_ref")
    torch.testing.assert_close(again.encode(x), pre.encode(x))

    dcfg = DeCoDiffConfig(block_out_channels=[32, 64], attention_levels=[1], norm_num_groups=8)
    model, _ = train_decodiff(layouts, pre, tmp_path / "dd", TrainSettings(steps=4, batch_size=8, device="cpu"),
                              config=dcfg, log=lambda *_: None)
    with safe_open(str(tmp_path / "dd" / "model.safetensors"), "pt") as f:
        assert not any(k.startswith("vae.") for k in f.keys())
    loaded = load_model(tmp_path / "dd")
    torch.testing.assert_close(loaded.detect(x, category="tex_a").scores, model.detect(x, category="tex_a").scores)

    # a pickle-only diffusers folder is refused with a clear error
    bad = tmp_path / "pickle_vae"
    bad.mkdir()
    (bad / "config.json").write_text((hub_dir / "config.json").read_text())
    torch.save({}, bad / "diffusion_pytorch_model.bin")
    with pytest.raises(ModelError, match="safetensors"):
        LatentVAE(VAEConfig(image_size=64, pretrained=str(bad)))


def test_training_on_posterior_samples(tiny, tmp_path):
    """``posterior=True`` trains on a fresh sample of each latent's VAE posterior: the posterior
    mean is what ``encode`` returns, its std is positive, and the model trains and is recorded so.
    ``augment=1`` adds one translated copy of every training input."""
    _, vae, layouts, root, _ = tiny
    from decodemo.inference import image_tensor

    x = torch.stack([image_tensor(s.path, 64) for s in layouts["tex_a"].train[:4]])
    mean, std = vae.encode_posterior(x)
    torch.testing.assert_close(mean, vae.encode(x))
    assert std.shape == mean.shape and bool((std > 0).all())
    cfg = DeCoDiffConfig(block_out_channels=[32, 64], attention_levels=[1], norm_num_groups=8, dropout=0.1)
    model, summary = train_decodiff(layouts, vae, tmp_path / "post", TrainSettings(steps=6, batch_size=8, device="cpu"),
                                    config=cfg, val_fraction=0.15, select="none", posterior=True, augment=1,
                                    log=lambda *_: None)
    assert summary["steps"] == 6 and math.isfinite(summary["final_loss"])
    training = json.loads((tmp_path / "post" / "config.json").read_text())["training"]
    plain = json.loads((root / "model" / "config.json").read_text())["training"]
    assert training["posterior_sampling"] is True and training["augment_copies"] == 1
    assert training["train_latents"] == 2 * plain["train_latents"]
    assert torch.isfinite(model.detect(x, category="tex_a").scores).all()


def test_jitter_moves_by_a_few_pixels_and_is_seeded():
    """The official loader's augmentation: translations of at most H / 72 px with the border
    repeated, brightness and contrast within 5 %; seeded; spectrograms move along time only."""
    from decodemo.training.decodiff import jitter

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 144, 144, generator=g) * 0.5 + 0.25
    a, b = jitter(x, 4, seed=7), jitter(x, 4, seed=7)
    assert a.shape == (12, 3, 144, 144) and torch.equal(a, b)
    assert not torch.equal(a, jitter(x, 4, seed=8))
    assert jitter(x, 0, seed=7).shape == (0, 3, 144, 144)
    m = 2  # 144 / 72
    def residual(moved, shifted):  # least-squares fit moved = c * shifted + d on the inner window
        u, v = shifted[:, m:-m, m:-m].flatten(), moved[:, m:-m, m:-m].flatten()
        c, d = torch.linalg.lstsq(torch.stack([u, torch.ones_like(u)], 1), v[:, None]).solution.flatten()
        return float((c * u + d - v).abs().max()), float(c)

    for k, moved in enumerate(a):
        src = x[k % 3]
        # exactly one shift within +-m, with a small affine level change, explains each copy
        err, contrast = min(residual(moved, src.roll((dy, dx), (1, 2))) for dy in range(-m, m + 1)
                            for dx in range(-m, m + 1))
        assert err < 1e-4 and abs(contrast - 1) <= 0.05 + 1e-4
        assert abs(float(moved.mean() - src.mean())) <= 0.05 + 1e-3
    audio = jitter(x, 3, seed=1, modality="audio")
    for k, moved in enumerate(audio):  # levels kept, rows (frequencies) never move
        src = x[k % 3]
        assert any(torch.equal(moved[:, :, m:-m], src.roll(dx, 2)[:, :, m:-m]) for dx in range(-m, m + 1))


def test_perceptual_loss_is_zero_on_equal_inputs_and_sends_gradients():
    from decodemo.features.efficientnet import PerceptualLoss

    loss = PerceptualLoss(image_size=32)
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 32, 32, generator=g)
    assert float(loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    b = a.clone().requires_grad_(True)
    blurred = torch.nn.functional.avg_pool2d(b, 3, 1, 1)
    value = loss(blurred, a)
    value.backward()
    assert float(value.detach()) > 0 and b.grad is not None and float(b.grad.abs().sum()) > 0
    assert all(p.grad is None for p in loss.parameters())  # the network stays frozen
    grey = torch.rand(2, 1, 32, 32, generator=g)
    assert float(loss(grey, grey.flip(-1))) > 0  # one-channel inputs are repeated to RGB


def test_f4_vae_with_a_perceptual_loss_trains_to_32_by_32_latents(tmp_path):
    """``--vae-downsampling 4 --perceptual W``: three stages give 32 x 32 latents at 128 px; the
    perceptual term trains, and the frozen feature network is not saved with the VAE."""
    from decodemo.methods.decodiff.config import CPU_VAE_F4
    from decodemo.methods.decodiff.model import LatentVAE

    assert VAEConfig(image_size=128, **CPU_VAE_F4).latent_size == 32
    write_synthetic_layout(tmp_path / "tex", modality="image", n_train=10, n_test_good=1, n_test_per_kind=1,
                           size=64, seed=3)
    layouts = {"tex": scan_layout(tmp_path / "tex")}
    cfg = VAEConfig(image_size=64, perceptual_weight=0.5, **CPU_VAE_F4)
    vae, summary = train_vae(layouts, tmp_path / "vae", TrainSettings(steps=4, batch_size=4, device="cpu"),
                             config=cfg, crop=32, val_fraction=0.2, log=lambda *_: None)
    assert summary["steps"] == 4 and math.isfinite(summary["final_loss"])
    again = LatentVAE.from_pretrained(tmp_path / "vae")
    assert again.config.perceptual_weight == 0.5
    assert not any(k.startswith(("features", "_perceptual")) for k in again.vae.state_dict())
    x = torch.rand(2, 3, 64, 64)
    assert again.encode(x).shape == (2, 4, 16, 16)
