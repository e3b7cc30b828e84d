"""The review store on a real SQLite file (and on PostgreSQL when ``DECODEMO_TEST_PG_URL`` is set):
the whole feedback flow, migrations, concurrent writers."""

from __future__ import annotations

import csv
import json
import os
import threading
import uuid
import zipfile
import numpy as np
import pytest
from sqlalchemy import create_engine, inspect, text

from decodemo.service import Comparison, MethodOutcome
from decodemo.store import ReviewError, ReviewStore, best_f1_threshold, cohen_kappa, feedback, safe_name
from decodemo.store.db import current_revision, head_revision, make_engine, upgrade

PG_URL = os.environ.get("DECODEMO_TEST_PG_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def _fresh_pg_url() -> str:
    """A new, empty schema-less database on the test server for one test."""
    from sqlalchemy.engine import make_url

    base = make_url(PG_URL)
    name = f"decodemo_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    url = None if request.param == "sqlite" else _fresh_pg_url()
    s = ReviewStore(url, data_dir=tmp_path / "data")
    yield s
    s.close()


def _comparison(tmp_path, name: str, scores: dict[str, float], *, thresholds=None, size=(8, 10), defect=None,
                modality="image", domain="texture") -> Comparison:
    """A comparison as the service returns it, with chosen scores (maps put the highest values
    on ``defect``, a boolean array, when given)."""
    path = tmp_path / name
    path.write_bytes(name.encode() * 7)  # distinct content per name
    import hashlib

    outs = []
    for method, score in scores.items():
        thr = (thresholds or {}).get(method, 0.5)
        m = np.full(size, 0.1, dtype=np.float32)
        if defect is not None:
            m[defect] = 0.9
        outs.append(MethodOutcome(method=method, model=f"{domain}/{method}", revision="bundled:abc", score=score,
                                  threshold=thr, default_threshold=thr,
                                  decision="anomalous" if score > thr else "normal", percentile=100.0 * score, nfe=3,
                                  latency_ms=12.0, map=m, pixel_threshold=0.5, reference_scores=[0.1, 0.2],
                                  pixel_quantiles=None, reconstruction=None))
    comp = Comparison(id=uuid.uuid4().hex, modality=modality, domain=domain, name=name,
                      sha256=hashlib.sha256(path.read_bytes()).hexdigest(), input=np.zeros((*size, 3), np.uint8),
                      outcomes=outs, seconds=0.1, path=str(path))
    return comp


def test_full_feedback_flow(store, tmp_path):
    # analyse: four items; the methods disagree most on "b"
    truth_mask = np.zeros((8, 10), bool)
    truth_mask[2:5, 3:7] = True
    a = store.record(_comparison(tmp_path, "a.png", {"decodiff": 0.9, "recon": 0.8, "invad": 0.7}, defect=truth_mask))
    b = store.record(_comparison(tmp_path, "b.png", {"decodiff": 0.9, "recon": 0.2, "invad": 0.6}))
    c = store.record(_comparison(tmp_path, "c.png", {"decodiff": 0.3, "recon": 0.1, "invad": 0.2}))
    d = store.record(_comparison(tmp_path, "d.png", {"decodiff": 0.4, "recon": 0.6, "invad": 0.1}))
    # the same upload again is the same item, with more runs
    again = _comparison(tmp_path, "a.png", {"decodiff": 0.95, "recon": 0.8, "invad": 0.7}, defect=truth_mask)
    assert store.record(again) == a
    assert len(store.rows()["runs"]) == 15 and store.counts()["items"] == 4
    stored = store.path(store.item(a).file_path)
    assert stored.read_bytes() == (tmp_path / "a.png").read_bytes()

    # queue: pending first, most disagreement (spread of the methods' percentiles) first; filters
    q = store.queue()
    assert [r["item_id"] for r in q] == [b, d, a, c]  # spreads 0.7, 0.5, 0.25, 0.2
    assert q[0]["disagreement"] == pytest.approx(0.7) and all(r["pending"] for r in q)
    assert [r["item_id"] for r in store.queue(method="recon", decision="anomalous")] == [d, a]
    assert store.queue(domain="fan") == []
    assert [r["item_id"] for r in store.queue(exclude=[q[0]["item_id"]])][-1] == q[0]["item_id"]  # skipped goes last

    # review with a mask, edit, undo
    r1 = store.submit_review(a, "ana", "anomalous", methods_right=["decodiff", "recon", "invad"], mask=truth_mask,
                             note="crack")
    assert r1["version"] == 1 and store.mask(r1).shape == (8, 10) and store.mask(r1)[3, 4]
    r2 = store.submit_review(a, "ana", "unsure", note="not so sure")
    assert r2["version"] == 2
    assert [x["verdict"] for x in store.current_reviews(a)] == ["unsure"]
    back = store.undo(a, "ana")
    assert back["version"] == 1 and [x["verdict"] for x in store.current_reviews(a)] == ["anomalous"]
    hist = store.history(a, "ana")
    assert [h["version"] for h in hist] == [1, 2] and hist[1]["undone_at"] is not None  # kept, marked undone
    with pytest.raises(ReviewError, match="mask is 3 x 2"):
        store.submit_review(a, "ana", "anomalous", mask=np.zeros((2, 3), bool))
    with pytest.raises(ReviewError, match="verdict"):
        store.submit_review(a, "ana", "maybe")

    store.submit_review(b, "ana", "normal", methods_right=["recon"])
    store.submit_review(c, "ana", "normal", methods_right=["decodiff", "recon", "invad"])
    store.submit_review(d, "ana", "anomalous", methods_right=["recon"])
    store.submit_review(b, "ben", "normal")
    store.submit_review(c, "ben", "anomalous")
    store.submit_review(d, None, "anomalous")  # anonymous
    assert store.counts() == {"items": 4, "reviewed": 4, "pending": 0, "review_versions": 8}
    assert store.queue() == [] and len(store.queue(reviewed_by="ben")) == 2

    # dashboard figures, computed by hand:
    # labels: a anomalous (ana), b normal (ana, ben), c tie ana/ben -> out, d anomalous (ana, anonymous)
    assert feedback(store)["models"]["texture/invad"]["suggestion"] is None  # 10 of each needed by default
    assert "more reviewed normals" in feedback(store)["models"]["texture/invad"]["suggestion_needs"]
    fb = feedback(store, min_reviewed=1)
    assert fb["n_labelled"] == 3
    dd = fb["models"]["texture/decodiff"]  # decisions: a 0.95 anom, b 0.9 anom, d 0.4 normal
    assert (dd["tp"], dd["fp"], dd["fn"], dd["tn"]) == (1, 1, 1, 0)
    assert dd["precision"] == pytest.approx(0.5) and dd["recall"] == pytest.approx(0.5)
    rc = fb["models"]["texture/recon"]  # a 0.8 anom, b 0.2 normal, d 0.6 anom
    assert (rc["precision"], rc["recall"], rc["f1"]) == (1.0, 1.0, 1.0) and rc["auroc"] == 1.0
    assert rc["confusion"] == [[1, 0], [0, 2]]
    assert dd["pixel_iou"] == pytest.approx(1.0)  # the map's high values are exactly the mask
    assert fb["kappa"] and {tuple(p["reviewers"]) for p in fb["kappa"]} >= {("ana", "ben")}
    ana_ben = next(p for p in fb["kappa"] if p["reviewers"] == ["ana", "ben"])
    assert ana_ben["n_items"] == 2 and ana_ben["kappa"] == pytest.approx(cohen_kappa(["normal", "normal"],
                                                                                     ["normal", "anomalous"]))
    # suggested threshold: invad scores a 0.7, b 0.6, d 0.1 -> only a above 0.5; best F1 needs d too
    sug = fb["models"]["texture/invad"]["suggestion"]
    assert sug["threshold"] < 0.1 and sug["f1"] > sug["f1_current"]

    # applying it records who, from what, to what and why
    change = store.apply_threshold("texture/invad", sug["threshold"], old=0.5, by="ana", reason="best F1 on 3 items")
    assert change["old_threshold"] == 0.5 and store.applied_thresholds() == {"texture/invad": sug["threshold"]}
    with pytest.raises(ReviewError, match="why"):
        store.apply_threshold("texture/invad", 0.3, old=0.5, by="ana", reason=" ")

    # export, built from the rows
    paths = store.export(tmp_path / "export")
    with open(paths["reviews"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {r["reviewer"] for r in rows} == {"ana", "ben", "anonymous"}
    data = json.loads(paths["json"].read_text())
    assert len(data["items"]) == 4 and len(data["threshold_changes"]) == 1
    with zipfile.ZipFile(paths["masks"]) as z:
        assert z.namelist() == [f"item{a}_ana_v1_review{r1['id']}.png"]


def test_safe_names():
    assert safe_name("../../etc/passwd") == "etc_passwd"
    assert safe_name("Zoë Müller") == "Zo_M_ller" and safe_name("...") == "x"


def test_cross_validated_f1_is_out_of_sample_and_has_an_interval():
    from decodemo.store.feedback import cross_validated_f1

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(30, bool), np.ones(30, bool)]
    separable = np.r_[rng.uniform(0, 1, 30), rng.uniform(2, 3, 30)]
    cv = cross_validated_f1(y, separable, current=5.0)
    assert cv["f1"] == 1.0 and cv["interval"] == [1.0, 1.0] and cv["folds"] == 5
    noise = rng.normal(size=60)  # no signal: best F1 in sample is optimistic, out of sample it is not
    cv, inside = cross_validated_f1(y, noise, current=0.0), best_f1_threshold(y, noise, current=0.0)
    assert cv["f1"] < inside["f1"] and cv["interval"][0] < cv["f1"] < cv["interval"][1]
    assert cross_validated_f1(np.array([0, 1, 1], bool), np.array([0.1, 0.5, 0.9]), current=0.3) is None


def test_best_f1_threshold_and_kappa():
    s = best_f1_threshold(np.array([0, 0, 1, 1], bool), np.array([0.1, 0.4, 0.35, 0.9]), current=0.5)
    assert s["f1"] == pytest.approx(0.8) and 0.1 < s["threshold"] < 0.35
    assert best_f1_threshold(np.array([1, 1], bool), np.array([0.1, 0.2]), current=0.5) is None
    # a current threshold that is already best is kept
    kept = best_f1_threshold(np.array([0, 0, 1, 1], bool), np.array([0.1, 0.2, 0.8, 0.9]), current=0.3)
    assert kept["threshold"] == 0.3 and kept["f1"] == kept["f1_current"] == 1.0
    assert cohen_kappa(["a", "b", "a"], ["a", "b", "a"]) == 1.0
    assert cohen_kappa(["a", "a", "b", "b"], ["a", "b", "a", "b"]) == pytest.approx(0.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_from_empty_and_from_the_previous_revision(tmp_path, backend):
    url = f"sqlite:///{tmp_path / 'm.sqlite3'}" if backend == "sqlite" else _fresh_pg_url()
    engine = make_engine(url)
    assert current_revision(engine) is None
    upgrade(engine, "0001")  # the previous revision, with data in it
    assert current_revision(engine) == "0001" and not inspect(engine).has_table("threshold_changes")
    with engine.begin() as c:
        c.execute(text("INSERT INTO items (sha256, name, file_path, modality, domain, height, width, uploaded_at, "
                       "uploaded_by, anonymous, disagreement) VALUES ('ab', 'x.png', 'f', 'image', 'bottle', 2, 3, "
                       "'2026-01-01 00:00:00', 'ana', false, 0.5)"))
    store = ReviewStore(url, data_dir=tmp_path / "d")  # opening migrates to head
    assert current_revision(store.engine) == head_revision() == "0003"
    assert store.item_by_sha("ab").uploaded_by == "ana"  # nothing lost
    store.apply_threshold("bottle/invad", 1.0, old=2.0, by="ana", reason="test")
    # and the migrated schema is what the code expects
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from decodemo.store.schema import Base

    with store.engine.connect() as c:
        assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
    store.close()
    engine.dispose()


def test_eight_threads_writing_reviews_at_once_lose_none(store, tmp_path):
    items = [store.record(_comparison(tmp_path, f"i{i}.png", {"invad": 0.1 * i})) for i in range(4)]
    barrier = threading.Barrier(8)
    errors = []

    def work(k: int) -> None:
        try:
            barrier.wait()
            for j in range(6):  # every thread reviews every item, some twice as the same reviewer
                store.submit_review(items[j % 4], f"rev{k % 4}", "anomalous" if j % 2 else "normal",
                                    note=f"t{k} j{j}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = store.rows()["reviews"]
    assert len(rows) == 8 * 6
    assert {r["note"] for r in rows} == {f"t{k} j{j}" for k in range(8) for j in range(6)}
    # versions per (item, reviewer) are 1..n without gaps or duplicates
    by_key = {}
    for r in rows:
        by_key.setdefault((r["item_id"], r["reviewer"]), []).append(r["version"])
    assert all(sorted(v) == list(range(1, len(v) + 1)) for v in by_key.values())


def test_database_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DECODEMO_DATA_DIR", str(tmp_path / "dd"))
    monkeypatch.delenv("DECODEMO_DB_URL", raising=False)
    s = ReviewStore()
    assert s.url == f"sqlite:///{tmp_path / 'dd' / 'decodemo.sqlite3'}" and (tmp_path / "dd/decodemo.sqlite3").is_file()
    s.close()
    monkeypatch.setenv("DECODEMO_DB_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    s = ReviewStore()
    assert (tmp_path / "elsewhere.db").is_file()
    s.close()


def test_editor_mask_from_painted_layers():
    from decodemo.app.review import editor_mask

    h, w = 6, 8
    layer = np.zeros((h, w, 4), np.uint8)
    layer[1:3, 2:5, 3] = 255  # painted
    value = {"background": np.zeros((h, w, 3), np.uint8), "layers": [layer], "composite": None}
    m = editor_mask(value, (h, w))
    assert m.shape == (h, w) and m.sum() == 6 and m[1, 2] and not m[0, 0]
    flipped = editor_mask(value, (h, w), flip=True)  # a spectrogram is drawn low frequencies at the bottom
    assert np.array_equal(flipped, m[::-1])
    big = np.zeros((2 * h, 2 * w, 4), np.uint8)
    big[2:6, 4:10, 3] = 255  # a canvas at twice the size is brought back to the input's size
    assert editor_mask({"layers": [big]}, (h, w)).sum() == 6
    assert editor_mask({"layers": [np.zeros((h, w, 4), np.uint8)]}, (h, w)) is None
    assert editor_mask(None, (h, w)) is None


def test_the_same_input_again_writes_no_new_map(store, tmp_path):
    comp = _comparison(tmp_path, "again.png", {"invad": 0.7, "decodiff": 0.2})
    first = store.record(comp)
    maps = sorted(p for p in (store.data_dir / "files" / "maps").rglob("*.npy"))
    assert store.record(comp) == first and store.record(comp) == first
    assert sorted(p for p in (store.data_dir / "files" / "maps").rglob("*.npy")) == maps and len(maps) == 2
    changed = _comparison(tmp_path, "again.png", {"invad": 0.7, "decodiff": 0.2}, defect=np.eye(8, 10, dtype=bool))
    store.record(changed)  # another map of the same item (another model revision, say) is kept beside it
    assert len(list((store.data_dir / "files" / "maps").rglob("*.npy"))) == 4
