"""What the command tests share: a training budget and networks small enough for a test."""

from __future__ import annotations

import pytest

from decodemo import bench


@pytest.fixture()
def tiny_budget(monkeypatch):
    """``--preset quick`` made tiny, with small invad and baseline networks (the command's own
    presets are "quick" and "full")."""
    from decodemo.methods.baseline.config import BaselineConfig
    from decodemo.methods.invad.config import InvADConfig

    monkeypatch.setitem(bench.PRESETS, "quick", {
        "invad": {"steps": 3, "batch_size": 4}, "recon": {"steps": 2, "batch_size": 4},
        "vae": {"steps": 2, "batch_size": 4}, "decodiff": {"steps": 2, "batch_size": 4},
        "baseline": {"steps": 0, "batch_size": 1}})
    monkeypatch.setattr("decodemo.methods.invad.config.InvADConfig",
                        lambda **kw: InvADConfig(**{**kw, "image_size": 64, "grid": 8, "block_out_channels": [16, 32],
                                                    "norm_num_groups": 8}))
    monkeypatch.setattr("decodemo.methods.baseline.config.BaselineConfig",
                        lambda **kw: BaselineConfig(**{**kw, "image_size": 64, "grid": 8}))
