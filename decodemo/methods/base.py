"""What every detection method shares: the result type, the config fields and the model-folder format.

A model folder holds ``config.json`` (the method's config dataclass, with everything needed
to rebuild the network and prepare inputs) and ``model.safetensors`` (weights and normal-data
statistics). Pickle weights are refused. :class:`FolderModule` is the round trip every model
class inherits; :class:`ModelConfig` and its subclasses the fields configs share.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from decodemo.errors import ModelError, UnsafeWeightsError
from decodemo.ops.ddim import make_alphas_cumprod

__all__ = [
    "Detector",
    "DetectionResult",
    "ModelConfig",
    "DetectorConfig",
    "DiffusionConfig",
    "LinearDDPMConfig",
    "FolderModule",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "PICKLE_SUFFIXES",
    "read_config",
    "write_folder",
    "read_weights",
    "config_from_dict",
    "prefixed",
    "unprefixed",
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


@dataclass
class ModelConfig:
    """The fields every model folder's config has, and its ``config.json`` round trip.

    Each method's config redeclares ``method`` with its id and adds its own fields.
    """

    method: str = ""
    version: int = 1
    modality: str = "image"  # "image" or "audio" (log-mel spectrogram windows as images)
    mel: dict[str, Any] | None = None  # MelConfig.to_dict() for audio models
    #: How an image of any shape becomes square inputs: "auto", "pad", "tile" or "squash"
    #: (:mod:`decodemo.inference.shapes`); the same in training and at inference.
    image_fit: str = "auto"
    #: Training augmentation of image models: random non-square crops per normal training image
    #: (aspect 1.15 to 2, the image's scale kept), fitted by ``image_fit`` like any upload, so that
    #: the mirrored borders of a padded input are normal to the model. 0: square inputs only.
    shape_crops: int = 1
    #: What the training recorded: data, sizes, settings, times, losses.
    training: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The config as ``config.json`` holds it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "config") -> Any:
        """The config of ``data`` (a ``config.json``); unknown or missing fields are named. A
        folder written before ``image_fit`` existed squeezed every image to a square: it keeps that;
        one written before ``shape_crops`` trained on no crops."""
        return config_from_dict(cls, {"image_fit": "squash", "shape_crops": 0, **data}, where=where)


@dataclass
class DetectorConfig(ModelConfig):
    """What every detector's config adds: its decision threshold and where it came from, how a
    clip's window scores become one score, and the dtype its weights are stored in."""

    threshold: float | None = None
    threshold_provenance: str | None = None
    clip_reduce: str = "max"  # audio: how window scores become a clip score ("max" or "mean")
    #: dtype of the network weights (UNet, memory bank) in model.safetensors: "float16" halves the
    #: file, they are computed in float32 either way. Normal statistics (and DeCo-Diff's VAE) are
    #: always stored in float32.
    storage_dtype: str = "float32"


@dataclass
class DiffusionConfig(DetectorConfig):
    """What the diffusion methods' configs add: how their inference settings were chosen."""

    #: The candidates' validation figures (synthetic anomalies made from held-out normal training
    #: files) and the rule; empty for models trained before selection.
    selection: dict[str, Any] = field(default_factory=dict)


@dataclass
class LinearDDPMConfig(DiffusionConfig):
    """What ``invad`` and ``recon`` add: an epsilon-prediction DDPM on a linear beta schedule."""

    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def alphas_cumprod(self) -> torch.Tensor:
        """``alphas_cumprod`` ``(T,)`` float32 of the schedule."""
        return make_alphas_cumprod(self.num_train_timesteps, "linear", self.beta_start, self.beta_end)


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` with ``prefix`` before every name (a part of a model in ``model.safetensors``)."""
    return {f"{prefix}{k}": v for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors whose names start with ``prefix``, named without it (the reverse of :func:`prefixed`)."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


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


class FolderModule(nn.Module):
    """A model that lives in a model folder: ``save_pretrained`` / ``from_pretrained`` for every method.

    A subclass sets ``method_id`` and ``config_class`` and writes what is its own:

    - ``folder_tensors()``: what goes into ``model.safetensors``;
    - ``load_folder_tensors(tensors, where)``: the reverse, into the freshly built model (a
      ``RuntimeError`` or ``KeyError`` there reads "weights do not match the config");
    - optionally ``folder_config()`` (default ``config.to_dict()``), ``from_config(config, where)``
      (default ``cls(config)``), ``stores_weights`` (default True: ``model.safetensors`` is read)
      and ``legacy_defaults``: values of fields that folders written before them lack.
    """

    method_id: ClassVar[str]
    config_class: ClassVar[type]
    legacy_defaults: ClassVar[dict[str, Any]] = {}
    config: Any

    def folder_tensors(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def load_folder_tensors(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        raise NotImplementedError

    def folder_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    @property
    def stores_weights(self) -> bool:
        return True

    @classmethod
    def from_config(cls, config: Any, *, where: str = "config") -> "FolderModule":
        return cls(config)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into ``folder`` -> the folder."""
        return write_folder(folder, self.folder_config(), self.folder_tensors())

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, map_location: str | torch.device = "cpu",
                        config: dict[str, Any] | None = None) -> Any:
        """Load a model folder, in eval mode on ``map_location``. ``config.json`` is read and
        checked before ``model.safetensors`` (``config``: the dict already read by the caller)."""
        data = config if config is not None else read_config(folder)
        return cls._assemble(data, lambda: read_weights(folder), where=str(folder), map_location=map_location)

    @classmethod
    def from_config_and_weights(cls, data: dict[str, Any], tensors: dict[str, torch.Tensor], *,
                                where: str = "config", map_location: str | torch.device = "cpu") -> Any:
        """The same from a ``config.json`` dict and its tensors already in memory."""
        return cls._assemble(data, lambda: tensors, where=where, map_location=map_location)

    @classmethod
    def _assemble(cls, data: dict[str, Any], tensors: Callable[[], dict[str, torch.Tensor]], *, where: str,
                  map_location: str | torch.device) -> Any:
        if data.get("method") != cls.method_id:
            raise ModelError(f"{where}: method is {data.get('method')!r}, expected {cls.method_id!r}.")
        model = cls.from_config(cls.config_class.from_dict({**cls.legacy_defaults, **data}, where=where), where=where)
        if model.stores_weights:
            weights = tensors()
            try:
                model.load_folder_tensors(weights, where)
            except (RuntimeError, KeyError) as exc:
                raise ModelError(f"{where}: weights do not match the config: {exc}") from exc
        return model.to(map_location).eval()
