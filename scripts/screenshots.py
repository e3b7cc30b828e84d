"""Screenshots of the app for the README, taken in headless Chromium.

Needs Debian's ``chromium`` package (``apt-get install chromium``) and the ``playwright``
Python package (``pip install playwright``; its own browser download is not used). Starts the
real app on a loopback port, runs a comparison for an image and for a sound from the
generated examples, and saves ``docs/images/compare_image.png`` and
``docs/images/compare_audio.png``.

    python scripts/screenshots.py [--out docs/images] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import socket
import sys
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


def run_compare(page, file: Path, domain_label: str, timeout_s: float = 180) -> None:
    """Upload ``file``, pick the model set, press Compare, wait until the results are drawn."""
    page.locator("input[type=file]").first.set_input_files(str(file))
    page.wait_for_timeout(1500)
    dropdown = page.get_by_label("Model set")
    dropdown.click()
    page.get_by_role("option", name=domain_label).click()
    page.get_by_role("button", name="Compare", exact=True).click()
    page.wait_for_function("() => document.body.innerText.includes('Verdict:')", timeout=timeout_s * 1000)
    page.wait_for_timeout(2500)  # plots finish drawing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--width", type=int, default=1400)
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from decodemo.webapp import build_app, domain_choices, launch_kwargs

    demo = build_app()
    demo.service.warm_up(["texture", "hum"])
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
            for name, file, domain in shots:
                page = browser.new_page(viewport={"width": args.width, "height": 900}, device_scale_factor=1)
                page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
                label = next(lab for lab, val in domain_choices(demo.service) if val == domain)
                t0 = time.perf_counter()
                run_compare(page, file, label)
                print(f"{file.name}: drawn {time.perf_counter() - t0:.1f} s after pressing Compare")
                page.screenshot(path=str(args.out / name), full_page=True)
                print(f"saved {args.out / name}")
                page.close()
            browser.close()
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
