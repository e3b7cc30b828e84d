"""``python -m decodemo score``: files, folders or zip archives -> one row per file.

Without ``--model`` every file goes through the compare service (the three methods of a model
set, as in the app; :mod:`decodemo.service.batch`): the set used, the out-of-domain flag, each
method's score, threshold and decision, the majority verdict and whether the methods disagree.
With ``--model`` one model scores each file. Either way a file that cannot be scored gets its
error in its row and the others go on; ``--out`` writes the rows as CSV or JSON.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from decodemo.commands.common import load_cli_model
from decodemo.errors import DecodemoError

__all__ = ["add_score_arguments", "cmd_score"]

#: the service rows' fields that only the app fills (the review store's item and its note)
FILE_FIELDS_EXCLUDED = ("item_id", "note")


def add_score_arguments(s) -> None:
    s.add_argument("files", nargs="+", type=Path,
                   help="image or audio files, folders (searched recursively for images and sounds) or zip archives")
    s.add_argument("--model", default=None,
                   help="score with this one model (a folder or a registry name, bottle/invad); without it the three "
                        "methods of a model set run side by side, as in the app")
    s.add_argument("--domain", default="auto",
                   help="the model set without --model (default auto: each file's closest set)")
    s.add_argument("--out", type=Path, default=None, help="write the rows to this file: .csv or .json")
    s.add_argument("--format", choices=["csv", "json"], default=None, help="the --out format (default: its suffix)")
    s.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    s.add_argument("--category", default=None, help="with --model: which category of a multi-class model (decodiff)")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def cmd_score(args) -> int:
    """Exit status 0 when every file was scored, 1 when some were refused (each in its row)."""
    from decodemo.service.batch import collect_inputs

    if args.out is not None and (args.format or args.out.suffix.lower().lstrip(".")) not in ("csv", "json"):
        raise DecodemoError(f"Cannot tell the format of {args.out}: name it .csv or .json, or pass --format csv|json.")
    with tempfile.TemporaryDirectory(prefix="decodemo-score-") as work:
        inputs, notes = collect_inputs(args.files, workdir=work)
        for note in notes:
            print(note, file=sys.stderr)
        if not inputs:
            raise DecodemoError("No image or audio files found in " + ", ".join(map(str, args.files)) + ".")
        rows, fields = (_one_model(args, inputs) if args.model else _service(args, inputs))
    from decodemo.service.batch import write_rows

    if args.out is not None:
        print(f"{len(rows)} rows written to {write_rows(rows, args.out, fmt=args.format, fields=fields)}")
    if args.json is not None:
        write_rows(rows, args.json, fmt="json", fields=fields)
    return 1 if any(r.get("error") for r in rows) else 0


def _bar(n: int):
    from tqdm.auto import tqdm

    return tqdm(total=n, desc="score", unit="file", dynamic_ncols=True)


def _service(args, inputs):
    from tqdm.auto import tqdm

    from decodemo import settings
    from decodemo.hub import ModelRegistry
    from decodemo.service import Service
    from decodemo.service.batch import ROW_FIELDS, run_batch

    # the app's registry: the bundled model sets and those of `python -m decodemo fit`
    registry = ModelRegistry(device=None if args.device == "auto" else args.device,
                             max_resident=settings.max_models())
    registry.add_manifest(settings.user_registry())
    service = Service(registry)
    bar = _bar(len(inputs))

    def show(row) -> None:
        bar.update(1)
        if row["error"]:
            tqdm.write(f"{row['file']}\terror: {row['error']}", file=sys.stderr)
            return
        flag = "" if row["in_domain"] is not False else "\tOUT OF DOMAIN"
        tqdm.write(f"{row['file']}\t{row['domain']}\t{row['verdict']}\t{row['votes_anomalous']} of "
                   f"{row['n_methods']} anomalous{flag}")

    try:
        rows = run_batch(service, inputs, domain=args.domain, on_row=show)
    finally:
        bar.close()
    return rows, [f for f in ROW_FIELDS if f not in FILE_FIELDS_EXCLUDED]


def _one_model(args, inputs):
    from tqdm.auto import tqdm

    from decodemo.evaluation import model_threshold
    from decodemo.inference import detect_prepared, file_modality, prepare_path
    from decodemo.training import resolve_device

    model, args.category = load_cli_model(args.model, str(resolve_device(args.device)), args.category)
    cfg = model.config
    kwargs = {}
    if getattr(cfg, "categories", None):
        kwargs["category"] = cfg.categories[model.category_index(args.category)]
    threshold = model_threshold(model, kwargs.get("category"))
    rows = []
    with _bar(len(inputs)) as bar:
        for item in inputs:
            bar.update(1)
            try:
                if item.path is None:
                    raise DecodemoError(item.error or "not read")
                if cfg.modality == "audio" and file_modality(item.path) != "audio":
                    raise DecodemoError(f"{item.path.name}: this model scores audio clips (.wav, .flac, .ogg, .mp3).")
                score = detect_prepared(model, prepare_path(item.path, cfg), **kwargs).score
            except DecodemoError as exc:
                rows.append({"file": item.file, "error": str(exc)})
                tqdm.write(f"{item.file}\terror: {exc}", file=sys.stderr)
                continue
            decision = None if threshold is None else ("anomalous" if score > threshold else "normal")
            rows.append({"file": item.file, "score": score, "threshold": threshold, "decision": decision})
            tqdm.write(f"{item.file}\t{score:.4f}\t{decision or 'no threshold'}")
    return rows, ["file", "score", "threshold", "decision", "error"]
