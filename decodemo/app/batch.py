"""The compare tab's batch: several files (or a zip) at once, a sortable table of the results,
and a click on a row to see that file's full comparison in the single-file view.

:func:`batch_panel` lays the batch out inside the compare tab, :class:`BatchHandlers` holds the
plain handlers (over the compare tab's :class:`~decodemo.app.compare.CompareHandlers`: the same
service, store and model runner) and :func:`wire_batch` connects them. The rows come from
:mod:`decodemo.service.batch`; each compared file is recorded in the review store as a single
upload is, so it joins the review queue.

Public API ``compare_batch``: ``(files, domain)`` -> ``(rows, status)``; ``rows`` is one JSON
object per file (:data:`decodemo.service.batch.ROW_FIELDS`, plus ``result_id``), ``status`` a
line on what was compared and skipped.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from decodemo.errors import DecodemoError
from decodemo.methods.catalogue import DIFFUSION_METHODS as METHOD_ORDER
from decodemo.methods.catalogue import TITLES as METHOD_TITLES
from decodemo.service.batch import MAX_BATCH_FILES, collect_inputs, run_batch
from decodemo.app.errors import user_error

__all__ = ["TABLE_HEADERS", "BatchPage", "BatchHandlers", "batch_panel", "table_rows", "wire_batch"]

#: the table's columns; "#" is the row's place in the batch (it finds the row again after sorting)
TABLE_HEADERS = ["#", "file", "model set",
                 *[h for m in METHOD_ORDER for h in (f"{METHOD_TITLES[m]} score", METHOD_TITLES[m])],
                 "verdict", "disagree", "out of domain", "error"]
_DATATYPES = ["number", "str", "str", *["number", "str"] * len(METHOD_ORDER), "str", "str", "str", "str"]


def _sig(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.4g}")


def _ood_cell(in_domain: bool | None, error: str | None) -> str:
    if error:
        return ""
    return {False: "OUT OF DOMAIN", True: "no"}.get(in_domain, "not checked")


def table_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """The batch rows as the table's cells (:data:`TABLE_HEADERS`)."""
    out = []
    for r in rows:
        cells: list[Any] = [r["index"], r["file"], r["domain"] or ""]
        for m in METHOD_ORDER:
            cells += [_sig(r.get(f"{m}_score")), r.get(f"{m}_decision") or ""]
        disagree = "" if r["error"] else ("yes" if r["disagree"] else "no")
        cells += [r["verdict"] or "", disagree, _ood_cell(r["in_domain"], r["error"]), r["error"] or r["note"] or ""]
        out.append(cells)
    return out


def _status(rows: list[dict[str, Any]], notes: list[str], seconds: float) -> str:
    done = [r for r in rows if not r["error"]]
    parts = [f"**{len(rows)} file{'s' if len(rows) != 1 else ''}**: {len(done)} compared"]
    if len(done) < len(rows):
        parts.append(f"{len(rows) - len(done)} could not be")
    ood = sum(r["in_domain"] is False for r in done)
    if ood:
        parts.append(f"{ood} out of domain")
    split = sum(bool(r["disagree"]) for r in done)
    parts.append(f"the methods disagree on {split}")
    kept = sum(r["item_id"] is not None for r in done)
    text = ", ".join(parts) + f" ({seconds:.1f} s). {kept} added to the review queue."
    if done:
        text += " Click a row to see its full comparison below; click a header to sort."
    return text + "".join(f"\n\n- {n}" for n in notes)


@dataclass
class BatchPage:
    """The batch's components."""

    files: Any
    run: Any
    status: Any
    table: Any
    rows: Any  # the rows as JSON (the API's answer)


def batch_panel() -> BatchPage:
    """Lay the batch out (inside the compare tab being built)."""
    with gr.Accordion(f"Batch: several files or a zip (up to {MAX_BATCH_FILES} files) in a sortable table",
                      open=False):
        with gr.Row():
            files = gr.File(label="Images, sounds or zip archives", file_count="multiple", type="filepath",
                            scale=3)
            run = gr.Button("Compare all", variant="primary", scale=1)
        status = gr.Markdown("Each file is compared with the model set chosen above and added to the review queue.")
        table = gr.Dataframe(headers=TABLE_HEADERS, datatype=_DATATYPES, interactive=False, wrap=True,
                             label="Results (click a header to sort, a row to open it)")
        with gr.Accordion("Rows (the compare_batch API's answer)", open=False):
            rows = gr.JSON(label="Rows")
    return BatchPage(files=files, run=run, status=status, table=table, rows=rows)


class BatchHandlers:
    """The batch's event handlers, over the compare tab's handlers ``compare``."""

    def __init__(self, compare, *, max_files: int = MAX_BATCH_FILES) -> None:
        self.compare_handlers = compare
        self.service, self.store = compare.service, compare.store
        self.max_files = max_files

    def compare_batch(self, files: list[str] | None, domain: str, request: gr.Request = None,
                      profile: gr.OAuthProfile | None = None, progress=gr.Progress()):
        """Run the three detectors of a model set on several images or sounds.

        Args:
            files: image or audio files, or zip archives of them (their images and sounds are
                compared; other members are skipped and named in the status).
            domain: the model set for every file: "auto" (each file's closest set), or one of the
                registry's domains.
        Returns:
            the rows, one per file: ``file``, ``domain`` (the set used), ``in_domain`` (the
            out-of-domain flag), ``<method>_score`` / ``_threshold`` / ``_decision`` per method,
            ``verdict``, ``disagree`` (the methods' decisions differ), ``disagreement`` (the spread
            of their normal percentiles), ``item_id`` in the review store, ``error`` for a file
            that could not be compared; and a status line.
        """
        import time

        from decodemo.app.compare import _results_dir
        from decodemo.app.review import reviewer_name

        if not files:
            raise user_error("Choose some images, sounds or zip archives first.")
        t0 = time.perf_counter()
        user = reviewer_name(request, profile)
        workdir = _results_dir() / "batch" / uuid.uuid4().hex
        try:
            inputs, notes = collect_inputs(files, workdir=workdir, max_files=self.max_files,
                                           label=lambda p: Path(p).name)
        except DecodemoError as exc:
            raise user_error(str(exc), title="This batch cannot be analysed") from None
        if not inputs:
            raise user_error("There are no images or sounds in these files. " + " ".join(notes))
        rows = run_batch(self.service, inputs, domain=domain or "auto", compare=self.compare_handlers.run_models,
                         record=lambda comp: self.store.record(comp, user=user),
                         progress=lambda frac, desc: progress(frac, desc=desc))
        return rows, _status(rows, notes, time.perf_counter() - t0)

    def table(self, rows: list[dict] | None):
        return table_rows(rows or [])

    def open_row(self, rows: list[dict] | None, evt: gr.SelectData, request: gr.Request = None,
                 profile: gr.OAuthProfile | None = None):
        """The full comparison of the selected row -> ``(result, files)`` of the single-file view
        (the result held by the service, else the file compared again)."""
        from decodemo.app.compare import _results_dir
        from decodemo.app.review import reviewer_name

        row = _selected(rows or [], evt)
        if row is None:
            return gr.update(), gr.update()
        if row["error"]:
            raise user_error(f"{row['file']}: {row['error']}", title="This file was not compared")
        item_id = row["item_id"]
        try:
            comp = self.service.result(row["result_id"])
        except DecodemoError:  # pushed out of the service's cache by later results: run it again
            comp = self._again(row, item_id, reviewer_name(request, profile))
        map_files = None
        if item_id is not None:
            try:
                map_files = self.store.map_files(item_id)
            except Exception:  # the view still draws; the maps are then written beside the result
                map_files = None
        res = comp.to_json(_results_dir() / comp.id, map_files=map_files)
        res["item_id"] = item_id
        files = [m[k] for m in res["methods"] for k in ("map_file", "normal_file") if m[k]]
        return res, files

    def _again(self, row: dict, item_id: int | None, user: str | None):
        """Compare the row's file again, from the copy the review store keeps (the rows come
        from the page, so no path in them is trusted)."""
        import shutil

        from decodemo.app.compare import _results_dir

        try:
            item = self.store.item(int(item_id))
        except Exception:
            raise user_error(f"{row['file']} is no longer held; press Compare all again.") from None
        copy = _results_dir() / "batch" / uuid.uuid4().hex / Path(item.name).name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.store.path(item.file_path), copy)  # where the page may play it from
        try:
            comp = self.compare_handlers.run_models(copy, domain=item.domain, name=item.name)
        except DecodemoError as exc:
            raise user_error(str(exc)) from None
        try:
            self.store.record(comp, user=user)  # the same input: the same item, a new run of each method
        except Exception as exc:
            gr.Warning(f"The result could not be stored for review ({type(exc).__name__}: {exc}).")
        return comp


def _selected(rows: list[dict], evt) -> dict | None:
    """The batch row a table selection points at, by its "#" cell (the table may be sorted)."""
    value = getattr(evt, "row_value", None)
    if value:
        try:
            index = int(value[0])
        except (TypeError, ValueError):
            index = None
        found = next((r for r in rows if r["index"] == index), None)
        if found is not None:
            return found
    at = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    return rows[at] if isinstance(at, int) and 0 <= at < len(rows) else None


def wire_batch(page: BatchPage, handlers: BatchHandlers, domain, compare_page, draw_new, outputs) -> None:
    """Connect the batch's events: Compare all (API ``compare_batch``) fills the table; a row's
    selection shows it in the single-file view (``compare_page``, drawn by ``draw_new``)."""
    quiet = dict(api_visibility="private", show_progress="hidden")
    page.run.click(handlers.compare_batch, [page.files, domain], [page.rows, page.status], api_name="compare_batch",
                   concurrency_limit=1).success(handlers.table, [page.rows], [page.table], **quiet)
    page.table.select(handlers.open_row, [page.rows], [compare_page.result, compare_page.files],
                      api_visibility="private").success(draw_new, [compare_page.result, compare_page.opacity],
                                                        outputs, **quiet)
