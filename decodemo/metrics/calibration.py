"""Calibrated decisions: a threshold for a stated false-positive target on normal data.

A model's threshold is the split-conformal quantile of its normal reference scores (the held-out
normal training files the training never fitted on; :mod:`decodemo.evaluation.reference`). With
``n`` reference scores and a target false-positive rate ``alpha``, the threshold is the ``k``-th
smallest score, ``k = ceil((n + 1) (1 - alpha))``. For a new normal input exchangeable with the
reference, ``P(score > threshold) = (n + 1 - k) / (n + 1) <= alpha`` (the guarantee over the draw
of both). The smallest rate ``n`` scores can promise is ``1 / (n + 1)``, at their maximum: with 21
normals a 1% target cannot be met and the guarantee is 4.5%, which the app and the model card say.

The false-positive rate of the threshold actually drawn varies with the reference sample: it
follows a ``Beta(n + 1 - k, k)`` distribution, whose central :data:`LEVEL` interval is shown beside
the guarantee. Any other threshold (one a reviewer applied) is described the same way by the rank
it reaches among the reference scores.

The fused verdict of the compare view is a vote: anomalous when more than half of the methods
are above their calibrated thresholds. If each method's false-positive rate is at most
``alpha``, the expected number of false alarms of a normal input is at most ``m alpha``, so the
vote's false-positive rate is at most ``m alpha / floor(m / 2 + 1)`` (Markov's inequality; 1.5
alpha for three methods), whatever the methods' dependence.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

__all__ = ["BOUND_ABOVE", "BOUND_BELOW", "FPR_TARGET", "LEVEL", "conformal_rank", "conformal_threshold", "describe",
           "provenance", "threshold_bounds", "vote_bound"]

#: the default false-positive target of a calibrated threshold
FPR_TARGET = 0.01
#: the coverage of the interval shown for the false-positive rate of a drawn threshold
LEVEL = 0.9
#: how far an applied threshold may lie below the lowest normal reference score and above the
#: highest, in widths of the reference's range (:func:`threshold_bounds`)
BOUND_BELOW = 1.0
BOUND_ABOVE = 3.0


def conformal_rank(n: int, target: float) -> int:
    """The rank ``k`` (1-based, at most ``n``) of the split-conformal threshold for ``target``."""
    if n < 1:
        raise ValueError("A calibration needs at least one normal score.")
    if not 0.0 < target < 1.0:
        raise ValueError(f"The false-positive target must lie in (0, 1), got {target}.")
    return min(n, max(1, math.ceil((n + 1) * (1.0 - target) - 1e-9)))


def _interval(n: int, k: int, level: float) -> tuple[float, float]:
    from scipy.stats import beta

    a, b = n + 1 - k, k  # the FPR of the k-th order statistic of n normal scores
    tail = (1.0 - level) / 2.0
    return float(beta.ppf(tail, a, b)), float(beta.ppf(1.0 - tail, a, b))


def describe(scores: Iterable[float], threshold: float, *, target: float | None = None,
             level: float = LEVEL) -> dict[str, Any]:
    """What ``threshold`` promises on normal inputs, from the normal reference ``scores``:
    ``n``, ``rank`` (how many reference scores are at or below it), ``n_above``, the guaranteed
    false-positive rate ``fpr_bound`` (``(n + 1 - rank) / (n + 1)``), its ``fpr_interval`` at
    ``level``, ``smallest_bound`` (``1 / (n + 1)``), and with a ``target`` whether it is
    ``achievable`` with ``n`` scores (JSON-ready)."""
    s = np.sort(np.asarray(list(scores), dtype=np.float64))
    n = int(s.size)
    if n == 0:
        raise ValueError("A calibration needs at least one normal score.")
    rank = int(np.searchsorted(s, float(threshold), side="right"))
    out: dict[str, Any] = {"method": "split-conformal", "n": n, "rank": rank, "n_above": n - rank,
                           "smallest_bound": round(1.0 / (n + 1), 6), "level": level}
    if rank == 0:  # below every normal score: nothing is promised
        out.update(fpr_bound=1.0, fpr_interval=[round(n / (n + 1.0), 4), 1.0])
    else:
        lo, hi = _interval(n, rank, level)
        out.update(fpr_bound=round((n + 1 - rank) / (n + 1), 6), fpr_interval=[round(lo, 6), round(hi, 6)])
    if target is not None:
        out.update(target=float(target), achievable=bool(target >= 1.0 / (n + 1) - 1e-12))
    return out


def conformal_threshold(scores: Iterable[float], target: float = FPR_TARGET, *,
                        level: float = LEVEL) -> tuple[float, dict[str, Any]]:
    """The split-conformal threshold of normal ``scores`` for ``target`` -> ``(threshold, how)``,
    ``how`` as :func:`describe` gives it."""
    s = np.sort(np.asarray(list(scores), dtype=np.float64))
    k = conformal_rank(int(s.size), target)
    thr = float(s[k - 1])
    return thr, describe(s, thr, target=target, level=level)


def threshold_bounds(scores: Iterable[float], calibrated: float) -> tuple[float, float]:
    """The range a person may move a model's threshold in, from its normal reference ``scores``:
    the scores' range widened by :data:`BOUND_BELOW` widths below its lowest and
    :data:`BOUND_ABOVE` widths above its highest, always holding the ``calibrated`` threshold.

    Below the range every normal input is flagged; far above it the detector stops flagging
    anything the normal spread would not explain several times over. Either way one change
    would silence or flood every reviewer, so a larger move needs a new calibration (or a new
    model), not a click. Without reference scores the range is the calibrated threshold plus or
    minus ten times its size."""
    s = np.asarray(list(scores), dtype=np.float64)
    s = s[np.isfinite(s)]
    c = float(calibrated)
    if s.size == 0:
        half = 10.0 * max(abs(c), 1e-6)
        return c - half, c + half
    lo, hi = float(s.min()), float(s.max())
    width = max(hi - lo, 0.1 * abs(c), 1e-6)
    return min(lo - BOUND_BELOW * width, c), max(hi + BOUND_ABOVE * width, c)


def vote_bound(fpr_bounds: list[float]) -> float:
    """The false-positive bound of the majority vote of methods with these bounds (Markov)."""
    m = len(fpr_bounds)
    if m == 0:
        return 1.0
    need = m // 2 + 1  # votes for an anomalous verdict
    return float(min(1.0, sum(fpr_bounds) / need))


def provenance(info: dict[str, Any], source: str) -> str:
    """The threshold's provenance line for the manifest and the model card."""
    text = (f"split-conformal threshold for a false-positive target of {info['target']:.1%} on the "
            f"{info['n']} normal reference scores ({source}): the score of rank {info['rank']} of {info['n']}; guaranteed "
            f"false-positive rate {info['fpr_bound']:.1%}, {info['level']:.0%} interval "
            f"{info['fpr_interval'][0]:.1%} to {info['fpr_interval'][1]:.1%}")
    if not info["achievable"]:
        text += f" (with {info['n']} scores the target cannot be met: {info['smallest_bound']:.1%} at best)"
    return text + "; no test data used"


def guarantee_text(c: dict | None) -> str:
    """One line on what a threshold promises on normal inputs (its calibration), or ``""``."""
    if not c:
        return ""
    if c["rank"] == 0:
        return f"below all {c['n']} normal reference scores: every normal input would be flagged"
    text = (f"at most {c['fpr_bound']:.1%} of normal inputs flagged, guaranteed by {c['n']} normal reference "
            f"scores ({c['level']:.0%} interval {c['fpr_interval'][0]:.1%} to {c['fpr_interval'][1]:.1%})")
    target = c.get("target")
    if target is not None:
        text = f"false-positive target {target:.1%}: " + text
        if not c.get("achievable", True):
            text += f"; the target needs {math.ceil(1 / target - 1)} normals"
    return text
