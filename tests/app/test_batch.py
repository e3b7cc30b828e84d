"""Batches: several files or a zip through the real app's ``compare_batch`` API, a row opened in
the single-file view, ``python -m decodemo score`` on a folder (CSV and JSON), and the zip guards."""

from __future__ import annotations

import csv
import json
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from decodemo.data.synthetic import make_texture
from decodemo.errors import FileTooLargeError, InputError
from decodemo.io.archive import unpack_zip
from decodemo.service import METHOD_ORDER
from decodemo.service.batch import ROW_FIELDS, collect_inputs, write_rows

import test_app

client = test_app.client  # the real app on a loopback port (a fixture: one server for this module)
inputs = test_app.inputs  # its synthetic inputs (part.png, cut.png, ...)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def _texture(path, seed, defect=None):
    img, _ = make_texture(np.random.default_rng([seed, 3]), size=128, defect=defect)
    Image.fromarray(img).save(path)
    return path


@pytest.fixture(scope="module")
def batch_files(inputs, tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    zpath = root / "parts.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.write(_texture(root / "crack.png", 7, "crack"), "line1/crack.png")
        z.writestr("line1/", "")
        z.writestr("line1/readme.txt", "not an image\n")
        z.writestr("__MACOSX/line1/._crack.png", b"\x00\x05\x16\x07")
    return [inputs / "part.png", zpath, inputs / "cut.png"]


def _check_against_service(row, service, path):
    comp = service.compare(path, domain="texture")
    assert row["domain"] == comp.domain == "texture" and str(row["in_domain"]) == str(comp.in_domain)  # CSV: text
    for o in comp.outcomes:
        assert float(row[f"{o.method}_score"]) == pytest.approx(o.score, rel=1e-6)
        assert float(row[f"{o.method}_threshold"]) == pytest.approx(o.threshold, rel=1e-9)
        assert row[f"{o.method}_decision"] == o.decision
    s = comp.summary()
    assert row["verdict"] == s["verdict"]
    assert str(row["disagree"]) == str(not s["unanimous"])


def test_a_batch_through_the_api(client, batch_files, tmp_path):
    from gradio_client import handle_file

    from decodemo.app.batch import BatchHandlers, table_rows
    from decodemo.app.compare import CompareHandlers

    c, demo = client
    rows, status = c.predict([handle_file(str(p)) for p in batch_files], "texture", api_name="/compare_batch")
    assert [r["file"] for r in rows] == ["part.png", "parts.zip/line1/crack.png", "cut.png"]
    assert [r["index"] for r in rows] == [1, 2, 3]
    good, cracked, bad = rows
    assert "could not be decoded as a PNG" in bad["error"] and bad["item_id"] is None and bad["verdict"] is None
    assert "readme.txt" in status and "2 compared" in status and "1 could not be" in status
    for row, path in ((good, batch_files[0]), (cracked, None)):
        assert row["error"] is None and row["modality"] == "image" and set(ROW_FIELDS) <= set(row)
        assert all(row[f"{m}_decision"] in ("normal", "anomalous") for m in METHOD_ORDER)
        if path is not None:
            _check_against_service(row, demo.service, path)
    assert cracked["verdict"] == "anomalous"
    # every compared file is in the review queue, as a single upload would be
    queued = {q["item_id"]: q for q in demo.store.queue()}
    for row in (good, cracked):
        assert row["item_id"] in queued and queued[row["item_id"]]["pending"]
    assert queued[cracked["item_id"]]["name"] == "crack.png"
    # the table, and a click on its (sorted) row 2 opens that file in the single-file view
    cells = table_rows(rows)
    assert len(cells[0]) == 3 + 2 * len(METHOD_ORDER) + 4 and cells[2][-1].startswith("'cut.png'")
    h = BatchHandlers(CompareHandlers(demo.service, demo.store, page=None, run_models=demo.service.compare))
    res, files = h.open_row(rows, SimpleNamespace(row_value=cells[1], index=[0, 1]))
    assert res["item_id"] == cracked["item_id"] and res["name"] == "crack.png"
    assert [m["score"] for m in res["methods"]] == pytest.approx([cracked[f"{m}_score"] for m in METHOD_ORDER])
    assert any(f.endswith("invad_map.npy") for f in files)
    demo.service._results.clear()  # pushed out of the cache: the file is compared again
    res2, _ = h.open_row(rows, SimpleNamespace(row_value=cells[1], index=[0, 0]))
    assert res2["item_id"] == cracked["item_id"] and res2["id"] != res["id"]
    with pytest.raises(Exception, match="could not be decoded"):
        h.open_row(rows, SimpleNamespace(row_value=cells[2], index=[2, 0]))


def test_score_a_folder_writes_csv_and_json(client, inputs, tmp_path, capsys):
    from decodemo.cli import main

    _, demo = client
    folder = tmp_path / "line"
    (folder / "sub").mkdir(parents=True)
    (folder / "part.png").write_bytes((inputs / "part.png").read_bytes())
    _texture(folder / "sub" / "spot.png", 11, "spot")
    (folder / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (folder / "notes.txt").write_text("not scored\n")
    out_csv, out_json = tmp_path / "r" / "rows.csv", tmp_path / "r" / "rows.json"
    rc = main(["score", str(folder), "--domain", "texture", "--out", str(out_csv), "--json", str(out_json)])
    assert rc == 1  # one file was refused; the others were still scored
    err = capsys.readouterr().err
    assert "broken.png" in err and "notes.txt" not in err and "skipped 1 file" in err
    with open(out_csv) as f:
        from_csv = list(csv.DictReader(f))
    from_json = json.loads(out_json.read_text())
    names = [str(folder / "part.png"), str(folder / "sub" / "broken.png"), str(folder / "sub" / "spot.png")]
    assert [r["file"] for r in from_csv] == [r["file"] for r in from_json] == names
    assert list(from_csv[0]) == [f for f in ROW_FIELDS if f not in ("item_id", "note")]
    assert from_json[1]["error"] and from_json[1]["invad_score"] is None and from_csv[1]["invad_score"] == ""
    for i in (0, 2):
        assert from_json[i]["error"] is None and from_csv[i]["error"] == ""
        assert float(from_csv[i]["invad_score"]) == from_json[i]["invad_score"]  # exact through CSV
        _check_against_service(from_json[i], demo.service, names[i])
        _check_against_service(from_csv[i], demo.service, names[i])


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_zip_with_a_parent_member_is_refused(tmp_path):
    png = (tmp_path / "a.png")
    _texture(png, 1)
    bad = _zip(tmp_path / "evil.zip", {"ok.png": png.read_bytes(), "../escape.png": png.read_bytes()})
    with pytest.raises(InputError, match="outside the archive"):
        unpack_zip(bad, tmp_path / "out")
    assert not (tmp_path / "escape.png").exists() and not (tmp_path / "out").exists()
    for name in ("/abs.png", "C:/win.png", "dir\\..\\..\\up.png"):
        with pytest.raises(InputError, match="outside the archive"):
            unpack_zip(_zip(tmp_path / "x.zip", {name: b"x"}), tmp_path / "out")
    # in a batch, the refused archive is one row's error and the rest goes on
    items, _ = collect_inputs([bad, png], workdir=tmp_path / "w")
    assert [(i.file, i.path is None) for i in items] == [(str(bad), True), (str(png), False)]
    assert "outside the archive" in items[0].error


def test_zip_limits_and_skipped_members(tmp_path):
    png = _texture(tmp_path / "a.png", 2).read_bytes()
    z = _zip(tmp_path / "many.zip", {"a.png": png, "b/a.png": png, "c.wav": b"", "d.txt": b"t", "e/": b""})
    got = unpack_zip(z, tmp_path / "u")
    assert [m.name for m in got.members] == ["a.png", "b/a.png", "c.wav"]
    assert got.members[0].path.read_bytes() == got.members[1].path.read_bytes() == png  # same name, no clash
    assert "empty" in got.members[2].error and got.members[2].path is None
    assert got.skipped == ["d.txt"] and "d.txt" in got.note("many.zip")
    with pytest.raises(FileTooLargeError, match="the limit"):
        unpack_zip(z, tmp_path / "v", max_bytes=len(png))
    with pytest.raises(InputError, match="at most 3"):
        unpack_zip(z, tmp_path / "v", max_members=3)
    with pytest.raises(InputError, match="at most 2 files"):
        collect_inputs([tmp_path / "a.png", z], workdir=tmp_path / "w", max_files=2)
    not_zip = tmp_path / "fake.zip"
    not_zip.write_bytes(b"not a zip")
    items, _ = collect_inputs([not_zip], workdir=tmp_path / "w")
    assert "could not be opened as a zip" in items[0].error


def test_write_rows_format_by_suffix_or_given(tmp_path):
    rows = [{"index": 1, "file": "a.png", "invad_score": 1.5, "error": None}]
    assert json.loads(write_rows(rows, tmp_path / "x.out", fmt="json").read_text())[0]["invad_score"] == 1.5
    with open(write_rows(rows, tmp_path / "x.csv")) as f:
        assert next(csv.DictReader(f))["invad_score"] == "1.5"
    with pytest.raises(Exception, match="--format"):
        write_rows(rows, tmp_path / "x.txt")
