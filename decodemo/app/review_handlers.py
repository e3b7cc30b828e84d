"""The Review tab's handlers: plain functions of the service, the store and one event's inputs.

Each event reads and writes the store in one session (``with store.session() as s``, or
``store.write(event)`` where it writes, which runs the event again on a lost race), takes
plain values out of it (:class:`ItemView`), and draws after the session has closed.

Reviewer identity: the login name when the app runs with ``launch(auth=...)`` (or Hugging Face
OAuth on a Space); otherwise this browser's visitor name (``anonymous:<8 hex>``, from a cookie the
page sets, :mod:`decodemo.app.auth`), so undo and history are the visitor's own; reviews without
either are stored as ``anonymous``. All of these are marked anonymous.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr
import numpy as np

from decodemo.errors import DecodemoError
from decodemo.service import METHOD_ORDER, METHOD_TITLES, Service
from decodemo.store import ReviewStore
from decodemo.store import records
from decodemo.store.records import ItemRecord, ReviewError, RunRecord
from decodemo.app.errors import user_error

__all__ = ["ALL", "ANY", "chosen", "reviewer_name", "editor_mask", "ReviewView", "ItemView", "show_next", "submit",
           "skip", "undo", "reshow", "submit_api"]

ALL = "(all)"  # the filter choice that filters nothing
ANY = "(any)"


def chosen(value: str | None, everything: str = ALL) -> str | None:
    """A filter's value, None when it is ``everything`` or unset."""
    return None if value in (None, everything) else value


def reviewer_name(request: Any = None, profile: Any = None) -> str | None:
    """The signed-in name (``auth`` login or Hugging Face OAuth); without one this browser's
    visitor name (``anonymous:<8 hex>``, :func:`decodemo.app.auth.identity`), or None."""
    from decodemo.app.auth import identity

    return identity(request, profile)


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


class ReviewView(NamedTuple):
    """The outputs of every Review tab event, in the order of its components (the wiring
    builds the same tuple of components)."""

    item_id: Any  # the shown item (a gr.State)
    editor: Any  # the mask editor: the input with a method's map under it
    info: Any  # the queue header, the item and its runs
    history: Any  # your versions of the review
    right: Any  # the methods that were right
    note: Any
    skipped: Any  # the items skipped in this browser session (a gr.State)

    @classmethod
    def unchanged(cls) -> "ReviewView":
        return cls(*[gr.update()] * len(cls._fields))


@dataclass(frozen=True)
class ItemView:
    """What the Review tab shows of one item, read from the store in the event's session."""

    item: ItemRecord
    runs: dict[str, RunRecord]  # method -> its latest run
    history: list[dict[str, Any]]  # the reviewer's versions


def _read_item(s, item_id: int, reviewer: str | None) -> ItemView:
    return ItemView(records.get_item(s, item_id), records.latest_runs(s, item_id),
                    records.history(s, item_id, records.reviewer_label(reviewer)))


def _filters(domain, modality, decision, reviewed_by, include_reviewed) -> dict[str, Any]:
    method = dec = None
    if chosen(decision, ANY):
        method, dec = [x.strip() for x in decision.split(":")]
    return dict(domain=chosen(domain), modality=chosen(modality), method=method, decision=dec,
                reviewed_by=(reviewed_by or "").strip() or None, include_reviewed=bool(include_reviewed))


def _next_in_queue(s, filters: dict[str, Any], skipped, reviewer: str | None) -> tuple[list[dict], ItemView | None]:
    """The queue under ``filters`` and its first item."""
    rows = records.queue(s, exclude=skipped or [], **filters)
    return rows, (_read_item(s, rows[0]["item_id"], reviewer) if rows else None)


# ---------------------------------------------------------------------- drawing (after the session)
def _spectrogram(path: Path, mel: dict | None) -> np.ndarray:
    """The log-mel spectrogram the item's models saw (their registry entry's mel settings)."""
    from decodemo.io.audio import load_audio
    from decodemo.io.spectrogram import MelConfig, log_mel

    cfg = MelConfig.from_dict(mel) if mel else MelConfig()
    return log_mel(load_audio(path, sample_rate=cfg.sample_rate), cfg)


def _background(service: Service, store: ReviewStore, view: ItemView, show: str) -> np.ndarray:
    """The item's input (audio: its spectrogram, low frequencies at the bottom) with one
    method's stored map over it."""
    from decodemo.app import render

    item, path = view.item, store.path(view.item.file_path)
    if item.modality == "audio":
        mel = None
        if view.runs:
            name = next(iter(view.runs.values())).model_name
            mel = service.registry.entries[name].input.get("mel") if name in service.registry.entries else None
        base = render.spectrogram_rgb(_spectrogram(path, mel))
    else:
        from decodemo.io.images import load_image

        base = np.asarray(load_image(path), dtype=np.uint8)
    run = view.runs.get(show)
    if run is None:
        return render.for_display(base)[0]  # the painted mask is scaled back to the item's size
    m = store.load_map(run)
    if item.modality == "audio":
        m = np.flipud(m)
    lo = float(np.quantile(m, 0.5))
    hi = lo + 2.0 * max((run.pixel_threshold if run.pixel_threshold is not None else float(m.max())) - lo, 1e-6)
    mask = None if run.pixel_threshold is None else m > run.pixel_threshold
    base, m, mask = render.for_display(base, m, mask)
    return render.overlay(base, m, lo=lo, hi=hi, opacity=0.45, mask=mask)


def item_label(item: ItemRecord) -> str:
    """How the queue names an item so that uploads of the same file name differ: the name, the
    content hash prefix and the upload time."""
    return f"{item.name} · {item.sha256[:8]} · {item.uploaded_at:%Y-%m-%d %H:%M}"


def _item_view(service: Service, store: ReviewStore, view: ItemView, show: str, header: str, skipped) -> ReviewView:
    item = view.item
    bg = _background(service, store, view, show)
    title = (f"**Item {item.id}**: `{item_label(item)}` · {item.modality} · {item.domain} · uploaded by "
             f"{item.uploaded_by}{' (anonymous)' if item.anonymous else ''} · methods disagree "
             f"{item.disagreement:.2f}")
    table = ["| Method | Score | Threshold | Decision |", "|---|---|---|---|"]
    table += [f"| {METHOD_TITLES[m]} | {r.score:.4g} | {r.threshold:.4g} | {r.decision} |"
              for m, r in ((m, view.runs.get(m)) for m in METHOD_ORDER) if r is not None]
    hist_md = "\n".join(f"- v{h['version']} {h['verdict']}{' (undone)' if h['undone_at'] else ''}, "
                        f"{h['created_at'][:19]}" + (f": {h['note']}" if h['note'] else "") for h in view.history)
    current = next((h for h in reversed(view.history) if not h["undone_at"]), None)
    return ReviewView(item_id=item.id, editor={"background": bg, "layers": [], "composite": bg},
                      info=f"{header}\n\n{title}\n\n" + "\n".join(table),
                      history=hist_md or "_No review of yours yet._",
                      right=gr.update(value=current["methods_right"] if current else []),
                      note=current["note"] if current else "", skipped=skipped or [])


def _me(reviewer: str | None) -> str:
    """How the queue header names who is reviewing."""
    from decodemo.app.auth import VISITOR_PREFIX

    if reviewer is None:
        return "anonymous (the app runs without login)"
    if reviewer.startswith(VISITOR_PREFIX):
        return f"anonymous visitor {reviewer[len(VISITOR_PREFIX):]} (this browser; the app runs without login)"
    return reviewer


def _queue_view(service: Service, store: ReviewStore, rows: list[dict], view: ItemView | None, show: str, skipped,
                reviewer: str | None) -> ReviewView:
    me = _me(reviewer)
    if view is None:
        return ReviewView(None, None, f"**Nothing to review** with these filters. Reviewing as **{me}**.", "",
                          gr.update(value=[]), "", skipped or [])
    pending = sum(r["pending"] for r in rows)
    return _item_view(service, store, view, show, f"{pending} pending · {len(rows)} in this view · reviewing as "
                      f"**{me}**", skipped)


# ---------------------------------------------------------------------- handlers
def show_next(service: Service, store: ReviewStore, domain, modality, decision, reviewed_by, include_reviewed,
              skipped, show, request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> ReviewView:
    """The first item of the queue under the filters."""
    me = reviewer_name(request, profile)
    with store.session() as s:
        rows, view = _next_in_queue(s, _filters(domain, modality, decision, reviewed_by, include_reviewed),
                                    skipped, me)
    return _queue_view(service, store, rows, view, show, skipped, me)


def submit(service: Service, store: ReviewStore, verdict, item_id, editor, right, note, domain, modality, decision,
           reviewed_by, include_reviewed, skipped, show, request: gr.Request = None,
           profile: gr.OAuthProfile | None = None) -> ReviewView:
    """Store the shown item's review (the painted mask with it), then show the next item."""
    if item_id is None:
        gr.Warning("No item is shown; press Load queue.")
        return ReviewView.unchanged()
    me = reviewer_name(request, profile)
    filters = _filters(domain, modality, decision, reviewed_by, include_reviewed)

    def event(s):
        item = records.get_item(s, int(item_id))
        mask = editor_mask(editor, (item.height, item.width), flip=item.modality == "audio")
        if mask is not None and verdict != "anomalous":
            raise ReviewError("A defect mask goes with an anomalous verdict; erase it or choose Anomalous.")
        store.add_review(s, item.id, me, verdict, methods_right=right or [], mask=mask, note=note or "")
        return (mask is not None, *_next_in_queue(s, filters, skipped, me))

    try:
        masked, rows, view = store.write(event)
    except DecodemoError as exc:  # a toast, and the item stays as it is (no error badges)
        gr.Warning(str(exc))
        return ReviewView.unchanged()
    gr.Info(f"Saved: item {item_id} {verdict}" + (" with a mask" if masked else ""))
    return _queue_view(service, store, rows, view, show, skipped, me)


def skip(service: Service, store: ReviewStore, item_id, domain, modality, decision, reviewed_by, include_reviewed,
         skipped, show, request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> ReviewView:
    """Put the shown item at the end of the queue (for this browser session) and show the next."""
    skipped = list(skipped or [])
    if item_id is not None and int(item_id) not in skipped:
        skipped.append(int(item_id))
    return show_next(service, store, domain, modality, decision, reviewed_by, include_reviewed, skipped, show,
                     request, profile)


def undo(service: Service, store: ReviewStore, item_id, show, skipped, request: gr.Request = None,
         profile: gr.OAuthProfile | None = None) -> ReviewView:
    """Undo your most recent review, wherever the queue is, and show that item again."""
    me = reviewer_name(request, profile)

    def event(s):
        undone, _ = records.undo_last_review(s, me)
        return _read_item(s, undone, me)

    try:
        view = store.write(event)
    except DecodemoError as exc:  # nothing of yours to undo: say so, change nothing
        gr.Warning(str(exc))
        return ReviewView.unchanged()
    gr.Info(f"Undid your last review, of item {view.item.id}; it is shown again.")
    return _item_view(service, store, view, show, "Undone; the previous version (if any) is current again.", skipped)


def reshow(service: Service, store: ReviewStore, item_id, show, skipped, request: gr.Request = None,
           profile: gr.OAuthProfile | None = None) -> ReviewView:
    """The shown item again, with another method's map under the mask."""
    if item_id is None:
        return ReviewView.unchanged()
    with store.session() as s:
        view = _read_item(s, int(item_id), reviewer_name(request, profile))
    return _item_view(service, store, view, show, "", skipped)


def submit_api(store: ReviewStore, item_id, verdict, methods_right, note, mask_file, request_id=None,
               request: gr.Request = None, profile: gr.OAuthProfile | None = None):
    """Store a review of an analysed item (its ``item_id`` is in the compare result).

    Args:
        item_id: the item to review.
        verdict: "normal", "anomalous" or "unsure".
        methods_right: the methods that were right (invad, decodiff, recon), comma-separated.
        note: free text.
        mask_file: optional PNG of the defect mask at the input's size (non-zero = defect).
        request_id: optional id of this request (e.g. a UUID): sent again after a lost answer
            or a crash, the review is stored once and the first answer comes back.
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
                                   methods_right=right, mask=mask, note=note or "",
                                   request_id=(str(request_id).strip() or None) if request_id else None)
    except DecodemoError as exc:
        raise user_error(str(exc)) from None
