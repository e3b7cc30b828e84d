"""Configuration of the PatchCore-style reference detector (``baseline``), saved as ``config.json``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from decodemo.features.efficientnet import LITE0_BLOCK_CHANNELS
from decodemo.methods.base import STORAGE_DTYPES, DetectorConfig

__all__ = ["BaselineConfig", "BASELINE_BLOCKS"]

#: EfficientNet-Lite0 blocks 4 (stride 8, 40 channels) and 10 (stride 16, 112 channels): the
#: mid-level stages, as PatchCore uses WideResNet-50 layer2 + layer3 (152 channels in all).
BASELINE_BLOCKS = (4, 10)


@dataclass
class BaselineConfig(DetectorConfig):
    """Everything needed to rebuild a ``baseline`` model and prepare its inputs.

    Inputs are resized to ``image_size``; the output of each EfficientNet-Lite0 block in
    ``feature_blocks`` is averaged over a ``local_pool x local_pool`` neighbourhood (stride 1),
    resized to ``grid x grid`` and concatenated. The memory bank holds a greedy (k-center)
    coreset of the normal training patch vectors: ``ceil(coreset_fraction * patches)`` of them,
    at most ``coreset_max``, chosen with distances in a seeded Gaussian random projection to
    ``projection_dim`` dimensions (0: no projection). A test patch's anomaly value is its
    Euclidean distance to the nearest memory vector; the image score is the largest one.
    """

    method: str = "baseline"
    category: str | None = None
    image_size: int = 256
    backbone: str = "efficientnet-lite0"
    feature_blocks: list[int] = field(default_factory=lambda: list(BASELINE_BLOCKS))
    grid: int = 32
    local_pool: int = 3  # PatchCore's 3 x 3 neighbourhood aggregation (average, stride 1)
    coreset_fraction: float = 0.1
    coreset_max: int = 10000
    projection_dim: int = 128  # Johnson-Lindenstrauss projection, only to choose the coreset
    map_blur_sigma: float = 4.0  # Gaussian blur of the upsampled map, pixels at image_size
    score: str = "nn"  # the only score: nearest-neighbour distance of the worst patch
    storage_dtype: str = "float16"  # of the memory bank
    seed: int = 0  # seeds the coreset's random start and projection

    @property
    def feature_channels(self) -> int:
        return sum(LITE0_BLOCK_CHANNELS[b] for b in self.feature_blocks)

    def coreset_size(self, n_patches: int) -> int:
        """How many of ``n_patches`` training patch vectors the memory bank keeps."""
        if n_patches < 1:
            return 0
        return max(1, min(self.coreset_max, n_patches, math.ceil(self.coreset_fraction * n_patches)))

    def __post_init__(self) -> None:
        def bad(name: str, accepted: str) -> ValueError:
            return ValueError(f"BaselineConfig.{name} must be {accepted}, got {getattr(self, name)!r}.")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        if self.method != "baseline":
            raise bad("method", "'baseline'")
        if self.modality not in ("image", "audio"):
            raise bad("modality", "'image' or 'audio'")
        if not is_int(self.image_size) or self.image_size < 32:
            raise bad("image_size", "an integer >= 32 (the backbone's largest stride)")
        if self.backbone != "efficientnet-lite0":
            raise bad("backbone", "'efficientnet-lite0'")
        blocks = list(self.feature_blocks) if isinstance(self.feature_blocks, (list, tuple)) else None
        n_blocks = len(LITE0_BLOCK_CHANNELS)
        if (not blocks or not all(is_int(b) and 0 <= b < n_blocks for b in blocks)
                or len(set(blocks)) != len(blocks)):
            raise bad("feature_blocks", f"a non-empty list of distinct block indices in 0..{n_blocks - 1}")
        self.feature_blocks = blocks
        if not is_int(self.grid) or self.grid < 1:
            raise bad("grid", "a positive integer")
        if not is_int(self.local_pool) or self.local_pool < 1 or self.local_pool % 2 == 0:
            raise bad("local_pool", "an odd positive integer (1: no neighbourhood aggregation)")
        if not is_num(self.coreset_fraction) or not 0 < self.coreset_fraction <= 1:
            raise bad("coreset_fraction", "a number in (0, 1]")
        if not is_int(self.coreset_max) or self.coreset_max < 1:
            raise bad("coreset_max", "a positive integer")
        if not is_int(self.projection_dim) or self.projection_dim < 0:
            raise bad("projection_dim", "an integer >= 0 (0: choose the coreset on the features themselves)")
        if not is_num(self.map_blur_sigma) or self.map_blur_sigma < 0:
            raise bad("map_blur_sigma", "a number >= 0 (0: no blur)")
        if self.clip_reduce not in ("max", "mean"):
            raise bad("clip_reduce", "'max' or 'mean'")
        if self.mel is not None and not isinstance(self.mel, dict):
            raise bad("mel", "None or a MelConfig dict")
        if self.score != "nn":
            raise bad("score", "'nn'")
        if self.storage_dtype not in STORAGE_DTYPES:
            raise bad("storage_dtype", "one of " + ", ".join(repr(d) for d in STORAGE_DTYPES))
        if not is_int(self.seed):
            raise bad("seed", "an integer")
        if self.threshold is not None and not is_num(self.threshold):
            raise bad("threshold", "None or a finite number")
        if not isinstance(self.training, dict):
            raise bad("training", "a dict")
