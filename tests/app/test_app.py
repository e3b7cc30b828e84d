"""The real Gradio app on a loopback port, driven by ``gradio_client`` like any API user."""

from __future__ import annotations

import socket
import wave

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decodemo.data.synthetic import SAMPLE_RATE, make_hum, make_texture
from decodemo.service import METHOD_ORDER

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    import os

    from gradio_client import Client

    data_dir = tmp_path_factory.mktemp("appdata")
    old = os.environ.get("DECODEMO_DATA_DIR")
    os.environ["DECODEMO_DATA_DIR"] = str(data_dir)
    from decodemo.app.blocks import build_app, launch_kwargs

    demo = build_app()
    port = _free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        **launch_kwargs())
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False), demo
    finally:
        demo.close()
        if old is None:
            os.environ.pop("DECODEMO_DATA_DIR", None)
        else:
            os.environ["DECODEMO_DATA_DIR"] = old


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    import soundfile as sf

    root = tmp_path_factory.mktemp("appin")
    img, _ = make_texture(np.random.default_rng([5, 5]), size=256, defect="scratch")
    Image.fromarray(img[:, 16:240]).save(root / "part.png")  # 256 high, 224 wide
    y, _ = make_hum(np.random.default_rng(8), seconds=5.0, sample_rate=SAMPLE_RATE, anomaly="burst")
    sf.write(root / "hum.wav", y, SAMPLE_RATE)
    (root / "cut.png").write_bytes((root / "part.png").read_bytes()[:400])  # corrupt: cut short
    (root / "report.pdf").write_bytes(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")  # unsupported
    with wave.open(str(root / "silent.wav"), "wb") as w:  # two seconds of digital silence
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(b"\x00\x00" * 2 * SAMPLE_RATE)
    return root


def _compare(client, path, domain):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), None, domain, api_name="/compare")


def test_image_through_compare(client, inputs):
    c, _ = client
    result, files = _compare(c, inputs / "part.png", "texture")
    assert result["modality"] == "image" and result["input_shape"] == [256, 224]
    assert [m["method"] for m in result["methods"]] == list(METHOD_ORDER)
    by_name = {p.rsplit("/", 1)[-1]: p for p in files}
    for m in result["methods"]:
        assert np.isfinite(m["score"]) and m["decision"] in ("normal", "anomalous") and m["latency_ms"] > 0
        assert m["decision"] == ("anomalous" if m["score"] > m["threshold"] else "normal")
        arr = np.load(by_name[f"{m['method']}_map.npy"], allow_pickle=False)  # downloaded by the client
        assert arr.shape == (256, 224)
    assert Image.open(by_name["decodiff_normal.png"]).size == (224, 256)
    assert result["summary"]["verdict"] == "anomalous"  # a drawn scratch


def test_audio_through_compare(client, inputs):
    c, _ = client
    result, files = _compare(c, inputs / "hum.wav", "hum")
    assert result["modality"] == "audio" and result["duration_s"] == pytest.approx(5.0, abs=0.01)
    n_mels, frames = result["input_shape"]
    assert frames == len(result["frame_times"]) and result["frame_times"][-1] == pytest.approx(5.0, abs=0.05)
    assert len(result["methods"]) == 3
    for m in result["methods"]:
        assert np.isfinite(m["score"]) and len(m["frame_scores"]) == frames
        arr = np.load(next(p for p in files if p.endswith(f"{m['method']}_map.npy")), allow_pickle=False)
        assert arr.shape == (n_mels, frames)


@pytest.mark.parametrize("name, domain, message", [
    ("cut.png", "texture", "could not be decoded as a PNG"),
    ("report.pdf", "auto", "PDF"),
    ("silent.wav", "hum", "silent"),
    ("part.png", "hum", "take audio input"),
])
def test_bad_upload_gives_a_clear_error_and_the_app_keeps_serving(client, inputs, name, domain, message):
    from gradio_client.exceptions import AppError

    c, _ = client
    with pytest.raises(AppError, match=message):
        _compare(c, inputs / name, domain)
    result, _ = _compare(c, inputs / "part.png", "texture")  # the next good request succeeds
    assert len(result["methods"]) == 3


def test_compare_with_every_other_argument_defaulted_and_user_errors_logged_on_one_line(client, inputs, caplog,
                                                                                        capfd):
    import logging

    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    c, _ = client
    result, files = c.predict(handle_file(str(inputs / "part.png")), api_name="/compare")  # record, domain: defaults
    assert result["domain"] == "texture" and len(result["methods"]) == 3  # "auto" found the closest model set
    names = {Path(f).name for f in files}
    for m in result["methods"]:  # file names of the downloaded files, never a path on the server
        assert m["map_file"] == f"{m['method']}_map.npy" and m["map_file"] in names
        assert m["calibration"]["n"] >= 20 and 0 < m["calibration"]["fpr_bound"] < 0.1
    capfd.readouterr()
    with caplog.at_level(logging.WARNING, logger="decodemo.app"):
        with pytest.raises(AppError, match="PDF"):
            c.predict(handle_file(str(inputs / "report.pdf")), api_name="/compare")
    refused = [r for r in caplog.records if r.name == "decodemo.app"]
    assert len(refused) == 1 and "PDF" in refused[0].getMessage() and "\n" not in refused[0].getMessage()
    assert "Traceback" not in capfd.readouterr().err


def test_submit_review_then_export_contains_it(client, inputs):
    import csv

    c, demo = client
    result, _ = _compare(c, inputs / "part.png", "texture")
    item = result["item_id"]
    stored = c.predict(item, "anomalous", "decodiff,recon", "scratch across the stripes", None,
                       api_name="/submit_review")
    assert stored["item_id"] == item and stored["verdict"] == "anomalous" and stored["anonymous"] is True
    assert stored["methods_right"] == ["decodiff", "recon"]
    # a retried request (same request id) is stored once and answers as the first time
    first, retried = (c.predict(item, "normal", "", "retry me", None, "req-0001", api_name="/submit_review")
                      for _ in range(2))
    assert first == retried and first["version"] == stored["version"] + 1
    files, counts = c.predict(api_name="/export")
    reviews = next(f for f in files if f.endswith("reviews.csv"))
    with open(reviews) as f:
        rows = [r for r in csv.DictReader(f) if int(r["item_id"]) == item]
    assert any(r["note"] == "scratch across the stripes" and r["verdict"] == "anomalous" for r in rows)
    assert counts["items"] >= 1 and counts["review_versions"] >= 1
    # the same upload twice is one item
    assert _compare(c, inputs / "part.png", "texture")[0]["item_id"] == item
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="verdict must be one of"):
        c.predict(item, "maybe", "", "", None, api_name="/submit_review")
    with pytest.raises(AppError, match="10,000|10000"):
        c.predict(item, "normal", "", "x" * 10_001, None, api_name="/submit_review")


def test_examples_are_generated_and_offered(client):
    _, demo = client
    names = {p.name for p, _ in demo.examples_list}
    assert {"texture_normal.png", "texture_crack.png", "hum_click.wav"} <= names
    assert all(p.is_file() for p, _ in demo.examples_list)


def test_the_page_carries_the_styles_and_logo_from_assets(client):
    import json
    import urllib.request

    c, _ = client
    config = json.loads(urllib.request.urlopen(c.src.rstrip("/") + "/config", timeout=30).read())
    css = (Path(__file__).resolve().parents[2] / "assets" / "app.css").read_text()
    assert ".verdict-anomalous" in css and css.strip() in (config.get("css") or "")
    values = [str(comp.get("props", {}).get("value", "")) for comp in config["components"]]
    assert any('aria-label="decodemo"' in v and "<svg" in v for v in values)


def test_reviews_carry_the_login_name(client, inputs):
    from gradio_client import Client

    from decodemo.app.blocks import build_app, launch_kwargs

    _, demo = client
    app = build_app(service=demo.service, store=demo.store)  # same models and database, with a login
    port = _free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                       auth=[("ana", "pw")], **launch_kwargs())
    try:
        c = Client(f"http://127.0.0.1:{port}/", verbose=False, auth=("ana", "pw"))
        result, _ = _compare(c, inputs / "hum.wav", "hum")
        review = c.predict(result["item_id"], "normal", "", "", None, api_name="/submit_review")
        assert review["reviewer"] == "ana" and review["anonymous"] is False
        with pytest.raises(Exception):
            Client(f"http://127.0.0.1:{port}/", verbose=False, auth=("ana", "wrong"))
    finally:
        app.close()


def test_without_a_login_nobody_moves_a_threshold(client, inputs):
    from gradio_client.exceptions import AppError

    c, demo = client
    before = demo.service.threshold("texture/invad")
    for value in (before * 1.1, 1e300):
        with pytest.raises(AppError, match="Threshold changes are off"):
            c.predict("texture/invad", value, "flip everyone's verdicts", api_name="/apply_threshold")
    assert demo.service.threshold("texture/invad") == before and demo.store.applied_thresholds() == {}


def test_guessing_a_password_locks_the_name(client):
    import urllib.error
    import urllib.parse
    import urllib.request

    from decodemo.app.auth import Logins
    from decodemo.app.blocks import build_app, launch_kwargs

    _, demo = client
    logins = Logins([("ana", "pw")], max_failures=3, fail_delay=0.0)
    app = build_app(service=demo.service, store=demo.store)
    port = _free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                       auth=logins, **launch_kwargs())

    def login(pw: str) -> int:
        body = urllib.parse.urlencode({"username": "ana", "password": pw}).encode()
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/login", body, timeout=30).status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        assert login("pw") == 200
        assert [login(f"guess{i}") for i in range(3)] == [400, 400, 400]
        assert logins.locked("ana") and login("pw") == 400  # locked: even the right password fails now
    finally:
        app.close()


def test_the_app_may_serve_the_stored_maps_wherever_the_data_dir_is(tmp_path, monkeypatch):
    # Gradio serves files from the working and temporary folders only; the default data dir
    # (~/.local/share/decodemo) is neither, and /compare failed there with InvalidPathError.
    from decodemo.app.blocks import launch_kwargs
    from decodemo.store import ReviewStore

    monkeypatch.setenv("DECODEMO_DATA_DIR", str(tmp_path / "data"))
    store = ReviewStore()
    try:
        allowed = [Path(p) for p in launch_kwargs()["allowed_paths"]]
        assert store.path("files/maps") in allowed
        assert store.path("files/inputs") not in allowed and store.data_dir not in allowed
    finally:
        store.close()
