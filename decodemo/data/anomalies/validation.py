"""The synthetic validation set: held-out normals followed by seeded anomalies made from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from decodemo.data.anomalies.image import IMAGE_KINDS, image_anomaly
from decodemo.data.anomalies.spectrogram import AUDIO_KINDS, spectrogram_anomaly
from decodemo.data.anomalies.visible import _check_kind


@dataclass
class SyntheticSet:
    """A synthetic validation set: normals followed by synthetic anomalies made from them."""

    images: torch.Tensor  # (N, 3, H, W) float32 in [0, 1]
    masks: torch.Tensor  # (N, H, W) bool
    labels: np.ndarray  # (N,) int64, 0 = normal, 1 = synthetic anomaly
    kinds: list[str]  # per sample: "good" or the anomaly kind


def _sample_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    """The generator of one anomaly: keyed by the seed, the kind (its place in the full kind
    list, so choosing other kinds does not change this kind's anomalies) and the index."""
    code = (IMAGE_KINDS + AUDIO_KINDS).index(kind)
    return np.random.default_rng([int(seed) % 2**63, code, index])


def make_validation_set(normals: torch.Tensor, *, modality: str = "image", seed: int = 0,
                        kinds: Sequence[str] | None = None, per_kind: int | None = None,
                        donors: torch.Tensor | None = None) -> SyntheticSet:
    """The N held-out ``normals`` ((N, 3, H, W) in [0, 1]; label 0, empty masks) followed by
    ``per_kind`` anomalies of each of ``kinds`` (label 1), the j-th made from normal ``j % N``.

    ``modality`` is ``"image"`` (default kinds :data:`IMAGE_KINDS`) or ``"audio"`` (default
    :data:`AUDIO_KINDS`; normals are spectrogram windows drawn as grey images: the anomaly is
    drawn on channel 0 and copied to all three channels). ``per_kind`` defaults to N (at least
    2). Image donors default to the normals other than the one being corrupted (none when
    N == 1: the image itself, flipped and shifted); ``donors`` ((M, 3, H, W)) replaces them.
    Deterministic for a given ``seed``.
    """
    if modality not in ("image", "audio"):
        raise ValueError(f"modality must be 'image' or 'audio', got {modality!r}")
    known = IMAGE_KINDS if modality == "image" else AUDIO_KINDS
    kinds = tuple(known if kinds is None else kinds)
    for kind in kinds:
        _check_kind(kind, known, modality)
    if normals.ndim != 4 or normals.shape[1] != 3 or len(normals) == 0:
        raise ValueError(f"normals must be a non-empty (N, 3, H, W) tensor, got shape {tuple(normals.shape)}")
    n = len(normals)
    per_kind = max(n, 2) if per_kind is None else int(per_kind)
    base = normals.detach().cpu().float()
    hwc = np.ascontiguousarray(base.permute(0, 2, 3, 1).numpy())
    donor_pool = None if donors is None else list(np.ascontiguousarray(
        donors.detach().cpu().float().permute(0, 2, 3, 1).numpy()))

    images, masks, names = [], [], []
    for kind in kinds:
        for j in range(per_kind):
            i = j % n
            rng = _sample_rng(seed, kind, j)
            if modality == "audio":
                spec, mask = spectrogram_anomaly(hwc[i, ..., 0], kind, rng)
                img = np.repeat(spec[..., None], 3, axis=-1)
            else:
                pool = donor_pool if donor_pool is not None else [hwc[d] for d in range(n) if d != i]
                img, mask = image_anomaly(hwc[i], kind, rng, donors=pool)
            images.append(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))))
            masks.append(torch.from_numpy(mask))
            names.append(kind)

    h, w = base.shape[-2:]
    all_images = torch.cat([base, torch.stack(images)]) if images else base.clone()
    normal_masks = torch.zeros((n, h, w), dtype=torch.bool)
    all_masks = torch.cat([normal_masks, torch.stack(masks)]) if masks else normal_masks
    labels = np.concatenate([np.zeros(n, dtype=np.int64), np.ones(len(images), dtype=np.int64)])
    return SyntheticSet(images=all_images, masks=all_masks, labels=labels, kinds=["good"] * n + names)
