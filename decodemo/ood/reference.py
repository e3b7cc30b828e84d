"""The in-domain reference of a model set: is an input like the data its models were trained on?

Every model set (domain) keeps one. An input is described by pooled frozen features:
EfficientNet-Lite0 blocks 4, 10 and 15 (strides 8, 16 and 32; 40 + 112 + 320 = 472 channels),
pooled over positions, on the image resized to 224 x 224, or, for a sound, on each of its
spectrogram windows (the domain's own mel settings, each window drawn as a 224 x 224 image as the
audio models see it) averaged over the windows. The reference holds the mean and a Ledoit-Wolf
shrunk covariance of the standardised features of the domain's normal training inputs; the
distance of an input is the Mahalanobis distance per feature, ``sqrt(z' P z / d)``.

Everything is chosen on the training normals and synthetic anomalies made from them
(:mod:`decodemo.data.anomalies`), never on test data or on other domains:

- the training normals are split into ``FOLDS`` seeded folds; each normal's distance, and the
  distance of each synthetic anomaly made from it, is measured under the statistics of the other
  folds (out of fold);
- the **threshold** is the larger of the largest out-of-fold normal distance and the
  ``ANOMALY_QUANTILE`` (0.95) quantile of the out-of-fold synthetic-anomaly distances: a new
  normal, or an input of the domain with a local defect, stays in domain;
- the **pooling** (channel mean or median over positions) is the one whose threshold is the
  smaller multiple of its median normal distance: the tighter envelope around the domain.

The final statistics use every normal.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from decodemo.errors import IntegrityError, ModelError

__all__ = ["DomainReference", "DomainCheck", "FEATURE_BLOCKS", "IMAGE_SIZE", "FOLDS", "ANOMALY_QUANTILE", "POOLINGS",
           "MAX_CLIP_VIEWS",
           "describe", "describe_paths", "features_of_paths", "loaded_views", "loaded_features", "fit_reference",
           "ledoit_wolf", "REFERENCE_FOLDER", "MANIFEST_NAME", "manifest_pins", "verify_folder"]

#: Lite0 blocks pooled into the description of an input (strides 8, 16 and 32).
FEATURE_BLOCKS = (4, 10, 15)
IMAGE_SIZE = 224
FOLDS = 5
#: Synthetic anomalies of the domain below this quantile of their distances stay in domain.
ANOMALY_QUANTILE = 0.95
POOLINGS = ("mean", "median")
#: A clip is described by at most this many of its spectrogram windows (evenly spread).
MAX_CLIP_VIEWS = 8
#: At most this many training normals are corrupted into synthetic anomalies (a seeded pick).
MAX_SYNTHETIC_SOURCES = 60
#: Where a domain's reference lives in a registry root: ``<root>/<domain>/domain``.
REFERENCE_FOLDER = "domain"
#: The manifest of a registry root, ``<root>/registry.json``: its ``domains`` section pins the
#: SHA-256 of every file of ``<root>/<domain>/domain`` (``{domain: {"files": {name: sha256}}}``,
#: written by ``decodemo.hub.pin_domain``).
MANIFEST_NAME = "registry.json"
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


def warm_up() -> None:
    """Build the feature extractor now (it is otherwise built on the first check)."""
    _features_net()


@torch.inference_mode()
def _pooled(batch: torch.Tensor, chunk: int = 16) -> dict[str, np.ndarray]:
    """``(B, 3, S, S)`` -> ``{pooling: (B, 472)}``: each block's channels pooled over positions,
    by their mean and by their median (a median moves less with a local defect)."""
    net = _features_net()
    out: dict[str, list] = {p: [] for p in POOLINGS}
    for i in range(0, batch.shape[0], chunk):
        maps = [m.flatten(2) for m in net(batch[i : i + chunk].float())]
        out["mean"].append(torch.cat([m.mean(dim=2) for m in maps], dim=1))
        out["median"].append(torch.cat([m.median(dim=2).values for m in maps], dim=1))
    return {p: torch.cat(v).double().numpy() for p, v in out.items()}


def image_tensor(img) -> torch.Tensor:
    """A PIL image -> ``(1, 3, 224, 224)``, what the reference describes."""
    from decodemo.io.images import image_to_array

    return torch.from_numpy(np.ascontiguousarray(image_to_array(img, IMAGE_SIZE).transpose(2, 0, 1)))[None]


def clip_windows(spectrogram: np.ndarray, mel, waveform: np.ndarray | None = None) -> torch.Tensor:
    """A clip's spectrogram -> its windows ``(W, 3, 224, 224)``, what the reference describes
    (a clip shorter than a window made one as the models make it, from ``waveform``). A clip
    of more than :data:`MAX_CLIP_VIEWS` windows is described by that many, evenly spread from
    its start to its end: the mean over windows it feeds is estimated as well from them, at a
    fixed cost per clip whatever its length."""
    from decodemo.inference.inputs import spectrogram_windows

    windows = spectrogram_windows(spectrogram, mel, IMAGE_SIZE, waveform=waveform)[0]
    if windows.shape[0] > MAX_CLIP_VIEWS:
        windows = windows[np.linspace(0, windows.shape[0] - 1, MAX_CLIP_VIEWS).round().astype(int)]
    return windows


def describe(views: torch.Tensor) -> dict[str, np.ndarray]:
    """One input's views (an image's one, a clip's windows) -> ``{pooling: (472,)}``."""
    return {p: v.mean(axis=0) for p, v in _pooled(views).items()}


def loaded_views(loaded, mel=None) -> torch.Tensor:
    """An upload (:func:`decodemo.inference.load_input`) -> its views (audio under ``mel``)."""
    if loaded.modality == "image":
        return image_tensor(loaded.image)
    from decodemo.io.spectrogram import MelConfig

    mel = mel if isinstance(mel, MelConfig) or mel is None else MelConfig.from_dict(mel)
    y, spec = loaded.for_mel(mel) if mel is not None else (loaded.waveform, loaded.spectrogram)
    return clip_windows(spec, mel or loaded.mel, y)


def loaded_features(loaded, mel=None) -> dict[str, np.ndarray]:
    """An upload -> ``{pooling: (472,)}``."""
    return describe(loaded_views(loaded, mel))


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
    pooling: str = "median"
    mel: dict | None = None
    training_data: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self, features: np.ndarray | dict[str, np.ndarray]) -> DomainCheck:
        """``features``: ``(472,)`` under this reference's pooling, or ``{pooling: (472,)}``."""
        f = features[self.pooling] if isinstance(features, dict) else features
        return DomainCheck(self.domain, float(self.stats.distance(f)[0]), self.threshold)

    # ---------------------------------------------------------------- files
    _KNOWN = ("format", "domain", "modality", "backbone", "blocks", "image_size", "folds", "threshold", "pooling",
              "threshold_rule", "normal_distances", "n_inputs", "shrinkage", "mel", "training_data")

    def config(self) -> dict[str, Any]:
        return {"format": _FORMAT, "domain": self.domain, "modality": self.modality, "backbone": "efficientnet-lite0",
                "blocks": list(FEATURE_BLOCKS), "image_size": IMAGE_SIZE, "folds": FOLDS, "pooling": self.pooling,
                "threshold": self.threshold,
                "threshold_rule": (f"the larger of the largest out-of-fold distance of the training normals and the "
                                   f"{ANOMALY_QUANTILE:g} quantile of the out-of-fold distances of synthetic anomalies "
                                   "made from them; no test data"),
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
    def load(cls, folder: str | Path, *, pinned: dict[str, str] | None = None) -> "DomainReference":
        """The reference saved in ``folder``, verified first (:func:`verify_folder`) against
        ``pinned`` or, by default, the pins of the manifest of its registry root
        (:func:`manifest_pins`)."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        verify_folder(folder, pinned if pinned is not None else manifest_pins(folder))
        try:
            cfg = json.loads((folder / "config.json").read_text())
            arrays = load_file(str(folder / "model.safetensors"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"The in-domain reference in {folder} could not be read: {exc}") from exc
        if (cfg.get("format") != _FORMAT or tuple(cfg.get("blocks", ())) != FEATURE_BLOCKS
                or cfg.get("pooling") not in POOLINGS):
            raise ModelError(f"{folder} is not an in-domain reference of this version.")
        stats = _Stats(arrays["mean"].astype(np.float64), arrays["std"].astype(np.float64),
                       arrays["precision"].astype(np.float64), float(cfg.get("shrinkage", 0.0)))
        return cls(domain=cfg["domain"], modality=cfg["modality"], stats=stats, threshold=float(cfg["threshold"]),
                   normal_distances=list(cfg.get("normal_distances", [])), n_inputs=int(cfg.get("n_inputs", 0)),
                   pooling=cfg["pooling"], mel=cfg.get("mel"), training_data=cfg.get("training_data", ""),
                   extra={k: v for k, v in cfg.items() if k not in cls._KNOWN})


def manifest_pins(folder: str | Path) -> dict[str, str] | None:
    """``{relative name: sha256}`` that the manifest ``<root>/registry.json`` pins for the reference
    folder ``<root>/<domain>/domain``, or ``None`` where it pins none (no such manifest, or one
    written before references were pinned)."""
    folder = Path(folder)
    manifest = folder.parent.parent / MANIFEST_NAME
    if not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{manifest} is not valid JSON: {exc}") from exc
    domains = data.get("domains") if isinstance(data, dict) else None
    pins = domains.get(folder.parent.name) if isinstance(domains, dict) else None
    if pins is None:
        return None
    files = pins.get("files") if isinstance(pins, dict) else None
    if not isinstance(files, dict) or not files or not all(isinstance(k, str) and isinstance(v, str)
                                                           for k, v in files.items()):
        raise ModelError(f"{manifest}: domains.{folder.parent.name} must be {{'files': {{name: sha256}}}}.")
    return files


def _listing(folder: Path) -> list[str]:
    """Relative names of the files under ``folder``; a symbolic link or a special file is refused."""
    names = []
    for top, dirs, files in os.walk(folder):
        for n in sorted(dirs + files):
            p = Path(top) / n
            rel = p.relative_to(folder).as_posix()
            if p.is_symlink() or (n in files and not p.is_file()):
                raise IntegrityError(f"{folder}: {rel} is a symbolic link or not a regular file; an in-domain "
                                     "reference holds real files only (links are not followed).")
            if n in files:
                names.append(rel)
    return sorted(names)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_folder(folder: str | Path, pinned: dict[str, str] | None) -> None:
    """Refuse (:class:`IntegrityError`, naming the file) a reference folder that is, or sits in, a
    symbolic link or holds one, and, with ``pinned``, one whose files are not exactly the pinned
    ones with their SHA-256. Without pins (a registry written before references were pinned)
    only the links are checked."""
    folder = Path(folder)
    for p in (folder.parent, folder):
        if p.is_symlink():
            raise IntegrityError(f"{p} is a symbolic link; an in-domain reference must be a real folder "
                                 "(links are not followed).")
    if not folder.is_dir():
        raise ModelError(f"No in-domain reference folder at {folder}.")
    present = _listing(folder)
    if pinned is None:
        return
    extra = sorted(set(present) - set(pinned))
    missing = sorted(set(pinned) - set(present))
    if extra or missing:
        what = f"holds {extra[0]!r}, which the manifest does not pin" if extra else f"lacks the pinned {missing[0]!r}"
        raise IntegrityError(f"The in-domain reference in {folder} {what}; it must hold exactly "
                             f"{', '.join(sorted(pinned))}. Write it again with `python -m decodemo domain-reference`.")
    for rel in present:
        got = _sha256(folder / rel)
        if got != pinned[rel]:
            raise IntegrityError(f"The in-domain reference in {folder}: {rel} does not match the manifest (SHA-256 "
                                 f"{got[:12]}..., pinned {pinned[rel][:12]}...). Refusing to load it.")


def _out_of_fold(x: np.ndarray, anomalies: np.ndarray, sources: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold distances of the normals ``x`` and of ``anomalies`` (each measured without the
    fold of the normal it was made from, ``sources``)."""
    n = x.shape[0]
    order = np.random.default_rng(seed).permutation(n)
    fold = np.empty(n, dtype=np.int64)
    for k in range(FOLDS):
        fold[order[k::FOLDS]] = k
    oof, aoof = np.empty(n), np.empty(len(anomalies))
    for k in range(FOLDS):
        stats = _Stats.fit(x[fold != k])
        oof[fold == k] = stats.distance(x[fold == k])
        mine = fold[sources] == k
        if mine.any():
            aoof[mine] = stats.distance(anomalies[mine])
    return oof, aoof


def fit_reference(normals: dict[str, np.ndarray], anomalies: dict[str, np.ndarray] | None = None,
                  sources: np.ndarray | None = None, *, domain: str, modality: str, mel: dict | None = None,
                  training_data: str = "", seed: int = 0) -> DomainReference:
    """The reference (see the module doc) from ``{pooling: (n, 472)}`` features of the normal
    training inputs and of synthetic anomalies made from them (``sources``: the normal each was
    made from). Without anomalies the threshold is the largest out-of-fold normal distance."""
    n = len(next(iter(normals.values())))
    if n < FOLDS:
        raise ModelError(f"An in-domain reference needs at least {FOLDS} normal inputs, got {n}.")
    sources = np.zeros(0, dtype=np.int64) if sources is None else np.asarray(sources, dtype=np.int64)
    candidates = {}
    for pooling in POOLINGS:
        x = np.asarray(normals[pooling], dtype=np.float64)
        a = np.asarray(anomalies[pooling], dtype=np.float64) if anomalies else np.zeros((0, x.shape[1]))
        oof, aoof = _out_of_fold(x, a, sources, seed)
        # "higher": at least ANOMALY_QUANTILE of the synthetic anomalies lie at or below the threshold
        q = float(np.quantile(aoof, ANOMALY_QUANTILE, method="higher")) if len(aoof) else 0.0
        threshold = max(float(oof.max()), q)
        candidates[pooling] = {"threshold": threshold, "tightness": threshold / float(np.median(oof)),
                               "normal_distances": oof, "n_anomalies": int(len(aoof)),
                               "anomalies_in_domain": float((aoof <= threshold).mean()) if len(aoof) else None}
    pooling = min(POOLINGS, key=lambda p: candidates[p]["tightness"])  # ties: the mean, listed first
    chosen = candidates[pooling]
    selection = {p: {"threshold": round(c["threshold"], 4), "threshold_over_median_normal": round(c["tightness"], 4),
                     "synthetic_anomalies_in_domain": c["anomalies_in_domain"], "n_synthetic_anomalies": c["n_anomalies"]}
                 for p, c in candidates.items()}
    return DomainReference(domain=domain, modality=modality, stats=_Stats.fit(np.asarray(normals[pooling], np.float64)),
                           threshold=chosen["threshold"], normal_distances=[float(v) for v in chosen["normal_distances"]],
                           n_inputs=n, pooling=pooling, mel=mel, training_data=training_data,
                           extra={"selection": selection,
                                  "selection_rule": "the pooling whose threshold is the smaller multiple of its median "
                                                    "out-of-fold normal distance"})


def _synthetic_views(views: torch.Tensor, modality: str, seed: int) -> list[torch.Tensor]:
    """One input's views -> the same input with each synthetic anomaly kind (every view corrupted)."""
    from decodemo.data.anomalies import AUDIO_KINDS, IMAGE_KINDS, make_validation_set

    kinds = IMAGE_KINDS if modality == "image" else AUDIO_KINDS
    w = len(views)
    synth = make_validation_set(views, modality=modality, seed=seed, per_kind=w).images[w:]
    return [synth[i * w : (i + 1) * w] for i in range(len(kinds))]


def describe_paths(paths: Iterable[str | Path], modality: str, mel: dict | None = None, *, seed: int = 0,
                   synthetic: bool = True, desc: str = "in-domain features"):
    """Files -> ``(normals, anomalies, sources)``: ``{pooling: (n, 472)}`` of the files and, with
    ``synthetic``, of synthetic anomalies made from a seeded pick of at most
    ``MAX_SYNTHETIC_SOURCES`` of them (every kind once), with the index of the file each came from."""
    from tqdm.auto import tqdm

    from decodemo.inference import load_input

    paths = list(paths)
    picked = set(np.random.default_rng(seed).permutation(len(paths))[:MAX_SYNTHETIC_SOURCES].tolist()) if synthetic \
        else set()
    normals: dict[str, list] = {p: [] for p in POOLINGS}
    anomalies: dict[str, list] = {p: [] for p in POOLINGS}
    sources = []
    for i, path in enumerate(tqdm(paths, desc=desc, leave=False, dynamic_ncols=True)):
        views = loaded_views(load_input(path, mel=mel), mel)
        for p, v in describe(views).items():
            normals[p].append(v)
        if i in picked:
            for corrupted in _synthetic_views(views, modality, seed + i):
                for p, v in describe(corrupted).items():
                    anomalies[p].append(v)
                sources.append(i)
    stacked = {p: np.stack(v) for p, v in normals.items()}
    synth = {p: np.stack(v) for p, v in anomalies.items()} if sources else None
    return stacked, synth, np.asarray(sources, dtype=np.int64)


def features_of_paths(paths: Iterable[str | Path], modality: str, mel: dict | None = None,
                      desc: str = "in-domain features") -> dict[str, np.ndarray]:
    """Files -> ``{pooling: (n, 472)}`` features, with a progress bar."""
    return describe_paths(paths, modality, mel, synthetic=False, desc=desc)[0]
