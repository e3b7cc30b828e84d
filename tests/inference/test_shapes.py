"""Images of any shape: padded or tiled square inputs, maps stitched back at the image's shape,
the per-domain choice from the training images, and the service's maps at the input's exact size."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from decodemo.data.layout import scan_layout
from decodemo.data.synthetic import make_texture
from decodemo.inference import ImageInput, detect_prepared, image_input, image_tensor, prepare_path
from decodemo.inference.shapes import IMAGE_FITS, TILE_ASPECT, fit_geometry, stitch, to_inputs
from decodemo.io.images import image_to_array
from decodemo.training.prepare import CROP_ASPECTS, choose_image_fit, load_inputs, shape_crops


def _noise(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("mode", IMAGE_FITS)
def test_a_square_image_is_one_input_resized_under_every_mode(tmp_path, mode):
    img = _noise(90, 90)
    img.save(tmp_path / "sq.png")
    x = image_input(img, 64, mode)
    assert x.geometry.n_inputs == 1 and x.geometry.canvas == (64, 64)
    assert torch.equal(x.tiles, image_tensor(tmp_path / "sq.png", 64)[None])


def test_pad_keeps_the_aspect_and_mirrors_the_short_side():
    img = _noise(200, 256)  # H x W
    g = fit_geometry(200, 256, 128, "pad")
    assert g.mode == "pad" and g.canvas == (100, 128) and g.pad == (14, 14, 0, 0)
    x = to_inputs(img, g)[0].permute(1, 2, 0).numpy()
    content = image_to_array(img, (100, 128))
    np.testing.assert_array_equal(x[14:114], content)
    np.testing.assert_array_equal(x[13], content[1])  # mirrored, not a constant border
    np.testing.assert_array_equal(x[114], content[-2])
    # the map of the padded input, cut back: exactly the content's region
    canvas = stitch(torch.from_numpy(x[None, ..., 0].copy()), g)
    np.testing.assert_array_equal(canvas, content[..., 0])


@pytest.mark.parametrize("hw", [(500, 1250), (1250, 500), (100, 1000)])
def test_tiles_cover_a_long_image_at_most_half_a_tile_apart_and_stitch_back(hw):
    h, w = hw
    g = fit_geometry(h, w, 64, "auto")
    assert max(h, w) / min(h, w) > TILE_ASPECT and g.mode == "tile"
    long_axis = 1 if w > h else 0
    assert g.canvas[1 - long_axis] == 64 and abs(g.canvas[long_axis] - round(max(h, w) * 64 / min(h, w))) <= 1
    starts = [b[long_axis] for b in g.boxes]
    assert starts[0] == 0 and starts[-1] == g.canvas[long_axis] - 64
    assert all(0 < b - a <= 32 for a, b in zip(starts, starts[1:]))
    img = _noise(h, w, 1)
    tiles = to_inputs(img, g)
    assert tiles.shape == (g.n_inputs, 3, 64, 64)
    canvas = image_to_array(img, g.canvas)[..., 0]
    np.testing.assert_allclose(stitch(tiles[:, 0], g), canvas, atol=1e-6)
    # maps at another resolution are brought to the tile size first; channels are kept
    small = torch.nn.functional.interpolate(tiles, size=(32, 32), mode="bilinear", align_corners=False)
    assert stitch(small, g).shape == (3, *g.canvas)


def test_geometry_refuses_unknown_modes_and_empty_sizes():
    with pytest.raises(ValueError, match="image_fit"):
        fit_geometry(10, 20, 8, "stretch")
    with pytest.raises(ValueError, match="positive"):
        fit_geometry(0, 20, 8, "pad")


def _layout(root, shape, n=4):
    (root / "train" / "good").mkdir(parents=True)
    for i in range(n):
        _noise(*shape, seed=i).save(root / "train" / "good" / f"{i:03d}.png")
    return scan_layout(root, require_train=True)


@pytest.mark.parametrize("shape, mode", [((64, 64), "squash"), ((60, 80), "pad"), ((46, 113), "tile")])
def test_the_fit_is_chosen_from_the_training_images_shapes_and_used_in_training(tmp_path, shape, mode):
    layout = _layout(tmp_path, shape)
    assert choose_image_fit([layout]) == mode
    from types import SimpleNamespace

    cfg = SimpleNamespace(modality="image", image_size=32, mel=None, image_fit=mode)
    files = load_inputs(layout, range(len(layout.train)), cfg)
    n = fit_geometry(*shape, 32, mode).n_inputs
    assert all(f.shape == (n, 3, 32, 32) for f in files) and (n > 1) == (mode == "tile")


def test_a_square_set_trained_with_shape_crops_pads_other_shapes(tmp_path):
    layout = _layout(tmp_path, (64, 64))
    assert choose_image_fit([layout], shape_crops=1) == "auto"
    assert choose_image_fit([layout], shape_crops=0) == "squash"


def test_shape_crops_keep_one_side_whole_and_cut_the_other_to_a_drawn_aspect():
    crops = shape_crops(_noise(90, 120), 40, np.random.default_rng(0))
    sizes = {c.size for c in crops}
    assert len(sizes) > 10  # random aspects and orientations
    for w, h in sizes:
        assert w == 120 or h == 90
        assert CROP_ASPECTS[0] - 0.02 <= max(w, h) / min(w, h) <= max(CROP_ASPECTS[1], 120 / 90) + 0.02
    assert any(w < h for w, h in sizes) and any(w > h for w, h in sizes)


def test_fit_files_get_their_seeded_crops_padded_and_held_out_files_none(tmp_path):
    from types import SimpleNamespace

    layout = _layout(tmp_path, (64, 64))
    cfg = SimpleNamespace(modality="image", image_size=32, mel=None, image_fit="auto", shape_crops=2)
    dense = load_inputs(layout, [0, 1], cfg, dense=True)
    assert all(f.shape == (3, 3, 32, 32) for f in dense)
    # the first input is the image itself, the crops are mirror-padded squares at the image's scale
    assert torch.equal(dense[0][0], load_inputs(layout, [0], cfg)[0][0])
    assert not torch.equal(dense[0][1], dense[0][0]) and not torch.equal(dense[0][1], dense[1][1])
    assert torch.equal(load_inputs(layout, [0, 1], cfg, dense=True)[1], dense[1])  # seeded
    assert all(f.shape == (1, 3, 32, 32) for f in load_inputs(layout, [0, 1], cfg, dense=True, crops=False))
    cfg.shape_crops = 0
    assert all(f.shape == (1, 3, 32, 32) for f in load_inputs(layout, [0, 1], cfg, dense=True))


def test_a_model_folder_written_before_shape_crops_trained_without_them():
    from decodemo.methods.recon.config import ReconConfig

    data = ReconConfig().to_dict()
    assert data["shape_crops"] == 1
    del data["shape_crops"]
    assert ReconConfig.from_dict(data).shape_crops == 0


def test_a_model_folder_written_before_image_fit_keeps_squashing():
    from decodemo.methods.baseline.config import BaselineConfig

    data = BaselineConfig().to_dict()
    assert data["image_fit"] == "auto"
    del data["image_fit"]
    assert BaselineConfig.from_dict(data).image_fit == "squash"


class _Echo:
    """A detector whose map is the input's red channel and whose score is the map's maximum."""

    def __init__(self, image_fit):
        from types import SimpleNamespace

        self.config = SimpleNamespace(modality="image", image_size=64, image_fit=image_fit, mel=None)

    def detect(self, images, **_):
        from decodemo.methods.base import DetectionResult

        maps = images[:, 0]
        return DetectionResult(scores=maps.flatten(1).amax(1), maps=maps, nfe=1, variants={"max": maps.flatten(1).amax(1)},
                               reconstruction=images)


def test_detections_of_a_tiled_image_are_one_detection_on_its_canvas(tmp_path):
    arr = np.zeros((100, 400, 3), dtype=np.uint8)
    arr[40:60, 330:350] = 255  # a bright spot near the right end
    Image.fromarray(arr).save(tmp_path / "strip.png")
    det = _Echo("auto")
    x = prepare_path(tmp_path / "strip.png", det.config)
    assert isinstance(x, ImageInput) and x.geometry.mode == "tile" and x.geometry.n_inputs > 2
    d = detect_prepared(det, x)
    assert d.map.shape == x.geometry.canvas == (64, 256) and d.reconstruction.shape == (3, 64, 256)
    assert d.score == pytest.approx(1.0) and d.nfe == x.geometry.n_inputs and d.geometry["mode"] == "tile"
    ys, xs = np.unravel_index(np.argmax(d.map), d.map.shape)
    assert 64 * 40 / 100 - 2 <= ys <= 64 * 60 / 100 + 2 and 256 * 330 / 400 - 2 <= xs <= 256 * 350 / 400 + 2


@pytest.fixture(scope="module")
def service():
    from decodemo.service import Service

    return Service()


@pytest.mark.parametrize("mode, hw", [("pad", (200, 256)), ("tile", (100, 600))])
def test_the_service_draws_maps_at_the_exact_size_of_padded_and_tiled_images(service, tmp_path, mode, hw):
    img, _ = make_texture(np.random.default_rng([77, 0]), size=256, defect=None)
    arr = np.concatenate([img, img[:, ::-1], img], axis=1)[: hw[0], : hw[1]]
    Image.fromarray(arr).save(tmp_path / "in.png")
    models = [service.registry.get(f"texture/{m}") for m in ("invad", "recon", "decodiff")]
    before = [m.config.image_fit for m in models]
    try:
        for m in models:
            m.config.image_fit = mode
        comp = service.compare(tmp_path / "in.png", domain="texture")
    finally:
        for m, b in zip(models, before):
            m.config.image_fit = b
    assert comp.size == hw
    for o in comp.outcomes:
        assert o.map.shape == hw and np.isfinite(o.map).all()
        if o.reconstruction is not None:
            assert o.reconstruction.shape == (*hw, 3)


def test_a_normal_crop_of_a_texture_is_not_flagged_for_its_shape_and_a_defective_one_still_is(service, tmp_path):
    img, _ = make_texture(np.random.default_rng([77, 0]), size=256, defect=None)
    bad, mask = make_texture(np.random.default_rng([77, 0]), size=256, defect="scratch")
    assert mask[28:228].sum() > 0.5 * mask.sum()  # the defect is inside the crop
    Image.fromarray(img[28:228]).save(tmp_path / "crop.png")
    Image.fromarray(bad[28:228]).save(tmp_path / "bad.png")
    comp = service.compare(tmp_path / "crop.png", domain="texture")
    assert [o.decision for o in comp.outcomes] == ["normal"] * 3
    from decodemo.app.compare import _method_md

    for o in comp.outcomes:  # the raw score, on the crop's own scale, would have been flagged
        assert o.shape is not None and o.shape["aspect_deficit"] == pytest.approx(1 - 200 / 256, abs=1e-3)
        assert o.shape["raw_score"] > o.score
        assert f"raw score {o.shape['raw_score']:.4g} for an input 22% short of square" in _method_md(o)
        assert o.shape["meaningful"] is True and "not meaningful" not in _method_md(o)  # defects told apart
    defective = service.compare(tmp_path / "bad.png", domain="texture")
    by = {o.method: o for o in defective.outcomes}
    assert by["invad"].decision == by["recon"].decision == "anomalous"
    for o in comp.outcomes:
        assert by[o.method].score > o.score


def test_the_shape_calibration_maps_crop_scores_onto_the_square_normals_scale():
    from decodemo.evaluation.reference import SHAPE_BINS, aspect_deficit, shape_calibrated, shape_calibration

    rng = np.random.default_rng(0)
    square = rng.normal(1.0, 0.1, 50)
    f = rng.uniform(0.02, 0.5, 300)
    crops = np.where(f < 0.3, 3.0, 5.0) + rng.normal(0, 0.5, 300)  # a step between bins
    cal = shape_calibration(square, f, crops)
    assert [b["from"] for b in cal["bins"]] == list(SHAPE_BINS[:-1])
    ref = {"shape": cal}
    pad = {"mode": "pad", "input": [200, 256]}  # deficit 0.22: the middle bin
    assert aspect_deficit(pad) == pytest.approx(0.21875)
    mid = cal["bins"][1]
    s, how = shape_calibrated(mid["mean"] + 2 * mid["sd"], pad, ref)
    assert s == pytest.approx(cal["square"]["mean"] + 2 * cal["square"]["sd"])
    assert how["raw_score"] == pytest.approx(mid["mean"] + 2 * mid["sd"]) and how["bin_from"] == 0.15
    long = {"mode": "squash", "input": [100, 256]}  # deficit 0.61: beyond the last bin, which is open
    assert shape_calibrated(5.0, long, ref)[1]["bin_from"] == 0.3
    for g in ({"mode": "pad", "input": [256, 256]}, {"mode": "tile", "input": [100, 600]}, None):
        assert shape_calibrated(4.2, g, ref) == (4.2, None)  # squares, tiles and clips are left alone
    assert shape_calibrated(4.2, pad, {}) == (4.2, None)  # a reference without a calibration

    # synthetic defects on the crops: told apart in the first two bins, not in the last
    fd = rng.uniform(0.02, 0.5, 300)
    defects = np.where(fd < 0.3, 3.0, 5.0) + np.where(fd < 0.3, 3.0, 0.0) + rng.normal(0, 0.5, 300)
    cal = shape_calibration(square, f, crops, fd, defects)
    assert [b["defect_auroc"] > 0.99 for b in cal["bins"]] == [True, True, False]
    assert 0.3 < cal["bins"][2]["defect_auroc"] < 0.7
    ref = {"shape": cal}
    assert shape_calibrated(4.0, pad, ref)[1]["meaningful"] is True
    assert shape_calibrated(4.0, long, ref)[1]["meaningful"] is False



def test_the_method_panel_says_when_a_model_cannot_judge_the_input_s_shape():
    from decodemo.app.compare import _method_md
    from decodemo.service.results import MethodOutcome

    shape = {"raw_score": 30.0, "aspect_deficit": 0.4, "bin_from": 0.3, "crop_mean": 25.0, "crop_sd": 2.0,
             "defect_auroc": 0.51, "meaningful": False}
    o = MethodOutcome(method="recon", model="bottle/recon", revision="bundled:abc", score=1.2, threshold=2.0,
                      default_threshold=2.0, decision="normal", percentile=60.0, nfe=20, latency_ms=5.0,
                      map=np.zeros((4, 4), np.float32), pixel_threshold=None, reference_scores=[1.0, 2.0],
                      pixel_quantiles=None, reconstruction=None, shape=shape)
    text = _method_md(o)
    assert "raw score 30 for an input 40% short of square" in text
    assert "not meaningful for this shape" in text and "AUROC 0.51" in text
    assert "not meaningful" not in _method_md(replace(o, shape={**shape, "defect_auroc": 0.9, "meaningful": True}))
