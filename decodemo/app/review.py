"""The Review and Dashboard tabs of the app, and the ``submit_review`` and ``export`` API.

Thin as the compare tab: the store (:mod:`decodemo.store`) keeps and computes, the
callbacks read controls and draw.

Reviewer identity: the login name when the app runs with ``launch(auth=...)`` (or Hugging Face
OAuth on a Space); otherwise reviews are stored as ``anonymous`` and marked so.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from decodemo.errors import DecodemoError
from decodemo.service import METHOD_ORDER, METHOD_TITLES, Service
from decodemo.store import ReviewStore, feedback

__all__ = ["reviewer_name", "review_tabs", "editor_mask", "KEYBOARD_JS"]

#: keyboard shortcuts of the Review tab (ignored while typing in a text field)
KEYBOARD_JS = """
<script>
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


def reviewer_name(request: Any = None, profile: Any = None) -> str | None:
    """The signed-in name (``auth`` login or Hugging Face OAuth), or None when anonymous."""
    if profile is not None and getattr(profile, "username", None):
        return str(profile.username)
    user = getattr(request, "username", None) if request is not None else None
    return str(user) if user else None


def editor_mask(value: Any, size: tuple[int, int], *, flip: bool = False) -> np.ndarray | None:
    """The painted pixels of a ``gr.ImageEditor`` value as a boolean mask of ``size`` (h, w);
    None when nothing is painted. ``flip`` turns a spectrogram drawn low-frequency-at-bottom
    back into the store's row order."""
    from PIL import Image

    if not value or not isinstance(value, dict):
        return None
    mask = np.zeros(size, dtype=bool)
    for layer in value.get("layers") or []:
        if layer is None:
            continue
        arr = np.asarray(layer)
        if arr.ndim != 3 or arr.shape[2] < 4:
            continue
        painted = arr[..., 3] > 0
        if painted.shape != tuple(size):
            painted = np.asarray(Image.fromarray(painted.astype(np.uint8) * 255).resize(
                (size[1], size[0]), Image.NEAREST)) > 127
        mask |= painted
    if not mask.any():
        return None
    return np.flipud(mask) if flip else mask


def _item_background(store: ReviewStore, item, runs: dict, show: str, mel: dict | None = None) -> np.ndarray:
    """The item's input (audio: its spectrogram, low frequencies at the bottom) with one
    method's stored map over it."""
    from decodemo.app import render

    path = store.path(item.file_path)
    if item.modality == "audio":
        base = render.spectrogram_rgb(_spectrogram(path, mel))
    else:
        from decodemo.io.images import load_image

        base = np.asarray(load_image(path), dtype=np.uint8)
    run = runs.get(show)
    if run is None:
        return base
    m = np.load(store.path(run.map_path), allow_pickle=False)
    if item.modality == "audio":
        m = np.flipud(m)
    lo = float(np.quantile(m, 0.5))
    hi = lo + 2.0 * max((run.pixel_threshold if run.pixel_threshold is not None else float(m.max())) - lo, 1e-6)
    mask = None if run.pixel_threshold is None else m > run.pixel_threshold
    return render.overlay(base, m, lo=lo, hi=hi, opacity=0.45, mask=mask)


def _spectrogram(path: Path, mel: dict | None) -> np.ndarray:
    """The log-mel spectrogram the item's models saw (their registry entry's mel settings)."""
    from decodemo.io.audio import load_audio
    from decodemo.io.spectrogram import MelConfig, log_mel

    cfg = MelConfig.from_dict(mel) if mel else MelConfig()
    return log_mel(load_audio(path, sample_rate=cfg.sample_rate), cfg)


def review_tabs(service: Service, store: ReviewStore) -> None:
    """Add the Review and Dashboard tabs (and their API) to the Blocks being built."""
    domains = ["(all)"] + service.domains()
    decision_choices = ["(any)"] + [f"{m}: {d}" for m in METHOD_ORDER for d in ("anomalous", "normal")]

    # ------------------------------------------------------------------ review callbacks
    def _filters(domain, modality, decision, reviewed_by, include_reviewed):
        method = dec = None
        if decision and decision != "(any)":
            method, dec = [x.strip() for x in decision.split(":")]
        return dict(domain=None if domain in (None, "(all)") else domain,
                    modality=None if modality in (None, "(all)") else modality,
                    method=method, decision=dec, reviewed_by=(reviewed_by or "").strip() or None,
                    include_reviewed=bool(include_reviewed))

    def show_next(domain, modality, decision, reviewed_by, include_reviewed, skipped, show,
                  request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        rows = store.queue(exclude=skipped or [], **_filters(domain, modality, decision, reviewed_by,
                                                             include_reviewed))
        pending = sum(r["pending"] for r in rows)
        me = reviewer_name(request, profile) or "anonymous (the app runs without login)"
        if not rows:
            return (None, None, f"**Nothing to review** with these filters. Reviewing as **{me}**.", "",
                    gr.update(value=[]), "", skipped or [])
        row = rows[0]
        return _show(row["item_id"], show, f"{pending} pending · {len(rows)} in this view · reviewing as **{me}**",
                     skipped, request, profile)

    def _show(item_id, show, header, skipped, request=None, profile=None):
        item = store.item(item_id)
        runs = store.latest_runs(item_id)
        mel = None
        if item.modality == "audio" and runs:
            name = next(iter(runs.values())).model_name
            mel = service.registry.entries[name].input.get("mel") if name in service.registry.entries else None
        bg = _item_background(store, item, runs, show, mel)
        lines = [header, f"**Item {item.id}**: `{item.name}` · {item.modality} · {item.domain} · uploaded by "
                 f"{item.uploaded_by}{' (anonymous)' if item.anonymous else ''} · methods disagree "
                 f"{item.disagreement:.2f}", "| Method | Score | Threshold | Decision |", "|---|---|---|---|"]
        for m in METHOD_ORDER:
            r = runs.get(m)
            if r is not None:
                lines.append(f"| {METHOD_TITLES[m]} | {r.score:.4g} | {r.threshold:.4g} | {r.decision} |")
        me = reviewer_name(request, profile)
        hist = store.history(item_id, me or "anonymous")
        hist_md = "\n".join(f"- v{h['version']} {h['verdict']}{' (undone)' if h['undone_at'] else ''}, "
                            f"{h['created_at'][:19]}" + (f": {h['note']}" if h['note'] else "") for h in hist)
        current = next((h for h in reversed(hist) if not h["undone_at"]), None)
        right = current["methods_right"] if current else []
        editor = {"background": bg, "layers": [], "composite": bg}
        return (item_id, editor, "\n\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]),
                hist_md or "_No review of yours yet._", gr.update(value=right),
                current["note"] if current else "", skipped or [])

    def submit(verdict, item_id, editor, right, note, domain, modality, decision, reviewed_by, include_reviewed,
               skipped, show, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        if item_id is None:
            raise gr.Error("No item is shown; press Load queue.")
        item = store.item(int(item_id))
        try:
            mask = editor_mask(editor, (item.height, item.width), flip=item.modality == "audio")
            if mask is not None and verdict != "anomalous":
                raise gr.Error("A defect mask goes with an anomalous verdict; erase it or choose Anomalous.")
            store.submit_review(int(item_id), reviewer_name(request, profile), verdict, methods_right=right or [],
                                mask=mask, note=note or "")
        except DecodemoError as exc:
            raise gr.Error(str(exc)) from None
        gr.Info(f"Saved: item {item_id} {verdict}" + (" with a mask" if mask is not None else ""))
        return show_next(domain, modality, decision, reviewed_by, include_reviewed, skipped, show, request, profile)

    def skip(item_id, domain, modality, decision, reviewed_by, include_reviewed, skipped, show,
             request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        skipped = list(skipped or [])
        if item_id is not None and int(item_id) not in skipped:
            skipped.append(int(item_id))
        return show_next(domain, modality, decision, reviewed_by, include_reviewed, skipped, show, request, profile)

    def undo(item_id, show, skipped, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        if item_id is None:
            raise gr.Error("No item is shown.")
        try:
            store.undo(int(item_id), reviewer_name(request, profile))
        except DecodemoError as exc:
            raise gr.Error(str(exc)) from None
        gr.Info(f"Undid your last review of item {item_id}.")
        return _show(int(item_id), show, "Undone; the previous version (if any) is current again.", skipped, request,
                     profile)

    def reshow(item_id, show, skipped, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        if item_id is None:
            return [gr.update()] * 7
        return _show(int(item_id), show, "", skipped, request, profile)

    # ------------------------------------------------------------------ dashboard callbacks
    def dashboard(domain):
        from decodemo.app import render

        fb = feedback(store, domain=None if domain in (None, "(all)") else domain,
                      current_thresholds={n: service.threshold(n) for n in service.registry.entries})
        head = (f"**{fb['n_items']}** analysed items · **{fb['n_reviewed']}** reviewed · **{fb['n_labelled']}** "
                f"with a normal/anomalous majority (the reference for the figures below)")
        kappa = ["| Reviewers | Items both reviewed | Cohen's kappa |", "|---|---|---|"]
        kappa += [f"| {p['reviewers'][0]} & {p['reviewers'][1]} | {p['n_items']} | "
                  f"{'-' if p['kappa'] is None else format(p['kappa'], '.3f')} |" for p in fb["kappa"]]
        if not fb["kappa"]:
            kappa.append("| (no item reviewed by two people yet) | | |")
        table = []
        for m in fb["models"].values():
            sug = m.get("suggestion")
            table.append([m["model"], m["n_reviewed"], round(m["threshold"], 6),
                          None if not sug else round(sug["threshold"], 6),
                          None if not sug else round(sug["f1_current"], 3), None if not sug else round(sug["f1"], 3),
                          None if m.get("pixel_iou") is None else round(m["pixel_iou"], 3)])
        changes = [[c["changed_at"][:19], c["model_name"], c["old_threshold"], c["new_threshold"], c["changed_by"],
                    c["reason"]] for c in reversed(fb["threshold_changes"])]
        models = [m["model"] for m in fb["models"].values() if m.get("suggestion")]
        return (head, render.metrics_figure(fb), render.confusion_figure(fb), render.curves_figure(fb),
                "\n".join(kappa), table, changes, gr.update(choices=models, value=models[0] if models else None))

    def pick_model(model, domain):
        if not model:
            return gr.update()
        fb = feedback(store, domain=None if domain in (None, "(all)") else domain,
                      current_thresholds={n: service.threshold(n) for n in service.registry.entries})
        sug = fb["models"].get(model, {}).get("suggestion")
        return gr.update(value=None if not sug else round(sug["threshold"], 6))

    def apply(model, value, reason, domain, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        if not model or value is None:
            raise gr.Error("Pick a model and a threshold.")
        try:
            change = store.apply_threshold(model, float(value), old=service.threshold(model),
                                           by=reviewer_name(request, profile), reason=reason or "")
        except DecodemoError as exc:
            raise gr.Error(str(exc)) from None
        service.thresholds[model] = float(value)
        gr.Info(f"{model}: threshold {change['old_threshold']:.4g} -> {change['new_threshold']:.4g}; "
                "the compare view uses it from now on.")
        return dashboard(domain)

    def export():
        out = Path(tempfile.mkdtemp(prefix="decodemo-export-"))
        paths = store.export(out)
        return [str(p) for p in paths.values()], store.counts()

    def submit_api(item_id, verdict, methods_right, note, mask_file, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        """Store a review of an analysed item (its ``item_id`` is in the compare result).

        Args:
            item_id: the item to review.
            verdict: "normal", "anomalous" or "unsure".
            methods_right: the methods that were right (invad, decodiff, recon), comma-separated.
            note: free text.
            mask_file: optional PNG of the defect mask at the input's size (non-zero = defect).
        Returns:
            the stored review version.
        """
        try:
            if item_id is None:
                raise DecodemoError("Give the item_id from a compare result.")
            mask = None
            if mask_file:
                from decodemo.io.images import load_image

                mask = np.asarray(load_image(mask_file).convert("L")) > 127  # the input layer's checks
            right = [m.strip() for m in (methods_right or "").split(",") if m.strip()]
            return store.submit_review(int(item_id), reviewer_name(request, profile), (verdict or "").strip(),
                                       methods_right=right, mask=mask, note=note or "")
        except DecodemoError as exc:
            raise gr.Error(str(exc)) from None

    # ------------------------------------------------------------------ layout
    with gr.Tab("Review") as review_tab:
        gr.Markdown("Work through the queue: pending items first, those where the methods disagree most at the top. "
                    "Paint the defect on the image (brush; eraser to correct), give a verdict, go on. "
                    "Keys: **N** normal, **A** anomalous, **U** unsure, **S** skip, **Z** undo.")
        with gr.Row():
            f_domain = gr.Dropdown(domains, value="(all)", label="Domain")
            f_modality = gr.Dropdown(["(all)", "image", "audio"], value="(all)", label="Modality")
            f_decision = gr.Dropdown(decision_choices, value="(any)", label="Method decision")
            f_reviewer = gr.Textbox(label="Reviewed by", placeholder="a reviewer's name")
            f_done = gr.Checkbox(label="Include reviewed items", value=False)
            load = gr.Button("Load queue", variant="primary")
        item_state = gr.State(None)
        skipped_state = gr.State([])
        with gr.Row():
            with gr.Column(scale=3):
                show_map = gr.Radio(["none", *METHOD_ORDER], value="decodiff", label="Map shown under the mask")
                editor = gr.ImageEditor(label="Draw the defect mask", type="numpy", format="png",
                                        sources=[], transforms=[], layers=False,
                                        brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed", default_size=12),
                                        height=520)
            with gr.Column(scale=2):
                info = gr.Markdown("Press **Load queue**.")
                right = gr.CheckboxGroup([(METHOD_TITLES[m], m) for m in METHOD_ORDER], label="Methods that were right")
                note = gr.Textbox(label="Note", lines=2)
                with gr.Row():
                    b_normal = gr.Button("Normal (N)", elem_id="rv-normal")
                    b_anom = gr.Button("Anomalous (A)", elem_id="rv-anomalous", variant="stop")
                    b_unsure = gr.Button("Unsure (U)", elem_id="rv-unsure")
                with gr.Row():
                    b_skip = gr.Button("Skip (S)", elem_id="rv-skip", size="sm")
                    b_undo = gr.Button("Undo my last review (Z)", elem_id="rv-undo", size="sm")
                history = gr.Markdown()
    filters = [f_domain, f_modality, f_decision, f_reviewer, f_done]
    shown = [item_state, editor, info, history, right, note, skipped_state]
    load.click(show_next, [*filters, skipped_state, show_map], shown, api_visibility="private")
    review_tab.select(show_next, [*filters, skipped_state, show_map], shown, api_visibility="private")
    for button, verdict in ((b_normal, "normal"), (b_anom, "anomalous"), (b_unsure, "unsure")):
        button.click(submit, [gr.State(verdict), item_state, editor, right, note, *filters, skipped_state, show_map],
                     shown, api_visibility="private")
    b_skip.click(skip, [item_state, *filters, skipped_state, show_map], shown, api_visibility="private")
    b_undo.click(undo, [item_state, show_map, skipped_state], shown, api_visibility="private")
    show_map.change(reshow, [item_state, show_map, skipped_state], shown, api_visibility="private")

    with gr.Tab("Dashboard") as dash_tab:
        with gr.Row():
            d_domain = gr.Dropdown(domains, value="(all)", label="Domain")
            refresh = gr.Button("Refresh")
        d_head = gr.Markdown()
        with gr.Row():
            fig_metrics = gr.Plot(label="Precision, recall, F1, pixel IoU")
            fig_curves = gr.Plot(label="ROC and PR")
        fig_conf = gr.Plot(label="Confusion matrices")
        kappa_md = gr.Markdown()
        gr.Markdown("### Thresholds: current and suggested (best F1 on reviewed items)")
        thr_table = gr.Dataframe(headers=["model", "reviewed", "current", "suggested", "F1 now", "F1 suggested",
                                          "pixel IoU"], interactive=False, wrap=True)
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
        # API-only: store a review (hidden inputs, so gradio_client can call it); inside a tab,
        # since a row between tabs would split the tab bar
        with gr.Row(visible=False):
            api_item = gr.Number(label="item_id", precision=0)
            api_verdict = gr.Textbox(label="verdict")
            api_right = gr.Textbox(label="methods_right")
            api_note = gr.Textbox(label="note")
            api_mask = gr.File(label="mask_file", type="filepath")
            api_out = gr.JSON()
            api_button = gr.Button("submit review")
        api_button.click(submit_api, [api_item, api_verdict, api_right, api_note, api_mask], api_out,
                         api_name="submit_review")
    d_out = [d_head, fig_metrics, fig_conf, fig_curves, kappa_md, thr_table, changes, a_model]
    refresh.click(dashboard, [d_domain], d_out, api_visibility="private")
    dash_tab.select(dashboard, [d_domain], d_out, api_visibility="private")
    d_domain.change(dashboard, [d_domain], d_out, api_visibility="private")
    a_model.change(pick_model, [a_model, d_domain], [a_value], api_visibility="private")
    a_apply.click(apply, [a_model, a_value, a_reason, d_domain], d_out, api_visibility="private")
    b_export.click(export, None, [export_files, export_counts], api_name="export")


