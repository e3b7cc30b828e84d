"""Batches: many files through the compare service, one row per file.

The app's batch (several uploads, or a zip) and ``python -m decodemo score`` on a folder both
call these:

1. :func:`collect_inputs` turns files, folders (searched recursively for images and sounds) and
   zip archives (unpacked safely with :func:`decodemo.io.archive.unpack_zip`) into a list of
   :class:`BatchInput`, with notes on what was skipped;
2. :func:`run_batch` compares each with :meth:`Service.compare` and returns one row per file
   (:func:`comparison_row`): the model set used, the out-of-domain flag, each method's score,
   threshold and decision, the majority verdict and whether the methods disagree. A file that
   cannot be compared gets a row with its ``error`` instead of stopping the batch;
3. :func:`write_rows` writes the rows as CSV or JSON.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from decodemo.errors import CorruptFileError, DecodemoError, InputError
from decodemo.io.archive import MEDIA_EXTENSIONS, count_media, is_archive, unpack_zip
from decodemo.methods.catalogue import DIFFUSION_METHODS

__all__ = ["MAX_BATCH_FILES", "ROW_FIELDS", "BatchInput", "collect_inputs", "comparison_row", "error_row",
           "run_batch", "write_rows"]

#: files the app compares in one batch (the command line takes any number)
MAX_BATCH_FILES = 200

#: a row's fields, in the order CSV columns are written
ROW_FIELDS = [
    "index", "file", "modality", "domain", "in_domain",
    *[f"{m}_{k}" for m in DIFFUSION_METHODS for k in ("score", "threshold", "decision")],
    "verdict", "votes_anomalous", "n_methods", "disagree", "disagreement", "seconds", "item_id", "error", "note",
]


@dataclass(frozen=True)
class BatchInput:
    """One file of a batch."""

    file: str  # how the rows name it: the path as given or found; "<archive>/<member>" inside a zip
    path: Path | None  # the file to compare; None when it was refused before (a bad archive member)
    error: str | None = None


def _media_in(folder: Path) -> tuple[list[Path], int]:
    """The images and sounds under ``folder`` (recursively, sorted, hidden ones left out) and how
    many other files there were (archives among them: a folder's archives are not opened)."""
    found, other = [], 0
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if p.suffix.lower() in MEDIA_EXTENSIONS:
            found.append(p)
        else:
            other += 1
    return found, other


def collect_inputs(paths: Iterable[str | Path], *, workdir: str | Path, max_files: int | None = None,
                   label: Callable[[Path], str] = str) -> tuple[list[BatchInput], list[str]]:
    """The files of a batch -> ``(inputs, notes)``.

    Args:
        paths: files (compared as given, whatever their kind: the loader says what is wrong),
            folders (their images and sounds, recursively; other files, archives included, are
            counted in a note) and zip archives (``.zip``: their images and sounds, unpacked
            under ``workdir``).
        workdir: where archives are unpacked (one subfolder each).
        max_files: refuse a batch of more files than this (``None``: any number).
        label: how a given path is named in the rows (the app: its base name).

    Returns:
        the inputs in order, and one line per folder or archive that had files skipped. An
        archive that is refused as a whole (unsafe names, too large, not a zip) becomes one input
        with its error.

    Raises:
        InputError: more than ``max_files`` files.
    """
    workdir = Path(workdir)
    inputs: list[BatchInput] = []
    notes: list[str] = []

    def check_count(extra: int = 0) -> None:
        if max_files is not None and len(inputs) + extra > max_files:
            raise InputError(f"A batch holds at most {max_files} files; this one has more. Split it into batches "
                             f"of {max_files} or fewer, or use `python -m decodemo score FOLDER` for any number.")

    for raw in paths:
        path = Path(raw)
        name = label(path)
        if path.is_dir():
            found, other = _media_in(path)
            check_count(len(found))
            inputs += [BatchInput(str(Path(name) / p.relative_to(path)), p) for p in found]
            if other:
                notes.append(f"{name}: skipped {other} file{'s' if other != 1 else ''} that "
                             f"{'are' if other != 1 else 'is'} not an image or a sound")
        elif is_archive(path) and path.is_file():
            try:
                check_count(count_media(path))
            except CorruptFileError as exc:
                inputs.append(BatchInput(name, None, str(exc)))
                continue
            _add_archive(path, name, workdir, inputs, notes)
        else:
            check_count(1)
            inputs.append(BatchInput(name, path))
    check_count()
    return inputs, notes


def _add_archive(path: Path, name: str, workdir: Path, inputs: list[BatchInput], notes: list[str]) -> None:
    try:
        unpacked = unpack_zip(path, workdir / f"zip{len(inputs):04d}_{path.stem[:40]}")
    except InputError as exc:  # refused as a whole: one row says why
        inputs.append(BatchInput(name, None, str(exc)))
        return
    inputs += [BatchInput(f"{name}/{m.name}", m.path, m.error) for m in unpacked.members]
    if note := unpacked.note(name):
        notes.append(note)
    if not unpacked.members:
        notes.append(f"{name}: no images or sounds in the archive")


def _modality(file: str) -> str | None:
    from decodemo.inference import modality_of

    return modality_of(file) if Path(file).suffix.lower() in MEDIA_EXTENSIONS else None


def _empty_row(index: int, file: str) -> dict[str, Any]:
    row: dict[str, Any] = {k: None for k in ROW_FIELDS}
    row.update(index=index, file=file, modality=_modality(file))
    return row


def comparison_row(comp, *, index: int, file: str, item_id: int | None = None) -> dict[str, Any]:
    """One file's row from its :class:`~decodemo.service.results.Comparison`.

    ``in_domain`` is the out-of-domain flag (``False``: the results are not meaningful for the
    set; ``None``: the set has no in-domain reference); ``disagree`` is whether the methods'
    decisions differ; ``disagreement`` the spread of their normal-reference percentiles (0 to 1),
    the review queue's order. ``result_id`` names the result the service holds (for the app;
    left out of written files).
    """
    s = comp.summary()
    row = _empty_row(index, file)
    row.update(modality=comp.modality, domain=comp.domain, in_domain=comp.in_domain, verdict=s["verdict"],
               votes_anomalous=s["votes_anomalous"], n_methods=s["n_methods"], disagree=not s["unanimous"],
               disagreement=s["disagreement"], seconds=round(comp.seconds, 3), item_id=item_id,
               result_id=comp.id)
    for o in comp.outcomes:
        row.update({f"{o.method}_score": o.score, f"{o.method}_threshold": o.threshold,
                    f"{o.method}_decision": o.decision})
    return row


def error_row(*, index: int, file: str, error: str) -> dict[str, Any]:
    """The row of a file that could not be compared."""
    row = _empty_row(index, file)
    row["error"] = error
    return row


def run_batch(service, inputs: list[BatchInput], *, domain: str | None = None, compare: Callable | None = None,
              record: Callable[[Any], int | None] | None = None,
              progress: Callable[[float, str], None] | None = None,
              on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Compare each input with the service -> one row per input, in order.

    Args:
        service: a :class:`~decodemo.service.Service`.
        inputs: from :func:`collect_inputs`.
        domain: the model set for every file ("auto" or ``None``: each file's closest set).
        compare: what runs the models (default ``service.compare``; the app passes its GPU wrapper).
        record: called with each comparison; returns its review-store item id. If it fails, the
            row keeps the result and says so in ``note``.
        progress: ``(fraction of the batch, description)``, per file and per method.
        on_row: called with each row as soon as it is made (the command line prints it).

    A file that cannot be compared (any :class:`~decodemo.errors.DecodemoError`, or an
    unexpected failure, named as such) gets a row with ``error``; the batch goes on.
    """
    compare = compare or service.compare
    report = progress or (lambda frac, desc: None)
    n = max(1, len(inputs))
    rows = []
    for i, item in enumerate(inputs):
        index = i + 1
        report(i / n, f"{index}/{len(inputs)} {item.file}")
        if item.path is None:
            row = error_row(index=index, file=item.file, error=item.error or "not read")
        else:
            def step(frac: float, desc: str, i=i, item=item) -> None:
                report((i + frac) / n, f"{i + 1}/{len(inputs)} {item.file}: {desc}")

            try:
                comp = compare(item.path, domain=domain or "auto", name=Path(item.file).name, progress=step)
            except DecodemoError as exc:
                row = error_row(index=index, file=item.file, error=str(exc))
            except Exception as exc:  # one bad file must not stop a batch of many; named, not hidden
                row = error_row(index=index, file=item.file, error=f"unexpected failure ({type(exc).__name__}: {exc})")
            else:
                item_id, note = None, None
                if record is not None:
                    try:
                        item_id = record(comp)
                    except Exception as exc:  # the result still stands; the row says it was not kept
                        note = f"not stored for review ({type(exc).__name__}: {exc})"
                row = comparison_row(comp, index=index, file=item.file, item_id=item_id)
                row["note"] = note
        rows.append(row)
        if on_row is not None:
            on_row(row)
    report(1.0, "done")
    return rows


def write_rows(rows: list[dict[str, Any]], out: str | Path, *, fmt: str | None = None,
               fields: list[str] | None = None) -> Path:
    """Write ``rows`` to ``out`` as CSV or JSON (``fmt``, else from the suffix: .csv, .json)
    with ``fields`` (default :data:`ROW_FIELDS`) in that order; JSON leaves out a field a row
    does not have, CSV leaves its cell empty. Returns the path."""
    out = Path(out)
    fmt = (fmt or out.suffix.lstrip(".")).lower()
    if fmt not in ("csv", "json"):
        raise DecodemoError(f"Cannot tell the format of {out}: name it .csv or .json, or pass --format csv|json.")
    fields = fields or ROW_FIELDS
    picked = [{k: r[k] for k in fields if k in r} for r in rows]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{time.monotonic_ns()}.tmp")
    if fmt == "json":
        tmp.write_text(json.dumps(picked, indent=1) + "\n")
    else:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in picked)
    tmp.replace(out)
    return out
