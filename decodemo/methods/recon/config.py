"""Configuration of diffusion reconstruction with wavelet and semantic discrepancy (``recon``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from decodemo.methods.base import LinearDDPMConfig

__all__ = ["ReconConfig", "SCORE_VARIANTS"]

#: error-only, semantic-only and their weighted sum; ``score`` picks the one used for decisions.
SCORE_VARIANTS = ("error", "semantic", "combined")


@dataclass
class ReconConfig(LinearDDPMConfig):
    """Everything to rebuild a ``recon`` model and prepare its inputs, saved as ``config.json``.

    The diffusion model works on the one-level Haar transform of the input at ``image_size``
    (``in_channels`` x 4 sub-bands at half resolution), standardised per sub-band channel with
    normal-data statistics. Reconstruction: noise to ``t0`` (of T = ``num_train_timesteps``),
    then ``reverse_steps`` deterministic DDIM steps back to 0 (NFE = ``reverse_steps``).
    """

    method: str = "recon"
    category: str | None = None
    image_size: int = 128
    in_channels: int = 3  # 3 for RGB, 1 for spectrograms (the grey windows are averaged to one channel)
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 64, 128])
    layers_per_block: int = 1
    norm_num_groups: int = 8
    dropout: float = 0.0
    train_t_max: int = 500  # training timesteps are drawn from [0, train_t_max): t0 and below are what is used
    t0: int = 300
    reverse_steps: int = 5
    noise_seed: int = 0  # the partial noising is seeded, so a score is reproducible
    n_draws: int = 1  # reconstructions from n_draws seeded noise draws (seeds noise_seed + k) are averaged
    error_scales: list[int] = field(default_factory=lambda: [1, 2, 4])
    feature_blocks: list[int] = field(default_factory=lambda: [2, 4, 10])  # EfficientNet-Lite0, strides 4/8/16
    feature_size: int = 256  # input side for the semantic features
    error_weight: float = 1.0
    semantic_weight: float = 1.0
    map_norm: str = "global"  # standardise maps with one mean/std ("global"), per "position" or per frequency "row"
    map_blur_sigma_at_256: float = 4.0
    score_reduce: str = "max"  # image score from the smoothed map: "max" or "top1" (mean of the top 1 %)
    score: str = "combined"

    @property
    def wavelet_channels(self) -> int:
        return 4 * self.in_channels

    @property
    def wavelet_size(self) -> int:
        return self.image_size // 2
