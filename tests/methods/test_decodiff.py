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
    from decodemo.inputs import image_tensor

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
    mean is what ``encode`` returns, its std is positive, and the model trains and is recorded so."""
    _, vae, layouts, _, _ = tiny
    from decodemo.inputs import image_tensor

    x = torch.stack([image_tensor(s.path, 64) for s in layouts["tex_a"].train[:4]])
    mean, std = vae.encode_posterior(x)
    torch.testing.assert_close(mean, vae.encode(x))
    assert std.shape == mean.shape and bool((std > 0).all())
    cfg = DeCoDiffConfig(block_out_channels=[32, 64], attention_levels=[1], norm_num_groups=8, dropout=0.1)
    model, summary = train_decodiff(layouts, vae, tmp_path / "post", TrainSettings(steps=6, batch_size=8, device="cpu"),
                                    config=cfg, val_fraction=0.15, select="none", posterior=True, log=lambda *_: None)
    assert summary["steps"] == 6 and math.isfinite(summary["final_loss"])
    assert json.loads((tmp_path / "post" / "config.json").read_text())["training"]["posterior_sampling"] is True
    assert torch.isfinite(model.detect(x, category="tex_a").scores).all()
