"""The seeded synthetic generator: determinism, exact masks, hum events and their rasterisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decodemo.data.layout import load_mask, scan_layout
from decodemo.data.synthetic import (
    AUDIO_ANOMALIES,
    DEFECT_KINDS,
    events_to_tf_mask,
    main,
    make_hum,
    make_texture,
    write_synthetic_layout,
)


@pytest.mark.parametrize("defect", [None, *DEFECT_KINDS])
def test_texture_deterministic(defect):
    a, ma = make_texture(7, defect=defect)
    b, mb = make_texture(np.random.default_rng(7), defect=defect)
    assert a.dtype == np.uint8 and a.shape == (128, 128, 3)
    assert ma.dtype == bool and ma.shape == (128, 128)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ma, mb)
    c, _ = make_texture(8, defect=defect)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("defect", DEFECT_KINDS)
def test_mask_is_exactly_the_changed_pixels(defect, seed):
    clean, clean_mask = make_texture(seed, size=96)
    img, mask = make_texture(seed, size=96, defect=defect)
    assert not clean_mask.any()
    changed = np.any(img != clean, axis=-1)
    np.testing.assert_array_equal(mask, changed)
    assert 5 <= mask.sum() < 0.2 * mask.size  # visible but local


def test_normal_textures_resemble_each_other():
    a = np.stack([make_texture(s)[0].astype(float) for s in range(8)])
    # same palette: per-image channel means agree closely
    means = a.mean(axis=(1, 2))
    assert np.ptp(means, axis=0).max() < 6.0


def test_defect_colour_contrasts():
    clean, _ = make_texture(3)
    for defect in DEFECT_KINDS:
        img, mask = make_texture(3, defect=defect)
        diff = np.abs(img.astype(int) - clean.astype(int)).max(axis=-1)
        assert diff[mask].min() >= 10


def test_texture_rejects_unknown_defect():
    with pytest.raises(ValueError):
        make_texture(0, defect="dent")


# ----------------------------------------------------------------------------- audio


@pytest.mark.parametrize("anomaly", [None, *AUDIO_ANOMALIES])
def test_hum_deterministic_and_bounded(anomaly):
    y, ev = make_hum(3, anomaly=anomaly)
    y2, ev2 = make_hum(np.random.default_rng(3), anomaly=anomaly)
    assert y.dtype == np.float32 and y.shape == (32000,)
    np.testing.assert_array_equal(y, y2)
    assert ev == ev2
    assert np.abs(y).max() < 1.0 and np.isfinite(y).all()
    if anomaly is None:
        assert ev == []
    else:
        assert ev, "an anomaly must come with at least one event"
        for e in ev:
            assert set(e) == {"start_s", "end_s", "fmin_hz", "fmax_hz"}
            assert 0 <= e["start_s"] < e["end_s"] <= 2.0
            assert 0 <= e["fmin_hz"] < e["fmax_hz"] <= 8000


def test_hum_fundamental_near_120():
    y, _ = make_hum(0, seconds=2.0)
    spec = np.abs(np.fft.rfft(y))
    freqs = np.fft.rfftfreq(len(y), 1 / 16000)
    assert abs(freqs[np.argmax(spec)] - 120) < 3


@pytest.mark.parametrize("anomaly", ["click", "burst"])
def test_additive_anomalies_stay_inside_their_events(anomaly):
    sr = 16000
    clean, _ = make_hum(5)
    y, events = make_hum(5, anomaly=anomaly)
    changed = np.flatnonzero(y != clean)
    assert changed.size > 0
    inside = np.zeros(len(y), bool)
    for e in events:
        inside[int(round(e["start_s"] * sr)):int(round(e["end_s"] * sr))] = True
    assert inside[changed].all()


def test_tone_shift_moves_the_fundamental():
    sr = 16000
    y, (e,) = make_hum(11, anomaly="tone_shift")
    seg = y[int(e["start_s"] * sr) + 400:int(e["end_s"] * sr) - 400]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), n=1 << 16))
    freqs = np.fft.rfftfreq(1 << 16, 1 / sr)
    peak = freqs[np.argmax(spec[freqs < 400])]
    assert abs(peak - 120) > 15
    assert e["fmin_hz"] <= peak <= e["fmax_hz"]


def test_burst_energy_is_in_its_band():
    sr = 16000
    clean, _ = make_hum(2)
    y, (e,) = make_hum(2, anomaly="burst")
    d = (y - clean)[int(e["start_s"] * sr):int(e["end_s"] * sr)].astype(float)
    spec = np.abs(np.fft.rfft(d)) ** 2
    freqs = np.fft.rfftfreq(len(d), 1 / sr)
    inband = spec[(freqs >= e["fmin_hz"]) & (freqs <= e["fmax_hz"])].sum()
    assert inband / spec.sum() > 0.95


def test_events_to_tf_mask_boxes():
    bands = np.linspace(0, 8000, 65)[1:]  # 64 rows, 125 Hz apart
    times = np.arange(100) * 0.02  # 100 frames, 20 ms hop
    ev = [{"start_s": 0.5, "end_s": 0.7, "fmin_hz": 1000.0, "fmax_hz": 2000.0}]
    m = events_to_tf_mask(ev, 100, bands, times)
    assert m.dtype == bool and m.shape == (64, 100)
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    assert bands[rows].min() >= 1000 - 62.5 and bands[rows].max() <= 2000 + 62.5
    assert 1000 <= bands[rows].min() + 62.5 and bands[rows].max() - 62.5 <= 2000
    assert times[cols].min() == pytest.approx(0.5) and times[cols].max() == pytest.approx(0.7)
    assert m[np.ix_(rows, cols)].all()  # a full box
    assert m.sum() == len(rows) * len(cols)
    assert not events_to_tf_mask([], 100, bands, times).any()


def test_events_to_tf_mask_short_click_hits_a_frame():
    bands = np.linspace(50, 7950, 40)
    times = np.arange(63) * 0.032
    ev = [{"start_s": 0.401, "end_s": 0.404, "fmin_hz": 0.0, "fmax_hz": 8000.0}]
    m = events_to_tf_mask(ev, 63, bands, times)
    cols = np.flatnonzero(m.any(axis=0))
    assert list(cols) == [int(round(0.4025 / 0.032))]
    assert m[:, cols].all()


@pytest.mark.parametrize("anomaly", AUDIO_ANOMALIES)
def test_hum_events_rasterise_nonempty(anomaly):
    sr, hop = 16000, 256
    y, events = make_hum(4, anomaly=anomaly)
    n_frames = 1 + len(y) // hop
    times = np.arange(n_frames) * hop / sr
    bands = np.geomspace(30, 7900, 64)
    m = events_to_tf_mask(events, n_frames, bands, times)
    assert m.any() and not m.all()


def test_events_to_tf_mask_checks_frame_count():
    with pytest.raises(ValueError):
        events_to_tf_mask([], 5, np.arange(4.0), np.arange(6.0))


# ----------------------------------------------------------------------------- layouts


def test_write_image_layout(tmp_path: Path):
    root = write_synthetic_layout(tmp_path / "img", n_train=3, n_test_good=2, n_test_per_kind=2, size=64, seed=1)
    lay = scan_layout(root, require_test=True)
    assert lay.modality == "image"
    assert len(lay.train) == 3 and lay.kinds == sorted(DEFECT_KINDS)
    assert sum(s.kind == "good" for s in lay.test) == 2
    assert lay.has_masks
    for s in lay.test:
        if s.label == 1:
            assert s.mask_path is not None
            img = np.asarray(Image.open(s.path))
            assert img.shape == (64, 64, 3)
            m = load_mask(s, (64, 64))
            assert m.any()
    # the same files again with the same seed
    again = write_synthetic_layout(tmp_path / "img2", n_train=3, n_test_good=2, n_test_per_kind=2, size=64, seed=1)
    for s in lay.train:
        assert (again / "train/good" / s.path.name).read_bytes() == s.path.read_bytes()
    # fewer files on a rerun: stale files are removed
    write_synthetic_layout(root, n_train=1, n_test_good=1, n_test_per_kind=1, size=64, seed=1)
    lay = scan_layout(root)
    assert len(lay.train) == 1 and len(lay.test) == 1 + len(DEFECT_KINDS)
    assert sorted(p.name for p in (root / "ground_truth/spot").iterdir()) == ["000_mask.png"]


def test_write_audio_layout(tmp_path: Path):
    import soundfile as sf

    root = write_synthetic_layout(tmp_path / "aud", modality="audio", n_train=2, n_test_good=1,
                                  n_test_per_kind=2, seconds=1.0, seed=3)
    lay = scan_layout(root, require_test=True)
    assert lay.modality == "audio" and lay.kinds == sorted(AUDIO_ANOMALIES)
    for kind in AUDIO_ANOMALIES:
        events = json.loads((root / "test" / kind / "events.json").read_text())
        assert sorted(events) == ["000.wav", "001.wav"]
        assert all(len(v) >= 1 for v in events.values())
    info = sf.info(str(lay.train[0].path))
    assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
    assert info.frames == 16000


def test_cli(tmp_path: Path, capsys):
    assert main(["--out", str(tmp_path / "cli"), "--modality", "image", "--n-train", "2",
                 "--n-test-good", "1", "--n-test-per-kind", "1", "--size", "32"]) == 0
    assert "train/good: 2" in capsys.readouterr().out
    assert len(scan_layout(tmp_path / "cli").train) == 2
