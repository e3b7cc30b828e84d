"""Configuration of the reconstruction-free detector (``invad``), saved as ``config.json``."""

from __future__ import annotations

from dataclasses import dataclass, field

from decodemo.features.efficientnet import BACKBONES, block_channels, default_blocks
from decodemo.methods.base import LinearDDPMConfig

__all__ = ["InvADConfig"]


@dataclass
class InvADConfig(LinearDDPMConfig):
    """Everything needed to rebuild an ``invad`` model and prepare its inputs.

    Inputs are resized to ``image_size``; features of EfficientNet-Lite (``backbone``) blocks
    ``feature_blocks`` are resized to ``grid x grid`` and standardised with the normal
    training features (per channel by default, or per channel and position: ``feature_norm``). A ``UNet2DModel`` (``block_out_channels``, self-attention at
    the lowest level) learns to predict the noise on them (T = ``num_train_timesteps``,
    linear betas). At test time ``inversion_steps`` DDIM steps map the features to z_T.
    """

    method: str = "invad"
    category: str | None = None
    image_size: int = 256
    # "efficientnet-lite0" (default), "-lite1" or "-lite2" (larger members of the family, pip wheels)
    backbone: str = "efficientnet-lite0"
    # the last block of each stage at strides 2/4/8/16 of the backbone when None
    feature_blocks: list[int] | None = None
    grid: int = 16
    # "channel": one mean/std per channel (the paper, the default); "position": each channel at
    # each of the grid x grid positions (fits aligned objects only; the image candidate of
    # --select auto); "row": each channel in each grid row (a spectrogram's frequency band; the
    # audio candidate, since time positions in a window are arbitrary).
    feature_norm: str = "channel"
    block_out_channels: list[int] = field(default_factory=lambda: [64, 128])
    layers_per_block: int = 1
    norm_num_groups: int = 32
    dropout: float = 0.0
    inversion_steps: int = 3
    # The DDIM grid of the inversion (``inversion.inversion_timesteps``): "reference", the
    # reference code's {0, 500, 999} -> alpha_bar 0 at S = 3 (the default), or "uniform",
    # {0, 333, 666} -> 999. Model folders written before the option existed load as "uniform".
    inversion_grid: str = "reference"
    score: str = "nll+diff"  # which variant is the image score: "nll", "diff" or "nll+diff"
    map_blur_sigma: float = 4.0  # Gaussian blur of the upsampled norm map, pixels at image_size
    # Per inversion-step count S (as a string key): mean/std of NLL and Diff on NORMAL
    # held-out training images, used to standardise the scores before adding them.
    normal_stats: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def feature_channels(self) -> int:
        return block_channels(self.backbone, self.feature_blocks)

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}.")
        if self.feature_blocks is None:
            self.feature_blocks = list(default_blocks(self.backbone))
        if self.feature_norm not in ("position", "channel", "row"):
            raise ValueError(f"feature_norm must be 'channel', 'position' or 'row', got {self.feature_norm!r}.")
        if self.inversion_grid not in ("reference", "uniform"):
            raise ValueError(f"inversion_grid must be 'reference' or 'uniform', got {self.inversion_grid!r}.")
