"""The real app in headless Chromium, as a person uses it: compare an image and a clip, drag a
threshold, review with the keyboard and undo, apply a threshold in the Dashboard and export.

Needs the ``playwright`` package and a Chromium (Debian's ``chromium``, which ``.ci/run``
installs like PostgreSQL; ``DECODEMO_CHROMIUM`` names another); skipped when either is missing.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decodemo.data.synthetic import SAMPLE_RATE, make_hum, make_texture

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = os.environ.get("DECODEMO_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    pytest.skip("no Chromium on this machine (apt-get install chromium)", allow_module_level=True)

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 90_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import soundfile as sf

    root = tmp_path_factory.mktemp("browser-in")
    img, _ = make_texture(np.random.default_rng([41, 1]), size=256, defect="crack")
    Image.fromarray(img).save(root / "crack.png")
    img, _ = make_texture(np.random.default_rng([41, 2]), size=256, defect=None)
    Image.fromarray(img).save(root / "plain.png")
    y, _ = make_hum(np.random.default_rng(41), seconds=5.0, sample_rate=SAMPLE_RATE, anomaly="click")
    sf.write(root / "hum.wav", y, SAMPLE_RATE)
    (root / "report.pdf").write_bytes(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    return root


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("browser-data")
    saved = {k: os.environ.get(k) for k in ("DECODEMO_DATA_DIR", "DECODEMO_DB_URL", "DECODEMO_MIN_REVIEWED",
                                            "DECODEMO_OPEN_THRESHOLDS")}
    os.environ["DECODEMO_DATA_DIR"] = str(data_dir)
    os.environ.pop("DECODEMO_DB_URL", None)
    os.environ["DECODEMO_MIN_REVIEWED"] = "2"  # a suggestion from the few items reviewed here
    os.environ["DECODEMO_OPEN_THRESHOLDS"] = "1"  # no login here: threshold changes opened explicitly
    from decodemo.app.blocks import build_app, launch_kwargs

    demo = build_app()
    demo.service.warm_up(["texture", "hum"])
    port = _free_port()
    demo.queue(default_concurrency_limit=2).launch(server_name="127.0.0.1", server_port=port,
                                                   prevent_thread_lock=True, quiet=True, **launch_kwargs())
    try:
        yield demo, f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser, app):
    _, url = app
    p = browser.new_page(viewport={"width": 1400, "height": 1000})
    p.set_default_timeout(TIMEOUT_MS)
    p.goto(url)
    p.wait_for_selector("#compare-button")
    yield p
    p.close()


def _upload(page, path: Path, model_set: str) -> None:
    box = page.locator("#upload")
    if box.locator("input[type=file]").count():
        box.locator("input[type=file]").set_input_files(str(path))
    else:  # the box holds the previous file: a file dropped on it replaces that one
        page.evaluate("""([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer(); dt.items.add(new File([bytes], name));
            document.querySelector('#upload .file-preview-holder').dispatchEvent(
                new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""", [path.name, base64.b64encode(path.read_bytes()).decode()])
    page.wait_for_function(f"() => document.querySelector('#upload').innerText.replace(/\\s/g, '')"
                           f".includes({path.name!r})")
    page.get_by_label("Model set").click()
    page.get_by_role("option", name=model_set).click()


def _compare(page, path: Path, model_set: str) -> None:
    _upload(page, path, model_set)
    page.locator("#compare-button").click()
    # the previous results are greyed at once, before any answer comes back
    assert page.evaluate("document.body.classList.contains('dm-running')")
    try:
        page.wait_for_function("(name) => !document.body.classList.contains('dm-running')"
                               " && document.querySelector('#compare-summary').innerText.includes(name)", arg=path.name)
    except sync_api.Error:
        page.screenshot(path="/tmp/browser-fail.png", full_page=True)
        raise


def _summary(page) -> str:
    return page.locator("#compare-summary").inner_text()


def _no_error_badges(page) -> None:
    # Gradio marks the outputs of an event that raised with an "Error" status badge
    assert page.locator(".error").count() == 0, page.locator(".error").first.inner_text()


def test_compare_an_image_see_why_and_drag_a_threshold(page, files):
    # before any result there are no method columns (no 0-to-1 sliders standing for nothing)
    assert not page.locator(".method-col").first.is_visible()
    _upload(page, files / "crack.png", "Synthetic texture [image]")
    page.locator("#compare-button").click()
    # the progress bar sits under the button and names what runs
    page.wait_for_function("() => /DeCo-Diff|Diffusion reconstruction|Latent likelihood|reading|checking/"
                           ".test(document.querySelector('#compare-progress').innerText)", timeout=30_000)
    page.wait_for_function("() => !document.body.classList.contains('dm-running')"
                           " && document.querySelector('#compare-summary').innerText.includes('crack.png')")
    text = _summary(page)
    assert "ANOMALOUS" in text and "above their calibrated thresholds" in text and "crack.png" in text
    body = page.locator("body").inner_text()
    assert "false-positive target 1.0%" in body and "normal reference scores" in body
    assert "cyan outline: the defect mask" in body  # drawn: the decision is anomalous
    # drag DeCo-Diff's threshold to the top of its range: that method turns normal, its mask goes
    col = page.locator(".method-col").first
    assert "ANOMALOUS" in col.inner_text()
    slider = col.locator("input[type=range]")
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] + 40, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    page.wait_for_function("() => document.querySelector('.method-col').innerText.includes('below threshold')")
    assert "NORMAL" in col.inner_text()
    # a threshold typed into the number box applies on Enter: the method's minimum flags it again
    number = col.locator("input[type=number]")
    number.fill(slider.get_attribute("min"))
    number.press("Enter")
    page.wait_for_function("() => document.querySelector('.method-col').innerText.includes('cyan outline')")
    # the labels of the map and of the normal version sit above their pictures, not over them
    labels = col.locator("[data-testid=block-label]").all()
    pictures = [im for im in col.locator("img").all() if im.is_visible()]
    assert len(labels) >= 2 and pictures
    for label in labels:
        lb = label.bounding_box()
        below = [im.bounding_box() for im in pictures if im.bounding_box()["y"] >= lb["y"]]
        assert below and min(b["y"] for b in below) >= lb["y"] + lb["height"] - 1, (label.inner_text(), lb, below)
    _no_error_badges(page)

    # a file that cannot be analysed: a message, the old results greyed and named as old
    _upload(page, files / "report.pdf", "Auto (the set whose training data is closest)")
    page.locator("#compare-button").click()
    page.wait_for_function("() => document.body.classList.contains('dm-failed')")
    assert "No result for this input" in _summary(page)
    assert page.evaluate("getComputedStyle(document.querySelector('.method-col')).opacity") == "0.3"


def test_compare_a_clip(page, files):
    _compare(page, files / "hum.wav", "Synthetic machine hum [audio]")
    text = _summary(page)
    assert "5.0 s clip" in text and "hum.wav" in text
    # the reference, latency and clip plots
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 3")
    _no_error_badges(page)


def test_the_api_page_names_this_server(page, app):
    _, url = app
    assert page.get_by_text("Use via API").first.is_visible()  # Gradio's footer link, not hidden
    page.get_by_role("tab", name="API").click()
    page.wait_for_function(f"() => document.body.innerText.includes('Client(\"{url}\")')")


def test_review_by_keyboard_undo_then_apply_a_threshold_and_export(page, app, files):
    demo, _ = app
    svc, store = demo.service, demo.store
    ids = {}
    for name in ("crack.png", "plain.png"):
        ids[name] = store.record(svc.compare(files / name, domain="texture"), user="line")
    # two more reviewed items of each kind, so that the dashboard can suggest a threshold
    for i, defect in enumerate(["spot", None, "scratch", None]):
        img, _ = make_texture(np.random.default_rng([42, i]), size=256, defect=defect)
        p = files / f"seed_{i}.png"
        Image.fromarray(img).save(p)
        store.submit_review(store.record(svc.compare(p, domain="texture"), user="line"), "anonymous-seed",
                            "anomalous" if defect else "normal")

    page.get_by_role("tab", name="Review").click()
    page.wait_for_function("() => document.body.innerText.includes('pending')")
    first = page.locator("text=/Item \\d+/").first.inner_text()
    page.keyboard.press("a")  # anomalous: stored, the next item is shown
    page.wait_for_function(f"() => !document.body.innerText.includes({first!r})")
    second = page.locator("text=/Item \\d+/").first.inner_text()
    assert second != first
    page.keyboard.press("z")  # undo: my last review, wherever the queue is; that item is shown again
    page.wait_for_function(f"() => document.body.innerText.includes({first!r})")
    page.wait_for_function("() => document.body.innerText.includes('(undone)')")
    page.keyboard.press("z")  # nothing left to undo: a toast, no error badges
    page.wait_for_function("() => document.body.innerText.includes('no review left to undo')")
    _no_error_badges(page)
    # paint a stroke on the shown item: its verdict then carries the mask (an unpainted item's
    # verdict does not send the editor at all)
    painted_item = int(first.split()[1])
    for attempt in range(3):  # a software-rendered editor on a loaded machine may take a while to
        page.wait_for_timeout(1000 * (attempt + 1))  # take strokes: paint again (after an undo) if needed
        canvas = page.locator("#rv-editor canvas").first
        canvas.scroll_into_view_if_needed()
        cb = canvas.bounding_box()
        page.mouse.move(cb["x"] + cb["width"] * 0.4, cb["y"] + cb["height"] * 0.4)
        page.mouse.down()
        page.mouse.move(cb["x"] + cb["width"] * 0.55, cb["y"] + cb["height"] * 0.5, steps=8)
        page.mouse.up()
        page.keyboard.press("a")
        page.wait_for_function(f"() => !document.body.innerText.includes({first!r})")
        (review,) = [r for r in store.current_reviews(painted_item) if r["reviewer"].startswith("anonymous:")]
        if review["mask_path"]:
            break
        page.keyboard.press("z")  # the stroke did not take: undo, and the item is shown again
        page.wait_for_function(f"() => document.body.innerText.includes({first!r})")
    assert review["verdict"] == "anomalous" and review["mask_path"], review
    page.keyboard.press("z")  # undo it: the item is pending again, for the keys below
    page.wait_for_function(f"() => document.body.innerText.includes({first!r})")
    page.keyboard.press("n")
    page.wait_for_function(f"() => !document.body.innerText.includes({first!r})")
    for _ in range(6):  # the rest of the queue (the compare tests above recorded their inputs too)
        if "Nothing to review" in page.locator("body").inner_text():
            break
        shown = page.locator("text=/Item \\d+/").first.inner_text()
        page.keyboard.press("a")
        page.wait_for_function("(shown) => !document.body.innerText.includes(shown)"
                               " || document.body.innerText.includes('Nothing to review')", arg=shown)
    assert "Nothing to review" in page.locator("body").inner_text()
    assert {r["verdict"] for r in store.current_reviews()} == {"normal", "anomalous"}
    # no login: this browser's own visitor identity (its cookie), not the shared "anonymous"
    mine = {r["reviewer"] for r in store.current_reviews()} - {"anonymous-seed"}  # the seeded reviewer aside
    assert len(mine) == 1 and mine.pop().startswith("anonymous:"), store.current_reviews()

    page.get_by_role("tab", name="Dashboard").click()
    page.wait_for_function("() => document.body.innerText.includes('analysed items')")
    page.get_by_label("Model", exact=True).click()
    page.get_by_role("option", name="texture/invad").click()
    page.wait_for_function("() => document.querySelector('input[type=number]') !== null")
    page.get_by_label("Why").fill("best F1 on the reviewed items (browser test)")
    page.get_by_role("button", name="Apply threshold").click()
    page.wait_for_function("() => document.body.innerText.includes('browser test')")  # in the changes table
    assert "texture/invad" in svc.applied_thresholds()
    page.get_by_role("button", name="Export everything (CSV, JSON, masks as PNG in a zip)").click()
    page.wait_for_function("() => document.body.innerText.replace(/\\s/g, '').includes('reviews.csv')")
    _no_error_badges(page)
