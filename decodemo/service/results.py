"""What a comparison returns: each method's outcome for one input, and the three side by side."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from decodemo.metrics.calibration import describe, vote_bound
from decodemo.evaluation.reference import pixel_threshold

__all__ = ["MethodOutcome", "Comparison", "calibrated", "summarise", "FUSION_RULE"]

#: the fused verdict's rule, as the page and the API state it
FUSION_RULE = ("majority vote: anomalous when more than half of the methods score above their calibrated "
               "thresholds")


def calibrated(reference_scores, threshold: float, target: float | None) -> dict | None:
    """What ``threshold`` promises over ``reference_scores`` (None without a reference)."""
    if not reference_scores:
        return None
    return describe(reference_scores, threshold, target=target)


@dataclass
class MethodOutcome:
    """One method's answer for one input."""

    method: str
    model: str  # registry name
    revision: str  # Hub commit, or "bundled:<sha256 prefix>"
    score: float
    threshold: float
    default_threshold: float  # the registry's threshold (before any override)
    decision: str  # "anomalous" or "normal"
    percentile: float | None  # of the score among the normal reference scores
    nfe: int
    latency_ms: float
    map: np.ndarray  # (H, W) float32 in the method's own units, at the input's size
    pixel_threshold: float | None  # map value flagged as defect at this threshold
    reference_scores: list[float]
    pixel_quantiles: dict[str, list[float]] | None
    reconstruction: np.ndarray | None  # image: (H, W, 3) uint8; audio: (n_mels, frames) in [0, 1]
    frame_scores: np.ndarray | None = None  # audio: (frames,) max of the map over frequency
    #: image: how a padded or squeezed input's score was put on the square normals' scale (its raw
    #: score, aspect deficit and the normal crops' mean and spread; :func:`~decodemo.evaluation.
    #: reference.shape_calibrated`); None for square and tiled inputs and for clips
    shape: dict | None = None
    #: what the threshold promises on normal inputs (:func:`decodemo.metrics.calibration.describe`:
    #: the false-positive target, the reference's size, the guaranteed rate and its interval);
    #: None where the model has no normal reference
    calibration: dict | None = None

    def with_threshold(self, threshold: float) -> "MethodOutcome":
        """The same outcome judged against another threshold (no model is run)."""
        ref = {"scores": self.reference_scores, "pixel_quantiles": self.pixel_quantiles}
        return replace(self, threshold=float(threshold),
                       decision="anomalous" if self.score > threshold else "normal",
                       pixel_threshold=pixel_threshold(ref, float(threshold)),
                       calibration=calibrated(self.reference_scores, float(threshold),
                                              (self.calibration or {}).get("target")))

    @property
    def mask(self) -> np.ndarray | None:
        """The map above the pixel threshold (whatever the decision)."""
        return None if self.pixel_threshold is None else self.map > self.pixel_threshold

    @property
    def shown_mask(self) -> np.ndarray | None:
        """The defect mask the page draws: only where the decision is anomalous."""
        return self.mask if self.decision == "anomalous" else None


@dataclass
class Comparison:
    """The three methods' answers for one input, plus what is needed to draw them."""

    id: str
    modality: str
    domain: str
    name: str  # the uploaded file's name
    sha256: str  # of the uploaded bytes
    input: np.ndarray  # image: (H, W, 3) uint8; audio: spectrogram (n_mels, frames) in [0, 1]
    outcomes: list[MethodOutcome]
    seconds: float  # the whole comparison, loading included
    waveform: np.ndarray | None = None
    sample_rate: int | None = None
    frame_times: np.ndarray | None = None  # audio: seconds per spectrogram column
    band_hz: np.ndarray | None = None  # audio: centre frequency per spectrogram row
    path: str = ""
    #: the uploaded bytes, for the review store to keep without reading the file again; the
    #: service's result cache holds the comparison without them
    data: bytes | None = None
    #: the domain's nearest-neighbour ``baseline``, when it has one: shown as a reference only,
    #: never one of ``outcomes`` and never counted in the verdict
    reference: MethodOutcome | None = None
    #: the out-of-domain check (:meth:`decodemo.service.Service.domain_checks`) of the model set
    #: used: ``domain``, ``distance``, ``threshold``, ``in_domain``, ``ratio``, ``chosen``
    #: ("auto" or "given") and every ``candidates`` entry; ``None`` where the set has no reference
    domain_check: dict[str, Any] | None = None

    @property
    def in_domain(self) -> bool | None:
        """Whether the input is like the model set's training data (``None``: not checked)."""
        return None if self.domain_check is None else bool(self.domain_check["in_domain"])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the input (audio: mel bands, frames)."""
        return tuple(self.input.shape[:2])  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays this comparison holds (input, maps, normal versions, sound)."""
        arrays = [self.input, getattr(self, "waveform", None)]
        for o in self.outcomes + ([self.reference] if self.reference is not None else []):
            arrays += [o.map, o.reconstruction, o.frame_scores]
        return int(sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))) + len(self.data or b"")

    def outcome(self, method: str) -> MethodOutcome:
        for o in self.outcomes:
            if o.method == method:
                return o
        raise KeyError(method)

    def summary(self) -> dict[str, Any]:
        """Votes, agreement and the majority verdict of the methods."""
        return summarise(self.outcomes)

    def with_thresholds(self, thresholds: dict[str, float]) -> "Comparison":
        return replace(self, outcomes=[o.with_threshold(thresholds[o.method]) if o.method in thresholds else o
                                       for o in self.outcomes])

    def to_json(self, out_dir: str | Path | None = None, *, map_files: dict[str, str] | None = None) -> dict[str, Any]:
        """A JSON-serialisable result (see :func:`decodemo.service.export.comparison_json`)."""
        from decodemo.service.export import comparison_json

        return comparison_json(self, out_dir, map_files=map_files)

def summarise(outcomes: list[MethodOutcome]) -> dict[str, Any]:
    """The fused verdict (:data:`FUSION_RULE`), with its reason and the false-positive rate the
    rule guarantees on normal inputs given the methods' calibrations."""
    from decodemo.methods.catalogue import TITLES

    n = len(outcomes)
    k = sum(o.decision == "anomalous" for o in outcomes)
    verdict = "anomalous" if 2 * k > n else "normal"
    pcts = [o.percentile for o in outcomes if o.percentile is not None]
    above = [TITLES.get(o.method, o.method) for o in outcomes if o.decision == "anomalous"]
    need = n // 2 + 1
    reason = (f"{k} of {n} methods above their calibrated thresholds"
              + (f" ({', '.join(above)})" if above else "") + f"; {need} needed for anomalous")
    bounds = [o.calibration["fpr_bound"] for o in outcomes if o.calibration]
    return {
        "verdict": verdict,
        "rule": FUSION_RULE,
        "reason": reason,
        # the vote's false-positive bound on normal inputs (None unless every method is calibrated)
        "fpr_bound": round(vote_bound(bounds), 6) if n and len(bounds) == n else None,
        "votes_anomalous": k,
        "n_methods": n,
        "agreement": round(max(k, n - k) / n, 4) if n else None,
        "unanimous": k in (0, n),
        # how strongly the methods disagree: the spread of their normal-reference percentiles
        "disagreement": round((max(pcts) - min(pcts)) / 100.0, 4) if len(pcts) > 1 else 0.0,
        "mean_percentile": round(float(np.mean(pcts)), 2) if pcts else None,
    }
