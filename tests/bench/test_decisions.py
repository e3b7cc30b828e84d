"""The decision figures of ``python -m decodemo.bench.decisions``: false-positive rate on normals
and recall on defects, per method, for the fused vote and for the baseline shown beside it."""

from __future__ import annotations

from types import SimpleNamespace as NS

from decodemo.bench.decisions import decision_rates


def _comp(decisions: dict[str, str], verdict: str, ref_score: float | None):
    outcomes = [NS(method=m, decision=d) for m, d in decisions.items()]
    ref = None if ref_score is None else NS(model="set/baseline", score=ref_score, threshold=1.0)
    return NS(outcomes=outcomes, summary=lambda: {"verdict": verdict}, reference=ref)


def test_rates_per_method_fused_and_baseline():
    comps = [_comp({"invad": "anomalous", "recon": "normal"}, "normal", 0.5),   # normal: invad's false alarm
             _comp({"invad": "normal", "recon": "normal"}, "normal", 2.0),      # normal: the baseline's
             _comp({"invad": "anomalous", "recon": "anomalous"}, "anomalous", 3.0),
             _comp({"invad": "normal", "recon": "anomalous"}, "anomalous", 0.9)]
    r = decision_rates(comps, [0, 0, 1, 1])
    assert (r["invad"]["false_positives"], r["invad"]["fpr"], r["invad"]["detected"]) == (1, 0.5, 1)
    assert (r["recon"]["fpr"], r["recon"]["recall"]) == (0.0, 1.0)
    assert (r["fused"]["fpr"], r["fused"]["recall"], r["fused"]["n_normal"]) == (0.0, 1.0, 2)
    assert (r["baseline"]["fpr"], r["baseline"]["recall"]) == (0.5, 0.5)  # score > its threshold 1.0
    # the baseline against another threshold of its model (the --before manifest's)
    assert decision_rates(comps, [0, 0, 1, 1], {"set/baseline": 0.8})["baseline"]["recall"] == 1.0
    assert "baseline" not in decision_rates([_comp({"invad": "normal"}, "normal", None)], [0])
