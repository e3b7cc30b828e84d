"""What every detection method shares: the result type and the model-folder format.

A model folder holds ``config.json`` (the method's config dataclass, with everything needed
to rebuild the network and prepare inputs) and ``model.safetensors`` (weights and normal-data
statistics). Pickle weights are refused.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from safetensors.torch import load_file, save_file

from decodemo.errors import ModelError, UnsafeWeightsError

__all__ = [
    "Detector",
    "DetectionResult",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "PICKLE_SUFFIXES",
    "read_config",
    "write_folder",
    "read_weights",
    "config_from_dict",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclass
class DetectionResult:
    """The output of one detector on a batch.

    Attributes:
        scores: ``(B,)`` image (or window) anomaly scores, higher = more anomalous.
        maps: ``(B, H, W)`` anomaly maps at input resolution.
        nfe: network evaluations per input (diffusion model calls).
        variants: other scores of the same inputs for ablations, e.g. ``{"nll": (B,), ...}``.
        reconstruction: ``(B, 3, H, W)`` the method's corrected / reconstructed input, if any.
        extras: intermediates a person may look at (e.g. a latent norm map ``(B, h, w)``).
    """

    scores: torch.Tensor
    maps: torch.Tensor
    nfe: int
    variants: dict[str, torch.Tensor] = field(default_factory=dict)
    reconstruction: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


@runtime_checkable
class Detector(Protocol):
    """The contract every detection method implements, the ``baseline`` reference included.

    - ``method_id``: the id in ``config.json`` and in :data:`decodemo.methods.DETECTOR_CLASSES`;
    - ``config_class``: the config dataclass (``to_dict()``, ``method``, ``modality``,
      ``image_size``, ``threshold``, ``threshold_provenance``, ``training``);
    - ``from_pretrained(folder, *, map_location="cpu")`` and ``save_pretrained(folder)``: the
      model folder (``config.json`` + ``model.safetensors``);
    - ``detect(images, *, category=None) -> DetectionResult``: ``images`` ``(B, 3, H, W)`` RGB in
      [0, 1]; scores ``(B,)``, maps ``(B, H, W)`` at the input's size, NFE, score variants.

    Diffusion methods also have ``detect_ablation(images, *, category=None)``, their
    no-diffusion counterpart through the same code path, and ``has_ablation``.
    """

    method_id: ClassVar[str]
    config_class: ClassVar[type]
    config: Any

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, map_location: str | torch.device = "cpu") -> "Detector": ...

    def save_pretrained(self, folder: str | Path) -> Path: ...

    def detect(self, images: torch.Tensor, *, category: str | None = None) -> DetectionResult: ...


def config_from_dict(cls: type, data: dict[str, Any], *, where: str = "config") -> Any:
    """Build config dataclass ``cls`` from ``data``, naming unknown or missing fields."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ModelError(f"{where}: unknown field(s) {unknown} for {cls.__name__}.")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:  # a missing field, or a value the config refuses
        raise ModelError(f"{where}: {exc}") from exc


def _check_no_pickles(folder: Path) -> None:
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise UnsafeWeightsError(
            f"The model folder {folder} holds pickle weights ({', '.join(pickles)}). decodemo loads "
            f"only '{WEIGHTS_NAME}' (safetensors) beside '{CONFIG_NAME}'; convert the weights first."
        )


def read_config(folder: str | Path) -> dict[str, Any]:
    """Read ``config.json`` of a model folder (refusing folders with pickle weights)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"No model folder at {folder}: expected a folder with {CONFIG_NAME} and {WEIGHTS_NAME}.")
    _check_no_pickles(folder)
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise ModelError(f"{folder} has no {CONFIG_NAME}: it is not a decodemo model folder.")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or "method" not in data:
        raise ModelError(f"{path} does not name a 'method'.")
    return data


def read_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    folder = Path(folder)
    _check_no_pickles(folder)
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        raise ModelError(f"{folder} has no {WEIGHTS_NAME}.")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types on bad headers
        raise ModelError(f"{path} could not be read as safetensors: {exc}") from exc


STORAGE_DTYPES = ("float32", "float16", "bfloat16")


def cast_for_storage(state: dict[str, torch.Tensor], storage_dtype: str) -> dict[str, torch.Tensor]:
    """Cast the floating-point tensors of a state dict to ``storage_dtype`` for saving.

    Models keep computing in float32: ``load_state_dict`` copies half-precision tensors into
    float32 parameters, so only the file shrinks (about half with ``"float16"``).
    """
    if storage_dtype not in STORAGE_DTYPES:
        raise ModelError(f"storage_dtype must be one of {', '.join(STORAGE_DTYPES)}, not {storage_dtype!r}.")
    dtype = getattr(torch, storage_dtype)
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def write_folder(folder: str | Path, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``folder`` (created if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder
