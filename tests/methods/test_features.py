"""The frozen EfficientNet-Lite feature extractors: every backbone's block table matches its network."""

from __future__ import annotations

import pytest
import torch

from decodemo.errors import ModelError
from decodemo.features.efficientnet import BACKBONES, EfficientNetLiteFeatures, _build, block_channels, default_blocks


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_block_tables_match_the_networks(name):
    table = BACKBONES[name]
    every = list(range(len(table["channels"])))
    net = EfficientNetLiteFeatures(every, image_size=128, backbone=name)
    outs = net(torch.rand(1, 3, 128, 128))
    assert [o.shape[1] for o in outs] == list(table["channels"])
    assert [128 // o.shape[-1] for o in outs] == list(table["strides"])
    # the default blocks are the last block of each stage at strides 2, 4, 8 and 16
    blocks = default_blocks(name)
    strides = table["strides"]
    assert [strides[b] for b in blocks] == [2, 4, 8, 16]
    assert all(strides[b + 1] != strides[b] for b in blocks)
    pooled = EfficientNetLiteFeatures(image_size=128, backbone=name).pooled(torch.rand(2, 3, 128, 128), 8)
    assert pooled.shape == (2, block_channels(name, blocks), 8, 8) and torch.isfinite(pooled).all()
    assert not any(p.requires_grad for p in net.parameters())


def test_larger_backbones_give_other_features_and_unknown_ones_are_refused():
    x = torch.rand(1, 3, 64, 64)
    a = EfficientNetLiteFeatures(image_size=64).pooled(x, 4)
    b = EfficientNetLiteFeatures(image_size=64, backbone="efficientnet-lite1").pooled(x, 4)
    assert a.shape == b.shape and not torch.allclose(a, b)  # same channels (192), other weights
    with pytest.raises(ModelError, match="lite7"):
        EfficientNetLiteFeatures(backbone="efficientnet-lite7")
    with pytest.raises(ModelError, match="0..20"):
        EfficientNetLiteFeatures([21], backbone="efficientnet-lite2")


def test_invad_takes_a_larger_backbone():
    from decodemo.methods.invad import InvAD, InvADConfig

    cfg = InvADConfig(backbone="efficientnet-lite2", image_size=64, grid=4, block_out_channels=[16, 32],
                      norm_num_groups=8)
    assert cfg.feature_blocks == [0, 3, 6, 14] and cfg.feature_channels == 208
    model = InvAD(cfg)
    assert model.raw_features(torch.rand(2, 3, 64, 64)).shape == (2, 208, 4, 4)
    with pytest.raises(ValueError, match="backbone"):
        InvADConfig(backbone="resnet50")


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_folded_batch_norms_give_the_wheels_own_features(name):
    """The extractor folds each batch norm into its convolution; its maps (inference, in place,
    and the differentiable path) must equal the unfolded network of the wheel to float rounding."""
    torch.manual_seed(0)
    feats = EfficientNetLiteFeatures(image_size=96, backbone=name)
    net = _build(name, 96).eval()
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        h = net._swish(net._bn0(net._conv_stem((x - feats.mean) / feats.std)))
        ref = []
        for i, block in enumerate(list(net._blocks)[: max(feats.blocks) + 1]):
            h = block(h)
            if i in feats.blocks:
                ref.append(h)
    for out in (feats(x), [f.detach() for f in feats.differentiable(x.clone().requires_grad_(True))]):
        for o, r in zip(out, ref):
            assert o.shape == r.shape
            assert (o - r).abs().max() <= 1e-5 * r.abs().max()
    xg = x.clone().requires_grad_(True)
    feats.differentiable(xg)[-1].square().mean().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0
