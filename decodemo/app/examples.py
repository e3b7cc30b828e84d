"""Examples for the app, generated on the machine that runs it (nothing third-party is committed).

What is offered, in which order, with which seeds, is the example manifest
``assets/examples.json``; this module writes each entry once into the examples folder:

- ``texture``: a synthetic texture (normal, or with a drawn scratch or crack);
- ``hum``: synthetic machine hum (normal, or with clicks or a tone shift);
- ``elpv``: a real solar cell read at run time from the ``elpv-dataset`` package when it is
  installed (skipped otherwise), from the default split's test part.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["EXAMPLE_SEED", "MANIFEST", "build_examples"]

EXAMPLE_SEED = 2026
MANIFEST = Path(__file__).resolve().parents[2] / "assets" / "examples.json"


def _elpv_cells() -> dict[str, Any] | None:
    """The elpv images and the default split's plan, or None without the package."""
    try:
        from elpv_dataset.utils import load_dataset
    except ImportError:
        return None
    try:
        images, proba, types = load_dataset()
    except Exception:  # a broken or partial package install: examples are optional
        return None
    from decodemo.data.elpv import _plan

    plan = _plan(np.asarray(proba, dtype=float), list(types), seed=0, n_train=None, test_normal_fraction=0.25,
                 max_test_per_kind=None)
    return {"images": images, "plan": plan}


def _write(spec: dict[str, Any], path: Path, elpv) -> bool:
    """Write one manifest entry to ``path``; False when it cannot be made here (no elpv package)."""
    from PIL import Image

    if spec["make"] == "texture":
        from decodemo.data.synthetic import make_texture

        img, _ = make_texture(np.random.default_rng(spec["seed"]), size=spec["size"], defect=spec["defect"])
        Image.fromarray(img).save(path)
    elif spec["make"] == "hum":
        import soundfile as sf

        from decodemo.data.synthetic import SAMPLE_RATE, make_hum

        y, _ = make_hum(np.random.default_rng(spec["seed"]), seconds=spec["seconds"], sample_rate=SAMPLE_RATE,
                        anomaly=spec["anomaly"])
        sf.write(path, y, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    elif spec["make"] == "elpv":
        if elpv is None:
            return False
        i = elpv["plan"][spec["split"]][spec["index"]][0]
        Image.fromarray(np.asarray(elpv["images"][i])).save(path)
    else:
        raise ValueError(f"{MANIFEST}: unknown example kind {spec['make']!r}")
    return True


def build_examples(folder: str | Path | None = None) -> list[tuple[Path, str]]:
    """Write the manifest's examples (once) -> ``[(file, domain), ...]`` in display order."""
    from decodemo.settings import data_dir

    folder = Path(folder) if folder is not None else data_dir() / "examples"
    folder.mkdir(parents=True, exist_ok=True)
    specs = json.loads(MANIFEST.read_text())["examples"]
    elpv: Any = None
    out: list[tuple[Path, str]] = []
    for spec in specs:
        p = folder / spec["file"]
        if not p.is_file():
            if spec["make"] == "elpv" and elpv is None:
                elpv = _elpv_cells() or False
            if not _write(spec, p, elpv or None):
                continue
        out.append((p, spec["domain"]))
    return out
