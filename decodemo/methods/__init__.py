"""The detection methods and the registry that maps a method id to its class.

Every detector class implements :class:`decodemo.methods.base.Detector`: ``method_id``,
``config_class``, ``from_pretrained(folder, *, map_location)``, ``save_pretrained(folder)`` and
``detect(images, *, category=None) -> DetectionResult`` (the folder round trip comes from
:class:`decodemo.methods.base.FolderModule`); the three diffusion methods also have
``detect_ablation``, their no-diffusion counterpart. ``baseline`` is the nearest-neighbour
reference, not a diffusion method. ``vae`` is DeCo-Diff's latent space (a model folder, not a
detector).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from decodemo.errors import ModelError
from decodemo.methods.catalogue import CATALOGUE, DIFFUSION_METHODS

__all__ = ["DETECTOR_CLASSES", "DIFFUSION_METHODS", "METHOD_CLASSES", "method_class", "detector_class",
           "load_model", "DetectionResult"]

#: detector id -> "module:Class" (imported lazily so the package imports fast).
DETECTOR_CLASSES = {m.id: m.target for m in CATALOGUE}
#: Every model-folder kind: the detectors and DeCo-Diff's latent space.
METHOD_CLASSES = {
    **DETECTOR_CLASSES,
    "vae": "decodemo.methods.decodiff.model:LatentVAE",
}


def method_class(method_id: str) -> type:
    try:
        target = METHOD_CLASSES[method_id]
    except KeyError:
        raise ModelError(f"Unknown method {method_id!r}; known: {', '.join(sorted(METHOD_CLASSES))}.") from None
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def detector_class(method_id: str) -> type:
    """The detector class of ``method_id`` (not ``vae``, which is not a detector)."""
    if method_id not in DETECTOR_CLASSES:
        raise ModelError(f"Unknown detector {method_id!r}; known: {', '.join(sorted(DETECTOR_CLASSES))}.")
    return method_class(method_id)


def load_model(folder: str | Path, *, device: str = "cpu", config: dict | None = None):
    """Load any decodemo model folder (``config.json`` + ``model.safetensors``). ``config``: the
    folder's ``config.json`` already read (and checked) by the caller; else it is read here, once."""
    from decodemo.methods.base import read_config

    config = config if config is not None else read_config(folder)
    return method_class(config["method"]).from_pretrained(folder, map_location=device, config=config)


def __getattr__(name: str):
    # torch comes in with the first detector, not with the package: the catalogue and the
    # command line's argument parser import this package and stay light
    if name == "DetectionResult":
        from decodemo.methods.base import DetectionResult

        return DetectionResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
