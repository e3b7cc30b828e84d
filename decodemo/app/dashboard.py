"""The Dashboard tab's handlers: what the reviews say about the detectors, threshold changes,
the export, and the reviewed items of a model set as a dataset for ``fit``.

Thresholds belong to the service: the dashboard reads them (:meth:`Service.thresholds`) and
changes one only through :meth:`Service.apply_threshold`, which keeps the change in the store.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr

from decodemo.app.review_handlers import chosen, reviewer_name
from decodemo.errors import DecodemoError
from decodemo.service import Service
from decodemo.store import ReviewStore, feedback, records, safe_name
from decodemo.app.errors import user_error

__all__ = ["DashboardView", "dashboard", "pick_model", "apply", "apply_api", "export", "export_dataset"]


class DashboardView(NamedTuple):
    """The outputs of every Dashboard event, in the order of its components (the wiring builds
    the same tuple of components)."""

    head: Any  # counts of analysed, reviewed and labelled items
    metrics: Any  # precision, recall, F1, pixel IoU per model
    confusion: Any  # confusion matrices
    curves: Any  # ROC and PR
    kappa: Any  # agreement between reviewers
    thresholds: Any  # current and suggested threshold per model
    changes: Any  # the threshold changes, latest first
    model: Any  # the models whose threshold can be applied


def _feedback(service: Service, store: ReviewStore, domain) -> dict[str, Any]:
    """The dashboard's figures for ``domain``, against the service's current thresholds (one session)."""
    refs = {n: list(e.reference.get("scores") or []) for n, e in service.registry.entries.items()}
    return feedback(store, domain=chosen(domain), current_thresholds=service.thresholds(), references=refs)


def _kappa_table(pairs: list[dict[str, Any]]) -> str:
    lines = ["| Reviewers | Items both reviewed | Cohen's kappa |", "|---|---|---|"]
    lines += [f"| {p['reviewers'][0]} & {p['reviewers'][1]} | {p['n_items']} | "
              f"{'-' if p['kappa'] is None else format(p['kappa'], '.3f')} |" for p in pairs]
    if not pairs:
        lines.append("| (no item reviewed by two people yet) | | |")
    return "\n".join(lines)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


#: the threshold table's columns
THRESHOLD_COLUMNS = ["model", "reviewed (normal / anomalous)", "current", "F1 now", "normal reference flagged now",
                     "suggested", "F1 suggested, out of sample (90% interval)", "normal reference flagged at suggested",
                     "pixel IoU"]


def _sig(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.4g}")


def _flagged(c: dict[str, Any] | None) -> str:
    """The share of the normal reference a threshold flags, and the false-positive rate it guarantees."""
    if not c:
        return "-"
    return f"{c['n_above']} of {c['n']} ({c['n_above'] / c['n']:.0%}); guaranteed FPR <= {c['fpr_bound']:.1%}"


def _threshold_row(m: dict[str, Any]) -> list:
    sug = m.get("suggestion") or {}
    oos = sug.get("out_of_sample")
    reviewed = (f"{m['n_reviewed']} ({m['n_normal']} / {m['n_anomalous']})" if "n_normal" in m
                else str(m["n_reviewed"]))
    if sug:
        suggested = _sig(sug["threshold"])
        f1 = (f"{oos['f1']:.3f} ({oos['interval'][0]:.2f} to {oos['interval'][1]:.2f}); in sample {sug['f1']:.3f}"
              if oos else f"in sample {sug['f1']:.3f}")
    else:
        suggested, f1 = None, "needs " + m["suggestion_needs"] if m.get("suggestion_needs") else "-"
    return [m["model"], reviewed, _sig(m["threshold"]), _rounded(m.get("f1"), 3), _flagged(m.get("normal_reference")),
            suggested, f1, _flagged(sug.get("normal_reference")), _rounded(m.get("pixel_iou"), 3)]


def dashboard(service: Service, store: ReviewStore, domain) -> DashboardView:
    """Every figure and table of the Dashboard tab for ``domain``."""
    from decodemo.app import render

    fb = _feedback(service, store, domain)
    head = (f"**{fb['n_items']}** analysed items · **{fb['n_reviewed']}** reviewed · **{fb['n_labelled']}** "
            f"with a normal/anomalous majority (the reference for the figures below)")
    changes = [[c["changed_at"][:19], c["model_name"], c["old_threshold"], c["new_threshold"], c["changed_by"],
                c["reason"]] for c in reversed(fb["threshold_changes"])]
    models = [m["model"] for m in fb["models"].values() if m.get("suggestion")]
    return DashboardView(head=head, metrics=render.metrics_figure(fb), confusion=render.confusion_figure(fb),
                         curves=render.curves_figure(fb), kappa=_kappa_table(fb["kappa"]),
                         thresholds=[_threshold_row(m) for m in fb["models"].values()], changes=changes,
                         model=gr.update(choices=models, value=models[0] if models else None))


def pick_model(service: Service, store: ReviewStore, model, domain):
    """The suggested threshold of the picked model, into the "New threshold" box."""
    if not model:
        return gr.update()
    sug = _feedback(service, store, domain)["models"].get(model, {}).get("suggestion")
    return gr.update(value=None if not sug else _sig(sug["threshold"]))


def apply(service: Service, store: ReviewStore, model, value, reason, domain, request: gr.Request = None,
          profile: gr.OAuthProfile | None = None) -> DashboardView:
    """Judge ``model`` against ``value`` from now on (kept, with who and why), then redraw."""
    if not model or value is None:
        raise user_error("Pick a model and a threshold.")
    from decodemo.app.auth import is_visitor

    who = reviewer_name(request, profile)
    try:
        change = service.apply_threshold(model, float(value), by=who, reason=reason or "", anonymous=is_visitor(who))
    except DecodemoError as exc:
        raise user_error(str(exc)) from None
    gr.Info(f"{model}: threshold {change['old_threshold']:.4g} -> {change['new_threshold']:.4g}; "
            "the compare view uses it from now on.")
    ref = service.registry.entry(model).reference.get("scores")
    if ref:
        from decodemo.metrics.calibration import describe

        now = describe(ref, float(value))
        calibrated = describe(ref, service.registry.entry(model).threshold)
        if now["fpr_bound"] > calibrated["fpr_bound"] + 1e-12:
            gr.Warning(f"{model}: {now['n_above']} of {now['n']} normal reference inputs ({now['n_above'] / now['n']:.0%}) "
                       f"score above the new threshold; it guarantees a false-positive rate of {now['fpr_bound']:.1%} "
                       f"only, against {calibrated['fpr_bound']:.1%} for the calibrated one.")
    return dashboard(service, store, domain)


def apply_api(service: Service, model, value, reason, request: gr.Request = None,
              profile: gr.OAuthProfile | None = None) -> dict[str, Any]:
    """The ``apply_threshold`` API: judge ``model`` against ``value`` from now on, for admins only
    (:mod:`decodemo.service.access`), within the model's bounds; returns the stored change."""
    from decodemo.app.auth import is_visitor

    who = reviewer_name(request, profile)
    if not model or value is None:
        raise user_error("Give a model name and a threshold.")
    try:
        return service.apply_threshold(str(model), float(value), by=who, reason=str(reason or ""),
                                       anonymous=is_visitor(who))
    except DecodemoError as exc:
        raise user_error(str(exc)) from None


def _results_dir() -> Path:
    from decodemo.app.cleanup import results_dir

    return results_dir()


def export(store: ReviewStore):
    """Every table as CSV and JSON and the masks as PNG in a zip; and the store's counts."""
    with store.session() as s:
        tables, counts = records.table_rows(s), records.counts(s)
    paths = store.write_export(tables, Path(tempfile.mkdtemp(prefix="export-", dir=_results_dir())))
    return [str(p) for p in paths.values()], counts


def export_dataset(store: ReviewStore, domain):
    """The reviewed items of the chosen model set as a folder layout for ``python -m decodemo fit``
    (:mod:`decodemo.data.reviewed`), zipped as ``<domain>_dataset.zip`` (one folder, ``<domain>/``);
    and what went where (the manifest's counts)."""
    from decodemo.data.reviewed import write_reviewed_layout
    from decodemo.store.dataset import reviewed_items

    domain = chosen(domain)
    if not domain:
        raise user_error("Pick the model set to export under Domain.")
    tmp, folder = Path(tempfile.mkdtemp(prefix="dataset-", dir=_results_dir())), safe_name(domain)
    try:
        with store.session() as s:
            rows = reviewed_items(s, domain)
        manifest = write_reviewed_layout(rows, tmp / folder, files_root=store.data_dir, domain=domain)
    except DecodemoError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise user_error(str(exc)) from None
    archive = shutil.make_archive(str(tmp / f"{folder}_dataset"), "zip", root_dir=tmp, base_dir=folder)
    shutil.rmtree(tmp / folder)
    return archive, manifest["counts"]
