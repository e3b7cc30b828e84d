"""``python -m decodemo export-dataset`` and the Dashboard's dataset button: a model set's reviewed
items, from a real review store (SQLite in a temporary folder), written as a folder layout that
``fit`` then trains on, end to end."""

from __future__ import annotations

import hashlib
import json
import uuid
import zipfile

import numpy as np
import pytest
from PIL import Image

from decodemo.cli import main
from decodemo.data.layout import scan_layout
from decodemo.data.synthetic import make_texture
from decodemo.service import Comparison, MethodOutcome
from decodemo.store import ReviewStore

SIZE = 64


def _record(store, folder, name: str, content: bytes, shape, *, domain="parts", modality="image") -> int:
    """Store an analysed upload (``content`` saved as ``name``) as the service would: one invad run."""
    path = folder / name
    path.write_bytes(content)
    out = MethodOutcome(method="invad", model=f"{domain}/invad", revision="bundled:abc", score=0.5, threshold=0.5,
                        default_threshold=0.5, decision="normal", percentile=50.0, nfe=3, latency_ms=12.0,
                        map=np.zeros(shape, np.float32), pixel_threshold=0.5, reference_scores=[0.1],
                        pixel_quantiles=None, reconstruction=None)
    inp = np.zeros((*shape, 3), np.uint8) if modality == "image" else np.zeros(shape, np.float32)
    comp = Comparison(id=uuid.uuid4().hex, modality=modality, domain=domain, name=name,
                      sha256=hashlib.sha256(content).hexdigest(), input=inp, outcomes=[out], seconds=0.1,
                      path=str(path))
    return store.record(comp)


def _texture(seed: int, defect: str | None = None) -> tuple[bytes, np.ndarray]:
    import io

    img, mask = make_texture(seed, size=SIZE, defect=defect)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue(), mask


def _box(r0, r1, c0, c1) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), bool)
    m[r0:r1, c0:c1] = True
    return m


@pytest.fixture()
def reviewed(tmp_path, monkeypatch):
    """A store of model set ``parts`` (generated textures) reviewed by ana and ben; returns
    (store, uploads folder, item ids by role, the mask each anomalous item should get)."""
    monkeypatch.setenv("DECODEMO_DATA_DIR", str(tmp_path / "home"))
    up = tmp_path / "uploads"
    up.mkdir()
    store = ReviewStore()  # the one the command opens
    ids: dict[str, int] = {}
    for i in range(13):
        ids[f"normal{i}"] = _record(store, up, f"normal{i}.png", _texture(100 + i)[0], (SIZE, SIZE))
        store.submit_review(ids[f"normal{i}"], "ana", "normal")
    # a PNG uploaded without an extension: stored as .bin, exported as .png
    ids["noext"] = _record(store, up, "photo", _texture(99)[0], (SIZE, SIZE))
    store.submit_review(ids["noext"], "ana", "normal")
    # ana changed her mind: the latest version (normal) counts
    ids["changed"] = _record(store, up, "changed.png", _texture(98)[0], (SIZE, SIZE))
    store.submit_review(ids["changed"], "ana", "anomalous", mask=_box(0, 4, 0, 4))
    store.submit_review(ids["changed"], "ana", "normal")
    masks = {}
    content, truth = _texture(1, "scratch")  # two reviewers agree: the later one's mask
    ids["scratch"] = _record(store, up, "scratch.png", content, (SIZE, SIZE))
    store.submit_review(ids["scratch"], "ana", "anomalous", mask=_box(10, 20, 10, 20))
    store.submit_review(ids["scratch"], "ben", "anomalous", mask=truth)
    masks["scratch"] = truth
    ids["spot"] = _record(store, up, "spot.png", _texture(2, "spot")[0], (SIZE, SIZE))
    store.submit_review(ids["spot"], "ana", "anomalous")  # no mask drawn
    content, truth = _texture(3, "crack")  # a wrong mask, undone: the earlier version is current
    ids["crack"] = _record(store, up, "crack.png", content, (SIZE, SIZE))
    store.submit_review(ids["crack"], "ana", "anomalous", mask=truth)
    store.submit_review(ids["crack"], "ana", "anomalous", mask=_box(30, 40, 0, 64))
    store.undo(ids["crack"], "ana")
    masks["crack"] = truth
    ids["unsure"] = _record(store, up, "unsure.png", _texture(4, "spot")[0], (SIZE, SIZE))
    store.submit_review(ids["unsure"], "ana", "unsure")
    ids["tie"] = _record(store, up, "tie.png", _texture(5, "spot")[0], (SIZE, SIZE))
    store.submit_review(ids["tie"], "ana", "normal")
    store.submit_review(ids["tie"], "ben", "anomalous", mask=_box(0, 8, 0, 8))
    ids["pending"] = _record(store, up, "pending.png", _texture(6)[0], (SIZE, SIZE))
    ids["bottle"] = _record(store, up, "bottle.png", _texture(7)[0], (SIZE, SIZE), domain="bottle")
    store.submit_review(ids["bottle"], "ana", "normal")
    ids["fuzzy"] = _record(store, up, "fuzzy.png", _texture(8)[0], (SIZE, SIZE), domain="fuzzy")
    store.submit_review(ids["fuzzy"], "ana", "unsure")
    yield store, up, ids, masks
    store.close()


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_export_writes_the_layout_the_masks_and_the_manifest(reviewed, tmp_path, capsys):
    store, up, ids, masks = reviewed
    out = tmp_path / "export"
    assert main(["export-dataset", "--domain", "parts", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "15 normal (12 train/good, 3 test/good), 3 anomalous in test/reviewed (2 with a mask)" in said
    assert "2 left out" in said

    layout = scan_layout(out)
    assert layout.modality == "image" and len(layout.train) == 12 and layout.kinds == ["reviewed"]
    assert [s.kind for s in layout.test].count("good") == 3
    manifest = json.loads((out / "manifest.json").read_text())
    by_id = {e["item_id"]: e for e in manifest["items"]}
    # every reviewed item of parts is listed; the pending one and other sets' items are not
    assert sorted(by_id) == sorted(v for k, v in ids.items() if k not in ("pending", "bottle", "fuzzy"))
    assert by_id[ids["unsure"]]["left_out"] == "unsure" and by_id[ids["unsure"]]["file"] is None
    assert by_id[ids["tie"]]["verdict"] is None and "tie" in by_id[ids["tie"]]["left_out"]
    assert by_id[ids["changed"]]["verdict"] == "normal" and by_id[ids["changed"]]["mask"] is None
    assert by_id[ids["noext"]]["file"].endswith(".png")
    assert by_id[ids["scratch"]]["reviewers"] == ["ana", "ben"]
    current = {r["id"]: r for r in store.current_reviews()}
    for e in manifest["items"]:
        assert all(current[i]["item_id"] == e["item_id"] for i in e["review_ids"])
        if e["file"] is not None:  # copied as stored: the same bytes
            assert hashlib.sha256((out / e["file"]).read_bytes()).hexdigest() == e["sha256"]
            assert e["file"].startswith({"normal": ("train/good/", "test/good/"),
                                         "anomalous": ("test/reviewed/",)}[e["verdict"]])
    assert manifest["counts"] == {"train/good": 12, "test/good": 3, "test/reviewed": 3,
                                  "ground_truth/reviewed": 2, "left_out": 2}

    # the masks are the ones drawn last (ben's on scratch; the undone version of crack does not count)
    for role, truth in masks.items():
        e = by_id[ids[role]]
        (sample,) = [s for s in layout.test if s.path == out / e["file"]]
        assert sample.mask_path == out / e["mask"] and e["mask"] == f"ground_truth/reviewed/{sample.stem}_mask.png"
        assert np.array_equal(np.asarray(Image.open(sample.mask_path)) > 127, truth)
        assert current[e["mask_review_id"]]["mask_path"] is not None
    assert by_id[ids["scratch"]]["mask_review_id"] == max(by_id[ids["scratch"]]["review_ids"])

    # not over an earlier export without --force; with it, a new share and no file left from before
    assert main(["export-dataset", "--domain", "parts", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    held = set(_files(out / "test" / "good"))
    (out / "train" / "good" / "stray.png").write_bytes(b"x")
    assert main(["export-dataset", "--domain", "parts", "--out", str(out), "--force", "--test-share", "0.4"]) == 0
    assert len(_files(out / "test" / "good")) == 6 and len(_files(out / "train" / "good")) == 9
    assert held <= set(_files(out / "test" / "good"))  # the rank is by content: a larger share adds to it
    assert main(["export-dataset", "--domain", "parts", "--out", str(out), "--force", "--test-share", "0"]) == 0
    assert not (out / "test" / "good").exists() and len(_files(out / "train" / "good")) == 15


def test_export_refuses_what_it_cannot_export(reviewed, tmp_path, capsys):
    from pathlib import Path

    def refused(*args) -> str:
        assert main(["export-dataset", *args]) == 2
        return capsys.readouterr().err

    out = str(tmp_path / "export")
    err = refused("--domain", "nope", "--out", out)
    assert "no items of model set 'nope'" in err and "bottle, fuzzy, parts" in err
    assert "normal or anomalous verdict" in refused("--domain", "fuzzy", "--out", out)
    assert "fraction" in refused("--domain", "parts", "--out", out, "--test-share", "1.5")
    inside = Path(__file__).resolve().parents[2] / "reviewed-export"
    assert "inside" in refused("--domain", "parts", "--out", str(inside)) and not inside.exists()
    assert not Path(out).exists()


def test_export_copies_audio_clips_as_stored(tmp_path):
    import soundfile as sf

    from decodemo.commands.export import export_dataset
    from decodemo.data.hum import make_hum

    store = ReviewStore(data_dir=tmp_path / "home")
    shape = (32, 40)  # mel bands x frames: the size of an audio item and of its mask
    ids = []
    for i, anomaly in enumerate((None, None, "click")):
        y, _ = make_hum(i, seconds=1.0, anomaly=anomaly)
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, y, 16000, subtype="PCM_16", format="WAV")
        ids.append(_record(store, tmp_path, f"clip{i}.wav", path.read_bytes(), shape, domain="hum", modality="audio"))
    mask = np.zeros(shape, bool)
    mask[:, 10:14] = True
    store.submit_review(ids[0], "ana", "normal")
    store.submit_review(ids[1], "ana", "normal")
    store.submit_review(ids[2], "ana", "anomalous", mask=mask)
    manifest = export_dataset(store, "hum", tmp_path / "out", test_share=0.5)
    layout = scan_layout(tmp_path / "out")
    assert layout.modality == "audio" and len(layout.train) == 1 and len(layout.test) == 2
    for e in manifest["items"]:
        assert (tmp_path / "out" / e["file"]).read_bytes() == (tmp_path / f"clip{ids.index(e['item_id'])}.wav").read_bytes()
    (anomalous,) = [s for s in layout.test if s.label == 1]
    assert np.array_equal(np.asarray(Image.open(anomalous.mask_path)) > 127, mask)
    store.close()


def test_dashboard_offers_the_dataset_as_a_zip(reviewed, tmp_path):
    import gradio as gr

    from decodemo.app import dashboard as dash

    store, _, _, masks = reviewed
    archive, counts = dash.export_dataset(store, "parts")
    assert archive.endswith("parts_dataset.zip") and counts["test/reviewed"] == 3 and counts["left_out"] == 2
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        z.extractall(tmp_path / "unzipped")
    assert "parts/manifest.json" in names and sum(n.startswith("parts/train/good/") and not n.endswith("/")
                                                   for n in names) == 12
    layout = scan_layout(tmp_path / "unzipped" / "parts")
    assert len(layout.train) == 12 and sum(s.mask_path is not None for s in layout.test) == len(masks)
    with pytest.raises(gr.Error, match="Pick the model set"):
        dash.export_dataset(store, "(all)")
    with pytest.raises(gr.Error, match="normal or anomalous verdict"):
        dash.export_dataset(store, "fuzzy")


def test_fit_trains_on_the_export_and_registers_the_set(reviewed, tmp_path, tiny_budget):
    from decodemo import settings
    from decodemo.hub import ModelRegistry, load_manifest
    from decodemo.service import Service

    out = tmp_path / "export"
    assert main(["export-dataset", "--domain", "parts", "--out", str(out)]) == 0
    assert main(["fit", "--data", str(out), "--name", "parts", "--methods", "invad"]) == 0
    entries = load_manifest(settings.user_registry())
    assert sorted(entries) == ["parts/invad"] and entries["parts/invad"].figures["n_test"] == 6
    reg = ModelRegistry()
    reg.add_manifest(settings.user_registry())
    service = Service(reg)
    assert "parts" in service.domains("image")
    comp = service.compare(sorted((out / "test" / "reviewed").iterdir())[0], domain="parts")
    assert [o.method for o in comp.outcomes] == ["invad"] and comp.domain_check["domain"] == "parts"
