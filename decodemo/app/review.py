"""The Review and Dashboard tabs of the app, and the ``submit_review`` and ``export`` API.

Thin as the compare tab: the store (:mod:`decodemo.store`) keeps and computes, the handlers
(:mod:`decodemo.app.review_handlers`, :mod:`decodemo.app.dashboard`) read controls and draw;
this module lays the tabs out and wires their events.

Reviewer identity: the login name when the app runs with ``launch(auth=...)`` (or Hugging Face
OAuth on a Space); otherwise reviews are stored as ``anonymous`` and marked so.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable

import gradio as gr

from decodemo import settings
from decodemo.app import dashboard as dash
from decodemo.app import review_handlers as rv
from decodemo.app.dashboard import DashboardView
from decodemo.app.review_handlers import ALL, ANY, ReviewView, editor_mask, reviewer_name
from decodemo.service import METHOD_ORDER, METHOD_TITLES, Service
from decodemo.store import ReviewStore, records

__all__ = ["reviewer_name", "review_tabs", "editor_mask", "KEYBOARD_JS"]

#: keyboard shortcuts of the Review tab (ignored while typing in a text field). A verdict for an
#: item nobody has touched the mask editor of goes by the verdict's "-fast" twin, whose event does
#: not send the editor: the browser then skips exporting and uploading the canvas (0.4 to 1 s on
#: a 900 px image); once the pointer went down in the editor on the shown item, the verdict sends
#: the painted mask as before.
KEYBOARD_JS = """
<script>
const dmItem = () => { const el = document.getElementById('rv-info'); const m = el && el.innerText.match(/Item \\d+/); return m ? m[0] : null; };
document.addEventListener('pointerdown', (e) => {
  if (e.target && e.target.closest && e.target.closest('#rv-editor')) window.dmPaintedOn = dmItem();
}, true);
document.addEventListener('click', (e) => {
  const b = e.target && e.target.closest && e.target.closest('#rv-normal, #rv-anomalous, #rv-unsure');
  if (!b || (window.dmPaintedOn && window.dmPaintedOn === dmItem())) return;
  const fast = document.getElementById(b.id + '-fast');
  if (!fast) return;
  e.preventDefault(); e.stopPropagation(); fast.click();
}, true);
document.addEventListener('keydown', (e) => {
  const t = e.target; if (!t) return;
  const tag = (t.tagName || '').toLowerCase();
  if (tag === 'input' || tag === 'textarea' || t.isContentEditable || e.ctrlKey || e.metaKey || e.altKey) return;
  const ids = {n: 'rv-normal', a: 'rv-anomalous', u: 'rv-unsure', s: 'rv-skip', z: 'rv-undo'};
  const id = ids[e.key.toLowerCase()];
  if (!id) return;
  const el = document.getElementById(id);
  if (el && el.offsetParent !== null) { e.preventDefault(); el.click(); }
});
</script>
"""


def bind(fn: Callable, *first) -> Callable:
    """``fn`` with its first arguments given, keeping the signature, annotations and docstring
    of the rest: Gradio reads them to pass ``gr.Request`` / ``gr.OAuthProfile`` (which
    ``functools.partial`` would hide) and to describe the API."""
    @functools.wraps(fn)
    def handler(*args, **kwargs):
        return fn(*first, *args, **kwargs)

    sig = inspect.signature(fn)
    handler.__signature__ = sig.replace(parameters=list(sig.parameters.values())[len(first):])
    return handler


def review_tabs(service: Service, store: ReviewStore) -> None:
    """Add the Review and Dashboard tabs (and their API) to the Blocks being built."""
    domains = [ALL] + service.domains()
    decision_choices = [ANY] + [f"{m}: {d}" for m in METHOD_ORDER for d in ("anomalous", "normal")]
    private = dict(api_visibility="private")

    with gr.Tab("Review") as review_tab:
        gr.Markdown("Work through the queue: pending items first, those where the methods disagree most at the top. "
                    "Paint the defect on the image (brush; eraser to correct), give a verdict, go on. "
                    "Keys: **N** normal, **A** anomalous, **U** unsure, **S** skip, **Z** undo.")
        with gr.Row():
            f_domain = gr.Dropdown(domains, value=ALL, label="Domain")
            f_modality = gr.Dropdown([ALL, "image", "audio"], value=ALL, label="Modality")
            f_decision = gr.Dropdown(decision_choices, value=ANY, label="Method decision")
            f_reviewer = gr.Textbox(label="Reviewed by", placeholder="a reviewer's name")
            f_done = gr.Checkbox(label="Include reviewed items", value=False)
            load = gr.Button("Load queue", variant="primary")
        item_state = gr.State(None)
        skipped_state = gr.State([])
        with gr.Row():
            with gr.Column(scale=3):
                show_map = gr.Radio(["none", *METHOD_ORDER], value="decodiff", label="Map shown under the mask")
                editor = gr.ImageEditor(label="Draw the defect mask", type="numpy", format="png", elem_id="rv-editor",
                                        sources=[], transforms=[], layers=False,
                                        brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed", default_size=12),
                                        height=520)
            with gr.Column(scale=2):
                info = gr.Markdown("Press **Load queue**.", elem_id="rv-info")
                right = gr.CheckboxGroup([(METHOD_TITLES[m], m) for m in METHOD_ORDER], label="Methods that were right")
                note = gr.Textbox(label="Note", lines=2, max_length=records.NOTE_MAX_CHARS)
                with gr.Row():
                    b_normal = gr.Button("Normal (N)", elem_id="rv-normal")
                    b_anom = gr.Button("Anomalous (A)", elem_id="rv-anomalous", variant="stop")
                    b_unsure = gr.Button("Unsure (U)", elem_id="rv-unsure")
                    fast = {v: gr.Button(v, elem_id=f"rv-{v}-fast", elem_classes="dm-hidden")  # see KEYBOARD_JS
                            for v in ("normal", "anomalous", "unsure")}
                with gr.Row():
                    b_skip = gr.Button("Skip (S)", elem_id="rv-skip", size="sm")
                    b_undo = gr.Button("Undo my last review (Z)", elem_id="rv-undo", size="sm")
                history = gr.Markdown()
    # the handlers' inputs in their parameter order; every event draws the same ReviewView
    filters = [f_domain, f_modality, f_decision, f_reviewer, f_done]
    shown = list(ReviewView(item_id=item_state, editor=editor, info=info, history=history, right=right, note=note,
                            skipped=skipped_state))
    for event in (load.click, review_tab.select):
        event(bind(rv.show_next, service, store), [*filters, skipped_state, show_map], shown, **private)
    for button, verdict in ((b_normal, "normal"), (b_anom, "anomalous"), (b_unsure, "unsure")):
        button.click(bind(rv.submit, service, store),
                     [gr.State(verdict), item_state, editor, right, note, *filters, skipped_state, show_map],
                     shown, **private)
        fast[verdict].click(bind(rv.submit, service, store),  # nothing painted on this item: the editor stays put
                            [gr.State(verdict), item_state, gr.State(None), right, note, *filters, skipped_state,
                             show_map], shown, **private)
    b_skip.click(bind(rv.skip, service, store), [item_state, *filters, skipped_state, show_map], shown, **private)
    b_undo.click(bind(rv.undo, service, store), [item_state, show_map, skipped_state], shown, **private)
    show_map.change(bind(rv.reshow, service, store), [item_state, show_map, skipped_state], shown, **private)

    with gr.Tab("Dashboard") as dash_tab:
        with gr.Row():
            d_domain = gr.Dropdown(domains, value=ALL, label="Domain")
            refresh = gr.Button("Refresh")
        d_head = gr.Markdown()
        with gr.Row():
            fig_metrics = gr.Plot(label="Precision, recall, F1, pixel IoU")
            fig_curves = gr.Plot(label="ROC and PR")
        fig_conf = gr.Plot(label="Confusion matrices")
        kappa_md = gr.Markdown()
        gr.Markdown("### Thresholds: current and suggested (best F1 on reviewed items; a suggestion needs "
                    f"{settings.min_reviewed()} reviewed normals and {settings.min_reviewed()} reviewed anomalies)")
        thr_table = gr.Dataframe(headers=dash.THRESHOLD_COLUMNS, interactive=False, wrap=True)
        gr.Markdown(f"_{service.access.who_may()} A threshold stays within its normal reference's range widened "
                    "by one width below and three above; every change is kept below, with who and why._",
                    elem_id="threshold-policy")
        with gr.Row():
            a_model = gr.Dropdown([], label="Model")
            a_value = gr.Number(label="New threshold")
            a_reason = gr.Textbox(label="Why", placeholder="e.g. best F1 on 40 reviewed bottles")
            a_apply = gr.Button("Apply threshold", variant="primary")
        changes = gr.Dataframe(headers=["when (UTC)", "model", "from", "to", "by", "why"], interactive=False,
                               wrap=True, label="Threshold changes")
        with gr.Row():
            b_export = gr.Button("Export everything (CSV, JSON, masks as PNG in a zip)")
            export_files = gr.File(label="Export", file_count="multiple", interactive=False)
            export_counts = gr.JSON(label="Counts", visible=False)
        with gr.Row():
            b_dataset = gr.Button("Export reviewed items as a dataset (the Domain's items, a zip for fit)")
            dataset_file = gr.File(label="Dataset", interactive=False)
            dataset_counts = gr.JSON(label="Where the items went")
        # API-only: store a review (hidden inputs, so gradio_client can call it); inside a tab,
        # since a row between tabs would split the tab bar
        with gr.Row(visible=False):
            api_item = gr.Number(label="item_id", precision=0)
            api_verdict = gr.Textbox(label="verdict")
            api_right = gr.Textbox(label="methods_right")
            api_note = gr.Textbox(label="note")
            api_mask = gr.File(label="mask_file", type="filepath")
            api_request = gr.Textbox(label="request_id", value="")
            api_out = gr.JSON()
            api_button = gr.Button("submit review")
        api_button.click(bind(rv.submit_api, store), [api_item, api_verdict, api_right, api_note, api_mask, api_request], api_out,
                         api_name="submit_review")
        with gr.Row(visible=False):  # API-only: apply a threshold (admins only, within the model's bounds)
            api_model = gr.Textbox(label="model")
            api_value = gr.Number(label="threshold")
            api_why = gr.Textbox(label="reason")
            api_change = gr.JSON()
            api_apply = gr.Button("apply threshold")
        api_apply.click(bind(dash.apply_api, service), [api_model, api_value, api_why], api_change,
                        api_name="apply_threshold")
    drawn = list(DashboardView(head=d_head, metrics=fig_metrics, confusion=fig_conf, curves=fig_curves,
                               kappa=kappa_md, thresholds=thr_table, changes=changes, model=a_model))
    for event in (refresh.click, dash_tab.select, d_domain.change):
        event(bind(dash.dashboard, service, store), [d_domain], drawn, **private)
    a_model.change(bind(dash.pick_model, service, store), [a_model, d_domain], [a_value], **private)
    a_apply.click(bind(dash.apply, service, store), [a_model, a_value, a_reason, d_domain], drawn, **private)
    b_export.click(bind(dash.export, store), None, [export_files, export_counts], api_name="export")
    b_dataset.click(bind(dash.export_dataset, store), [d_domain], [dataset_file, dataset_counts],
                    api_name="export_dataset")
