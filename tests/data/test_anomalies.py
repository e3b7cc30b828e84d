"""Synthetic anomalies for the validation set: exact masks, visible changes, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from decodemo.data.anomalies import (
    AUDIO_KINDS,
    IMAGE_KINDS,
    SyntheticSet,
    image_anomaly,
    make_validation_set,
    perlin_noise,
    spectrogram_anomaly,
)

SIZES = [(64, 96), (128, 128)]


def textured_image(h: int, w: int, phase: float = 0.0) -> np.ndarray:
    """Oblique colour stripes plus a gradient, float32 (h, w, 3) in [0, 1]."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    s = 0.5 + 0.3 * np.sin(2 * np.pi * (0.8 * x + 0.6 * y) / 9.0 + phase)
    img = np.stack([0.9 * s + 0.1 * y / h, 0.7 * s + 0.2 * x / w, 0.3 + 0.4 * s * x / w], axis=-1)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def spectrogram(rows: int, cols: int) -> np.ndarray:
    """A log-mel-like picture: a few harmonic lines over a decaying noise floor, in [0, 1]."""
    rng = np.random.default_rng(123)
    r = np.arange(rows)[:, None] / rows
    spec = 0.35 * (1.0 - r) + 0.05 * rng.random((rows, cols))
    spec[rows // 8 :: rows // 6] += 0.3
    return np.clip(spec, 0.0, 1.0).astype(np.float32)


def check_exact(original: np.ndarray, out: np.ndarray, mask: np.ndarray, min_change: float) -> None:
    assert out.dtype == np.float32 and out.shape == original.shape
    assert mask.dtype == bool and mask.shape == original.shape[:2]
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert mask.any()
    assert np.array_equal(out[~mask], original[~mask])  # bit-for-bit outside the mask
    assert np.abs(out[mask] - original[mask]).mean() > min_change


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_image_anomaly_is_exact_and_visible(kind, size):
    img = textured_image(*size)
    donors = [textured_image(*size, phase=1.3), textured_image(*size, phase=2.1)[:, ::-1]]
    before = img.copy()
    for seed in range(3):
        for pool in ((), donors):
            out, mask = image_anomaly(img, kind, np.random.default_rng(seed), donors=pool)
            check_exact(img, out, mask, 0.02)
            assert mask.mean() < 0.35
    assert np.array_equal(img, before)  # the input is not modified


@pytest.mark.parametrize("seed", range(4))
def test_colour_change_is_at_least_a_tenth(seed):
    img = textured_image(64, 96)
    out, mask = image_anomaly(img, "colour", np.random.default_rng(seed))
    assert np.abs(out[mask] - img[mask]).mean() >= 0.1


def test_flat_region_still_gets_a_visible_change():
    # a blur or warp on a flat image changes nothing: the fallback must still change the region
    img = np.full((48, 64, 3), 0.4, dtype=np.float32)
    for kind in ("blur", "warp"):
        out, mask = image_anomaly(img, kind, np.random.default_rng(0))
        check_exact(img, out, mask, 0.02)


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_image_anomaly_is_seeded(kind):
    img = textured_image(64, 96)
    a, ma = image_anomaly(img, kind, np.random.default_rng(5))
    b, mb = image_anomaly(img, kind, np.random.default_rng(5))
    c, mc = image_anomaly(img, kind, np.random.default_rng(6))
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert not (np.array_equal(a, c) and np.array_equal(ma, mc))


def test_perlin_texture_mask_coverage():
    img = textured_image(128, 128)
    cover = [image_anomaly(img, "perlin_texture", np.random.default_rng(s))[1].mean() for s in range(10)]
    assert min(cover) >= 0.005 and max(cover) <= 0.30


def test_image_input_errors():
    img = textured_image(32, 48)
    with pytest.raises(ValueError, match="cutpaste_patch.*warp"):
        image_anomaly(img, "scratch", np.random.default_rng(0))
    with pytest.raises(ValueError, match="shape"):
        image_anomaly(img, "cutpaste_patch", np.random.default_rng(0), donors=[textured_image(32, 32)])
    with pytest.raises(ValueError, match="H, W, 3"):
        image_anomaly(img[..., 0], "blur", np.random.default_rng(0))


# ----------------------------------------------------------------------------- spectrograms


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", AUDIO_KINDS)
def test_spectrogram_anomaly_is_exact_and_visible(kind, size):
    spec = spectrogram(*size)
    for seed in range(3):
        out, mask = spectrogram_anomaly(spec, kind, np.random.default_rng(seed))
        check_exact(spec, out, mask, 0.05)


def test_spectrogram_kinds_have_their_shape():
    spec = spectrogram(128, 128)
    rng = np.random.default_rng(0)
    _, click = spectrogram_anomaly(spec, "click", rng)
    assert click.any(axis=0).sum() <= 3 and click.any(axis=1).sum() >= 0.6 * 128
    _, tone = spectrogram_anomaly(spec, "tone_burst", rng)
    assert tone.any(axis=1).sum() <= 3 and 0.1 * 128 - 1 <= tone.any(axis=0).sum() <= 0.5 * 128 + 1
    _, drop = spectrogram_anomaly(spec, "dropout", rng)
    assert drop.all(axis=0).sum() == drop.any(axis=0).sum() <= 0.2 * 128 + 1


@pytest.mark.parametrize("kind", AUDIO_KINDS)
def test_spectrogram_anomaly_is_seeded(kind):
    spec = spectrogram(64, 96)
    a, ma = spectrogram_anomaly(spec, kind, np.random.default_rng(1))
    b, mb = spectrogram_anomaly(spec, kind, np.random.default_rng(1))
    c, mc = spectrogram_anomaly(spec, kind, np.random.default_rng(2))
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert not (np.array_equal(a, c) and np.array_equal(ma, mc))


def test_spectrogram_unknown_kind():
    with pytest.raises(ValueError, match="click, tone_burst, band_noise, dropout"):
        spectrogram_anomaly(spectrogram(32, 32), "blur", np.random.default_rng(0))


# ----------------------------------------------------------------------------- Perlin noise


def test_perlin_noise_shape_range_and_smoothness():
    noise = perlin_noise((50, 70), (3, 5), np.random.default_rng(0))  # not divisible
    assert noise.shape == (50, 70) and noise.dtype == np.float32
    assert np.isfinite(noise).all() and noise.min() >= -1.0 and noise.max() <= 1.0
    assert abs(float(noise.mean())) < 0.15
    value_range = float(noise.max() - noise.min())
    assert value_range > 0.3
    step = max(np.abs(np.diff(noise, axis=0)).max(), np.abs(np.diff(noise, axis=1)).max())
    assert step < 0.2 * value_range
    assert np.array_equal(noise, perlin_noise((50, 70), (3, 5), np.random.default_rng(0)))
    assert not np.array_equal(noise, perlin_noise((50, 70), (3, 5), np.random.default_rng(1)))
    with pytest.raises(ValueError):
        perlin_noise((8, 8), (0, 2), np.random.default_rng(0))


# ----------------------------------------------------------------------------- validation set


def normals_tensor(n: int, h: int = 40, w: int = 56) -> torch.Tensor:
    return torch.stack([torch.from_numpy(textured_image(h, w, phase=0.7 * i)).permute(2, 0, 1) for i in range(n)])


def test_validation_set_layout():
    normals = normals_tensor(3)
    ss = make_validation_set(normals, seed=1, per_kind=2)
    assert isinstance(ss, SyntheticSet)
    n_total = 3 + 2 * len(IMAGE_KINDS)
    assert ss.images.shape == (n_total, 3, 40, 56) and ss.images.dtype == torch.float32
    assert ss.masks.shape == (n_total, 40, 56) and ss.masks.dtype == torch.bool
    assert ss.labels.dtype == np.int64 and ss.labels.tolist() == [0] * 3 + [1] * (n_total - 3)
    assert ss.kinds == ["good"] * 3 + [k for k in IMAGE_KINDS for _ in range(2)]
    assert torch.equal(ss.images[:3], normals)
    assert not ss.masks[:3].any()
    assert all(m.any() for m in ss.masks[3:])
    assert ss.images.min() >= 0 and ss.images.max() <= 1
    # each anomaly is made from normal j % N and leaves it unchanged outside its mask
    for k in range(3, n_total):
        j = (k - 3) % 2
        outside = ~ss.masks[k]
        assert torch.equal(ss.images[k][:, outside], normals[j % 3][:, outside])


def test_validation_set_is_deterministic():
    normals = normals_tensor(2)
    a = make_validation_set(normals, seed=3, kinds=("cutpaste_patch", "warp"), per_kind=2)
    b = make_validation_set(normals, seed=3, kinds=("cutpaste_patch", "warp"), per_kind=2)
    c = make_validation_set(normals, seed=4, kinds=("cutpaste_patch", "warp"), per_kind=2)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.images, c.images)
    # a kind's anomalies do not depend on which other kinds are asked for
    d = make_validation_set(normals, seed=3, kinds=("warp",), per_kind=2)
    assert torch.equal(d.images[2:], a.images[4:]) and torch.equal(d.masks[2:], a.masks[4:])


def test_validation_set_defaults_and_donors():
    one = normals_tensor(1)
    ss = make_validation_set(one, kinds=("cutpaste_patch",))
    assert len(ss.labels) == 1 + 2  # per_kind defaults to N, at least 2
    donors = normals_tensor(2)
    with_donors = make_validation_set(one, kinds=("cutpaste_patch", "perlin_texture"), per_kind=2, donors=donors)
    assert with_donors.labels.sum() == 4 and all(m.any() for m in with_donors.masks[1:])


def test_validation_set_audio_keeps_grey_channels():
    spec = torch.from_numpy(spectrogram(48, 64))
    normals = torch.stack([spec.roll(5 * i, dims=1).expand(3, -1, -1) for i in range(2)])
    ss = make_validation_set(normals, modality="audio", seed=0, per_kind=2)
    assert ss.kinds == ["good"] * 2 + [k for k in AUDIO_KINDS for _ in range(2)]
    assert len(ss.images) == 2 + 2 * len(AUDIO_KINDS)
    assert torch.equal(ss.images[:, 0], ss.images[:, 1]) and torch.equal(ss.images[:, 0], ss.images[:, 2])
    assert all(m.any() for m in ss.masks[2:]) and not ss.masks[:2].any()


def test_validation_set_errors():
    normals = normals_tensor(2)
    with pytest.raises(ValueError, match="click"):
        make_validation_set(normals, modality="audio", kinds=("blur",))
    with pytest.raises(ValueError, match="cutpaste_patch"):
        make_validation_set(normals, kinds=("nope",))
    with pytest.raises(ValueError, match="modality"):
        make_validation_set(normals, modality="video")
