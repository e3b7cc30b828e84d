"""The MVTec folder layout scanner: samples, labels, masks, extra, sorting and every refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decodemo.data.layout import (
    AUDIO_EXTENSIONS,
    IMAGE_EXTENSIONS,
    Layout,
    Sample,
    load_mask,
    refuse_inside_repo,
    repo_root,
    scan_layout,
)
from decodemo.errors import DatasetError, DecodemoError


def _png(path: Path, value: int = 128, size=(8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)
    return path


def _wav(path: Path) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(1600, np.float32) + 0.1, 16000, subtype="PCM_16")
    return path


def _mask(path: Path, box, size=(8, 8)) -> Path:
    m = np.zeros(size, np.uint8)
    r0, r1, c0, c1 = box
    m[r0:r1, c0:c1] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(m).save(path)
    return path


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    for name in ("10.png", "2.png", "1.png"):
        _png(root / "train/good" / name)
    _png(root / "test/good/000.png")
    _png(root / "test/scratch/000.png")
    _png(root / "test/scratch/001.png")
    _png(root / "test/crack/000.png")
    _mask(root / "ground_truth/scratch/000_mask.png", (0, 2, 0, 4))
    _mask(root / "ground_truth/crack/000.png", (4, 8, 4, 8))  # the <stem>.png form
    _png(root / "extra/lights_off/a.png")
    # ignored: hidden files, unknown extensions, hidden folders
    (root / "train/good/.DS_Store").write_bytes(b"x")
    (root / "train/good/notes.txt").write_text("hello")
    (root / "test/scratch/events.json").write_text("{}")
    _png(root / "test/.cache/000.png")
    return root


def test_scan_image_layout(image_root: Path):
    lay = scan_layout(image_root)
    assert isinstance(lay, Layout)
    assert lay.root == image_root.resolve()
    assert lay.modality == "image"
    assert [s.path.name for s in lay.train] == ["1.png", "2.png", "10.png"]  # natural order
    assert all(s.split == "train" and s.kind == "good" and s.label == 0 and s.mask_path is None for s in lay.train)
    assert [(s.kind, s.path.name) for s in lay.test] == [
        ("good", "000.png"), ("crack", "000.png"), ("scratch", "000.png"), ("scratch", "001.png")]
    assert [s.label for s in lay.test] == [0, 1, 1, 1]
    assert lay.kinds == ["crack", "scratch"]
    assert lay.test_kinds() == ["crack", "scratch"]
    assert lay.has_masks
    by = {(s.kind, s.path.name): s for s in lay.test}
    assert by[("scratch", "000.png")].mask_path.name == "000_mask.png"
    assert by[("crack", "000.png")].mask_path.name == "000.png"
    assert by[("scratch", "001.png")].mask_path is None  # no mask file for this one
    assert by[("good", "000.png")].mask_path is None
    assert [(s.split, s.kind, s.label) for s in lay.extra] == [("extra", "lights_off", 1)]
    assert lay.extra_kinds == ["lights_off"]
    assert lay.samples("test", "scratch") == [by[("scratch", "000.png")], by[("scratch", "001.png")]]
    # deterministic
    assert scan_layout(image_root) == lay


def test_sample_is_frozen(image_root: Path):
    s = scan_layout(image_root).train[0]
    assert isinstance(s, Sample)
    with pytest.raises(AttributeError):
        s.label = 1  # type: ignore[misc]


def test_load_mask(image_root: Path):
    lay = scan_layout(image_root)
    by = {(s.kind, s.path.name): s for s in lay.test}
    m = load_mask(by[("scratch", "000.png")], (8, 8))
    assert m.dtype == bool and m.shape == (8, 8)
    assert m[:2, :4].all() and m.sum() == 8
    big = load_mask(by[("scratch", "000.png")], (16, 32))  # nearest-neighbour resize
    assert big.shape == (16, 32) and big[:4, :16].all() and big.sum() == 4 * 16
    assert load_mask(by[("scratch", "000.png")], None).shape == (8, 8)
    z = load_mask(by[("good", "000.png")], (5, 7))
    assert z.shape == (5, 7) and z.dtype == bool and not z.any()
    assert not load_mask(by[("scratch", "001.png")], (8, 8)).any()


def test_load_mask_zero_one_values(tmp_path: Path):
    p = tmp_path / "m.png"
    m = np.zeros((4, 4), np.uint8)
    m[1, 1] = 1
    Image.fromarray(m).save(p)
    out = load_mask(Sample(tmp_path / "x.png", "test", "k", 1, p), (4, 4))
    assert out.sum() == 1 and out[1, 1]


def test_load_mask_unreadable(tmp_path: Path):
    p = tmp_path / "m_mask.png"
    p.write_bytes(b"not a png")
    with pytest.raises(DatasetError):
        load_mask(Sample(tmp_path / "m.png", "test", "k", 1, p), (4, 4))


def test_scan_audio_layout(tmp_path: Path):
    root = tmp_path / "fan"
    _wav(root / "train/good/a_0.wav")
    _wav(root / "train/good/a_1.wav")
    _wav(root / "test/good/b_0.wav")
    _wav(root / "test/tapping/t_0.wav")
    _wav(root / "extra/off/o_0.wav")
    (root / "split.json").write_text("{}")
    lay = scan_layout(root, require_test=True)
    assert lay.modality == "audio"
    assert len(lay.train) == 2 and lay.kinds == ["tapping"]
    assert not lay.has_masks
    assert lay.extra[0].kind == "off" and lay.extra[0].split == "extra"


def test_test_only_layout(tmp_path: Path):
    _png(tmp_path / "test/good/0.png")
    _png(tmp_path / "test/hole/0.png")
    lay = scan_layout(tmp_path, require_train=False, require_test=True)
    assert lay.train == [] and lay.kinds == ["hole"] and not lay.has_masks


def test_extensions_are_recognised_case_insensitively(tmp_path: Path):
    _png(tmp_path / "train/good/a.png").rename(tmp_path / "train/good/A.PNG")
    assert [s.path.name for s in scan_layout(tmp_path).train] == ["A.PNG"]
    assert ".png" in IMAGE_EXTENSIONS and ".wav" in AUDIO_EXTENSIONS


# ----------------------------------------------------------------------------- refusals


def _raises(match: str, root, **kw):
    with pytest.raises(DatasetError, match=match) as info:
        scan_layout(root, **kw)
    assert isinstance(info.value, DecodemoError)
    assert "train/good" in str(info.value)  # every message says what layout is expected
    return info.value


def test_missing_root(tmp_path: Path):
    _raises("does not exist", tmp_path / "nope")


def test_root_is_a_file(tmp_path: Path):
    f = tmp_path / "f.png"
    f.write_bytes(b"x")
    _raises("not a folder", f)


def test_neither_train_nor_test(tmp_path: Path):
    _png(tmp_path / "images/a.png")
    _raises("neither train/ nor test/", tmp_path)


def test_missing_train_good(tmp_path: Path):
    _png(tmp_path / "test/good/a.png")
    _raises("Missing folder train/good", tmp_path)


def test_empty_train_good(tmp_path: Path):
    (tmp_path / "train/good").mkdir(parents=True)
    (tmp_path / "train/good/readme.txt").write_text("no samples")
    _raises("holds no sample files", tmp_path)


def test_empty_test_kind(tmp_path: Path):
    _png(tmp_path / "train/good/a.png")
    (tmp_path / "test/scratch").mkdir(parents=True)
    err = _raises("holds no sample files", tmp_path)
    assert "test/scratch" in str(err)


def test_empty_extra_kind(tmp_path: Path):
    _png(tmp_path / "train/good/a.png")
    (tmp_path / "extra/off").mkdir(parents=True)
    _raises("extra/off", tmp_path)


def test_require_test_missing_and_empty(tmp_path: Path):
    _png(tmp_path / "train/good/a.png")
    _raises("test/ .*is missing", tmp_path, require_test=True)
    (tmp_path / "test").mkdir()
    _raises("holds no kind folders", tmp_path, require_test=True)


def test_loose_files_in_split_folder(tmp_path: Path):
    _png(tmp_path / "train/good/a.png")
    _png(tmp_path / "test/b.png")
    _raises("directly in test/", tmp_path)


def test_train_holds_only_good(tmp_path: Path):
    _png(tmp_path / "train/good/a.png")
    _png(tmp_path / "train/scratch/a.png")
    _raises("other than good", tmp_path)


def test_mixed_modality_across_folders(tmp_path: Path):
    _png(tmp_path / "train/good/a.png")
    _wav(tmp_path / "test/good/a.wav")
    _raises("mixes images and audio", tmp_path)


def test_mixed_modality_in_one_folder(tmp_path: Path):
    _png(tmp_path / "train/good/a.png")
    _wav(tmp_path / "train/good/b.wav")
    _raises("mixes images and audio", tmp_path)


def test_no_samples_at_all(tmp_path: Path):
    (tmp_path / "test").mkdir()
    _raises("No samples", tmp_path, require_train=False)


def test_builders_refuse_the_repository(tmp_path: Path):
    with pytest.raises(DatasetError, match="inside"):
        refuse_inside_repo(repo_root() / "data" / "x")
    assert refuse_inside_repo(tmp_path / "x") == (tmp_path / "x").resolve()


def test_jpeg_non_square_sets_without_masks_load_and_evaluate(tmp_path):
    """A ball-screw-like set: JPEG, non-square, masks for some kinds only; a screw-like set: no masks."""
    import torch

    from decodemo.inference import image_tensor

    rng = np.random.default_rng(0)

    def jpg(path: Path, h=46, w=113) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, quality=90)
        return path

    for i in range(3):
        jpg(tmp_path / "train" / "good" / f"{i:03d}.jpg")
        jpg(tmp_path / "test" / "good" / f"{i:03d}.jpg")
        jpg(tmp_path / "test" / "pitting" / f"p{i}.jpg")
        jpg(tmp_path / "test" / "scratch" / f"s{i}.JPG")
    _mask(tmp_path / "ground_truth" / "pitting" / "p0_mask.png", (10, 20, 30, 60), size=(46, 113))
    layout = scan_layout(tmp_path, require_test=True)
    assert layout.modality == "image" and layout.kinds == ["pitting", "scratch"] and layout.has_masks
    masked = [s for s in layout.test if s.mask_path is not None]
    assert [s.name for s in masked] == ["p0.jpg"]
    # a mask is read at the model's input size; a defect without a mask file has an empty one
    assert load_mask(masked[0], (64, 64)).any()
    assert not load_mask(next(s for s in layout.test if s.name == "p1.jpg"), (64, 64)).any()
    x = image_tensor(layout.test[0].path, 64)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    # without ground_truth/: image-level metrics only
    import shutil

    shutil.rmtree(tmp_path / "ground_truth")
    assert not scan_layout(tmp_path).has_masks
