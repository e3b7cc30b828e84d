"""The measuring stick: training never reads test/, settings are selected on synthetic
validation anomalies by the documented rule, and evaluation reports the no-diffusion ablation."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from decodemo.data.layout import scan_layout
from decodemo.data.synthetic import write_synthetic_layout
from decodemo.errors import ModelError
from decodemo.training import TrainSettings
from decodemo.training.validation import SELECTION_MARGIN, Candidate, choose, selection_score

_OPENED: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _OPENED is not None and event == "open" and args and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(str(Path(args[0] if not isinstance(args[0], bytes) else args[0].decode()).resolve()))


sys.addaudithook(_audit)  # every Python-level file open (builtins.open, os.open, Path.read_bytes, ...)


def _record(fn):
    global _OPENED
    _OPENED = []
    try:
        out = fn()
    finally:
        opened, _OPENED = _OPENED, None
    return out, opened


QUIET = dict(log=lambda *_: None)
FAST = dict(batch_size=8, lr=1e-3, warmup_steps=2, checkpoint_every=1000, device="cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol") / "data"
    write_synthetic_layout(root, modality="image", n_train=12, n_test_good=4, n_test_per_kind=2, size=64, seed=5)
    return scan_layout(root)


def _train(method: str, layout, out: Path):
    if method == "invad":
        from decodemo.methods.invad import InvADConfig
        from decodemo.training.invad import train_invad

        cfg = InvADConfig(image_size=64, grid=8, block_out_channels=[16, 32], norm_num_groups=8)
        return train_invad(layout, out, TrainSettings(steps=6, validate_every=3, **FAST), config=cfg,
                           val_fraction=0.34, calibrate_steps=(0, 1), **QUIET)
    if method == "recon":
        from decodemo.methods.recon.config import ReconConfig
        from decodemo.training.recon import train_recon

        cfg = ReconConfig(image_size=32, block_out_channels=[16, 32, 32], norm_num_groups=8, feature_size=64,
                          reverse_steps=2)
        return train_recon(layout, out, TrainSettings(steps=4, validate_every=4, **FAST), config=cfg,
                           val_fraction=0.34, select_stats=4, stats_max=8, **QUIET)
    if method == "decodiff":
        from decodemo.methods.decodiff.config import DeCoDiffConfig, VAEConfig
        from decodemo.training.decodiff import train_decodiff, train_vae

        vae, _ = train_vae({"tex": layout}, out / "vae", TrainSettings(steps=3, **FAST),
                           config=VAEConfig(image_size=32, block_out_channels=[16, 32, 32], norm_num_groups=8),
                           crop=16, val_fraction=0.34, **QUIET)
        cfg = DeCoDiffConfig(block_out_channels=[32, 64], attention_levels=[1], norm_num_groups=8)
        return train_decodiff({"tex": layout}, vae, out, TrainSettings(steps=3, validate_every=3, **FAST),
                              config=cfg, val_fraction=0.34, **QUIET)
    from decodemo.methods.baseline.config import BaselineConfig
    from decodemo.training.baseline import train_baseline

    return train_baseline(layout, out, TrainSettings(**FAST), config=BaselineConfig(image_size=64, grid=8),
                          val_fraction=0.34, **QUIET)


@pytest.mark.parametrize("method", ["invad", "recon", "decodiff", "baseline"])
def test_training_opens_no_file_under_test(images, method, tmp_path):
    (model, summary), opened = _record(lambda: _train(method, images, tmp_path / method))
    root = images.root
    train_files = {str(s.path) for s in images.train}
    assert train_files & set(opened), "the audit hook saw no training file: the check would prove nothing"
    leaked = [p for p in opened if p.startswith(str(root / "test")) or p.startswith(str(root / "ground_truth"))]
    assert leaked == []
    if method != "baseline":
        # validation figures come from the synthetic set made of held-out normals
        assert summary["history"] and {"val_image_auroc", "val_pixel_auroc", "val_aupro"} <= {
            k.replace("tex_", "") for k in summary["history"][-1]}
        sel = json.loads((tmp_path / method / "config.json").read_text())["selection"]
        assert sel["mode"] == "auto" and sel["candidates"] and "no test data" in sel["rule"]
        assert sel["candidates"][sel["chosen"]]["settings"] == sel["chosen_settings"]


def test_choose_keeps_the_paper_setting_unless_clearly_beaten():
    paper = {"score": 0.80, "paper": True}
    assert choose([paper, {"score": 0.80 + SELECTION_MARGIN / 2}]) == 0
    assert choose([paper, {"score": 0.79}, {"score": 0.90}, {"score": 0.90}]) == 2  # earliest of the best
    assert choose([{"score": float("nan")}, {"score": 0.6}]) == 1
    with pytest.raises(ValueError):
        choose([])
    assert selection_score({"image_auroc": 0.9, "pixel_auroc": 0.7, "aupro": 0.1}) == pytest.approx(0.8)
    assert selection_score({"image_auroc": 0.9, "pixel_auroc": math.nan}) == pytest.approx(0.9)
    c = Candidate.make({"t0": 300}, {"image_auroc": 1.0, "pixel_auroc": 0.5, "aupro": 0.2}, paper=True)
    assert c["score"] == 0.75 and c["paper"] and json.loads(json.dumps(c))["settings"] == {"t0": 300}


def test_invad_selection_follows_the_rule_and_none_keeps_the_paper(tmp_path):
    from decodemo.methods.invad import InvADConfig
    from decodemo.training.invad import CANDIDATES, PAPER_SETTINGS, train_invad

    root = tmp_path / "data"
    write_synthetic_layout(root, modality="image", n_train=16, n_test_good=2, n_test_per_kind=1, size=64, seed=2)
    layout = scan_layout(root)
    cfg = dict(image_size=64, grid=8, block_out_channels=[16, 32], norm_num_groups=8)
    settings = TrainSettings(steps=40, **FAST)
    model, _ = train_invad(layout, tmp_path / "auto", settings, config=InvADConfig(**cfg), val_fraction=0.25,
                           calibrate_steps=(0,), **QUIET)
    sel = model.config.selection
    grid = {tuple(c["settings"][k] for k in CANDIDATES) for c in sel["candidates"]}
    assert grid == {(n, g, s) for n in CANDIDATES["feature_norm"] for g in CANDIDATES["inversion_grid"]
                    for s in CANDIDATES["inversion_steps"]}
    assert sel["candidates"][0]["paper"] and sel["candidates"][0]["settings"] == PAPER_SETTINGS
    assert sel["chosen"] == choose(sel["candidates"])
    assert {k: getattr(model.config, k) for k in CANDIDATES} == sel["chosen_settings"]
    from decodemo.methods.invad.inversion import stats_key

    key = stats_key(model.config.inversion_steps, model.config.inversion_grid)
    assert {"0", key} <= set(model.config.normal_stats)  # the chosen grid's statistics (and S = 0) only
    assert all(k == "0" or k.startswith("ref") == key.startswith("ref") for k in model.config.normal_stats)

    fixed, _ = train_invad(layout, tmp_path / "none", settings, config=InvADConfig(**cfg), val_fraction=0.25,
                           calibrate_steps=(0,), select="none", **QUIET)
    assert (fixed.config.feature_norm, fixed.config.inversion_grid, fixed.config.inversion_steps) == (
        "channel", "reference", 3)
    assert len(fixed.config.selection["candidates"]) == 1 and fixed.config.selection["chosen"] == 0


def test_evaluate_reports_the_no_diffusion_ablation_and_gain(tmp_path):
    from decodemo.evaluation import evaluate, format_report
    from decodemo.methods.invad import InvADConfig
    from decodemo.training.invad import train_invad

    root = tmp_path / "data"
    write_synthetic_layout(root, modality="image", n_train=12, n_test_good=4, n_test_per_kind=2, size=64, seed=4)
    layout = scan_layout(root)
    model, _ = train_invad(layout, tmp_path / "m", TrainSettings(steps=20, **FAST),
                           config=InvADConfig(image_size=64, grid=8, block_out_channels=[16, 32], norm_num_groups=8),
                           val_fraction=0.34, select="none", **QUIET)
    report = evaluate(model, layout, batch_size=8)
    main, abl = report["overall"]["nll+diff"], report["ablation"]["overall"]
    assert report["ablation"]["nfe_per_input"] == 0 and "S = 0" in report["ablation"]["what"]
    for k in ("image_auroc", "pixel_auroc", "aupro"):
        assert report["diffusion_gain"][k] == pytest.approx(main[k] - abl[k])
    # the ablation really is S = 0: the same figures as detect(steps=0)
    s0 = evaluate(model, layout, batch_size=8, steps=0, ablation=False)["overall"]["nll+diff"]
    assert s0["image_auroc"] == pytest.approx(abl["image_auroc"])
    assert "Diffusion gain" in format_report(report)
    assert "ablation" not in evaluate(model, layout, batch_size=8, ablation=False)
    assert np.isfinite(list(report["diffusion_gain"].values())).all()


def _figures(selection: dict) -> dict:
    return {tuple(sorted(c["settings"].items())): c["score"] for c in selection["candidates"]}


def test_select_compares_backbones_as_one_more_setting(images, tmp_path):
    """Models on EfficientNet-Lite0 and -Lite1 features of the same data and split compete in one
    selection: the backbone is a recorded setting, each model is scored with its own features,
    and its candidates' figures and threshold are those of selecting on it alone."""
    from decodemo.methods import load_model
    from decodemo.methods.invad import InvADConfig
    from decodemo.training.invad import reselect_invad, train_invad

    cfg = dict(image_size=64, grid=8, block_out_channels=[16, 32], norm_num_groups=8)
    kw = dict(val_fraction=0.34, calibrate_steps=(0, 1), select="none", **QUIET)
    for backbone in ("efficientnet-lite0", "efficientnet-lite1"):
        train_invad(images, tmp_path / backbone, TrainSettings(steps=6, **FAST),
                    config=InvADConfig(**cfg, backbone=backbone), **kw)
    both = reselect_invad([load_model(tmp_path / "efficientnet-lite1"), load_model(tmp_path / "efficientnet-lite0")],
                          images, val_fraction=0.34, **QUIET)
    sel = both.config.selection
    assert len(sel["candidates"]) == 16 and sel["candidates"][0]["paper"]
    assert sel["candidates"][0]["settings"]["backbone"] == "efficientnet-lite0"
    assert {c["settings"]["backbone"] for c in sel["candidates"]} == {"efficientnet-lite0", "efficientnet-lite1"}
    assert both.config.backbone == sel["chosen_settings"]["backbone"]
    for backbone in ("efficientnet-lite0", "efficientnet-lite1"):
        one = reselect_invad([load_model(tmp_path / backbone)], images, val_fraction=0.34, **QUIET)
        mine = {k: v for k, v in _figures(sel).items() if ("backbone", backbone) in k}
        assert {tuple(x for x in k if x[0] != "backbone"): v for k, v in mine.items()} == pytest.approx(
            _figures(one.config.selection), abs=1e-4)
    # the threshold comes from the chosen model's own features: the same as selecting nothing on it alone
    chosen = load_model(tmp_path / both.config.backbone)
    chosen.config.inversion_grid = both.config.inversion_grid
    chosen.config.inversion_steps = both.config.inversion_steps
    fixed = reselect_invad([chosen], images, select="none", val_fraction=0.34, **QUIET)
    assert fixed.config.threshold == pytest.approx(both.config.threshold, rel=1e-4)
    with pytest.raises(ModelError, match="one per feature standardisation and backbone"):
        reselect_invad([load_model(tmp_path / "efficientnet-lite1"), load_model(tmp_path / "efficientnet-lite1")],
                       images, val_fraction=0.34, **QUIET)


def test_select_on_trained_weights_is_the_training_protocol(images, tmp_path):
    """``select`` on weights trained with ``--select none`` gives the candidates and the choice
    that training with ``--select auto`` gives, opens no test file and keeps the weights."""
    from safetensors.torch import load_file

    from decodemo.cli import main
    from decodemo.methods import load_model
    from decodemo.methods.invad import InvADConfig
    from decodemo.training.invad import train_invad
    from decodemo.training.recon import reselect_recon

    cfg = dict(image_size=64, grid=8, block_out_channels=[16, 32], norm_num_groups=8)
    settings = TrainSettings(steps=6, **FAST)
    kw = dict(val_fraction=0.34, calibrate_steps=(0, 1), **QUIET)
    auto, _ = train_invad(images, tmp_path / "auto", settings, config=InvADConfig(**cfg), **kw)
    for norm in ("channel", "position"):
        train_invad(images, tmp_path / norm, settings, config=InvADConfig(**cfg, feature_norm=norm), select="none",
                    **kw)
    rc, opened = _record(lambda: main(["select", "--model", str(tmp_path / "position"), "--model",
                                       str(tmp_path / "channel"), "--data", str(images.root), "--out",
                                       str(tmp_path / "re"), "--val-fraction", "0.34"]))
    assert rc == 0 and {str(s.path) for s in images.train} & set(opened)
    assert [p for p in opened if p.startswith(str(images.root / "test"))] == []
    again = load_model(tmp_path / "re").config
    assert again.selection["rerun"] and len(again.selection["candidates"]) == 16
    assert _figures(again.selection) == pytest.approx(_figures(auto.config.selection), abs=1e-4)
    assert again.selection["chosen_settings"] == auto.config.selection["chosen_settings"]
    assert again.threshold == pytest.approx(auto.config.threshold, rel=1e-4)
    src = tmp_path / again.feature_norm / "model.safetensors"
    a, b = load_file(src), load_file(tmp_path / "re" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if k.startswith("unet."))

    # recon: every candidate is an inference setting; the weights stay
    from decodemo.methods.recon.config import ReconConfig
    from decodemo.training.recon import train_recon

    rcfg = dict(image_size=32, block_out_channels=[16, 32, 32], norm_num_groups=8, feature_size=64, reverse_steps=2)
    rkw = dict(val_fraction=0.34, select_stats=4, stats_max=8, **QUIET)
    r_auto, _ = train_recon(images, tmp_path / "r_auto", TrainSettings(steps=4, **FAST), config=ReconConfig(**rcfg),
                            **rkw)
    r_none, _ = train_recon(images, tmp_path / "r_none", TrainSettings(steps=4, **FAST), config=ReconConfig(**rcfg),
                            select="none", **rkw)
    assert len(r_none.config.selection["candidates"]) == 1
    before = {k: v.clone() for k, v in r_none.unet.state_dict().items()}
    reselect_recon(r_none, images, **rkw)
    assert _figures(r_none.config.selection) == pytest.approx(_figures(r_auto.config.selection), abs=1e-4)
    assert r_none.config.selection["chosen_settings"] == r_auto.config.selection["chosen_settings"]
    assert all(torch.equal(before[k], v) for k, v in r_none.unet.state_dict().items())


def test_select_refuses_what_it_cannot_do(images, tmp_path, capsys):
    from decodemo.cli import main
    from decodemo.methods.invad import InvADConfig
    from decodemo.training.invad import train_invad

    cfg = InvADConfig(image_size=64, grid=8, block_out_channels=[16, 32], norm_num_groups=8)
    train_invad(images, tmp_path / "a", TrainSettings(steps=2, **FAST), config=cfg, select="none", val_fraction=0.34,
                calibrate_steps=(0,), **QUIET)
    capsys.readouterr()
    # two UNets with the same standardisation are not two candidates
    assert main(["select", "--model", str(tmp_path / "a"), "--model", str(tmp_path / "a"),
                 "--data", str(images.root)]) == 2
    assert "feature_norm=channel" in capsys.readouterr().err
    assert main(["select", "--model", str(tmp_path / "a"), "--data", str(images.root), "--data",
                 str(images.root)]) == 2
    assert "one --data" in capsys.readouterr().err


def test_select_on_a_trained_decodiff_is_its_training_protocol(images, tmp_path):
    from safetensors.torch import load_file

    from decodemo.cli import main
    from decodemo.methods import load_model
    from decodemo.methods.decodiff.config import DeCoDiffConfig, VAEConfig
    from decodemo.training.decodiff import train_decodiff, train_vae

    vae, _ = train_vae({"tex": images}, tmp_path / "vae", TrainSettings(steps=3, **FAST),
                       config=VAEConfig(image_size=32, block_out_channels=[16, 32, 32], norm_num_groups=8),
                       crop=16, val_fraction=0.34, **QUIET)
    cfg = dict(block_out_channels=[32, 64], attention_levels=[1], norm_num_groups=8)
    kw = dict(val_fraction=0.34, **QUIET)
    auto, _ = train_decodiff({"tex": images}, vae, tmp_path / "auto", TrainSettings(steps=3, **FAST),
                             config=DeCoDiffConfig(**cfg), **kw)
    train_decodiff({"tex": images}, vae, tmp_path / "none", TrainSettings(steps=3, **FAST),
                   config=DeCoDiffConfig(**cfg), select="none", **kw)
    # the folder is named after its category, as train names categories
    data = tmp_path / "tex"
    data.symlink_to(images.root, target_is_directory=True)
    rc, opened = _record(lambda: main(["select", "--model", str(tmp_path / "none"), "--data", str(data),
                                       "--out", str(tmp_path / "re"), "--val-fraction", "0.34"]))
    assert rc == 0 and [p for p in opened if "/test/" in p] == []
    again = load_model(tmp_path / "re").config
    assert len(again.selection["candidates"]) == 12 and again.selection["rerun"]
    assert _figures(again.selection) == pytest.approx(_figures(auto.config.selection), abs=1e-4)
    assert again.selection["chosen_settings"] == auto.config.selection["chosen_settings"]
    assert again.threshold["tex"] == pytest.approx(auto.config.threshold["tex"], rel=1e-4)
    a, b = load_file(tmp_path / "none" / "model.safetensors"), load_file(tmp_path / "re" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a folder for another category is refused with the model's categories named
    assert main(["select", "--model", str(tmp_path / "none"), "--data", str(images.root)]) == 2


def test_invad_audio_candidates_standardise_per_frequency_row(tmp_path):
    """For audio the second feature standardisation is per channel and frequency row (time
    positions in a window are arbitrary); the statistics are shaped and computed that way."""
    from decodemo.methods.invad import InvAD, InvADConfig
    from decodemo.training.invad import AUDIO_NORMS, train_invad

    root = tmp_path / "hum"
    write_synthetic_layout(root, modality="audio", n_train=6, n_test_good=1, n_test_per_kind=1, seconds=2.0, seed=4)
    cfg = InvADConfig(image_size=64, grid=8, block_out_channels=[16, 32], norm_num_groups=8)
    model, _ = train_invad(scan_layout(root), tmp_path / "m", TrainSettings(steps=2, **FAST), config=cfg,
                           val_fraction=0.34, calibrate_steps=(0,), **QUIET)
    norms = {c["settings"]["feature_norm"] for c in model.config.selection["candidates"]}
    assert norms == set(AUDIO_NORMS) == {"channel", "row"}
    row = InvAD(InvADConfig(image_size=64, grid=8, block_out_channels=[16, 32], norm_num_groups=8, feature_norm="row"))
    feats = torch.randn(20, row.config.feature_channels, 8, 8) * torch.arange(1, 9).view(1, 1, 8, 1)  # std grows by row
    row.fit_feature_stats(feats)
    assert tuple(row.feat_mean.shape) == (row.config.feature_channels, 8, 1)
    torch.testing.assert_close(row.feat_std[0, :, 0], feats[:, 0].std(dim=(0, 2)), rtol=1e-4, atol=1e-4)
    std = row.standardise(feats)
    assert float(std[:, :, 7].std()) == pytest.approx(float(std[:, :, 0].std()), rel=0.2)  # every row unit scale


def test_select_brings_an_audio_recon_within_the_real_time_budget(tmp_path):
    """A recon model trained before the budget (more reverse steps, features upsampled past the
    window) is cut to it by ``select``: same UNet, features rebuilt at the window's side, its
    map and ablation statistics fitted again, the cuts recorded, and the folder loads as written."""
    from decodemo.cli import main
    from decodemo.methods import load_model
    from decodemo.methods.recon.config import ReconConfig
    from decodemo.training.recon import AUDIO_NFE_BUDGET, train_recon

    root = tmp_path / "hum"
    write_synthetic_layout(root, modality="audio", n_train=6, n_test_good=1, n_test_per_kind=1, seconds=2.0, seed=4)
    cfg = ReconConfig(image_size=32, block_out_channels=[16, 32, 32], norm_num_groups=8, feature_size=64)
    model, _ = train_recon(scan_layout(root), tmp_path / "m", TrainSettings(steps=2, **FAST), config=cfg,
                           val_fraction=0.34, select="none", select_stats=4, stats_max=8, **QUIET)
    assert (model.config.reverse_steps, model.config.feature_size) == (AUDIO_NFE_BUDGET, 32)  # train applies it
    # as a model from before the budget: 3 steps, features at 64 px
    model.config.reverse_steps = 3
    model.set_feature_size(64)
    model.fit_ablation_stats(torch.rand(4, 3, 32, 32))
    old = model.save_pretrained(tmp_path / "old")
    assert tuple(load_model(old).mean_feat_0.shape[-2:]) == (16, 16)  # stride 4 of 64 px

    assert main(["select", "--model", str(old), "--data", str(root), "--out", str(tmp_path / "new"),
                 "--select", "none", "--val-fraction", "0.34"]) == 0
    new = load_model(tmp_path / "new")
    assert (new.config.reverse_steps, new.config.feature_size) == (AUDIO_NFE_BUDGET, 32)
    assert new.has_ablation and tuple(new.mean_feat_0.shape[-2:]) == (8, 8)
    rerun = new.config.selection["rerun"]
    assert "reverse steps cut from 3 to 2" in rerun and "semantic features from 64 to 32 px" in rerun
    assert all(torch.equal(v, new.unet.state_dict()[k]) for k, v in model.unet.state_dict().items())
    res = new.detect(torch.rand(2, 3, 32, 32))
    assert res.nfe == AUDIO_NFE_BUDGET and torch.isfinite(res.scores).all()
