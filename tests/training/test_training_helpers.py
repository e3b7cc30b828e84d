"""The steps the trainers share: loading the split, candidates and the selection record, per-file
scores and the threshold, the settings record; and the model-folder base every method inherits."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from decodemo.data.layout import scan_layout
from decodemo.data.synthetic import write_synthetic_layout
from decodemo.errors import ModelError
from decodemo.methods.base import ModelConfig, prefixed, unprefixed
from decodemo.methods.invad import InvAD, InvADConfig
from decodemo.methods.recon.config import ReconConfig
from decodemo.training import TrainSettings
from decodemo.training.prepare import load_split, set_modality, split_files
from decodemo.training.split import split_normal
from decodemo.training.validation import (
    SELECTION_RULE,
    add_candidate,
    adopt_selection,
    file_scores,
    set_threshold,
)

FIGURES = {"image_auroc": 0.75, "pixel_auroc": 0.65, "aupro": 0.3}


def test_file_scores_one_per_file_batched_or_not():
    files = [torch.arange(5.0), torch.arange(3.0) + 10, torch.tensor([7.0])]
    seen = []

    def score(x):
        seen.append(len(x))
        return x * 2

    assert file_scores(score, files, audio=True, reduce="max", batch=2) == [8.0, 24.0, 14.0]
    assert seen == [2, 2, 1, 2, 1, 1]
    assert file_scores(score, files, audio=True, reduce="mean") == [4.0, 22.0, 14.0]  # batch None: whole files
    assert file_scores(score, [torch.tensor([3.0])], audio=False, reduce="max") == [6.0]


def test_candidates_and_the_selection_record():
    lines, candidates = [], []
    c = add_candidate(candidates, {"t0": 300, "n_draws": 1}, FIGURES, paper=True, log=lines.append)
    add_candidate(candidates, {"t0": 200, "n_draws": 1}, {**FIGURES, "image_auroc": 0.9}, log=lines.append)
    assert candidates[0] is c and c["paper"] and c["score"] == pytest.approx(0.7)
    assert lines[0].startswith("  candidate t0=300, n_draws=1: image AUROC 0.7500")
    cfg = ReconConfig()
    sets = [types.SimpleNamespace(labels=np.array([0, 0, 1])), types.SimpleNamespace(labels=np.array([0, 1, 1]))]
    assert adopt_selection(cfg, candidates, 1, mode="auto", sets=sets, log=lines.append) == {"t0": 200, "n_draws": 1}
    assert cfg.t0 == 200 and cfg.selection["chosen"] == 1 and cfg.selection["chosen_settings"] == {"t0": 200, "n_draws": 1}
    assert cfg.selection["validation_set"]["normal_inputs"] == 3 and cfg.selection["validation_set"]["synthetic_anomalies"] == 3
    assert lines[-1] == f"selected t0=200, n_draws=1 ({SELECTION_RULE})."


def test_threshold_and_its_provenance():
    cfg = ReconConfig()
    set_threshold(cfg, [1.0, 2.0, 3.0, 4.0], 0.99, "bottle", "; map statistics from 8 normal training inputs")
    assert 3.9 < cfg.threshold <= 4.0
    assert cfg.threshold_provenance == ("0.99 quantile of the combined score of 4 held-out normal training files of "
                                        "bottle; map statistics from 8 normal training inputs; no test data used")


def test_settings_record_names_the_device_used():
    rec = TrainSettings(steps=7, device="auto").record(torch.device("cpu"))
    assert rec["steps"] == 7 and rec["device"] == "cpu" and list(rec)[-1] == "device"
    assert set(rec) == set(TrainSettings().to_dict())


def test_split_loading(tmp_path):
    layout = scan_layout(write_synthetic_layout(tmp_path / "d", n_train=6, n_test_good=1, n_test_per_kind=1, size=32))
    cfg = set_modality(InvADConfig(image_size=32), layout)
    assert cfg.modality == "image" and cfg.mel is None
    split = load_split(layout, cfg, 0.34, seed=3)
    assert (split.fit_idx, split.val_idx) == split_normal(6, 0.34, 3)
    # each fit image brings its shape crop (cfg.shape_crops = 1); held-out images stay whole
    assert len(split.fit) == len(split.fit_idx) and all(t.shape == (2, 3, 32, 32) for t in split.fit)
    assert all(t.shape == (1, 3, 32, 32) for t in split.val)
    files = [torch.full((1,), float(i)) for i in range(6)]
    fit, val = split_files(files, 0.34, 3)
    assert [int(f) for f in fit] == split.fit_idx and [int(v) for v in val] == split.val_idx
    one = scan_layout(write_synthetic_layout(tmp_path / "one", n_train=1, n_test_good=1, n_test_per_kind=1, size=32))
    assert load_split(one, cfg, 0.34, 0).val_idx == [0] and load_split(one, cfg, 0.34, 0, disjoint=True).val == []


def test_prefixes_and_the_folder_base(tmp_path):
    t = {"a.w": torch.ones(1), "b": torch.zeros(1)}
    assert unprefixed("unet.", prefixed("unet.", t)) == t and unprefixed("x.", t) == {}
    with pytest.raises(ModelError, match="unknown field"):
        InvADConfig.from_dict({"method": "invad", "colour": 1})
    assert isinstance(InvADConfig(), ModelConfig)
    model = InvAD(InvADConfig(image_size=64, grid=8, block_out_channels=[16, 32], norm_num_groups=8))
    data = model.config.to_dict()
    with pytest.raises(ModelError, match="expected 'invad'"):
        InvAD.from_config_and_weights({**data, "method": "recon"}, model.folder_tensors())
    with pytest.raises(ModelError, match="weights do not match"):
        InvAD.from_config_and_weights(data, {k: v for k, v in model.folder_tensors().items() if k != "feat_std"})
    again = InvAD.from_pretrained(model.save_pretrained(tmp_path / "m"))
    assert all(torch.equal(v, again.folder_tensors()[k]) for k, v in model.folder_tensors().items())


def test_an_audio_recon_tries_only_the_draws_within_the_real_time_budget():
    from decodemo.training.recon import AUDIO_NFE_BUDGET, CANDIDATES, candidate_values, within_audio_budget

    image = ReconConfig(modality="image", reverse_steps=5, image_size=128, feature_size=256)
    audio = ReconConfig(modality="audio", reverse_steps=5, image_size=128, feature_size=256)
    assert AUDIO_NFE_BUDGET == 2
    assert candidate_values("n_draws", image) == CANDIDATES["n_draws"] == (1, 4)
    assert candidate_values("n_draws", audio) == (1,)  # 4 draws x 5 steps = 20 calls per window > 2
    assert candidate_values("n_draws", ReconConfig(modality="audio", reverse_steps=1)) == (1,)  # 4 x 1 > 2
    assert candidate_values("n_draws", ReconConfig(modality="audio", reverse_steps=50)) == (1,)  # the smallest
    # an audio model's reverse steps are cut to the budget and its features taken at the
    # window's own side; an image model keeps both
    assert within_audio_budget(audio) is audio and audio.reverse_steps == AUDIO_NFE_BUDGET
    assert audio.feature_size == 128
    assert within_audio_budget(image).reverse_steps == 5 and image.feature_size == 256
    small = within_audio_budget(ReconConfig(modality="audio", reverse_steps=1, image_size=128, feature_size=64))
    assert small.reverse_steps == 1 and small.feature_size == 64  # already within: unchanged
    assert all(v * audio.reverse_steps <= AUDIO_NFE_BUDGET for v in candidate_values("n_draws", audio))
    assert candidate_values("map_norm", audio) == ("global", "row") and candidate_values("t0", audio) == (300, 200, 400)
