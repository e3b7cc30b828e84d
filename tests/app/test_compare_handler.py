"""The compare handler end to end without a browser: the upload is read once per comparison,
each map is written once (by the review store) and the result names those files."""

from __future__ import annotations

import builtins
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decodemo.app import compare as compare_module
from decodemo.app.compare import CompareHandlers
from decodemo.data.synthetic import make_texture
from decodemo.service import METHOD_ORDER, Service
from decodemo.store import ReviewStore


@pytest.fixture()
def upload(tmp_path):
    img, _ = make_texture(np.random.default_rng([91, 1]), size=128, defect="crack")
    path = tmp_path / "upload.png"
    Image.fromarray(img).save(path)
    return path


def test_one_read_of_the_upload_and_one_write_of_each_map(tmp_path, upload, monkeypatch):
    service = Service()
    store = ReviewStore(f"sqlite:///{tmp_path / 'review.db'}", data_dir=tmp_path / "store")
    service.attach_store(store)
    monkeypatch.setattr(compare_module, "_results_dir", lambda: tmp_path / "results")
    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, Path)) and Path(file).resolve() == upload.resolve():
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)  # pathlib opens through io.open
    h = CompareHandlers(service, store, page=None, run_models=service.compare)
    res, files = h.compare(str(upload), None, "texture", progress=lambda *a, **k: None)
    monkeypatch.setattr(builtins, "open", real_open)
    monkeypatch.setattr(io, "open", real_open)

    assert len(opened) == 1, opened  # read once: decoded, hashed and stored from the same bytes
    assert res["item_id"] is not None
    maps = sorted(p for p in tmp_path.rglob("*.npy"))
    assert len(maps) == len(METHOD_ORDER)  # each map once, in the store; none in the results folder
    assert all(tmp_path / "store" in p.parents for p in maps)
    by_name = {Path(f).name: Path(f) for f in files}
    assert {p for p in by_name.values() if p.suffix == ".npy"} == set(maps)
    for m in res["methods"]:  # the result names the files of the second output, never a server path
        assert m["map_file"] == f"{m['method']}_map.npy" and "/" not in m["map_file"]
        arr = np.load(by_name[m["map_file"]], allow_pickle=False)
        assert arr.shape == (128, 128)
    stored = list((tmp_path / "store").rglob("upload*")) + list((tmp_path / "store" / "files" / "inputs").rglob("*.png"))
    assert stored and stored[0].read_bytes() == upload.read_bytes()
    assert {Path(f).name for f in files} >= {f"{m}_map.npy" for m in METHOD_ORDER}


def test_a_threshold_is_shown_short_and_snaps_back_to_its_exact_value():
    from types import SimpleNamespace

    from decodemo.app.compare import _shown_threshold, _slider_range, _snap

    o = SimpleNamespace(score=0.389712345, threshold=0.4812560081, default_threshold=0.4812560081,
                        reference_scores=[0.30123, 0.35123456, 0.4812560081])
    lo, hi, step = _slider_range(o)
    shown = _shown_threshold(o.threshold, step)
    assert shown == 0.4813  # four significant digits, not 0.4812560081
    assert _snap(shown, o) == o.threshold  # the shown value decides exactly as the threshold does
    assert lo < 0.30123 and hi > o.threshold and step > 0
    assert _shown_threshold(17.782269, 0.01) == 17.78
    # a step finer than four digits can tell apart: more digits, still within a quarter step
    assert abs(_shown_threshold(1234.5678, 0.004) - 1234.5678) <= 0.001
