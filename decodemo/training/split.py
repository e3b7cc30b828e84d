"""The seeded split of a layout's normal training files into fit and validation files."""

from __future__ import annotations

import torch

__all__ = ["split_normal"]


def split_normal(n: int, val_fraction: float, seed: int, *, min_val: int = 4) -> tuple[list[int], list[int]]:
    """Seeded split of ``n`` normal training files into (fit, validation) index lists."""
    if n < 2:
        return list(range(n)), list(range(n))
    n_val = min(n - 1, max(min_val, round(n * val_fraction))) if val_fraction > 0 else 0
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[n_val:]), sorted(perm[:n_val])
