"""The elpv builder, on the real wheel (skipped when elpv-dataset is not installed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import decodemo.data.elpv as elpv_module
from decodemo.data.elpv import DEFECT_FOLDERS, MANIFEST_NAME, build_elpv_layout, load_elpv
from decodemo.data.layout import scan_layout
from decodemo.errors import DatasetError


def test_missing_package_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "elpv_dataset", None)
    monkeypatch.setitem(sys.modules, "elpv_dataset.utils", None)
    with pytest.raises(DatasetError, match="pip install elpv-dataset"):
        load_elpv()


@pytest.fixture(scope="module")
def arrays():
    """The real dataset, read once for the module (reading it takes a few seconds)."""
    pytest.importorskip("elpv_dataset", reason="pip install elpv-dataset")
    return load_elpv()


@pytest.fixture(scope="module")
def loaded_once(arrays):
    """Builders in this module reuse ``arrays`` instead of reading the wheel again."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(elpv_module, "load_elpv", lambda: arrays)
        yield arrays


@pytest.fixture(scope="module")
def small(tmp_path_factory, loaded_once) -> Path:
    out = tmp_path_factory.mktemp("elpv") / "elpv"
    return build_elpv_layout(out, seed=0, n_train=12, max_test_per_kind=5)


def test_small_layout(small: Path):
    lay = scan_layout(small, require_test=True)
    assert lay.modality == "image"
    assert len(lay.train) == 12
    assert lay.kinds == sorted(DEFECT_FOLDERS.values())
    counts = {k: sum(s.kind == k for s in lay.test) for k in ["good", *lay.test_kinds()]}
    assert counts == {"good": 5, "defect_p033": 5, "defect_p067": 5, "defect_p100": 5}
    assert not lay.has_masks  # elpv has no masks
    names = [s.path.name for s in lay.train + lay.test]
    assert len(set(names)) == len(names)  # no cell in two places
    for s in lay.train + lay.test:
        idx, kind = s.path.stem.split("_")
        assert len(idx) == 5 and kind in ("mono", "poly")
    img = np.asarray(Image.open(lay.train[0].path))
    assert img.shape == (300, 300) and img.dtype == np.uint8


def test_labels_match_probabilities(small: Path, arrays):
    images, probs, types = arrays
    assert images.shape == (2624, 300, 300) and images.dtype == np.uint8
    lay = scan_layout(small)
    expected = {"good": 0.0, "defect_p033": 1 / 3, "defect_p067": 2 / 3, "defect_p100": 1.0}
    for s in lay.train + lay.test:
        idx, kind = s.path.stem.split("_")
        i = int(idx)
        assert probs[i] == pytest.approx(expected[s.kind])
        assert types[i] == kind
    s = lay.test[-1]
    np.testing.assert_array_equal(np.asarray(Image.open(s.path)), images[int(s.path.stem.split("_")[0])])


def test_idempotent_and_rebuilds_on_new_params(small: Path):
    manifest = small / MANIFEST_NAME
    before = manifest.stat().st_mtime_ns
    assert build_elpv_layout(small, seed=0, n_train=12, max_test_per_kind=5) == small
    assert manifest.stat().st_mtime_ns == before  # complete: nothing rewritten
    data = json.loads(manifest.read_text())
    assert data["counts"]["train/good"] == 12
    assert data["source_counts"]["normal"] == 1508


def test_test_split_does_not_depend_on_n_train(tmp_path: Path, loaded_once):
    a = build_elpv_layout(tmp_path / "a", seed=3, n_train=2, max_test_per_kind=2)
    b = build_elpv_layout(tmp_path / "b", seed=3, n_train=4, max_test_per_kind=2)
    names = lambda root, f: sorted(p.name for p in (root / f).iterdir())  # noqa: E731
    assert names(a, "test/good") == names(b, "test/good")
    assert set(names(a, "train/good")) <= set(names(b, "train/good"))
    # rebuilding a with other params leaves no stale files
    build_elpv_layout(a, seed=3, n_train=1, max_test_per_kind=1)
    assert len(names(a, "train/good")) == 1 and len(names(a, "test/defect_p100")) == 1


def test_refuses_repository():
    from decodemo.data.layout import repo_root

    with pytest.raises(DatasetError):
        build_elpv_layout(repo_root() / "elpv_data", n_train=1, max_test_per_kind=1)
