"""Screenshots of the app for the README, taken in headless Chromium.

Needs Debian's ``chromium`` package (``apt-get install chromium``) and the ``playwright``
Python package (``pip install playwright``; its own browser download is not used). Starts the
real app on a loopback port with a fresh data directory, runs a comparison for an image and
for a sound from the generated examples, then analyses a dozen generated inputs and enters
reviews for them as two reviewers ("ana" and "ben", verdicts and masks from the generator's
ground truth, ben disagreeing on two), and saves ``docs/images/compare_image.png``,
``compare_audio.png``, ``review.png`` and ``dashboard.png``.

It also times the app in the browser, as a person meets it (``--bottle`` names a folder of
900 px MVTec AD bottles, default ``../shared/data/bottle/test/good``; skipped when absent):

* **click to verdict**: from the click on Compare to the verdict and every picture of the new
  result drawn, for ``--repeats`` different bottles (uploaded first, not timed);
* **next item**: from a verdict key (N) in the Review tab to the next item shown.

Each is printed per run and as the median, with the server's own share (the comparison's
``seconds``) beside the first.

    python scripts/screenshots.py [--out docs/images] [--chromium /usr/bin/chromium] [--repeats 5]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shrink(path: Path, width: int = 1000) -> None:
    """Keep the docs small: scale to ``width`` px and store as a 256-colour PNG."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    if im.width > width:
        im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
    im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def open_app(page, port: int) -> None:
    page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
    page.wait_for_selector("text=Compare", timeout=60000)


def run_compare(page, file: Path, domain_label: str, timeout_s: float = 180) -> None:
    """Upload ``file``, pick the model set, press Compare, wait until the results are drawn."""
    page.locator("input[type=file]").first.set_input_files(str(file))
    page.wait_for_timeout(1500)
    dropdown = page.get_by_label("Model set")
    dropdown.click()
    page.get_by_role("option", name=domain_label).click()
    page.get_by_role("button", name="Compare", exact=True).click()
    page.wait_for_function(DRAWN_JS, arg=file.name, timeout=timeout_s * 1000)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=timeout_s * 1000)
    page.wait_for_timeout(2500)  # plots finish drawing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--bottle", type=Path, default=ROOT.parent / "shared" / "data" / "bottle" / "test" / "good")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--timings-only", action="store_true", help="time the app, take no screenshots")
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from decodemo.app.blocks import build_app, domain_choices, launch_kwargs

    import os

    os.environ["DECODEMO_DATA_DIR"] = tempfile.mkdtemp(prefix="decodemo-shots-")
    os.environ.pop("DECODEMO_DB_URL", None)
    demo = build_app()
    bottles = sorted(args.bottle.glob("*.png"))[: args.repeats] if args.bottle.is_dir() else []
    demo.service.warm_up(["texture", "hum"] + (["bottle"] if bottles else []))
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        **launch_kwargs())
    examples = {p.stem: p for p, _ in demo.examples_list}
    args.out.mkdir(parents=True, exist_ok=True)
    shots = [("compare_image.png", examples["texture_crack"], "texture"),
             ("compare_audio.png", examples["hum_click"], "hum")]
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS, headless=True)
            if bottles:
                time_compare(browser, port, demo, bottles, args.width)
            for name, file, domain in ([] if args.timings_only else shots):
                page = browser.new_page(viewport={"width": args.width, "height": 900}, device_scale_factor=1)
                open_app(page, port)
                label = next(lab for lab, val in domain_choices(demo.service) if val == domain)
                t0 = time.perf_counter()
                run_compare(page, file, label)
                print(f"{file.name}: upload, model-set choice, comparison and drawing took {time.perf_counter() - t0:.1f} s in the browser (fixed waits included)")
                page.screenshot(path=str(args.out / name), full_page=True)
                shrink(args.out / name)
                print(f"saved {args.out / name}")
                page.close()
            seed_reviews(demo)
            if bottles:
                time_next_item(browser, port, args.width, args.repeats)
            page = browser.new_page(viewport={"width": args.width, "height": 900}, device_scale_factor=1)
            open_app(page, port)
            for tab, marker, name in ([] if args.timings_only else
                                      (("Review", "pending", "review.png"), ("Dashboard", "analysed items", "dashboard.png"))):
                page.get_by_role("tab", name=tab).click()
                page.wait_for_function(f"() => document.body.innerText.includes('{marker}')", timeout=60000)
                page.wait_for_timeout(3000)  # plots finish drawing
                page.screenshot(path=str(args.out / name), full_page=True)
                shrink(args.out / name)
                print(f"saved {args.out / name}")
            browser.close()
    finally:
        demo.close()
    return 0


#: the new result is on screen: its verdict and every picture drawn (not greyed)
DRAWN_JS = """(name) => {
  const s = document.querySelector('#compare-summary');
  if (document.body.classList.contains('dm-running') || !s || !s.innerText.includes(name)) return false;
  const imgs = [...document.querySelectorAll('.method-col img')].filter((i) => i.offsetParent !== null);
  return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
}"""


def _median_line(what: str, values: list[float]) -> str:
    runs = ", ".join(f"{v:.2f}" for v in values)
    return f"{what}: median {statistics.median(values):.2f} s over {len(values)} runs ({runs})"


def time_compare(browser, port: int, demo, files: list[Path], width: int) -> None:
    """Click on Compare to the verdict and pictures drawn, for each of ``files`` (bottle model set)."""
    from decodemo.app.blocks import domain_choices

    label = next(lab for lab, val in domain_choices(demo.service) if val == "bottle")
    page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
    open_app(page, port)
    page.get_by_label("Model set").click()
    page.get_by_role("option", name=label).click()
    seen, server = [], []
    for f in files:
        box = page.locator("#upload")
        if not box.locator("input[type=file]").count():
            box.locator("button[aria-label=Clear]").click()
        box.locator("input[type=file]").set_input_files(str(f))
        page.wait_for_function("(n) => document.querySelector('#upload').innerText.replace(/\\s/g, '').includes(n)",
                               arg=f.name)
        t0 = time.perf_counter()
        page.locator("#compare-button").click()
        page.wait_for_function(DRAWN_JS, arg=f.name, polling=50, timeout=120_000)
        seen.append(time.perf_counter() - t0)
        # the plots follow the verdict; the next click comes on a settled page, as a person's would
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=120_000)
        page.wait_for_timeout(1500)
        server.append(max(demo.service._results.values(), key=lambda c: c.seconds if c.name == f.name else -1).seconds)
    page.close()
    print(_median_line(f"click to verdict, {files[0].parent.name} bottles (900 px), in the browser", seen))
    print(_median_line("  of which the server's comparison", server))


def time_next_item(browser, port: int, width: int, repeats: int) -> None:
    """A verdict key (N) in the Review tab to the next item shown, ``repeats`` times."""
    page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
    open_app(page, port)
    page.get_by_role("tab", name="Review").click()
    page.wait_for_function("() => document.body.innerText.includes('pending')", timeout=60_000)
    page.wait_for_timeout(1000)
    times = []
    for _ in range(repeats):
        shown = page.locator("text=/Item \\d+/").first.inner_text()
        t0 = time.perf_counter()
        page.keyboard.press("n")
        page.wait_for_function("(s) => !document.body.innerText.includes(s)", arg=shown, polling=50, timeout=60_000)
        page.wait_for_function("() => [...document.querySelectorAll('img')].filter((i) => i.offsetParent !== null)"
                               ".every((i) => i.complete)", polling=50, timeout=60_000)
        times.append(time.perf_counter() - t0)
        page.wait_for_timeout(300)
    page.close()
    print(_median_line("next item after a verdict key, in the browser", times))


def seed_reviews(demo, n_images: int = 8, n_clips: int = 4) -> None:
    """Analyse generated inputs through the app's service and store, and review most of them."""
    import numpy as np
    import soundfile as sf
    from PIL import Image

    from decodemo.data.synthetic import SAMPLE_RATE, make_hum, make_texture

    folder = Path(tempfile.mkdtemp(prefix="decodemo-seed-"))
    svc, store = demo.service, demo.store
    kinds = [None, "scratch", None, "crack", "spot", None, "scratch", "crack"]
    for i in range(n_images):
        img, mask = make_texture(np.random.default_rng([31, i]), size=256, defect=kinds[i % len(kinds)])
        p = folder / f"part_{i:02d}.png"
        Image.fromarray(img).save(p)
        item = store.record(svc.compare(p, domain="texture"), user="line-camera")
        if i == n_images - 1:
            continue  # left pending
        truth = "anomalous" if kinds[i % len(kinds)] else "normal"
        store.submit_review(item, "ana", truth, mask=mask if truth == "anomalous" else None,
                            methods_right=[o for o in ("decodiff", "recon", "invad")])
        ben = truth if i not in (2, 4) else ("normal" if truth == "anomalous" else "anomalous")
        store.submit_review(item, "ben", ben)
    for i, anomaly in enumerate([None, "click", "burst", None][:n_clips]):
        y, _ = make_hum(np.random.default_rng([32, i]), seconds=5.0, sample_rate=SAMPLE_RATE, anomaly=anomaly)
        p = folder / f"hum_{i:02d}.wav"
        sf.write(p, y, SAMPLE_RATE)
        item = store.record(svc.compare(p, domain="hum"), user="microphone-3")
        if i < 2:
            store.submit_review(item, "ana", "anomalous" if anomaly else "normal")


if __name__ == "__main__":
    raise SystemExit(main())
