"""Validation without test data, and the rule that selects a method's settings on it.

Every trainer splits ``train/good`` into fit and validation normals (:func:`split_normal`). The
validation normals are turned into a **synthetic validation set** (:mod:`decodemo.data.anomalies`):
the normals themselves plus seeded synthetic anomalies with exact masks (cut-and-paste patches
and scars, Perlin-noise texture blends, local blur / colour / warp for images; clicks, tone
bursts, band-limited noise and dropouts drawn on the spectrogram for audio). ``--validate-every``
reports image AUROC, pixel AUROC and AUPRO on that set, and ``--select auto`` compares each
method's candidate settings on it. Nothing under ``test/`` is ever read by training.

The selection rule (:data:`SELECTION_RULE`): a candidate's validation score is the mean of its
image AUROC and pixel AUROC on the synthetic set. Candidates are listed with the paper's
setting first, and another candidate replaces it only when it beats it by more than
:data:`SELECTION_MARGIN`, so a noisy validation set does not move a setting away from the paper
by chance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from decodemo.data.anomalies import SyntheticSet, make_validation_set
from decodemo.metrics import image_metrics, pixel_metrics, threshold_at_normal_quantile
from decodemo.inference import reduce_windows

__all__ = [
    "SELECTION_MARGIN",
    "SELECTION_RULE",
    "build_validation_set",
    "validation_figures",
    "selection_score",
    "choose",
    "Candidate",
    "format_candidate",
    "add_candidate",
    "selection_record",
    "adopt_selection",
    "file_scores",
    "set_threshold",
]

SELECTION_MARGIN = 0.005
SELECTION_RULE = (
    "validation score = mean of image AUROC and pixel AUROC on the synthetic validation set (seeded "
    "synthetic anomalies made from held-out normal training files; no test data); the paper's "
    f"setting is kept unless another candidate beats it by more than {SELECTION_MARGIN}"
)


def build_validation_set(val_files: Sequence[torch.Tensor], *, modality: str, seed: int = 0,
                         max_normals: int = 40, per_kind: int | None = None) -> SyntheticSet:
    """The synthetic validation set of held-out normal files (one tensor per file: ``(1, 3, S, S)``
    for an image, ``(W, 3, S, S)`` windows for a clip). At most ``max_normals`` normal inputs
    (seeded pick) are used; each anomaly kind gets ``per_kind`` inputs (default: as many as the
    normals, capped at 20)."""
    normals = torch.cat(list(val_files)) if val_files else torch.empty(0)
    if len(normals) < 2:
        raise ValueError("A synthetic validation set needs at least 2 held-out normal inputs.")
    if len(normals) > max_normals:
        pick = torch.randperm(len(normals), generator=torch.Generator().manual_seed(seed))[:max_normals]
        normals = normals[pick.sort().values]
    per_kind = per_kind or min(20, len(normals))
    return make_validation_set(normals.float(), modality=modality, seed=seed, per_kind=per_kind)


@torch.no_grad()
def validation_figures(detector, synth: SyntheticSet, *, batch_size: int = 16, detect: Callable | None = None,
                       **kwargs) -> dict[str, dict[str, float]]:
    """Image AUROC, pixel AUROC and AUPRO of every score variant of ``detector`` on ``synth``.

    ``detect`` replaces ``detector.detect`` (e.g. an ablation). Variant maps come from
    ``extras["map_<variant>"]`` when the detector gives them, else the main map is used.
    """
    detect = detect or detector.detect
    device = _device_of(detector)
    scores: dict[str, list[torch.Tensor]] = {}
    maps: dict[str, list[torch.Tensor]] = {}
    for i in tqdm(range(0, len(synth.images), batch_size), desc="validation", leave=False, dynamic_ncols=True):
        res = detect(synth.images[i : i + batch_size].to(device), **kwargs)
        main = _main_variant(detector, res.variants)
        for name, v in res.variants.items():
            scores.setdefault(name, []).append(v.float().cpu())
            m = res.maps if name == main else res.extras.get(f"map_{name}", res.maps)
            maps.setdefault(name, []).append(m.float().cpu())
    labels = synth.labels
    out: dict[str, dict[str, float]] = {}
    for name in scores:
        s = torch.cat(scores[name]).numpy().astype(np.float64)
        m = torch.cat(maps[name])
        masks = synth.masks
        if tuple(m.shape[-2:]) != tuple(masks.shape[-2:]):
            masks = torch.nn.functional.interpolate(masks[:, None].float(), size=tuple(m.shape[-2:]),
                                                    mode="nearest")[:, 0] > 0.5
        fig = image_metrics(labels, s)
        pix = pixel_metrics(masks.numpy(), m.numpy())
        out[name] = {"image_auroc": fig["image_auroc"], "pixel_auroc": pix["pixel_auroc"], "aupro": pix["aupro"]}
    return out


def _device_of(detector) -> torch.device:
    if hasattr(detector, "parameters"):
        for t in detector.parameters():
            return t.device
        for t in detector.buffers():
            return t.device
    return torch.device("cpu")


def _main_variant(detector, variants: dict[str, torch.Tensor]) -> str:
    score = getattr(detector.config, "score", None)
    return score if score in variants else next(iter(variants))


def selection_score(figures: dict[str, float]) -> float:
    """The selection rule's score of one candidate: mean of image AUROC and pixel AUROC (the
    image AUROC alone when there is no pixel figure)."""
    vals = [figures[k] for k in ("image_auroc", "pixel_auroc") if k in figures and not math.isnan(figures[k])]
    return float(np.mean(vals)) if vals else float("nan")


class Candidate(dict):
    """One candidate setting: ``{"settings": {...}, "validation": {image_auroc, pixel_auroc, aupro},
    "score": selection score, "paper": bool}`` (a plain dict, so it goes into config.json as is)."""

    @classmethod
    def make(cls, settings: dict[str, Any], figures: dict[str, float], *, paper: bool = False) -> "Candidate":
        return cls(settings=dict(settings), validation={k: round(float(v), 4) for k, v in figures.items()},
                   score=round(selection_score(figures), 4), paper=paper)


def format_candidate(c: dict) -> str:
    """One line of a candidate's validation figures and score, for logs."""
    v = c["validation"]
    return (f"image AUROC {v['image_auroc']:.4f}, pixel AUROC {v['pixel_auroc']:.4f}, AUPRO {v['aupro']:.4f} "
            f"-> score {c['score']:.4f}")


def add_candidate(candidates: list[dict], settings: dict[str, Any], figures: dict[str, float], *,
                  paper: bool = False, log=print) -> Candidate:
    """Append the :class:`Candidate` of ``settings`` with its validation ``figures`` to
    ``candidates`` and log it (settings and figures on one line) -> the candidate."""
    candidate = Candidate.make(settings, figures, paper=paper)
    candidates.append(candidate)
    log(f"  candidate {', '.join(f'{k}={v}' for k, v in candidate['settings'].items())}: "
        f"{format_candidate(candidate)}")
    return candidate


def choose(candidates: Sequence[dict], *, margin: float = SELECTION_MARGIN) -> int:
    """Index of the selected candidate. ``candidates[0]`` is the paper's setting: it is kept
    unless the best other candidate's score exceeds it by more than ``margin``; among the
    others the highest score wins (the earliest on a tie)."""
    if not candidates:
        raise ValueError("No candidates to choose from.")
    scores = [c["score"] if not math.isnan(c["score"]) else -math.inf for c in candidates]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return best if scores[best] > scores[0] + margin else 0


def selection_record(candidates: Sequence[dict], chosen: int, *, mode: str, n_normals: int,
                     n_anomalies: int) -> dict[str, Any]:
    """What goes into a model's ``config.json`` (``selection``) and model card."""
    return {
        "mode": mode,
        "rule": SELECTION_RULE,
        "validation_set": {"normal_inputs": int(n_normals), "synthetic_anomalies": int(n_anomalies),
                           "source": "held-out normal training files and synthetic anomalies made from them"},
        "candidates": [dict(c) for c in candidates],
        "chosen": int(chosen),
        "chosen_settings": dict(candidates[chosen]["settings"]),
    }


def adopt_selection(config: Any, candidates: Sequence[dict], chosen: int, *, mode: str,
                    sets: Sequence[SyntheticSet], log=print) -> dict[str, Any]:
    """Write the selection record into ``config.selection`` (``sets``: the synthetic validation
    sets the candidates were scored on), set the chosen candidate's settings on ``config`` and
    log them -> the chosen settings."""
    settings = candidates[chosen]["settings"]
    config.selection = selection_record(candidates, chosen, mode=mode,
                                        n_normals=sum(int((ss.labels == 0).sum()) for ss in sets),
                                        n_anomalies=sum(int(ss.labels.sum()) for ss in sets))
    for k, v in settings.items():
        setattr(config, k, v)
    log("selected " + ", ".join(f"{k}={v}" for k, v in settings.items()) + f" ({SELECTION_RULE}).")
    return settings


@torch.no_grad()
def file_scores(score: Callable[[torch.Tensor], torch.Tensor], files: Sequence[torch.Tensor], *, audio: bool,
                reduce: str, batch: int | None = None) -> list[float]:
    """One score per file (a tensor of its inputs each, e.g. held-out normal files for the
    threshold): ``score(inputs) -> (n,)`` on chunks of ``batch`` inputs (the whole file when
    None), then an audio clip's window scores reduced by ``reduce`` or an image's score (the highest of its
    inputs when ``image_fit`` tiles it)."""
    out = []
    for f in files:
        step = batch or max(1, len(f))
        s = torch.cat([score(f[i : i + step]).cpu() for i in range(0, len(f), step)])
        out.append(reduce_windows(s, reduce) if audio else float(s.max()))  # an image's tiles: the highest
    return out


def set_threshold(config: Any, per_file: Sequence[float], quantile: float, data_name: str, detail: str = "") -> None:
    """``config.threshold``: the ``quantile`` of the held-out normal files' scores ``per_file``
    (:func:`file_scores`), and its provenance (``detail`` follows the data's name). In place."""
    config.threshold = float(threshold_at_normal_quantile(per_file, q=quantile))
    config.threshold_provenance = (f"{quantile:.2f} quantile of the {config.score} score of {len(per_file)} held-out "
                                   f"normal training files of {data_name}{detail}; no test data used")
