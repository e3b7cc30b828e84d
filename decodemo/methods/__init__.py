"""The detection methods and the registry that maps a method id to its class.

Every method class has ``method_id``, ``config_class``, ``from_pretrained(folder)``,
``save_pretrained(folder)`` and ``detect(images) -> DetectionResult``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from decodemo.errors import ModelError
from decodemo.methods.base import DetectionResult, read_config

__all__ = ["METHOD_CLASSES", "method_class", "load_model", "DetectionResult"]

#: method id -> "module:Class" (imported lazily so the package imports fast).
METHOD_CLASSES = {
    "invad": "decodemo.methods.invad.model:InvAD",
    "decodiff": "decodemo.methods.decodiff.model:DeCoDiff",
    "vae": "decodemo.methods.decodiff.model:LatentVAE",
    "recon": "decodemo.methods.recon.model:Recon",
}


def method_class(method_id: str) -> type:
    try:
        target = METHOD_CLASSES[method_id]
    except KeyError:
        raise ModelError(f"Unknown method {method_id!r}; known: {', '.join(sorted(METHOD_CLASSES))}.") from None
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def load_model(folder: str | Path, *, device: str = "cpu"):
    """Load any decodemo model folder (``config.json`` + ``model.safetensors``)."""
    config = read_config(folder)
    return method_class(config["method"]).from_pretrained(folder, map_location=device)
