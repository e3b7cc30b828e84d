"""Audio is a first-class input for every method: each trains on log-mel spectrogram windows
of synthetic machine hum and scores clips with injected clicks above the same clips without
them (``make_hum`` draws the normal part first, so the twins differ only at the clicks): in at
least 4 of 5 pairs, and on average."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from decodemo.data.layout import scan_layout
from decodemo.data.synthetic import SAMPLE_RATE, make_hum, write_synthetic_layout
from decodemo.inference import audio_input
from decodemo.io.spectrogram import MelConfig
from decodemo.inference import detect_clip
from decodemo.training import TrainSettings

SEEDS = (101, 102, 103, 104, 105)


@pytest.fixture(scope="module")
def hum(tmp_path_factory):
    root = tmp_path_factory.mktemp("hum")
    layout = scan_layout(write_synthetic_layout(root / "data", modality="audio", n_train=12, n_test_good=2,
                                                n_test_per_kind=1, seconds=2.0, seed=7))
    pairs = []
    for seed in SEEDS:
        files = []
        for anomaly in (None, "click"):
            y, _ = make_hum(seed, seconds=2.0, anomaly=anomaly)
            path = root / f"{seed}_{anomaly or 'clean'}.wav"
            sf.write(path, y, SAMPLE_RATE, subtype="PCM_16")
            files.append(path)
        pairs.append(files)
    return layout, root, pairs


def _train(method: str, layout, out):
    quiet = lambda *_: None  # noqa: E731
    if method == "invad":
        from decodemo.methods.invad import InvADConfig
        from decodemo.training.invad import train_invad

        # a click is a frame or two wide: a 16 x 16 feature grid keeps it visible
        # a tiny 200-step UNet: on the reference grid (last step to alpha_bar = 0, z_T = its noise
        # prediction at t = 999) it ranked the click first in 3 of 5 pairs; the uniform grid is kept here
        cfg = InvADConfig(image_size=128, grid=16, block_out_channels=[32, 64], norm_num_groups=8,
                          feature_norm="position", inversion_grid="uniform")
        return train_invad(layout, out, TrainSettings(steps=200, batch_size=16, lr=1e-3, warmup_steps=10, device="cpu"),
                           config=cfg, val_fraction=0.2, calibrate_steps=(3,), select="none", log=quiet)[0]
    if method == "recon":
        from decodemo.methods.recon.config import ReconConfig
        from decodemo.training.recon import train_recon

        cfg = ReconConfig(image_size=64, block_out_channels=[16, 32, 32], norm_num_groups=8, feature_size=128,
                          map_norm="row")
        return train_recon(layout, out, TrainSettings(steps=120, batch_size=8, lr=2e-3, warmup_steps=10, device="cpu"),
                           config=cfg, val_fraction=0.2, select="none", log=quiet)[0]
    from decodemo.methods.decodiff.config import DeCoDiffConfig, VAEConfig
    from decodemo.training.decodiff import train_decodiff, train_vae

    vae, _ = train_vae({"hum": layout}, out / "vae", TrainSettings(steps=120, batch_size=8, lr=2e-3, warmup_steps=10,
                                                                    device="cpu"),
                       config=VAEConfig(image_size=64, block_out_channels=[16, 32, 32], norm_num_groups=8), crop=32,
                       val_fraction=0.2, log=quiet)
    cfg = DeCoDiffConfig(block_out_channels=[32, 64], attention_levels=[1], norm_num_groups=8, dropout=0.1)
    return train_decodiff({"hum": layout}, vae, out, TrainSettings(steps=120, batch_size=16, lr=1e-3, warmup_steps=10,
                                                                   device="cpu"),
                          config=cfg, val_fraction=0.2, select="none", log=quiet)[0]


@pytest.mark.parametrize("method", ["invad", "recon", "decodiff"])
def test_every_method_scores_a_click_above_the_clean_clip(hum, method, tmp_path):
    layout, _, pairs = hum
    model = _train(method, layout, tmp_path / method)
    cfg = model.config
    assert cfg.modality == "audio" and cfg.mel is not None
    mel = MelConfig.from_dict(cfg.mel)
    kwargs = {"category": "hum"} if getattr(cfg, "categories", None) else {}
    wins, margins = 0, []
    for clean_path, click_path in pairs:
        clean = detect_clip(model, audio_input(clean_path, mel, cfg.image_size), **kwargs)
        click = detect_clip(model, audio_input(click_path, mel, cfg.image_size), **kwargs)
        wins += click.score > clean.score
        margins.append((round(clean.score, 3), round(click.score, 3)))
        # the time-frequency map and the per-frame curve cover the clip
        assert click.tf_map.shape == (mel.n_mels, clean.tf_map.shape[1]) and np.isfinite(click.tf_map).all()
        assert click.frame_scores.shape == (click.tf_map.shape[1],)
        assert click.nfe == model.detect(audio_input(click_path, mel, cfg.image_size).windows[:1], **kwargs).nfe * len(
            click.window_scores)
    # Tiny models trained for seconds are not bit-reproducible across thread schedules: one
    # twin in five may tie or flip, but the clicks must win clearly overall.
    assert wins >= len(SEEDS) - 1, (method, margins)
    assert sum(c for _, c in margins) > sum(n for n, _ in margins), (method, margins)
