"""Examples for the app, generated on the machine that runs it (nothing third-party is committed).

- synthetic textures, one normal and two with drawn defects (scratch, crack), at 256 px;
- synthetic machine hum, 5 s, one normal and two with anomalies (clicks, a tone shift);
- real solar cells (one functional, one defective) when the ``elpv-dataset`` package is
  installed; its images are read from the package, at run time, into the examples folder.

The seeds differ from those of the shipped synthetic models' training data, so the examples
are inputs those models have not seen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["EXAMPLE_SEED", "build_examples"]

EXAMPLE_SEED = 2026


def _elpv_examples(folder: Path) -> list[tuple[Path, str]]:
    try:
        from elpv_dataset.utils import load_dataset
    except ImportError:
        return []
    from PIL import Image

    out = []
    try:
        images, proba, _types = load_dataset()
    except Exception:  # a broken or partial package install: examples are optional
        return []
    from decodemo.data.elpv import _plan

    # cells of the default split's test part, which the shipped elpv models did not train on
    plan = _plan(np.asarray(proba, dtype=float), list(_types), seed=0, n_train=None, test_normal_fraction=0.25,
                 max_test_per_kind=None)
    picks = {"cell_functional": plan["test/good"][3][0], "cell_defective": plan["test/defect_p100"][3][0]}
    for stem, i in picks.items():
        p = folder / f"{stem}.png"
        if not p.is_file():
            Image.fromarray(np.asarray(images[i])).save(p)
        out.append((p, "elpv"))
    return out


def build_examples(folder: str | Path | None = None) -> list[tuple[Path, str]]:
    """Write the examples (once) -> ``[(file, domain), ...]`` in display order."""
    import soundfile as sf
    from PIL import Image

    from decodemo.data.synthetic import SAMPLE_RATE, make_hum, make_texture

    from decodemo.settings import data_dir

    folder = Path(folder) if folder is not None else data_dir() / "examples"
    folder.mkdir(parents=True, exist_ok=True)
    out: list[tuple[Path, str]] = []
    for i, defect in enumerate((None, "scratch", "crack")):
        p = folder / f"texture_{defect or 'normal'}.png"
        if not p.is_file():
            img, _ = make_texture(np.random.default_rng([EXAMPLE_SEED, 0, i]), size=256, defect=defect)
            Image.fromarray(img).save(p)
        out.append((p, "texture"))
    out += _elpv_examples(folder)
    for i, anomaly in enumerate((None, "click", "tone_shift")):
        p = folder / f"hum_{anomaly or 'normal'}.wav"
        if not p.is_file():
            y, _ = make_hum(np.random.default_rng([EXAMPLE_SEED, 1, i]), seconds=5.0, sample_rate=SAMPLE_RATE,
                            anomaly=anomaly)
            sf.write(p, y, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        out.append((p, "hum"))
    return out
