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

Run with ``python app.py`` (``--port``, ``--host``, ``--share``) or import :func:`build_app`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from decodemo import settings
from decodemo.errors import DecodemoError
from decodemo.service import DOMAIN_TITLES, METHOD_ORDER, METHOD_TITLES, Comparison, Service

__all__ = ["build_app", "domain_choices", "launch_kwargs", "main"]

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


def _results_dir() -> Path:
    d = Path(tempfile.gettempdir()) / "decodemo-results"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _pct_text(o) -> str:
    if o.percentile is None:
        return "no normal reference stored"
    n = len(o.reference_scores)
    if o.percentile >= 100:
        return f"above all {n} normal reference scores"
    if o.percentile <= 0:
        return f"below all {n} normal reference scores"
    return f"higher than {o.percentile:.0f}% of {n} normal reference scores"


def _method_md(o) -> str:
    cls = "verdict-anomalous" if o.decision == "anomalous" else "verdict-normal"
    rel = ">" if o.score > o.threshold else "<="
    return (f"### {METHOD_TITLES[o.method]}\n"
            f"`{o.model}` · {o.revision}\n\n"
            f"**score {o.score:.4g}** {rel} threshold {o.threshold:.4g} → "
            f"<span class='{cls}'>{o.decision.upper()}</span>\n\n"
            f"{_pct_text(o)} · NFE {o.nfe} · {o.latency_ms:.0f} ms")


def _summary_md(comp: Comparison) -> str:
    s = comp.summary()
    cls = "verdict-anomalous" if s["verdict"] == "anomalous" else "verdict-normal"
    agree = "all three agree" if s["unanimous"] else f"{s['votes_anomalous']} of {s['n_methods']} say anomalous"
    lines = [f"## Verdict: <span class='{cls}'>{s['verdict'].upper()}</span> ({agree})",
             f"`{comp.name}` · {comp.modality} · model set **{DOMAIN_TITLES.get(comp.domain, comp.domain)}** · "
             f"{comp.seconds:.2f} s for the whole comparison"]
    if comp.modality == "audio" and comp.waveform is not None:
        lines.append(f"{len(comp.waveform) / comp.sample_rate:.1f} s clip; maps are over the log-mel spectrogram "
                     f"({comp.input.shape[0]} mel bands up to {comp.band_hz[-1]:.0f} Hz, "
                     f"{comp.input.shape[1]} frames).")
    table = ["| Method | Score | Threshold | Decision | Normal pct. |", "|---|---|---|---|---|"]
    for o in comp.outcomes:
        pct = "-" if o.percentile is None else f"{o.percentile:.0f}"
        table.append(f"| {METHOD_TITLES[o.method]} | {o.score:.4g} | {o.threshold:.4g} | {o.decision} | {pct} |")
    r = comp.reference
    if r is not None:  # grey, and not counted in the verdict
        pct = "-" if r.percentile is None else f"{r.percentile:.0f}"
        table.append(f"| <span class='reference-row'>{METHOD_TITLES['baseline']}: reference only, not counted</span> "
                     f"| <span class='reference-row'>{r.score:.4g}</span> | <span class='reference-row'>{r.threshold:.4g}"
                     f"</span> | <span class='reference-row'>{r.decision}</span> | "
                     f"<span class='reference-row'>{pct}</span> |")
    return "\n\n".join(lines) + "\n\n" + "\n".join(table)


def _round_sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def _slider_range(o) -> tuple[float, float, float]:
    """(minimum, maximum, step) of a threshold control: the normal reference, the score and the
    thresholds with a margin, rounded for display."""
    vals = [o.score, o.threshold, o.default_threshold, *o.reference_scores]
    lo, hi = float(min(vals)), float(max(vals))
    pad = 0.15 * (hi - lo) if hi > lo else max(1.0, abs(hi))
    lo, hi = _round_sig(lo - pad, 3), _round_sig(hi + pad, 3)
    return lo, hi, _round_sig((hi - lo) / 500.0, 2)


def _snap(value: float | None, o) -> float | None:
    """A control's value, snapped to the outcome's own threshold when within half a step of it
    (the control shows a rounded number; a borderline decision must not flip by rounding)."""
    if value is None:
        return None
    _, _, step = _slider_range(o)
    return o.threshold if abs(float(value) - o.threshold) <= step / 2 else float(value)


def domain_choices(service: Service) -> list[tuple[str, str]]:
    """(label, value) of the model-set control: "auto", then the registry's domains."""
    return [("Auto (bottle for images, fan for sounds)", "auto")] + [
        (f"{DOMAIN_TITLES.get(d, d)} [{service.domain_modality(d)}]", d) for d in service.domains()]


def build_app(service: Service | None = None, *, store=None, examples_dir: str | Path | None = None):
    """The ``gr.Blocks`` app over ``service`` (default: one over the bundled registry) and the
    review ``store`` (default: :class:`decodemo.store.ReviewStore` in the data directory)."""
    from decodemo.app import render
    from decodemo.app.examples import build_examples

    if service is None:
        from decodemo.hub import ModelRegistry

        service = Service(ModelRegistry(max_resident=settings.max_models()))
    from decodemo.hub import gpu_task
    from decodemo.store import ReviewStore
    from decodemo.app.review import review_tabs, reviewer_name

    if store is None:
        store = ReviewStore()
    service.thresholds.update({k: v for k, v in store.applied_thresholds().items() if k in service.registry.entries})

    run_models = gpu_task(service.compare, duration=120)  # spaces.GPU on a ZeroGPU Space, else as is
    domains = service.domains()
    examples = [(p, d) for p, d in build_examples(examples_dir) if d in domains]

    # ------------------------------------------------------------------ callbacks
    def compare(upload: str | None, record: str | None, domain: str, request: gr.Request = None,
                profile: gr.OAuthProfile | None = None, progress=gr.Progress()):
        """Run the three detectors of a model set on one image or sound.

        Args:
            upload: an image (PNG, JPEG, BMP, TIFF, WebP) or audio file (WAV, FLAC, OGG, MP3).
            record: a recorded sound, used when nothing is uploaded.
            domain: the model set: "auto" (by file type), or one of the registry's domains.
        Returns:
            the comparison as JSON (with the ``item_id`` under which the review store keeps it),
            and the maps (.npy) and normal versions (.png) as files.
        """
        path = upload or record
        if not path:
            raise gr.Error("Upload an image or a sound, record one, or pick an example first.")
        try:
            comp = run_models(path, domain=domain or "auto", name=Path(path).name,
                              progress=lambda frac, desc: progress(frac, desc=desc))
        except DecodemoError as exc:
            raise gr.Error(str(exc), title="This input cannot be analysed") from None
        res = comp.to_json(_results_dir() / comp.id)
        try:
            res["item_id"] = store.record(comp, user=reviewer_name(request, profile))
        except Exception as exc:  # the comparison still answers; the person is told it was not kept
            res["item_id"] = None
            gr.Warning(f"The result could not be stored for review ({type(exc).__name__}: {exc}).")
        files = [m[k] for m in res["methods"] for k in ("map_file", "normal_file") if m[k]]
        return res, files

    def draw(result: dict | None, opacity: float, *thresholds: float, reset: bool = False):
        """Everything the page shows for a held result (no model runs)."""
        n_out = 2 + 5 * len(METHOD_ORDER) + 4
        if not result or "id" not in result:
            return [gr.update()] * n_out
        try:
            comp = service.result(result["id"])
        except DecodemoError as exc:
            raise gr.Error(str(exc)) from None
        by_method = {o.method: o for o in comp.outcomes}
        if not reset:
            wanted = {m: _snap(t, by_method[m]) for m, t in zip(METHOD_ORDER, thresholds) if m in by_method}
            comp = comp.with_thresholds({m: t for m, t in wanted.items() if t is not None})
            by_method = {o.method: o for o in comp.outcomes}
        audio = comp.modality == "audio"
        out: list[Any] = [_summary_md(comp),
                          gr.update(value=comp.path if audio else None, visible=audio)]
        for m in METHOD_ORDER:
            o = by_method.get(m)
            if o is None:
                out += [gr.update(visible=False)] + [gr.update()] * 4
                continue
            nv = render.normal_version(comp, o)
            lo, hi, step = _slider_range(o)
            out += [
                gr.update(visible=True),
                _method_md(o),
                render.method_overlay(comp, o, opacity),
                gr.update(value=nv, visible=nv is not None),
                gr.update(minimum=lo, maximum=hi, step=step, value=_round_sig(o.threshold, 6)) if reset else gr.update(),
            ]
        out += [render.reference_figure(comp), render.latency_figure(comp),
                gr.update(value=render.frame_figure(comp) if audio else None, visible=audio),
                gr.update(value=render.spectrogram_figure(comp, opacity) if audio else None, visible=audio)]
        return out

    def draw_new(result, opacity):
        return draw(result, opacity, reset=True)

    def defaults(result):
        """Put every threshold control back to the model's stored threshold."""
        if not result or "id" not in result:
            return [gr.update()] * len(METHOD_ORDER)
        comp = service.result(result["id"])
        by_method = {o.method: o for o in comp.outcomes}
        return [gr.update(value=service.threshold(by_method[m].model)) if m in by_method else gr.update()
                for m in METHOD_ORDER]

    # ------------------------------------------------------------------ layout
    with gr.Blocks(title="decodemo: diffusion anomaly detection") as demo:
        gr.HTML(f"<div class='brand'>{LOGO}<h1>decodemo</h1></div>")
        gr.Markdown(INTRO)
        with gr.Tab("Compare"):
            with gr.Row():
                with gr.Column(scale=1, min_width=300):
                    upload = gr.File(label="Image or sound", type="filepath")
                    record = gr.Audio(sources=["microphone"], type="filepath", label="…or record a sound")
                    domain = gr.Dropdown(domain_choices(service), value="auto", label="Model set")
                    run = gr.Button("Compare", variant="primary")
                    opacity = gr.Slider(0.0, 1.0, value=0.6, step=0.05, label="Map opacity")
                    reset = gr.Button("Reset thresholds to the models' own", size="sm")
                with gr.Column(scale=2):
                    summary = gr.Markdown("Results appear here.")
                    player = gr.Audio(label="The input sound", interactive=False, visible=False)
            gr.Examples([[str(p), d] for p, d in examples], inputs=[upload, domain], label="Examples (generated "
                        "on this machine; solar cells from the elpv-dataset package)", examples_per_page=12)
            method_outputs: list[Any] = []
            sliders = []
            with gr.Row(equal_height=False):
                for m in METHOD_ORDER:
                    with gr.Column(elem_classes="method-col") as col:
                        head = gr.Markdown(f"### {METHOD_TITLES[m]}")
                        ov = gr.Image(label="Anomaly map (cyan: defect mask at the threshold)", type="numpy",
                                      interactive=False, format="png", height=300)
                        nv = gr.ImageSlider(label="Input | the method's normal version", type="numpy",
                                            interactive=False, max_height=300)
                        th = gr.Slider(label="Threshold (sensitivity: lower flags more)", minimum=0, maximum=1,
                                       value=0.5)
                    sliders.append(th)
                    method_outputs += [col, head, ov, nv, th]
            with gr.Row():
                ref_plot = gr.Plot(label="Scores against the normal reference")
                lat_plot = gr.Plot(label="Latency")
            frame_plot = gr.Plot(label="Per-frame score over time", visible=False)
            spec_plot = gr.Plot(label="Spectrogram with the anomaly maps", visible=False)
            with gr.Accordion("Raw result (the compare API's answer) and map files", open=False):
                result = gr.JSON(label="Result")
                files = gr.File(label="Maps (.npy, float32 at the input's size) and normal versions (.png)",
                                file_count="multiple", interactive=False)
        if settings.hf_oauth():  # a Space with hf_oauth: reviewers sign in with Hugging Face
            gr.LoginButton()
        review_tabs(service, store)
        with gr.Tab("API"):
            gr.Markdown(API_DOC)

        outputs = [summary, player, *method_outputs, ref_plot, lat_plot, frame_plot, spec_plot]
        run.click(compare, [upload, record, domain], [result, files], api_name="compare",
                  concurrency_limit=2).success(draw_new, [result, opacity], outputs, api_visibility="private",
                                               show_progress="hidden")
        for control in (opacity, *sliders):
            control.release(draw, [result, opacity, *sliders], outputs, api_visibility="private",
                            show_progress="hidden")
        reset.click(defaults, [result], sliders, api_visibility="private").then(
            draw, [result, opacity, *sliders], outputs, api_visibility="private", show_progress="hidden")
    demo.service = service  # for tests and scripts
    demo.store = store
    demo.examples_list = examples
    return demo


API_DOC = """### Calling decodemo from Python

```python
from gradio_client import Client, handle_file
client = Client("http://127.0.0.1:7860/")
result, files = client.predict(handle_file("part.png"), None, "auto", api_name="/compare")
```

To record a verdict on it (and read everything back):

```python
client.predict(result["item_id"], "anomalous", "decodiff,invad", "crack at the rim", None, api_name="/submit_review")
files, counts = client.predict(api_name="/export")   # CSV per table, JSON, masks.zip
```

`result` holds, per method: `score`, `threshold`, `decision`, `percentile` (of the model's normal
reference scores), `nfe`, `latency_ms`, the model name and revision, and `map_file`; `summary` holds
the majority `verdict` and the agreement. `files` are the maps (`<method>_map.npy`, float32, the
input's size; audio: mel bands x frames) and the methods' normal versions (PNG).
"""


def launch_kwargs() -> dict[str, Any]:
    """Settings for ``launch()`` (Gradio 6 takes theme and css here)."""
    from decodemo.settings import data_dir

    from decodemo.app.review import KEYBOARD_JS

    return dict(theme=gr.themes.Soft(), css=CSS, head=KEYBOARD_JS, max_file_size="256mb",
                allowed_paths=[str(data_dir() / "examples")], footer_links=["api"])


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python app.py", description="Start the decodemo web app.")
    ap.add_argument("--host", default=settings.server_name())
    ap.add_argument("--port", type=int, default=settings.server_port())
    ap.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    ap.add_argument("--no-warm-up", action="store_true", help="load models on first use instead of at start")
    ap.add_argument("--auth", action="append", default=[], metavar="USER:PASSWORD",
                    help="require a login (repeatable; also DECODEMO_AUTH=user:pw,user2:pw2); reviews carry the "
                         "login name, without it they are stored as anonymous")
    args = ap.parse_args(argv)
    pairs = args.auth + settings.auth_pairs()
    auth = [tuple(p.split(":", 1)) for p in pairs if ":" in p] or None
    demo = build_app()
    if not args.no_warm_up:
        print(f"Models loaded in {demo.service.warm_up():.1f} s on {demo.service.registry.device}.")
    demo.queue(default_concurrency_limit=2).launch(server_name=args.host, server_port=args.port, share=args.share,
                                                   auth=auth, **launch_kwargs())
    return 0
