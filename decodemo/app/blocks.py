"""The Gradio app: upload an image or a sound and see the three detectors side by side.

A thin layer over :class:`decodemo.service.Service`: callbacks read inputs, call the
service, and draw its answer with :mod:`decodemo.app.render`. No model code lives here.

Events:

- ``compare`` (public API, ``api_name="compare"``): ``(upload, record, domain)`` ->
  ``(result, files)``; ``result`` is the JSON of :meth:`Comparison.to_json` (scores, decisions,
  thresholds, percentiles, NFE, latencies, file names of the maps), ``files`` the maps
  (``<method>_map.npy``, float32 at the input's size) and normal versions (PNG) for download.
- the page then draws the held result; the opacity and per-method threshold controls redraw
  it without running any model.
- ``compare_batch`` (public API): ``(files, domain)`` -> ``(rows, status)``, one row per file
  (:mod:`decodemo.app.batch`); a click on a row of its table draws that file's comparison.

Run with ``python app.py`` (``--port``, ``--host``, ``--share``) or import :func:`build_app`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from decodemo import settings
from decodemo.app.compare import domain_choices
from decodemo.service import METHOD_ORDER, METHOD_TITLES, Service

__all__ = ["build_app", "default_service", "domain_choices", "launch_kwargs", "main"]

#: the app's static files (styles, logo), top-level ``assets/`` as the design card asks
ASSETS = Path(__file__).resolve().parents[2] / "assets"
CSS = (ASSETS / "app.css").read_text()
LOGO = (ASSETS / "logo.svg").read_text()

INTRO = """Upload an image (a bottle, a screw, a ball-screw drive, a fabric, a solar cell, a texture)
or a sound (a fan, a machine hum), or pick an example, and press **Compare**. Three diffusion-based detectors run side by side:
**DeCo-Diff** (deviation correction in a latent space), **diffusion reconstruction** (multi-scale,
wavelet and semantic discrepancy) and **latent likelihood** (InvAD: a few DDIM inversion steps and
the prior density, no reconstruction). Each shows how anomalous the input is, where, and what
it thinks the normal version looks like."""


#: comparisons admitted at once (each waits for its turn at the models inside the service)
COMPARE_REQUESTS = 8


def default_service(access=None) -> Service:
    """The app's service: the bundled registry plus the user registry of ``python -m decodemo
    fit``; ``access`` default: the environment's (:meth:`AccessPolicy.from_settings`)."""
    from decodemo.hub import ModelRegistry
    from decodemo.service.access import AccessPolicy

    registry = ModelRegistry(max_resident=settings.max_models())
    registry.add_manifest(settings.user_registry())  # the model sets of `python -m decodemo fit`
    return Service(registry, access=access if access is not None else AccessPolicy.from_settings())


def build_app(service: Service | None = None, *, store=None, examples_dir: str | Path | None = None, access=None):
    """The ``gr.Blocks`` app over ``service`` (default: one over the bundled registry) and the
    review ``store`` (default: :class:`decodemo.store.ReviewStore` in the data directory).
    ``access`` (a :class:`decodemo.service.access.AccessPolicy`) says who may apply thresholds;
    default: the service's own, for a new service the environment's
    (:meth:`~decodemo.service.access.AccessPolicy.from_settings`)."""
    from decodemo.app.batch import BatchHandlers, wire_batch
    from decodemo.app.compare import CompareHandlers
    from decodemo.app.examples import build_examples
    from decodemo.app.review import review_tabs
    from decodemo.store import ReviewStore

    if service is None:
        service = default_service(access)
    if access is not None:
        service.access = access
    if store is None:
        store = ReviewStore()
    service.attach_store(store)  # thresholds applied before (and from now on) live in the store
    domains = service.domains()
    examples = [(p, d) for p, d in build_examples(examples_dir) if d in domains]

    hours = settings.cache_hours()
    # Gradio's upload and result cache: files older than DECODEMO_CACHE_HOURS go, checked as often
    with gr.Blocks(title="decodemo: diffusion anomaly detection", delete_cache=(int(hours * 1800), int(hours * 3600))) as demo:
        gr.HTML(f"<div class='brand'>{LOGO}<h1>decodemo</h1></div>")
        gr.Markdown(INTRO)
        with gr.Tab("Compare"):
            page, upload, record, domain, run, reset, refresh, batch = _compare_tab(service, examples)
        if settings.hf_oauth():  # a Space with hf_oauth: reviewers sign in with Hugging Face
            gr.LoginButton()
        review_tabs(service, store)
        with gr.Tab("API"):
            api_md = gr.Markdown(api_doc())
        demo.load(api_doc, None, api_md, api_visibility="private", show_progress="hidden", queue=False)

        h = CompareHandlers(service, store, page)
        outputs, controls = page.outputs(), [page.result, page.opacity, *page.sliders]
        quiet = dict(api_visibility="private", show_progress="hidden")
        # the old results are greyed the moment a run starts (in the browser, no round trip) and
        # stay greyed after an error; the progress bar, with the method in progress, sits under the button
        run.click(None, None, None, js=GREY_JS, queue=False)
        # up to COMPARE_REQUESTS comparisons are admitted at once; the service's fair gate lets one
        # compute at a time, images and short clips before long clips (decodemo.service.gate)
        compared = run.click(h.compare, [upload, record, domain], [page.result, page.files], api_name="compare",
                             concurrency_limit=COMPARE_REQUESTS, show_progress_on=[page.status])
        drawn = compared.success(h.draw_new, [page.result, page.opacity], outputs, **quiet)
        drawn.then(None, None, None, js=UNGREY_JS, queue=False)
        drawn.then(h.plots, [page.result], page.plots(), **quiet)
        compared.failure(h.failed, None, [page.summary], **quiet).then(None, None, None, js=FAILED_JS, queue=False)
        for control in (page.opacity, *page.sliders):
            control.release(h.draw, controls, outputs, **quiet)
        refresh.click(h.refresh_domains, [domain], [domain], api_name="refresh_model_sets")
        reset.click(h.defaults, [page.result], page.sliders, api_visibility="private").then(h.draw, controls, outputs,
                                                                                           **quiet)
        wire_batch(batch, BatchHandlers(h), domain, page, h.draw_selected, outputs)
    from decodemo.app.cleanup import start_sweeper

    start_sweeper()  # handed-out files older than DECODEMO_CACHE_HOURS go
    demo.service = service  # for tests and scripts
    demo.handlers = h
    demo.store = store
    demo.examples_list = examples
    return demo


def _compare_tab(service: Service, examples):
    """The compare tab's layout -> its :class:`ComparePage` and the input controls."""
    from decodemo.app.batch import batch_panel
    from decodemo.app.compare import ComparePage, MethodPanel

    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            upload = gr.File(label="Image or sound", type="filepath", elem_id="upload")
            record = gr.Audio(sources=["microphone"], type="filepath", label="…or record a sound")
            with gr.Row():
                domain = gr.Dropdown(domain_choices(service), value="auto", label="Model set", scale=4)
                refresh = gr.Button("↻ Refresh", size="sm", scale=1, min_width=80)
            run = gr.Button("Compare", variant="primary", elem_id="compare-button")
            missing = service.unavailable()
            if missing:  # the app serves the rest; say what is missing and why
                gr.Markdown("**Unavailable here:** " + "; ".join(f"`{n}` ({why[:160]})" for n, why in missing.items()),
                            elem_id="unavailable-models")
            status = gr.Markdown("", elem_id="compare-progress", elem_classes="compare-progress")
            opacity = gr.Slider(0.0, 1.0, value=0.6, step=0.05, label="Map opacity")
            reset = gr.Button("Reset thresholds to the models' own", size="sm")
        with gr.Column(scale=2):
            summary = gr.Markdown("Results appear here.", elem_classes="result-area", elem_id="compare-summary")
            player = gr.Audio(label="The input sound", interactive=False, visible=False)
    gr.Examples([[str(p), d] for p, d in examples], inputs=[upload, domain], label="Examples (generated "
                "on this machine; solar cells from the elpv-dataset package)", examples_per_page=12)
    batch = batch_panel()  # several files or a zip; a row opens in the view below
    panels: dict[str, MethodPanel] = {}
    with gr.Row(equal_height=False):
        for m in METHOD_ORDER:
            with gr.Column(elem_classes="method-col", visible=False) as col:  # shown with the first result
                panels[m] = MethodPanel(
                    column=col, head=gr.Markdown(f"### {METHOD_TITLES[m]}"),
                    overlay=gr.Image(label="Anomaly map", type="numpy",
                                     interactive=False, format="jpeg", height=340),
                    normal=gr.ImageSlider(label="Input | the method's normal version", type="numpy",
                                          interactive=False, max_height=300, format="jpeg"),
                    threshold=gr.Slider(label="Threshold (lower flags more)", minimum=0, maximum=1,
                                        value=0.5))
    with gr.Row():
        ref_plot = gr.Plot(label="Scores against the normal reference", elem_classes="result-area")
        lat_plot = gr.Plot(label="Latency", elem_classes="result-area")
    audio_plot = gr.Plot(label="The sound over time: spectrogram, each method's map and per-frame score "
                         "(drag to zoom in time, double-click to reset)", visible=False,
                         elem_classes="result-area")
    with gr.Accordion("Raw result (the compare API's answer) and map files", open=False):
        result = gr.JSON(label="Result")
        files = gr.File(label="Maps (.npy, float32 at the input's size) and normal versions (.png)",
                        file_count="multiple", interactive=False)
    page = ComparePage(summary=summary, player=player, panels=panels, reference_plot=ref_plot,
                       latency_plot=lat_plot, audio_plot=audio_plot, result=result,
                       files=files, opacity=opacity, sliders=[p.threshold for p in panels.values()], status=status)
    return page, upload, record, domain, run, reset, refresh, batch


#: grey the shown results (a new run has started); UNGREY_JS: the new results are drawn
GREY_JS = "() => { document.body.classList.add('dm-running'); document.body.classList.remove('dm-failed'); }"
FAILED_JS = "() => { document.body.classList.add('dm-failed'); }"
UNGREY_JS = "() => { document.body.classList.remove('dm-running'); }"

#: two browser conveniences of the compare tab: a file dropped on the upload while it holds one
#: replaces it (Gradio's file box takes a drop only when empty: this clears it, then hands the
#: dropped file to its file input), and Enter in a threshold's number box applies it (Gradio
#: applies a typed value when the box loses focus)
COMPARE_JS = """
<script>
document.addEventListener('drop', (e) => {
  const box = e.target && e.target.closest && e.target.closest('#upload');
  if (!box || box.querySelector('input[type=file]') || !e.dataTransfer || !e.dataTransfer.files.length) return;
  const clear = box.querySelector('button[aria-label="Clear"]');
  if (!clear) return;
  e.preventDefault(); e.stopPropagation();
  const dt = new DataTransfer();
  for (const f of e.dataTransfer.files) dt.items.add(f);
  clear.click();
  let tries = 0;
  const give = () => {
    const input = box.querySelector('input[type=file]');
    if (input) { input.files = dt.files; input.dispatchEvent(new Event('change', {bubbles: true})); }
    else if (tries++ < 100) requestAnimationFrame(give);
  };
  requestAnimationFrame(give);
}, true);
document.addEventListener('dragover', (e) => {
  if (e.target && e.target.closest && e.target.closest('#upload')) e.preventDefault();
}, true);
document.addEventListener('keydown', (e) => {
  const t = e.target;
  if (e.key === 'Enter' && t && t.matches && t.matches('.method-col input[type=number]')) { e.preventDefault(); t.blur(); }
}, true);
</script>
"""

API_DOC = """### Calling decodemo from Python

```python
from gradio_client import Client, handle_file
client = Client("{url}")
result, files = client.predict(handle_file("part.png"), api_name="/compare")
```

`record` (a recorded sound, instead of the upload) and `domain` (the model set; default `"auto"`,
the set whose training data is closest) are optional: `client.predict(handle_file("fan.wav"),
domain="fan", api_name="/compare")`.

To record a verdict on it (and read everything back):

```python
client.predict(result["item_id"], "anomalous", "decodiff,invad", "crack at the rim", None, api_name="/submit_review")
files, counts = client.predict(api_name="/export")   # CSV per table, JSON, masks.zip
```

Several files (or zip archives of images and sounds) at once, one row each, every file added to
the review queue:

```python
rows, status = client.predict([handle_file("a.png"), handle_file("parts.zip")], "auto", api_name="/compare_batch")
rows[0]["domain"], rows[0]["in_domain"], rows[0]["invad_score"], rows[0]["verdict"], rows[0]["item_id"]
```

`result` holds, per method: `score`, `threshold`, `decision`, `percentile` (of the model's normal
reference scores), `calibration` (the false-positive target, the number of normal reference
scores, the guaranteed false-positive rate and its interval), `nfe`, `latency_ms`, the model name
and revision, and `map_file` / `normal_file`: the names of its files in `files`. `summary` holds
the fused `verdict`, its `rule` and `reason`, and the false-positive bound of the vote. `files`
are downloaded by the client: the maps (`<method>_map.npy`, float32, the input's size; audio: mel
bands x frames) and the methods' normal versions (PNG).
"""


def api_doc(request: gr.Request | None = None) -> str:
    """The API tab's text with the URL this page was reached at (behind a proxy too)."""
    url = "http://127.0.0.1:7860/"
    if request is not None:
        h = request.headers
        host = h.get("x-forwarded-host") or h.get("host")
        if host:
            proto = h.get("x-forwarded-proto") or getattr(getattr(request, "url", None), "scheme", None) or "http"
            url = f"{proto.split(',')[0].strip()}://{host.split(',')[0].strip()}/"
    return API_DOC.replace("{url}", url)


def launch_kwargs() -> dict[str, Any]:
    """Settings for ``launch()`` (Gradio 6 takes theme and css here). Gradio serves files from
    the working and temporary folders only; the app also serves its examples and the map files
    the review store writes once per result (``<data dir>/files/maps``), never the stored inputs."""
    from decodemo.settings import data_dir

    from decodemo.app.review import KEYBOARD_JS

    from decodemo.app.auth import VISITOR_JS

    return dict(theme=gr.themes.Soft(), css=CSS, head=KEYBOARD_JS + COMPARE_JS + VISITOR_JS, max_file_size="256mb",
                allowed_paths=[str(data_dir() / "examples"), str(data_dir() / "files" / "maps")],
                footer_links=["api"])


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python app.py", description="Start the decodemo web app.")
    ap.add_argument("--host", default=settings.server_name())
    ap.add_argument("--port", type=int, default=settings.server_port())
    ap.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    ap.add_argument("--no-warm-up", action="store_true", help="load models on first use instead of at start")
    ap.add_argument("--auth", action="append", default=[], metavar="USER:PASSWORD",
                    help="require a login (repeatable; also DECODEMO_AUTH=user:pw,user2:pw2 or DECODEMO_AUTH_FILE); "
                         "reviews carry the login name; failed logins are throttled")
    ap.add_argument("--admin", action="append", default=[], metavar="USER",
                    help="a login that may apply thresholds (repeatable; also DECODEMO_ADMINS); reviewers cannot")
    ap.add_argument("--open-thresholds", action="store_true",
                    help="let anyone apply thresholds, signed in or not (one person on their own machine)")
    args = ap.parse_args(argv)
    from decodemo.app.auth import Logins
    from decodemo.service.access import AccessPolicy

    bad = [p for p in args.auth if ":" not in p]
    if bad:
        ap.error(f"--auth takes USER:PASSWORD, got {bad[0]!r}")
    try:
        pairs = [tuple(p.split(":", 1)) for p in args.auth] + settings.auth_pairs()
    except (OSError, ValueError) as exc:  # DECODEMO_AUTH or DECODEMO_AUTH_FILE as written cannot be read
        ap.error(str(exc))
    access = AccessPolicy.from_settings(args.admin, open_thresholds=args.open_thresholds)
    service = default_service(access)
    print(access.who_may())
    if not args.no_warm_up:  # a model that cannot be loaded is shown as unavailable; the rest serve
        seconds, failed = service.warm_up_available()
        print(f"Models loaded in {seconds:.1f} s on {service.registry.device}.")
        for name, reason in failed.items():
            print(f"Unavailable: {name}: {reason}")
    demo = build_app(service)
    demo.queue(default_concurrency_limit=2).launch(server_name=args.host, server_port=args.port, share=args.share,
                                                   auth=Logins(pairs) if pairs else None, **launch_kwargs())
    return 0
