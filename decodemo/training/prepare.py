"""What a training starts from: the config set for its data, and the seeded fit / held-out split
of ``train/good`` (:func:`~decodemo.training.split.split_normal`) loaded as model inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from decodemo.data.layout import Layout
from decodemo.inference import sample_tensors
from decodemo.io.spectrogram import MelConfig, frames_per_window
from decodemo.training.split import split_normal

__all__ = ["set_modality", "choose_image_fit", "shape_crops", "load_inputs", "split_files", "Split", "load_split"]

#: The aspect ratios of :func:`shape_crops` (long side over short side).
CROP_ASPECTS = (1.15, 2.0)


def set_modality(cfg: Any, layout: Layout) -> Any:
    """``cfg`` (a detector config) set for ``layout``'s modality; an audio model without mel
    settings gets the default ones; an image model's ``image_fit`` "auto" is chosen from the
    training images' shapes (:func:`choose_image_fit`). In place; returns ``cfg``."""
    cfg.modality = layout.modality
    if layout.modality == "audio":
        cfg.shape_crops = 0
        if cfg.mel is None:
            cfg.mel = MelConfig().to_dict()
    if layout.modality == "image" and getattr(cfg, "image_fit", None) == "auto":
        cfg.image_fit = choose_image_fit([layout], shape_crops=getattr(cfg, "shape_crops", 0))
    return cfg


def choose_image_fit(layouts: Sequence[Layout], max_files: int = 500, *, shape_crops: int = 0) -> str:
    """How images of any shape become square inputs for a model trained on ``layouts``, from
    the shapes of their normal training images (headers only; at most ``max_files`` of each):

    - all (nearly) square, aspect <= 1.05: ``"auto"`` when the training adds ``shape_crops``
      (padded crops are then normal to the model), else ``"squash"``: a model that saw only
      squares scores other shapes best squeezed (padded or tiled crops of normal fabric images
      scored higher than squeezed ones for recon and invad; README, "Any image shape").
    - a median aspect above :data:`~decodemo.inference.shapes.TILE_ASPECT`: ``"tile"``
      (long strips are scored in overlapping square tiles at their own scale);
    - otherwise ``"pad"`` (aspect kept, mirror-padded to a square).

    Training and inference then cut every image the same way.
    """
    from PIL import Image

    from decodemo.inference.shapes import TILE_ASPECT

    aspects = []
    for layout in layouts:
        for sample in list(layout.train)[:max_files]:
            with Image.open(sample.path) as im:
                w, h = im.size
            aspects.append(max(w, h) / max(1, min(w, h)))
    if not aspects or max(aspects) <= 1.05:
        return "auto" if shape_crops > 0 else "squash"
    return "tile" if float(np.median(aspects)) > TILE_ASPECT else "pad"


def shape_crops(img, n: int, rng: np.random.Generator) -> list:
    """``n`` random non-square crops of a PIL image at its own scale: one side kept whole, the
    other cut to an aspect drawn from :data:`CROP_ASPECTS` (wide or tall at random), at a random
    offset. A side that is already the shorter one by more than the drawn aspect is left whole."""
    w, h = img.size
    out = []
    for _ in range(n):
        aspect = rng.uniform(*CROP_ASPECTS)
        if rng.random() < 0.5:  # wide: full width, cut height
            ch = max(8, min(h, round(w / aspect)))
            top = int(rng.integers(0, h - ch + 1))
            out.append(img.crop((0, top, w, top + ch)))
        else:  # tall: full height, cut width
            cw = max(8, min(w, round(h / aspect)))
            left = int(rng.integers(0, w - cw + 1))
            out.append(img.crop((left, 0, left + cw, h)))
    return out


def load_inputs(layout: Layout, indices: Sequence[int], config: Any, *, dense: bool = False,
                crops: bool | None = None, desc: str = "loading") -> list[torch.Tensor]:
    """The normal training files ``layout.train[i]`` (``i`` in ``indices``) as ``config``'s model
    inputs (its ``modality``, ``image_size``, ``image_fit`` and ``mel``): one tensor per file,
    ``(n, 3, S, S)`` per image (one input unless ``image_fit`` tiles it), ``(W, 3, S, S)`` windows
    per audio clip. ``dense``: the training augmentation: audio windows at a quarter-window hop,
    and for images (unless ``crops`` is False) each file's ``config.shape_crops`` random
    non-square crops (:func:`shape_crops`, seeded by the file's index) after its own inputs."""
    mel = MelConfig.from_dict(config.mel) if config.mel else None
    hop = max(1, frames_per_window(mel) // 4) if (mel is not None and dense) else None
    fit = getattr(config, "image_fit", "auto")
    out = sample_tensors([layout.train[i].path for i in indices], modality=config.modality, size=config.image_size,
                         mel=mel, hop_frames=hop, image_fit=fit, desc=desc)
    k = int(getattr(config, "shape_crops", 0) or 0)
    if config.modality == "image" and k > 0 and dense and crops is not False:
        from decodemo.inference.inputs import image_input
        from decodemo.io.images import load_image

        for j, i in enumerate(indices):
            img = load_image(layout.train[i].path)
            extra = [image_input(c, config.image_size, fit).tiles
                     for c in shape_crops(img, k, np.random.default_rng([int(i), 9127]))]
            out[j] = torch.cat([out[j], *extra])
    return out


def split_files(files: list[torch.Tensor], val_fraction: float,
                seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """:func:`split_normal` of files already loaded (one tensor each) -> (fit files, held-out files)."""
    f, v = split_normal(len(files), val_fraction, seed)
    return [files[i] for i in f], [files[i] for i in v]


class Split(NamedTuple):
    """A layout's normal training files split and loaded: indices into ``layout.train`` and the
    inputs of each file (the fit files' audio windows at the dense, quarter-window hop)."""

    fit_idx: list[int]
    val_idx: list[int]
    fit: list[torch.Tensor]
    val: list[torch.Tensor]


def load_split(layout: Layout, config: Any, val_fraction: float, seed: int, *, disjoint: bool = False) -> Split:
    """The seeded split of ``layout.train`` into fit and held-out files, loaded as ``config``'s
    inputs. ``disjoint``: a file is never both (the one file of a single-file layout is then fit
    only, where :func:`split_normal` gives it to both)."""
    fit_idx, val_idx = split_normal(len(layout.train), val_fraction, seed)
    if disjoint:
        val_idx = [i for i in val_idx if i not in set(fit_idx)]
    fit = load_inputs(layout, fit_idx, config, dense=True, desc="training inputs")
    val = load_inputs(layout, val_idx, config, desc="held-out normal inputs")
    return Split(fit_idx, val_idx, fit, val)
