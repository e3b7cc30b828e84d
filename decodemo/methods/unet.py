"""The ``diffusers.UNet2DModel`` every method builds, with self-attention at chosen levels."""

from __future__ import annotations

from collections.abc import Iterable

from diffusers import UNet2DModel

__all__ = ["unet2d"]


def unet2d(*, sample_size: int, channels: int, block_out_channels: Iterable[int], layers_per_block: int,
           attention_levels: Iterable[int], norm_num_groups: int, dropout: float,
           num_class_embeds: int | None = None, out_channels: int | None = None) -> UNet2DModel:
    """A UNet whose level ``i`` (0 = full resolution) has self-attention when ``i`` is in
    ``attention_levels``, on the way down and on the way up."""
    blocks = tuple(int(c) for c in block_out_channels)
    n, attn = len(blocks), {int(i) for i in attention_levels}
    down = tuple("AttnDownBlock2D" if i in attn else "DownBlock2D" for i in range(n))
    up = tuple("AttnUpBlock2D" if (n - 1 - i) in attn else "UpBlock2D" for i in range(n))
    return UNet2DModel(sample_size=sample_size, in_channels=channels, out_channels=out_channels or channels,
                       block_out_channels=blocks, layers_per_block=layers_per_block, down_block_types=down,
                       up_block_types=up, norm_num_groups=norm_num_groups, dropout=dropout,
                       num_class_embeds=num_class_embeds)
