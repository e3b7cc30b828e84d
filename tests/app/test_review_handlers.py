"""The Review and Dashboard handlers as plain functions, on a real store (SQLite in a temporary
folder) and the real service with a stand-in registry: what each event shows and stores, and
that each reads the store in one session."""

from __future__ import annotations

import hashlib
import inspect
import uuid
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import event

from decodemo.app import dashboard as dash
from decodemo.app import review_handlers as rv
from decodemo.app.dashboard import DashboardView
from decodemo.app.review import bind
from decodemo.app.review_handlers import ReviewView
from decodemo.service import Comparison, MethodOutcome, Service
from decodemo.service.access import AccessPolicy
from decodemo.store import ReviewStore

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
SIZE = (8, 10)
NO_FILTER = ("(all)", "(all)", "(any)", "", False)  # domain, modality, method decision, reviewed by, include reviewed


#: a normal reference of 20 scores, 0.02 .. 0.4 (the calibrated threshold 0.5 flags none of them)
REFERENCE = [round(0.02 * (i + 1), 2) for i in range(20)]


def _entry(threshold: float) -> SimpleNamespace:
    return SimpleNamespace(threshold=threshold, input={}, domain="texture", modality="image",
                           reference={"scores": REFERENCE})


@pytest.fixture
def app(tmp_path):
    store = ReviewStore(data_dir=tmp_path / "data")
    entries = {f"texture/{m}": _entry(0.5) for m in ("invad", "decodiff", "recon")}
    registry = SimpleNamespace(entries=entries, entry=lambda name: entries[name])
    yield Service(registry=registry, store=store), store
    store.close()


def _record(store, tmp_path, name: str, scores: dict[str, float]) -> int:
    path = tmp_path / name
    Image.fromarray(np.full((*SIZE, 3), hashlib.sha256(name.encode()).digest()[0], np.uint8)).save(path)
    outs = [MethodOutcome(method=m, model=f"texture/{m}", revision="bundled:abc", score=sc, threshold=0.5,
                          default_threshold=0.5, decision="anomalous" if sc > 0.5 else "normal", percentile=100.0 * sc,
                          nfe=3, latency_ms=12.0, map=np.full(SIZE, sc, np.float32), pixel_threshold=0.5,
                          reference_scores=[0.1], pixel_quantiles=None, reconstruction=None)
            for m, sc in scores.items()]
    comp = Comparison(id=uuid.uuid4().hex, modality="image", domain="texture", name=name,
                      sha256=hashlib.sha256(path.read_bytes()).hexdigest(), input=np.zeros((*SIZE, 3), np.uint8),
                      outcomes=outs, seconds=0.1, path=str(path))
    return store.record(comp)


def _sessions(store) -> list:
    """The sessions that begin a transaction from now on (every read and write needs one)."""
    begun = []
    event.listen(store.Session, "after_begin", lambda session, transaction, connection: begun.append(session))
    return begun


def _painted(rows: slice, cols: slice) -> dict:
    layer = np.zeros((*SIZE, 4), np.uint8)
    layer[rows, cols, 3] = 255
    return {"background": None, "layers": [layer], "composite": None}


def test_review_events_show_store_and_undo_in_one_session_each(app, tmp_path):
    service, store = app
    calm = _record(store, tmp_path, "calm.png", {"invad": 0.2, "decodiff": 0.3, "recon": 0.25})
    torn = _record(store, tmp_path, "torn.png", {"invad": 0.9, "decodiff": 0.1, "recon": 0.6})
    opened = _sessions(store)

    shown = rv.show_next(service, store, *NO_FILTER, [], "decodiff")
    assert len(opened) == 1 and isinstance(shown, ReviewView) and len(shown) == 7
    assert shown.item_id == torn  # the methods disagree most on it
    assert "2 pending" in shown.info and "`torn.png · " in shown.info and "anonymous" in shown.info
    item = store.item(torn)  # named apart from other uploads of the same file name: hash prefix and time
    assert f"`torn.png · {item.sha256[:8]} · {item.uploaded_at:%Y-%m-%d %H:%M}`" in shown.info
    assert shown.editor["background"].shape == (*SIZE, 3) and shown.history == "_No review of yours yet._"

    warned = []
    monkey = pytest.MonkeyPatch()
    monkey.setattr(gr, "Warning", lambda message, *a, **k: warned.append(message))
    # an expected mistake is a warning toast and leaves the item as it is: no error badges
    assert rv.submit(service, store, "normal", torn, _painted(slice(1, 3), slice(2, 5)), [], "", *NO_FILTER, [],
                     "decodiff") == ReviewView.unchanged()
    assert "anomalous verdict" in warned[-1] and store.current_reviews(torn) == []
    opened.clear()
    after = rv.submit(service, store, "anomalous", torn, _painted(slice(1, 3), slice(2, 5)), ["invad"], "tear",
                      *NO_FILTER, [], "decodiff")
    assert len(opened) == 1 and after.item_id == calm and "1 pending" in after.info
    (review,) = store.current_reviews(torn)
    assert review["verdict"] == "anomalous" and review["methods_right"] == ["invad"] and review["note"] == "tear"
    assert store.mask(review).sum() == 6

    opened.clear()
    again = rv.reshow(service, store, torn, "none", [])
    assert len(opened) == 1 and again.item_id == torn and "v1 anomalous" in again.history
    assert again.right == gr.update(value=["invad"]) and again.note == "tear"
    opened.clear()
    # Z acts on the reviewer's own last review wherever the queue is (here: calm is shown)
    undone = rv.undo(service, store, calm, "invad", [])
    assert len(opened) == 1 and undone.item_id == torn and "(undone)" in undone.history
    assert store.current_reviews(torn) == []
    assert rv.undo(service, store, torn, "invad", []) == ReviewView.unchanged()
    assert "no review left to undo" in warned[-1]
    assert rv.submit(service, store, "normal", None, None, [], "", *NO_FILTER, [], "decodiff") == ReviewView.unchanged()
    monkey.undo()

    skipped = rv.skip(service, store, torn, *NO_FILTER, [], "decodiff")
    assert skipped.skipped == [torn] and skipped.item_id == calm  # the skipped item goes to the end
    assert rv.reshow(service, store, None, "none", []) == ReviewView.unchanged()
    nothing = rv.show_next(service, store, "fan", *NO_FILTER[1:], [], "decodiff")
    assert nothing.item_id is None and "Nothing to review" in nothing.info


def test_dashboard_reads_thresholds_from_the_service_and_applies_through_it(app, tmp_path, monkeypatch):
    service, store = app
    for name, score, verdict in (("a.png", 0.9, "anomalous"), ("bb.png", 0.3, "anomalous"),
                                 ("ccc.png", 0.1, "normal")):
        item_id = _record(store, tmp_path, name, {"invad": score})
        store.submit_review(item_id, "ana", verdict)
    (row,) = dash.dashboard(service, store, "(all)").thresholds
    assert row[5] is None and "needs 9 more reviewed normals and 8 more reviewed anomalies" in row[6]
    monkeypatch.setenv("DECODEMO_MIN_REVIEWED", "1")
    opened = _sessions(store)

    view = dash.dashboard(service, store, "(all)")
    # one session for the figures, one for the thresholds (read from the database, as every replica does)
    assert len(opened) == 2 and isinstance(view, DashboardView) and len(view) == 8
    assert "**3** analysed items" in view.head and "no item reviewed by two people" in view.kappa
    (row,) = view.thresholds
    assert len(row) == len(dash.THRESHOLD_COLUMNS)
    assert row[:4] == ["texture/invad", "3 (1 / 2)", 0.5, 0.667] and 0.1 < row[5] < 0.3  # suggested: flag bb too
    assert "in sample 1.000" in row[6]  # too few items of each class for a cross-validation
    ref = service.registry.entry("texture/invad").reference["scores"]
    assert row[4].startswith(f"{sum(v > 0.5 for v in ref)} of {len(ref)}")  # the normal reference flagged now
    assert row[7].startswith(f"{sum(v > row[5] for v in ref)} of {len(ref)}")  # ... and at the suggestion
    assert view.model == gr.update(choices=["texture/invad"], value="texture/invad")
    suggested = dash.pick_model(service, store, "texture/invad", "(all)")["value"]
    assert suggested == row[5]

    with pytest.raises(gr.Error, match="Threshold changes are off"):  # no login, changes not opened
        dash.apply(service, store, "texture/invad", suggested, "best F1", "(all)")
    service.access = AccessPolicy(open_thresholds=True)
    with pytest.raises(gr.Error, match="why"):
        dash.apply(service, store, "texture/invad", suggested, " ", "(all)")
    warned = []
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **k: warned.append(message))
    after = dash.apply(service, store, "texture/invad", suggested, "best F1 on 3 items", "(all)")
    assert service.threshold("texture/invad") == suggested and store.applied_thresholds() == {"texture/invad": suggested}
    # every figure follows the applied threshold: the table's F1 and the counts the plots draw
    assert after.thresholds[0][2] == suggested and after.thresholds[0][3] == 1.0
    m = dash._feedback(service, store, "(all)")["models"]["texture/invad"]
    assert m["f1"] == 1.0 and m["confusion"] == [[1, 0], [0, 2]]
    assert after.changes[0][1:5] == ["texture/invad", 0.5, suggested, "anonymous"]
    assert "normal reference inputs" in warned[-1] and "score above the new threshold" in warned[-1]
    opened.clear()
    files, counts = dash.export(store)
    assert len(opened) == 1 and counts == {"items": 3, "reviewed": 3, "pending": 0, "review_versions": 3}
    assert any(f.endswith("threshold_changes.csv") for f in files)


def test_only_admins_apply_thresholds_within_the_reference_bounds(app, caplog):
    from decodemo.errors import PermissionDeniedError, ThresholdOutOfBoundsError

    service, store = app
    ref = service.registry.entry("texture/invad").reference["scores"]
    lo, hi = service.threshold_bounds("texture/invad")
    width = max(ref) - min(ref)
    assert lo == pytest.approx(min(ref) - width) and hi == pytest.approx(max(ref) + 3 * width)
    service.access = AccessPolicy(admins=frozenset({"root"}))
    for who, anonymous, says in ((None, None, "not signed in"), ("anonymous:1a2b3c4d", True, "not signed in"),
                                 ("ana", False, "ana is a reviewer, not an admin")):
        with pytest.raises(PermissionDeniedError, match=says):
            service.apply_threshold("texture/invad", 0.6, by=who, reason="try", anonymous=anonymous)
    for bad in (1e300, float("nan"), float("inf"), lo - 1e-3, hi + 1e-3):
        with pytest.raises(ThresholdOutOfBoundsError, match="outside what its normal reference allows"):
            service.apply_threshold("texture/invad", bad, by="root", reason="try")
    assert store.applied_thresholds() == {}  # nothing refused was written
    with caplog.at_level("WARNING", logger="decodemo.thresholds"):
        change = service.apply_threshold("texture/invad", hi, by="root", reason="fewer false alarms")
    assert change["changed_by"] == "root" and service.threshold("texture/invad") == hi
    assert "threshold of texture/invad changed from 0.5" in caplog.text and "by root: fewer false alarms" in caplog.text
    # another process on the same database (a second service over the same store) judges alike at once
    other = Service(registry=service.registry, store=ReviewStore(store.url, data_dir=store.data_dir))
    assert other.threshold("texture/invad") == hi


def test_policy_from_settings(monkeypatch):
    monkeypatch.setenv("DECODEMO_ADMINS", "ana, bo")
    monkeypatch.delenv("OAUTH_CLIENT_ID", raising=False)
    monkeypatch.setenv("SPACE_AUTHOR_NAME", "owner")
    p = AccessPolicy.from_settings(["cy"])
    assert p.admins == {"ana", "bo", "cy"} and not p.open_thresholds  # the owner counts under OAuth only
    monkeypatch.setenv("OAUTH_CLIENT_ID", "x")
    assert "owner" in AccessPolicy.from_settings().admins
    monkeypatch.setenv("DECODEMO_OPEN_THRESHOLDS", "1")
    assert AccessPolicy.from_settings().may_apply_thresholds(None)


def test_each_browser_is_its_own_anonymous_reviewer(app, tmp_path):
    service, store = app
    one, two = (SimpleNamespace(username=None, cookies={"decodemo_visitor": c * 32}) for c in "ab")
    me = rv.reviewer_name(one)
    assert me == "anonymous:aaaaaaaa" and rv.reviewer_name(two) == "anonymous:bbbbbbbb"
    assert rv.reviewer_name(SimpleNamespace(username=None, cookies={"decodemo_visitor": "../../etc"})) is None
    assert rv.reviewer_name(SimpleNamespace(username="ana", cookies={"decodemo_visitor": "a" * 32})) == "ana"
    item = _record(store, tmp_path, "x.png", {"invad": 0.9})
    store.submit_review(item, rv.reviewer_name(one), "anomalous")
    store.submit_review(item, rv.reviewer_name(two), "normal")
    assert rv.undo(service, store, item, "invad", [], request=two).item_id == item  # two's undo: two's review
    (left,) = store.current_reviews(item)
    assert left["reviewer"] == "anonymous:aaaaaaaa" and left["verdict"] == "anomalous" and left["anonymous"]
    view = rv.reshow(service, store, item, "invad", [], request=one)
    assert "v1 anomalous" in view.history and "undone" not in view.history  # one's own history, untouched
    assert rv._me(me).startswith("anonymous visitor aaaaaaaa (this browser")


def test_bound_handlers_keep_what_gradio_reads():
    from gradio import utils

    for fn, first in ((rv.show_next, 2), (rv.submit, 2), (rv.undo, 2), (rv.submit_api, 1), (dash.apply, 2)):
        handler = bind(fn, object(), object())
        params = list(inspect.signature(bind(fn, *[object()] * first)).parameters)
        hints = utils.get_type_hints(handler)
        assert [p for p in params if utils.is_special_typed_parameter(p, hints)] == ["request", "profile"]
        assert handler.__doc__ == fn.__doc__ and handler.__name__ == fn.__name__
    assert list(inspect.signature(bind(dash.dashboard, 1, 2)).parameters) == ["domain"]
