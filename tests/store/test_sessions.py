"""The store's sessions: one per call or event, plain values out, every writer retried, and
the dashboard's figures under the product's decision rule (``score > threshold``)."""

from __future__ import annotations

import hashlib
import uuid

import numpy as np
import pytest
from sqlalchemy.exc import OperationalError

from decodemo.service import Comparison, MethodOutcome
from decodemo.store import ReviewStore, feedback, records
from decodemo.store.records import ItemRecord, RunRecord


@pytest.fixture
def store(tmp_path):
    s = ReviewStore(data_dir=tmp_path / "data")
    yield s
    s.close()


def _comparison(tmp_path, name: str, scores: dict[str, float], *, size=(8, 10)) -> Comparison:
    path = tmp_path / name
    path.write_bytes(name.encode() * 7)
    outs = [MethodOutcome(method=m, model=f"texture/{m}", revision="bundled:abc", score=sc, threshold=0.5,
                          default_threshold=0.5, decision="anomalous" if sc > 0.5 else "normal", percentile=100.0 * sc,
                          nfe=3, latency_ms=12.0, map=np.full(size, sc, np.float32), pixel_threshold=0.5,
                          reference_scores=[0.1], pixel_quantiles=None, reconstruction=None)
            for m, sc in scores.items()]
    return Comparison(id=uuid.uuid4().hex, modality="image", domain="texture", name=name,
                      sha256=hashlib.sha256(path.read_bytes()).hexdigest(), input=np.zeros((*size, 3), np.uint8),
                      outcomes=outs, seconds=0.1, path=str(path))


def _count_sessions(store, monkeypatch) -> list[int]:
    opened = [0]
    real = store.session

    def counting():
        opened[0] += 1
        return real()

    monkeypatch.setattr(store, "session", counting)
    return opened


def test_one_session_per_call_and_plain_values_out(store, tmp_path, monkeypatch):
    opened = _count_sessions(store, monkeypatch)
    item_id = store.record(_comparison(tmp_path, "a.png", {"invad": 0.7, "recon": 0.2}))
    store.submit_review(item_id, "ana", "anomalous", mask=np.ones((8, 10), bool))
    fb = feedback(store)
    assert opened[0] == 3 and fb["n_labelled"] == 1
    item, runs, maps = store.item(item_id), store.latest_runs(item_id), store.map_files(item_id)
    store.close()  # nothing read afterwards needs the database
    assert isinstance(item, ItemRecord) and (item.height, item.width, item.name) == (8, 10, "a.png")
    assert all(isinstance(r, RunRecord) for r in runs.values()) and runs["invad"].score == pytest.approx(0.7)
    assert maps["recon"] == store.path(runs["recon"].map_path) and maps["recon"].is_file()


def test_data_functions_share_the_callers_session(store, tmp_path):
    item_id = store.record(_comparison(tmp_path, "a.png", {"invad": 0.7}))
    with store.session() as s:
        records.add_review(s, item_id, "ana", "normal")
        records.add_review(s, item_id, "ana", "anomalous", note="second thoughts")
        assert [h["version"] for h in records.history(s, item_id, "ana")] == [1, 2]
        assert records.counts(s)["reviewed"] == 1
    with pytest.raises(RuntimeError):
        with store.session() as s:  # an event that fails leaves nothing behind
            records.add_review(s, item_id, "ben", "normal")
            raise RuntimeError("the event failed")
    assert [r["reviewer"] for r in store.current_reviews(item_id)] == ["ana"]


def _locked_once(real, calls: list):
    """``real``, but the first call finds the database locked."""
    def fn(s, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real(s, *args, **kwargs)

    return fn


def test_every_writer_is_retried_the_threshold_change_too(store, monkeypatch):
    calls = []
    monkeypatch.setattr(records, "add_threshold_change", _locked_once(records.add_threshold_change, calls))
    change = store.apply_threshold("texture/invad", 0.3, old=0.5, by="ana", reason="best F1")
    assert len(calls) == 2 and change["new_threshold"] == 0.3
    assert store.applied_thresholds() == {"texture/invad": 0.3}


def test_a_retried_review_writes_its_mask_once(store, tmp_path, monkeypatch):
    item_id = store.record(_comparison(tmp_path, "a.png", {"invad": 0.7}))
    calls = []
    monkeypatch.setattr(records, "add_review", _locked_once(records.add_review, calls))
    mask = np.zeros((8, 10), bool)
    mask[2:4, 3:6] = True
    review = store.submit_review(item_id, "ana", "anomalous", mask=mask)
    assert len(calls) == 2 and np.array_equal(store.mask(review), mask)
    assert len(list((store.data_dir / "files" / "masks").rglob("*.png"))) == 1


def test_curves_follow_the_decision_rule_equal_scores_switch_together(store, tmp_path):
    # invad scores: a 0.9 (anomalous), b 0.5 (normal), c 0.5 (anomalous), d 0.1 (normal)
    for name, score, verdict in (("a", 0.9, "anomalous"), ("b", 0.5, "normal"), ("c", 0.5, "anomalous"),
                                 ("d", 0.1, "normal")):
        item_id = store.record(_comparison(tmp_path, f"{name}.png", {"invad": score}))
        store.submit_review(item_id, "ana", verdict)
    m = feedback(store)["models"]["texture/invad"]
    # b and c tie: no threshold flags one without the other, so the curves step over both at once
    assert m["roc"] == {"fpr": [0.0, 0.0, 0.5, 1.0], "tpr": [0.0, 0.5, 1.0, 1.0]}
    assert m["pr"] == {"recall": [0.5, 1.0, 1.0], "precision": [1.0, pytest.approx(2 / 3), 0.5]}
    assert m["auroc"] == pytest.approx(0.875)
    # stored decisions (score > 0.5): only a is flagged
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (1, 0, 1, 2) and m["confusion"] == [[2, 0], [1, 1]]
