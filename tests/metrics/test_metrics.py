"""Tests for decodemo.metrics: against scikit-learn, brute force and hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn import metrics as skm

from decodemo import metrics as M

SEEDS = range(40)


def _random_binary_problem(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random labels with both classes and scores of a seed-dependent kind (ties often)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1
    kind = seed % 4
    if kind == 0:  # continuous
        s = rng.normal(size=n) + 0.7 * y
    elif kind == 1:  # small integers: many ties
        s = rng.integers(0, 5, n) + y * rng.integers(0, 2, n)
    elif kind == 2:  # rounded floats: some ties
        s = np.round(rng.normal(size=n) + y, 1)
    else:  # float32, heavy ties
        s = (rng.integers(0, 3, n) * 0.5).astype(np.float32)
    return y, s


def _clipped_area(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Loop-based reference: area under a polyline for x in [0, x_max], interpolating at x_max."""
    area = 0.0
    for i in range(len(x) - 1):
        x0, x1, y0, y1 = float(x[i]), float(x[i + 1]), float(y[i]), float(y[i + 1])
        if x1 <= x0 or x0 >= x_max:
            continue
        xe = min(x1, x_max)
        ye = y0 + (y1 - y0) * (xe - x0) / (x1 - x0)
        area += (xe - x0) * (y0 + ye) / 2.0
    return area


# --------------------------------------------------------------------------- image level


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_auroc_ap_match_sklearn(seed: int) -> None:
    y, s = _random_binary_problem(seed)
    fpr, tpr, thr = M.roc_curve(y, s)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(thr, sk_thr.astype(np.float64))
    assert len(thr) == len(np.unique(s)) + 1  # ties collapsed

    fpr, tpr, thr = M.roc_curve(y, s, drop_intermediate=True)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y, s, drop_intermediate=True)
    np.testing.assert_allclose(fpr, sk_fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(thr, sk_thr.astype(np.float64))

    assert M.auroc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert M.average_precision(y, s) == pytest.approx(
        skm.average_precision_score(y, s), abs=1e-12
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_f1_max_matches_brute_force(seed: int) -> None:
    y, s = _random_binary_problem(seed)
    precision, recall, _ = skm.precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0)
    assert M.f1_max(y, s) == pytest.approx(f1.max(), abs=1e-12)
    # and directly, thresholding at every distinct score
    best = 0.0
    for t in np.unique(s):
        pred = s >= t
        tp = np.sum(pred & (y == 1))
        best = max(best, 2 * tp / (pred.sum() + (y == 1).sum()))
    assert M.f1_max(y, s) == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("max_fpr", [0.1, 0.05, 0.3, 1.0])
def test_pauc_matches_sklearn(seed: int, max_fpr: float) -> None:
    y, s = _random_binary_problem(seed)
    sk_fpr, sk_tpr, _ = skm.roc_curve(y, s)
    expected = _clipped_area(sk_fpr, sk_tpr, max_fpr) / max_fpr
    assert M.pauc(y, s, max_fpr=max_fpr) == pytest.approx(expected, abs=1e-12)
    # sklearn's max_fpr applies McClish's correction; mcclish=True reproduces it ...
    mcclish = skm.roc_auc_score(y, s, max_fpr=max_fpr)
    assert M.pauc(y, s, max_fpr=max_fpr, mcclish=True) == pytest.approx(mcclish, abs=1e-12)
    # ... and undoing the correction gives our (DCASE) value back.
    if max_fpr < 1.0:
        min_area = 0.5 * max_fpr**2
        area = (2 * mcclish - 1) * (max_fpr - min_area) + min_area
        assert M.pauc(y, s, max_fpr=max_fpr) == pytest.approx(area / max_fpr, abs=1e-12)
    else:
        assert M.pauc(y, s, max_fpr=1.0) == pytest.approx(M.auroc(y, s), abs=1e-12)


def test_hand_cases() -> None:
    assert M.auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # all tied: a single diagonal ROC segment
    assert M.auroc([0, 1, 0, 1], [3, 3, 3, 3]) == pytest.approx(0.5)
    # AP = (1/2 * 1 + 1/2 * 2/3) for ranking 1, 0, 1
    assert M.average_precision([1, 0, 1], [0.9, 0.5, 0.1]) == pytest.approx(5 / 6)
    # F1: best at the threshold 0.1 -> TP 2, FP 1 -> 4/5
    assert M.f1_max([1, 0, 1], [0.9, 0.5, 0.1]) == pytest.approx(0.8)


def test_pauc_hand_cases() -> None:
    y = np.r_[np.zeros(50), np.ones(50)]
    perfect = np.r_[np.zeros(50), np.ones(50)]
    assert M.pauc(y, perfect) == pytest.approx(1.0)
    assert M.pauc(y, -perfect) == pytest.approx(0.0)
    assert M.pauc(y, np.zeros(100)) == pytest.approx(0.05)  # all tied = diagonal
    assert M.pauc(y, np.zeros(100), max_fpr=0.2) == pytest.approx(0.1)
    rng = np.random.default_rng(0)
    n = 20_000
    y = rng.integers(0, 2, n)
    values = [M.pauc(y, rng.random(n)) for _ in range(5)]
    assert np.mean(values) == pytest.approx(0.05, abs=0.01)
    # interpolation at max_fpr: 10 normals, one normal above all anomalies
    y = np.r_[np.zeros(10), np.ones(5)]
    s = np.r_[10.0, np.zeros(9), np.full(5, 5.0)]
    # ROC: (0,0) -> (0.1,0) -> (0.1,1) -> (1,1); area up to 0.15 is 0.05
    assert M.pauc(y, s, max_fpr=0.15) == pytest.approx(0.05 / 0.15)
    assert M.pauc(y, s, max_fpr=0.1) == pytest.approx(0.0)


def test_one_class_gives_nan() -> None:
    assert math.isnan(M.auroc([0, 0, 0], [0.1, 0.2, 0.3]))
    assert math.isnan(M.auroc([1, 1], [0.1, 0.2]))
    assert math.isnan(M.pauc([1, 1], [0.1, 0.2]))
    assert math.isnan(M.average_precision([0, 0], [0.1, 0.2]))
    assert math.isnan(M.f1_max([0, 0], [0.1, 0.2]))
    assert M.average_precision([1, 1], [0.1, 0.2]) == 1.0
    fpr, tpr, _ = M.roc_curve([0, 0], [0.1, 0.2])
    assert np.isnan(tpr).all() and np.allclose(fpr, [0, 0.5, 1])
    d = M.image_metrics([0, 0], [0.1, 0.2])
    assert all(math.isnan(v) for v in d.values())
    c = M.clip_metrics([1, 1, 1], [0.1, 0.2, 0.5])
    assert math.isnan(c["auroc"]) and math.isnan(c["pauc"])
    masks = np.zeros((2, 4, 4))
    maps = np.random.default_rng(0).random((2, 4, 4))
    assert math.isnan(M.pixel_auroc(masks, maps))
    assert math.isnan(M.aupro(masks, maps))
    assert all(math.isnan(v) for v in M.pixel_metrics(masks, maps).values())
    assert math.isnan(M.aupro(np.ones((1, 3, 3)), maps[:1, :3, :3]))


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="binary"):
        M.auroc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="binary"):
        M.pixel_auroc(np.full((1, 2, 2), 255), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        M.auroc([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="length"):
        M.auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="shape"):
        M.pixel_auroc(np.zeros((1, 2, 2)), np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="empty"):
        M.auroc([], [])
    with pytest.raises(ValueError, match="1-D"):
        M.auroc(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="max_fpr"):
        M.pauc([0, 1], [0, 1], max_fpr=0.0)
    with pytest.raises(ValueError, match="max_fpr"):
        M.aupro(np.ones((1, 2, 2)), np.ones((1, 2, 2)), max_fpr=1.5)
    with pytest.raises(ValueError, match="num_thresholds"):
        M.aupro(np.ones((1, 2, 2)), np.ones((1, 2, 2)), num_thresholds=1)
    # (N, 1) scores against (N,) labels are fine
    assert M.auroc(np.array([[0], [1]]), np.array([[0.2], [0.7]])) == 1.0


def test_infinite_scores_tie_correctly() -> None:
    y = [0, 1, 1, 0]
    s = [np.inf, np.inf, 1.0, 0.0]
    assert M.auroc(y, s) == pytest.approx(skm.roc_auc_score(y, [1e9, 1e9, 1.0, 0.0]))


def test_dict_helpers_agree_with_single_functions() -> None:
    y, s = _random_binary_problem(3)
    d = M.image_metrics(y, s)
    assert d == {
        "image_auroc": M.auroc(y, s),
        "image_ap": M.average_precision(y, s),
        "image_f1_max": M.f1_max(y, s),
    }
    c = M.clip_metrics(y, s)
    assert c == {"auroc": M.auroc(y, s), "pauc": M.pauc(y, s, max_fpr=0.1)}
    assert all(type(v) is float for v in [*d.values(), *c.values()])


def test_threshold_at_normal_quantile() -> None:
    s = np.arange(101, dtype=float)  # 0..100
    assert M.threshold_at_normal_quantile(s) == pytest.approx(99.0)
    assert M.threshold_at_normal_quantile(s, q=0.995) == pytest.approx(99.5)
    assert M.threshold_at_normal_quantile([1.0, 3.0], q=0.5) == pytest.approx(2.0)
    assert M.threshold_at_normal_quantile(torch.tensor([[1.0, 3.0]]), q=0.25) == 1.5
    with pytest.raises(ValueError):
        M.threshold_at_normal_quantile(s, q=1.5)
    with pytest.raises(ValueError):
        M.threshold_at_normal_quantile([1.0, np.inf])
    with pytest.raises(ValueError):
        M.threshold_at_normal_quantile([])


# --------------------------------------------------------------------------- pixel level


def _random_maps(seed: int, n: int = 4, h: int = 12, w: int = 12):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(n - 1):  # last image anomaly-free
        for _ in range(int(rng.integers(1, 3))):
            y0, x0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
            masks[i, y0 : y0 + rng.integers(1, 5), x0 : x0 + rng.integers(1, 5)] = True
    maps = rng.normal(size=masks.shape) + 1.0 * masks
    if seed % 2:
        maps = np.round(maps * 2) / 2  # heavy ties
    return masks, maps


@pytest.mark.parametrize("seed", range(8))
def test_pixel_metrics_match_sklearn(seed: int) -> None:
    masks, maps = _random_maps(seed)
    y, s = masks.ravel(), maps.ravel()
    assert M.pixel_auroc(masks, maps) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert M.pixel_ap(masks, maps) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    assert M.pixel_f1_max(masks, maps) == pytest.approx(M.f1_max(y, s), abs=0)
    d = M.pixel_metrics(masks, maps)
    assert d["pixel_auroc"] == M.pixel_auroc(masks, maps)
    assert d["pixel_ap"] == M.pixel_ap(masks, maps)
    assert d["pixel_f1_max"] == M.pixel_f1_max(masks, maps)
    assert d["aupro"] == pytest.approx(M.aupro(masks, maps), abs=1e-12)


def _brute_force_aupro(masks: np.ndarray, maps: np.ndarray, max_fpr: float) -> float:
    """Per-threshold reference with per-image labelling (8-connectivity), loops only."""
    regions_per_image = []
    for mask in masks:
        labeled, n = ndimage.label(mask, structure=np.ones((3, 3)))
        regions_per_image.append([labeled == k for k in range(1, n + 1)])
    normal = ~masks.astype(bool)
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        pred = maps >= t
        overlaps = [
            pred[i][region].mean() for i, rs in enumerate(regions_per_image) for region in rs
        ]
        pros.append(float(np.mean(overlaps)))
        fprs.append(float((pred & normal).sum() / normal.sum()))
    fprs.append(1.0)
    pros.append(1.0)
    return _clipped_area(np.array(fprs), np.array(pros), max_fpr) / max_fpr


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("max_fpr", [0.3, 0.05, 1.0])
def test_aupro_matches_brute_force(seed: int, max_fpr: float) -> None:
    masks, maps = _random_maps(seed)
    expected = _brute_force_aupro(masks, maps, max_fpr)
    assert M.aupro(masks, maps, max_fpr=max_fpr) == pytest.approx(expected, abs=1e-10)


def test_aupro_perfect_and_constant() -> None:
    masks, _ = _random_maps(0)
    assert M.aupro(masks, masks.astype(float)) == pytest.approx(1.0)
    # constant map: one point (1, 1) -> PRO = FPR on [0, 1] -> area 0.3^2 / 2, / 0.3
    assert M.aupro(masks, np.zeros(masks.shape)) == pytest.approx(0.15)
    assert M.aupro(masks, np.zeros(masks.shape), max_fpr=0.1) == pytest.approx(0.05)
    # inverted map: all normal pixels come first -> PRO 0 until FPR 1
    assert M.aupro(masks, -masks.astype(float)) == pytest.approx(0.0)


def _two_region_image() -> np.ndarray:
    mask = np.zeros((8, 8), dtype=bool)
    mask[0:2, 0:2] = True  # small region A: 4 px
    mask[4:7, 3:7] = True  # large region B: 12 px (not touching A, even diagonally)
    return mask


def test_aupro_two_regions_small_one_detected() -> None:
    mask = _two_region_image()
    assert ndimage.label(mask, structure=np.ones((3, 3)))[1] == 2
    amap = np.zeros((8, 8))
    amap[0:2, 0:2] = 1.0  # detects A fully, nothing else
    # curve: (0,0) -> (0, 0.5) -> (1, 1). PRO(f) = 0.5 + 0.5 f on [0, 0.3]
    expected = (0.5 * 0.3 + 0.25 * 0.3**2) / 0.3  # = 0.575
    assert M.aupro(mask[None], amap[None]) == pytest.approx(expected)
    assert M.aupro(mask, amap) == pytest.approx(expected)  # (H, W) accepted

    # finer: A at 3, half of B at 2, 12 of the 48 normal pixels at 1
    amap = np.zeros((8, 8))
    amap[0:2, 0:2] = 3.0
    amap[4:7, 3:5] = 2.0  # 6 px of B
    normal_idx = np.flatnonzero(~mask.ravel())[:12]
    amap.ravel()[normal_idx] = 1.0
    # points: (0, .5) (0, .75) (.25, .75) (1, 1); PRO at 0.3 = .75 + .25 * (.05 / .75)
    pro_at = 0.75 + 0.25 * (0.05 / 0.75)
    expected = (0.25 * 0.75 + 0.05 * (0.75 + pro_at) / 2) / 0.3
    assert M.aupro(mask[None], amap[None]) == pytest.approx(expected, abs=1e-12)


def test_aupro_uses_8_connectivity() -> None:
    mask = np.zeros((5, 5), dtype=bool)
    mask[0, 0] = mask[1, 1] = mask[1, 2] = True  # one region with 3x3 ones, two with a cross
    amap = np.zeros((5, 5))
    amap[0, 0] = 1.0
    # one region of 3 px, 1/3 detected at FPR 0 -> curve (0, 1/3) -> (1, 1)
    expected = (0.3 / 3 + (2 / 3) * 0.3**2 / 2) / 0.3
    assert M.aupro(mask, amap) == pytest.approx(expected)


def test_aupro_regions_do_not_connect_across_images() -> None:
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, 1:3, 1:3] = True  # 4 px
    masks[1, 1:2, 1:2] = True  # 1 px, at the same place
    maps = np.zeros((2, 4, 4))
    maps[1, 1, 1] = 1.0  # detects the second region only -> PRO 0.5 at FPR 0
    assert M.aupro(masks, maps) == pytest.approx(0.575)


def test_aupro_exact_region_with_noise_elsewhere() -> None:
    rng = np.random.default_rng(1)
    masks = np.zeros((4, 16, 16), dtype=bool)
    masks[0, 4:9, 5:12] = True
    maps = rng.random(masks.shape)  # noise in [0, 1) everywhere ...
    maps[masks] = 10.0  # ... and the true region flagged above all of it
    assert M.aupro(masks, maps) == pytest.approx(1.0)
    assert M.pixel_auroc(masks, maps) == pytest.approx(1.0)
    # noise in an anomaly-free image now beats the region on k pixels:
    # curve (0,0) -> (k/n, 0) -> (k/n, 1) -> (1, 1); AUPRO = (0.3 - k/n) / 0.3
    k = 20
    maps[2].ravel()[:k] = 20.0
    n_normal = (~masks).sum()
    assert M.aupro(masks, maps) == pytest.approx((0.3 - k / n_normal) / 0.3)
    # and a noise image alone cannot change the PRO of a region it does not touch
    maps[3] = 0.0
    assert M.aupro(masks, maps) == pytest.approx((0.3 - k / n_normal) / 0.3)


def test_aupro_binned() -> None:
    rng = np.random.default_rng(5)
    masks, _ = _random_maps(2)
    maps = rng.integers(0, 10, masks.shape) + 3 * masks  # values 0..12 on the grid
    exact = M.aupro(masks, maps)
    assert M.aupro(masks, maps, num_thresholds=13) == pytest.approx(exact, abs=1e-12)
    masks, maps = _random_maps(4)
    assert M.aupro(masks, maps, num_thresholds=5000) == pytest.approx(
        M.aupro(masks, maps), abs=5e-3
    )


def test_pixel_shapes_and_larger_input() -> None:
    rng = np.random.default_rng(0)
    masks = np.zeros((20, 64, 64), dtype=np.uint8)
    masks[::2, 10:30, 20:35] = 1
    maps = (rng.random(masks.shape) + 0.3 * masks).astype(np.float32)
    d = M.pixel_metrics(masks, maps)
    d4 = M.pixel_metrics(masks[:, None], maps[:, None])  # (N, 1, H, W)
    assert d == d4
    assert d["pixel_auroc"] == pytest.approx(
        skm.roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12
    )
    with pytest.raises(ValueError, match="shape"):
        M.aupro(masks.reshape(-1), maps.reshape(-1))


# --------------------------------------------------------------------------- torch


def test_torch_inputs() -> None:
    y, s = _random_binary_problem(0)
    yt = torch.tensor(y)
    st = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    assert M.auroc(yt, st) == M.auroc(y, s)
    assert M.image_metrics(yt.bool(), st) == M.image_metrics(y, s)
    assert M.clip_metrics(yt, st) == M.clip_metrics(y, s)
    fpr, _, _ = M.roc_curve(yt, st)
    assert isinstance(fpr, np.ndarray)
    # bfloat16 scores work (widened to float32)
    assert not math.isnan(M.auroc(yt, st.detach().to(torch.bfloat16)))

    masks, maps = _random_maps(1)
    mt, at = torch.from_numpy(masks), torch.from_numpy(maps).float()
    expected = M.pixel_metrics(masks, maps.astype(np.float32))
    assert M.pixel_metrics(mt, at) == expected
    assert M.aupro(mt, at) == expected["aupro"]
    assert M.pixel_auroc(mt.float(), at) == expected["pixel_auroc"]
    # a list of per-image tensors
    assert M.pixel_ap(list(mt), list(at)) == expected["pixel_ap"]
