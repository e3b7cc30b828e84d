"""The elpv solar-cell dataset (``pip install elpv-dataset``) as an MVTec-style folder.

2,624 electroluminescence images of solar cells (300x300 grey), each with a defect
probability 0, 1/3, 2/3 or 1 and a cell type (``mono``/``poly``); no pixel masks.
Licence CC BY-NC-SA 4.0 (Buerhop-Lutz et al. 2018; Deitsch et al. 2019).

:func:`build_elpv_layout` writes::

    out/train/good/<index>_<type>.png          normal cells (probability 0) to learn from
    out/test/good/<index>_<type>.png           held-out normal cells (test_normal_fraction)
    out/test/defect_p033/...                   probability 1/3
    out/test/defect_p067/...                   probability 2/3
    out/test/defect_p100/...                   probability 1
    out/manifest.json                          written last; marks the build complete

Command line: ``python -m decodemo.data.elpv --out DIR [--seed N]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from decodemo.data.layout import refuse_inside_repo
from decodemo.data.writing import remove_stale_files, write_atomically, write_json_atomically
from decodemo.errors import DatasetError

__all__ = ["load_elpv", "build_elpv_layout", "DEFECT_FOLDERS", "MANIFEST_NAME", "main"]

MANIFEST_NAME = "manifest.json"
#: probability (in thirds) -> test folder
DEFECT_FOLDERS = {1: "defect_p033", 2: "defect_p067", 3: "defect_p100"}
_FORMAT_VERSION = 1


def load_elpv() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All elpv cells: ``(images uint8 (N,300,300), probs float (N,), types str (N,))``."""
    try:
        from elpv_dataset.utils import load_dataset
    except ImportError as exc:
        raise DatasetError(
            "The elpv dataset is not installed; install it with `pip install elpv-dataset` "
            "(the images ship inside the wheel)."
        ) from exc
    images, probs, types = load_dataset()
    images = np.asarray(images)
    if images.ndim == 4:  # defensive: an RGB copy of a grey image
        images = images[..., 0]
    return images.astype(np.uint8, copy=False), np.asarray(probs, dtype=float), np.asarray(types).astype(str)


def _thirds(probs: np.ndarray) -> np.ndarray:
    t = np.rint(np.asarray(probs, dtype=float) * 3).astype(int)
    bad = (t < 0) | (t > 3) | (np.abs(probs * 3 - t) > 1e-3)
    if bad.any():
        raise DatasetError(f"Unexpected elpv defect probabilities {np.unique(probs[bad])}; expected 0, 1/3, 2/3, 1.")
    return t


def _plan(probs, types, *, seed, n_train, test_normal_fraction, max_test_per_kind) -> dict[str, list[tuple[int, str]]]:
    """folder -> [(index, file name)], deterministic in the arguments."""
    thirds = _thirds(probs)
    rng = np.random.default_rng(seed)
    normal = np.flatnonzero(thirds == 0)
    perm = rng.permutation(normal)
    n_test = int(round(test_normal_fraction * len(normal)))
    test_good, train_good = perm[:n_test], perm[n_test:]
    if n_train is not None:
        train_good = train_good[: int(n_train)]
    if max_test_per_kind is not None:
        test_good = test_good[: int(max_test_per_kind)]
    plan: dict[str, np.ndarray] = {"train/good": train_good, "test/good": test_good}
    for t, folder in DEFECT_FOLDERS.items():
        idx = np.flatnonzero(thirds == t)
        if max_test_per_kind is not None and len(idx) > max_test_per_kind:
            idx = rng.permutation(idx)[: int(max_test_per_kind)]
        plan[f"test/{folder}"] = idx
    return {k: [(int(i), f"{int(i):05d}_{types[i]}.png") for i in np.sort(v)] for k, v in plan.items()}


def _params(seed, n_train, test_normal_fraction, max_test_per_kind) -> dict:
    return {
        "format": _FORMAT_VERSION,
        "seed": int(seed),
        "n_train": None if n_train is None else int(n_train),
        "test_normal_fraction": float(test_normal_fraction),
        "max_test_per_kind": None if max_test_per_kind is None else int(max_test_per_kind),
    }


def _complete(out: Path, params: dict) -> dict | None:
    """The manifest when ``out`` already holds a finished build with these parameters."""
    path = out / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("params") != params:
        return None
    for folder, names in manifest.get("files", {}).items():
        if not all((out / folder / n).is_file() for n in names):
            return None
    return manifest


def build_elpv_layout(
    out_dir: str | Path,
    *,
    seed: int = 0,
    n_train: int | None = None,
    test_normal_fraction: float = 0.25,
    max_test_per_kind: int | None = None,
) -> Path:
    """Write the elpv cells as PNGs in the MVTec layout under ``out_dir``; return it.

    Normal cells (probability 0) are split by a permutation seeded with ``seed``:
    ``test_normal_fraction`` of them go to ``test/good``, the rest to ``train/good``
    (then cut to the first ``n_train`` when given; the test split does not depend on
    ``n_train``). Defective cells go to ``test/defect_p033|p067|p100``; with
    ``max_test_per_kind`` each test folder (``good`` included) keeps at most that many
    (a seeded choice). File names are ``<index:05d>_<type>.png`` (index into the dataset).

    Idempotent: when ``out_dir/manifest.json`` records the same parameters and every
    listed file exists, nothing is loaded or written. Otherwise PNGs in the layout's
    folders that the new plan does not list are removed, so a changed build leaves no
    stale files; the manifest is written last.
    """
    if not 0.0 < float(test_normal_fraction) < 1.0:
        raise ValueError(f"test_normal_fraction must be in (0, 1), got {test_normal_fraction}")
    if n_train is not None and int(n_train) < 1:
        raise ValueError(f"n_train must be >= 1 or None, got {n_train}")
    if max_test_per_kind is not None and int(max_test_per_kind) < 1:
        raise ValueError(f"max_test_per_kind must be >= 1 or None, got {max_test_per_kind}")
    out = refuse_inside_repo(out_dir)
    params = _params(seed, n_train, test_normal_fraction, max_test_per_kind)
    if _complete(out, params) is not None:
        return out

    from PIL import Image

    images, probs, types = load_elpv()
    plan = _plan(
        probs, types, seed=seed, n_train=n_train, test_normal_fraction=test_normal_fraction,
        max_test_per_kind=max_test_per_kind,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    for folder, items in plan.items():
        d = out / folder
        d.mkdir(parents=True, exist_ok=True)
        remove_stale_files(d, ".png", {name for _, name in items})
        for i, name in items:
            target = d / name
            if target.is_file():
                continue  # same index -> same pixels; resume a partial build
            pixels = Image.fromarray(np.ascontiguousarray(images[i]))
            write_atomically(target, lambda tmp: pixels.save(tmp, format="PNG"))

    counts = {folder: len(items) for folder, items in plan.items()}
    manifest = {
        "dataset": "elpv (pip install elpv-dataset)",
        "licence": "CC BY-NC-SA 4.0",
        "params": params,
        "counts": counts,
        "source_counts": {
            "normal": int((_thirds(probs) == 0).sum()),
            **{DEFECT_FOLDERS[t]: int((_thirds(probs) == t).sum()) for t in DEFECT_FOLDERS},
        },
        "files": {folder: [name for _, name in items] for folder, items in plan.items()},
    }
    write_json_atomically(out / MANIFEST_NAME, manifest)
    return out


def _summary(out: Path) -> str:
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    rows = [("folder", "images")] + [(k, str(v)) for k, v in manifest["counts"].items()]
    rows.append(("total", str(sum(manifest["counts"].values()))))
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{w}}  {b:>6}" for a, b in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m decodemo.data.elpv", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output folder (outside the repository)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=None, help="keep at most this many training cells")
    ap.add_argument("--test-normal-fraction", type=float, default=0.25)
    ap.add_argument("--max-test-per-kind", type=int, default=None)
    args = ap.parse_args(argv)
    try:
        out = build_elpv_layout(
            args.out, seed=args.seed, n_train=args.n_train,
            test_normal_fraction=args.test_normal_fraction, max_test_per_kind=args.max_test_per_kind,
        )
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"elpv layout in {out}")
    print(_summary(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
