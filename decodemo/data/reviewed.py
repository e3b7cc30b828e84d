"""Reviewed items written back as a dataset: the folder layout that ``python -m decodemo fit`` reads.

The rows come from the review store (:func:`decodemo.store.dataset.reviewed_items`); this module
only writes files, through :mod:`decodemo.data.writing`'s atomic writes::

    out/
      train/good/<stem><ext>                 items whose verdict is normal, less the held-out share
      test/good/<stem><ext>                  the held-out share of the normal items
      test/reviewed/<stem><ext>              items whose verdict is anomalous
      ground_truth/reviewed/<stem>_mask.png  the corrected mask of an anomalous item, when one was drawn
      manifest.json                          every reviewed item: its reviews, verdict and where it went

Each upload is copied as it was stored (images and audio clips alike; an image stored without a
known extension gets the one of its format). Items without a verdict (``unsure``, or tied
reviewers) are listed in the manifest and left out of the folders.

The held-out rule: the normal items are ranked by the SHA-256 of ``"<seed>:<item sha256>"`` and the
first ``round(test_share x n)`` go to ``test/good`` (at most ``n - 1``: ``train/good`` keeps one).
The rank depends on an item's content and the seed only, so an item keeps its side when later
exports add more items, unless it sits at the boundary.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from decodemo.data.layout import IMAGE_EXTENSIONS, modality_of, refuse_inside_repo
from decodemo.data.writing import remove_stale_files, write_atomically, write_json_atomically
from decodemo.errors import ExportError, OutputNotEmptyError

__all__ = ["TEST_SHARE", "KIND", "MANIFEST", "FORMAT", "held_out", "write_reviewed_layout"]

#: the default share of the normal items held out for ``test/good``
TEST_SHARE = 0.2
#: the anomaly kind of the reviewed anomalous items: ``test/reviewed``, ``ground_truth/reviewed``
KIND = "reviewed"
MANIFEST = "manifest.json"
FORMAT = "decodemo reviewed-items dataset, version 1"
_FOLDERS = ("train/good", "test/good", f"test/{KIND}", f"ground_truth/{KIND}")
#: Pillow's format name -> the extension of an image stored without a known one
_IMAGE_EXT = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}


def held_out(shas: list[str], test_share: float, seed: int) -> set[str]:
    """The contents (SHA-256 of the normal items) that go to ``test/good`` under the module's rule."""
    if not 0.0 <= test_share < 1.0:
        raise ExportError(f"The test share is a fraction from 0 up to (not including) 1; got {test_share}.")
    n_test = min(max(len(shas) - 1, 0), math.floor(test_share * len(shas) + 0.5))
    ranked = sorted(shas, key=lambda sha: hashlib.sha256(f"{seed}:{sha}".encode()).hexdigest())
    return set(ranked[:n_test])


def _extension(src: Path, modality: str) -> str:
    """``src``'s extension when the layout recognises it, else (an image) the one of its format."""
    if modality_of(src) == modality:
        return src.suffix.lower()
    if modality == "image":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(src) as im:
                fmt = im.format
        except (OSError, UnidentifiedImageError):
            fmt = None
        if fmt in _IMAGE_EXT and _IMAGE_EXT[fmt] in IMAGE_EXTENSIONS:
            return _IMAGE_EXT[fmt]
    raise ExportError(f"The stored upload {src.name} is not a file the folder layout reads as {modality}.")


def _checked_out(out: str | Path, force: bool) -> Path:
    out = refuse_inside_repo(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; give a folder to export into.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputNotEmptyError(f"{out} is not empty; choose an empty or new folder, or give --force to write "
                                  f"over an earlier export there (files it does not write in {', '.join(_FOLDERS)} "
                                  "are removed; other files are kept).")
    return out


def write_reviewed_layout(rows: list[dict[str, Any]], out: str | Path, *, files_root: str | Path, domain: str,
                          test_share: float = TEST_SHARE, seed: int = 0, force: bool = False) -> dict[str, Any]:
    """Write ``rows`` (:func:`decodemo.store.dataset.reviewed_items`) as the layout above under ``out``.

    ``files_root``: the folder the rows' ``file_path`` and ``mask_path`` are relative to (the
    store's data directory). ``out`` must be new or empty, or ``force`` given; it may not lie
    inside the repository. Returns the manifest (also written to ``out/manifest.json``).
    """
    files_root = Path(files_root)
    normal_shas = [r["sha256"] for r in rows if r["verdict"] == "normal"]
    test_good = held_out(normal_shas, test_share, seed)  # checks the share before anything is written
    out = _checked_out(out, force)
    entries, written = [], {folder: set() for folder in _FOLDERS}
    for r in rows:
        entry = {"item_id": r["item_id"], "sha256": r["sha256"], "name": r["name"], "modality": r["modality"],
                 "verdict": r["verdict"], "reviewers": sorted({v["reviewer"] for v in r["reviews"]}),
                 "review_ids": [v["review_id"] for v in r["reviews"]],
                 "reviews": [{k: v[k] for k in ("review_id", "reviewer", "version", "verdict")} for v in r["reviews"]],
                 "file": None, "mask": None, "mask_review_id": None, "left_out": r["left_out"]}
        entries.append(entry)
        if r["left_out"] is not None:
            continue
        src = files_root / r["file_path"]
        if not src.is_file():
            raise ExportError(f"The stored upload of item {r['item_id']} ({r['name']}) is missing: {src}.")
        if r["verdict"] == "normal":
            folder = "test/good" if r["sha256"] in test_good else "train/good"
        else:
            folder = f"test/{KIND}"
        name = f"{r['stem']}{_extension(src, r['modality'])}"
        _copy(src, out / folder / name)
        written[folder].add(name)
        entry["file"] = f"{folder}/{name}"
        if r["mask_path"]:
            mask_src = files_root / r["mask_path"]
            if not mask_src.is_file():
                raise ExportError(f"The stored mask of review {r['mask_review_id']} (item {r['item_id']}) is missing: "
                                  f"{mask_src}.")
            mask_name = f"{r['stem']}_mask.png"  # the layout's convention: ground_truth/<kind>/<stem>_mask.png
            _copy(mask_src, out / "ground_truth" / KIND / mask_name)
            written[f"ground_truth/{KIND}"].add(mask_name)
            entry["mask"], entry["mask_review_id"] = f"ground_truth/{KIND}/{mask_name}", r["mask_review_id"]
    for folder, keep in written.items():  # what an earlier export (--force) left
        d = out / folder
        if d.is_dir():
            remove_stale_files(d, "", keep)
        for empty in (d, d.parent):  # an empty kind folder is not a valid layout
            if empty.is_dir() and not any(empty.iterdir()):
                empty.rmdir()
    counts = {folder: len(names) for folder, names in written.items()}
    counts["left_out"] = sum(e["left_out"] is not None for e in entries)
    manifest = {
        "format": FORMAT, "domain": domain, "created_at": datetime.now(timezone.utc).isoformat(),
        "rule": {"verdict": "the majority of the reviewers' current verdicts, unsure left out; unsure and tied "
                            "items are left out",
                 "mask": "the most recent current anomalous review's mask",
                 "test_share": test_share, "seed": seed,
                 "held_out": "normal items ranked by sha256('<seed>:<item sha256>'); the first round(test_share x n) "
                             "(at most n - 1) go to test/good"},
        "counts": counts, "items": entries,
    }
    write_json_atomically(out / MANIFEST, manifest)
    return manifest


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(dest, lambda tmp: shutil.copyfile(src, tmp))
