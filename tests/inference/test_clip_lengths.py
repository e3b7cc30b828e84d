"""Clips of any length and rate: a clip shorter than one window is looped to one (recorded in the
mel config), any sample rate is resampled to the model's, and a long clip is scored window by
window in batches with its map at the clip's own length."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from decodemo.data.hum import make_hum
from decodemo.errors import InputError
from decodemo.inference import detect_prepared, load_input, prepare
from decodemo.io.audio import load_audio
from decodemo.io.spectrogram import (MelConfig, frames_per_window, log_mel, loop_waveform,
                                     window_spectrogram)

SR = 16000


def _hum(seed: int, seconds: float, rate: int = SR) -> np.ndarray:
    y, _ = make_hum(seed, seconds=max(0.5, seconds), sample_rate=rate)
    return y[: int(round(seconds * rate))]


def test_loop_waveform_repeats_the_clip_with_a_crossfade_at_each_seam():
    y = np.sin(np.arange(400) / 7).astype(np.float32)
    out = loop_waveform(y, 1000, fade=40)
    assert out.shape == (1000,) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:360], y[:360])  # the first copy up to its fade
    ramp = np.linspace(0, 1, 40, dtype=np.float32)
    np.testing.assert_allclose(out[360:400], y[360:] * (1 - ramp) + y[:40] * ramp, rtol=1e-6)
    np.testing.assert_array_equal(out[400:720], y[40:360])  # the next copy, up to its own seam
    np.testing.assert_array_equal(loop_waveform(y, 300, fade=40), y[:300])
    with pytest.raises(ValueError):
        loop_waveform(np.zeros(0, np.float32), 10, 4)


def test_a_short_clip_becomes_one_window_of_its_looped_sound():
    mel = MelConfig()
    assert mel.short_pad == "loop" and MelConfig.from_dict({k: v for k, v in mel.to_dict().items()
                                                            if k != "short_pad"}).short_pad == "loop"
    y = _hum(3, 0.25, SR)
    spec = log_mel(y, mel)
    win = window_spectrogram(y, spec, mel)
    assert spec.shape[1] < frames_per_window(mel) and win.shape == (mel.n_mels, frames_per_window(mel))
    # no silence: every frame of the window is as loud as the clip's own middle frames
    inner = spec[:, 3:-3].mean()
    assert win.mean(axis=0).min() > 0.8 * inner
    silence = window_spectrogram(y, spec, MelConfig(short_pad="constant"))
    assert silence[:, spec.shape[1]:].max() == 0.0  # what "constant" did, kept as an option
    with pytest.raises(ValueError, match="short_pad"):
        MelConfig(short_pad="zeros")


def test_clips_down_to_a_quarter_second_are_read_and_shorter_ones_refused(tmp_path):
    y = _hum(4, 0.25, SR)
    sf.write(tmp_path / "quarter.wav", y, SR)
    assert len(load_audio(tmp_path / "quarter.wav", sample_rate=SR)) == len(y)
    sf.write(tmp_path / "short.wav", y[: SR // 5], SR)
    with pytest.raises(InputError, match="minimum is 0.25"):
        load_audio(tmp_path / "short.wav", sample_rate=SR)


@pytest.fixture(scope="module")
def service():
    from decodemo.service import Service

    return Service()


@pytest.mark.parametrize("rate, seconds", [(12000, 0.25), (44100, 0.5), (8000, 3.0)])
def test_any_rate_and_length_is_resampled_and_scored_with_maps_at_the_clips_length(service, tmp_path, rate, seconds):
    y = _hum(5, seconds, rate)
    path = tmp_path / f"clip_{rate}.wav"
    sf.write(path, y, rate)
    seen = []
    comp = service.compare(path, domain="hum", progress=lambda f, d: seen.append(d))
    n_frames = 1 + int(round(seconds * SR)) // 256
    assert comp.sample_rate == SR and comp.size[1] == n_frames
    for o in comp.outcomes:
        assert o.map.shape == (128, n_frames) and np.isfinite(o.map).all() and np.isfinite(o.score)
    n_windows = 1 if seconds <= 2 else len(prepare(load_input(path), service.registry.get("hum/invad").config).starts)
    assert any(f"window {n_windows} of {n_windows}" in d for d in seen)


def test_a_minute_long_clip_is_scored_in_batched_windows(service, tmp_path):
    y = _hum(6, 60.0, SR)
    sf.write(tmp_path / "minute.wav", y, SR)
    model = service.registry.get("hum/invad")
    clip = prepare(load_input(tmp_path / "minute.wav", mel=model.config.mel), model.config)
    calls = []
    det = detect_prepared(model, clip, batch_size=16, progress=lambda done, total: calls.append((done, total)))
    w = len(clip.starts)
    assert w == 60 and calls == [(16, w), (32, w), (48, w), (w, w)]
    assert det.map.shape == (128, clip.n_frames) and det.frame_scores.shape == (clip.n_frames,)
    assert clip.n_frames == 1 + 60 * SR // 256 and np.isfinite(det.map).all()
