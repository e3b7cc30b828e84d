"""From reviews back to data: ``export-dataset`` writes a model set's reviewed items as a folder
layout that ``fit`` reads (:mod:`decodemo.data.reviewed` says where each item goes)."""

from __future__ import annotations

from pathlib import Path

_HELP_OUT = ("the folder to write (new or empty; --force writes over an earlier export); never inside the "
             "repository")


def add_parsers(sub) -> None:
    from decodemo.data.reviewed import TEST_SHARE

    e = sub.add_parser("export-dataset", help="write a model set's reviewed items (the review store of "
                                              "DECODEMO_DATA_DIR / DECODEMO_DB_URL) as a folder layout for fit: "
                                              "normal to train/good and a held-out share to test/good, anomalous "
                                              "to test/reviewed with their corrected masks, unsure left out, and "
                                              "a manifest.json")
    e.add_argument("--domain", required=True, help="the model set whose items to export, e.g. bottle")
    e.add_argument("--out", required=True, type=Path, help=_HELP_OUT)
    e.add_argument("--test-share", type=float, default=TEST_SHARE,
                   help=f"share of the normal items held out for test/good (default {TEST_SHARE}; ranked by a "
                        "seeded hash of their content, so an item keeps its side across exports)")
    e.add_argument("--seed", type=int, default=0, help="the seed of the held-out rule (default 0)")
    e.add_argument("--force", action="store_true", help="write into a folder that is not empty")


def export_dataset(store, domain: str, out: str | Path, *, test_share: float | None = None, seed: int = 0,
                   force: bool = False) -> dict:
    """``domain``'s reviewed items in ``store`` written as a folder layout under ``out``; returns the manifest."""
    from decodemo.data.reviewed import TEST_SHARE, write_reviewed_layout
    from decodemo.store.dataset import reviewed_items

    with store.session() as s:
        rows = reviewed_items(s, domain)
    return write_reviewed_layout(rows, out, files_root=store.data_dir, domain=domain,
                                 test_share=TEST_SHARE if test_share is None else test_share, seed=seed, force=force)


def summary(manifest: dict) -> str:
    """One line of what went where, and what ``fit`` needs that the export lacks."""
    c = manifest["counts"]
    n_normal = c["train/good"] + c["test/good"]
    line = (f"{manifest['domain']}: {n_normal} normal ({c['train/good']} train/good, {c['test/good']} test/good), "
            f"{c['test/reviewed']} anomalous in test/reviewed ({c['ground_truth/reviewed']} with a mask), "
            f"{c['left_out']} left out (unsure or tied)")
    if not c["train/good"]:
        line += "; no normal item to train on: fit needs train/good, so review some items as normal"
    elif c["test/reviewed"] and not c["test/good"]:
        line += "; test/ has no normal item, so fit cannot evaluate on it: raise --test-share or review more normals"
    return line


def _cmd_export_dataset(args) -> int:
    from decodemo.store import ReviewStore

    store = ReviewStore()
    try:
        manifest = export_dataset(store, args.domain, args.out, test_share=args.test_share, seed=args.seed,
                                  force=args.force)
    finally:
        store.close()
    print(summary(manifest))
    print(f"-> {args.out.resolve()} (manifest.json lists every reviewed item); fit it with: python -m decodemo fit "
          f"--data {args.out} --name <a new name>")
    return 0


HANDLERS = {"export-dataset": _cmd_export_dataset}
