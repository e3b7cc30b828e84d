"""The in-domain reference of a model set: is an input like the data its models were trained on?

Every model set (domain) keeps one. An input is described by pooled frozen features:
EfficientNet-Lite0 blocks 4, 10 and 15 (strides 8, 16 and 32; 40 + 112 + 320 = 472 channels),
the median of each channel over positions, on the image resized to 224 x 224, or, for a sound, on each of its
spectrogram windows (the domain's own mel settings, each window drawn as a 224 x 224 image as the
audio models see it) averaged over the windows. The reference holds the mean and a Ledoit-Wolf
shrunk covariance of the standardised features of the domain's normal training inputs; the
distance of an input is the Mahalanobis distance per feature, ``sqrt(z' P z / d)``.

Its threshold comes from normal data only: the training normals are split into ``FOLDS``
seeded folds, each fold's distances are measured under the statistics of the other folds, and
the threshold is ``MARGIN`` (2) times the largest of these out-of-fold distances: an input is out
of domain when it lies twice as far from the training normals as the farthest of them did when
held out of the fit. The margin keeps inputs with a real defect (farther than any normal, but
still of the domain) mostly in domain. The final statistics use every normal.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from decodemo.errors import InputError, ModelError

__all__ = ["DomainReference", "DomainCheck", "FEATURE_BLOCKS", "IMAGE_SIZE", "FOLDS", "MARGIN", "image_features",
           "clip_features", "loaded_features", "fit_reference", "ledoit_wolf", "REFERENCE_FOLDER"]

#: Lite0 blocks pooled into the description of an input (strides 8, 16 and 32).
FEATURE_BLOCKS = (4, 10, 15)
IMAGE_SIZE = 224
FOLDS = 5
#: The threshold is this many times the largest out-of-fold distance of a training normal.
MARGIN = 2.0
#: Where a domain's reference lives in a registry root: ``<root>/<domain>/domain``.
REFERENCE_FOLDER = "domain"
_FORMAT = "decodemo-domain-reference"

_extractor = None
_extractor_lock = threading.Lock()


def _features_net():
    global _extractor
    with _extractor_lock:
        if _extractor is None:
            from decodemo.features.efficientnet import EfficientNetLiteFeatures

            _extractor = EfficientNetLiteFeatures(FEATURE_BLOCKS, image_size=IMAGE_SIZE)
        return _extractor


@torch.inference_mode()
def _pooled(batch: torch.Tensor, chunk: int = 16) -> np.ndarray:
    """``(B, 3, S, S)`` -> ``(B, 472)``: each block's channel medians over positions (a median, so
    that a local defect moves the description of an input less than a change of the whole scene)."""
    net = _features_net()
    out = []
    for i in range(0, batch.shape[0], chunk):
        maps = net(batch[i : i + chunk].float())
        out.append(torch.cat([m.flatten(2).median(dim=2).values for m in maps], dim=1))
    return torch.cat(out).double().numpy()


def image_features(images: Sequence[Any]) -> np.ndarray:
    """PIL images -> ``(N, 472)`` pooled features (each resized to 224 x 224)."""
    from decodemo.io.images import image_to_array

    arrs = [image_to_array(img, IMAGE_SIZE).transpose(2, 0, 1) for img in images]
    return _pooled(torch.from_numpy(np.ascontiguousarray(np.stack(arrs))))


def clip_features(spectrogram: np.ndarray, mel) -> np.ndarray:
    """A clip's ``(n_mels, frames)`` spectrogram -> ``(472,)``: its windows' features averaged."""
    from decodemo.inference.inputs import spectrogram_windows

    windows, _ = spectrogram_windows(spectrogram, mel, IMAGE_SIZE)
    return _pooled(windows).mean(axis=0)


def loaded_features(loaded, mel=None) -> np.ndarray:
    """An upload (:func:`decodemo.inference.load_input`) -> ``(472,)`` (audio under ``mel``)."""
    if loaded.modality == "image":
        return image_features([loaded.image])[0]
    from decodemo.io.spectrogram import MelConfig

    mel = mel if isinstance(mel, MelConfig) or mel is None else MelConfig.from_dict(mel)
    _, spec = loaded.for_mel(mel) if mel is not None else (None, loaded.spectrogram)
    return clip_features(spec, mel or loaded.mel)


def ledoit_wolf(z: np.ndarray) -> tuple[np.ndarray, float]:
    """The Ledoit-Wolf shrunk covariance of centred rows ``z`` ``(n, d)`` -> (covariance, shrinkage)."""
    n, d = z.shape
    s = z.T @ z / n
    mu = np.trace(s) / d
    delta = ((s - mu * np.eye(d)) ** 2).sum() / d
    beta = ((z**2).sum(axis=1) ** 2).sum() / n**2 / d - (s**2).sum() / n / d
    shrink = 1.0 if delta <= 0 else float(np.clip(beta / delta, 0.0, 1.0))
    return shrink * mu * np.eye(d) + (1.0 - shrink) * s, shrink


@dataclass
class _Stats:
    mean: np.ndarray
    std: np.ndarray
    precision: np.ndarray
    shrinkage: float

    @classmethod
    def fit(cls, x: np.ndarray) -> "_Stats":
        if x.shape[0] < 2:
            raise ModelError("An in-domain reference needs at least 2 normal inputs.")
        mean = x.mean(axis=0)
        std = x.std(axis=0) + 1e-6
        cov, shrink = ledoit_wolf((x - mean) / std)
        return cls(mean, std, np.linalg.inv(cov + 1e-6 * np.eye(cov.shape[0])), shrink)

    def distance(self, x: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(x) - self.mean) / self.std
        return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", z, self.precision, z), 0.0) / z.shape[1])


@dataclass
class DomainCheck:
    """How far one input is from a domain's normal training data."""

    domain: str
    distance: float
    threshold: float

    @property
    def ratio(self) -> float:
        return self.distance / self.threshold

    @property
    def in_domain(self) -> bool:
        return self.distance <= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "distance": round(self.distance, 4), "threshold": round(self.threshold, 4),
                "in_domain": self.in_domain}


@dataclass
class DomainReference:
    """A domain's in-domain reference (see the module doc): statistics, threshold and provenance."""

    domain: str
    modality: str
    stats: _Stats
    threshold: float
    normal_distances: list[float]  # out-of-fold distances of the training normals
    n_inputs: int
    mel: dict | None = None
    training_data: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self, features: np.ndarray) -> DomainCheck:
        return DomainCheck(self.domain, float(self.stats.distance(features)[0]), self.threshold)

    def check_loaded(self, loaded) -> DomainCheck:
        if loaded.modality != self.modality:
            raise InputError(f"The {self.domain} reference describes {self.modality} inputs, not {loaded.modality}.")
        return self.check(loaded_features(loaded, self.mel))

    # ---------------------------------------------------------------- files
    def config(self) -> dict[str, Any]:
        return {"format": _FORMAT, "domain": self.domain, "modality": self.modality, "backbone": "efficientnet-lite0",
                "blocks": list(FEATURE_BLOCKS), "image_size": IMAGE_SIZE, "folds": FOLDS,
                "threshold": self.threshold, "threshold_rule": f"{MARGIN:g} x the largest out-of-fold distance of the training normals",
                "normal_distances": [round(v, 5) for v in self.normal_distances], "n_inputs": self.n_inputs,
                "shrinkage": self.stats.shrinkage, "mel": self.mel, "training_data": self.training_data, **self.extra}

    def save(self, folder: str | Path) -> Path:
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"mean": self.stats.mean.astype(np.float32), "std": self.stats.std.astype(np.float32),
                   "precision": self.stats.precision.astype(np.float32)}, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps(self.config(), indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "DomainReference":
        from safetensors.numpy import load_file

        folder = Path(folder)
        try:
            cfg = json.loads((folder / "config.json").read_text())
            arrays = load_file(str(folder / "model.safetensors"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"The in-domain reference in {folder} could not be read: {exc}") from exc
        if cfg.get("format") != _FORMAT or tuple(cfg.get("blocks", ())) != FEATURE_BLOCKS:
            raise ModelError(f"{folder} is not an in-domain reference of this version.")
        stats = _Stats(arrays["mean"].astype(np.float64), arrays["std"].astype(np.float64),
                       arrays["precision"].astype(np.float64), float(cfg.get("shrinkage", 0.0)))
        known = {"format", "domain", "modality", "backbone", "blocks", "image_size", "folds", "threshold",
                 "threshold_rule", "normal_distances", "n_inputs", "shrinkage", "mel", "training_data"}
        return cls(domain=cfg["domain"], modality=cfg["modality"], stats=stats, threshold=float(cfg["threshold"]),
                   normal_distances=list(cfg.get("normal_distances", [])), n_inputs=int(cfg.get("n_inputs", 0)),
                   mel=cfg.get("mel"), training_data=cfg.get("training_data", ""),
                   extra={k: v for k, v in cfg.items() if k not in known})


def fit_reference(features: np.ndarray, *, domain: str, modality: str, mel: dict | None = None,
                  training_data: str = "", seed: int = 0) -> DomainReference:
    """Statistics and threshold (see the module doc) from ``(n, 472)`` features of normal inputs."""
    x = np.asarray(features, dtype=np.float64)
    n = x.shape[0]
    if n < FOLDS:
        raise ModelError(f"An in-domain reference needs at least {FOLDS} normal inputs, got {n}.")
    order = np.random.default_rng(seed).permutation(n)
    oof = np.empty(n)
    for k in range(FOLDS):
        held = order[k::FOLDS]
        fit = np.setdiff1d(order, held)
        oof[held] = _Stats.fit(x[fit]).distance(x[held])
    return DomainReference(domain=domain, modality=modality, stats=_Stats.fit(x), threshold=float(MARGIN * oof.max()),
                           normal_distances=[float(v) for v in oof], n_inputs=n, mel=mel, training_data=training_data)


def features_of_paths(paths: Iterable[str | Path], modality: str, mel: dict | None = None,
                      desc: str = "in-domain features") -> np.ndarray:
    """Files -> ``(n, 472)`` features, with a progress bar."""
    from tqdm.auto import tqdm

    from decodemo.inference import load_input

    out = []
    for p in tqdm(list(paths), desc=desc, leave=False, dynamic_ncols=True):
        out.append(loaded_features(load_input(p, mel=mel), mel))
    return np.stack(out)
