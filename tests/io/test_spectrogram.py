"""Tests of decodemo.io.spectrogram: the mel settings, the log-mel image, the frame/row <->
seconds/Hz conversions, and cutting a clip into windows and averaging their maps back
(also through decodemo.inference.detect_clip)."""

from __future__ import annotations

import dataclasses
import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from decodemo.errors import DecodemoError, ModelError
from decodemo.inference import AudioInput, audio_input, spectrogram_windows
from decodemo.io.spectrogram import (
    MelConfig,
    frame_scores,
    frame_times,
    frames_per_window,
    log_mel,
    map_cell_to_time_freq,
    mel_band_hz,
    overlap_average,
    pad_to_window,
    tf_axes,
    time_freq_to_cell,
    window_hop_frames,
    window_starts,
)
from decodemo.methods.base import DetectionResult
from decodemo.inference import detect_clip

DEFAULT = MelConfig()
CUSTOM = MelConfig(
    sample_rate=22050,
    n_fft=2048,
    hop_length=512,
    n_mels=64,
    fmin=50.0,
    fmax=9000.0,
    db_min=-90.0,
    db_max=10.0,
    window_seconds=1.5,
    window_hop_seconds=0.5,
)
#: a small front end whose window is exactly 32 frames of 32 mel rows (maps are resized 1:1)
HALF = MelConfig(window_hop_seconds=1.0)
SMALL = MelConfig(n_mels=32, window_seconds=32 * 256 / 16000, window_hop_seconds=16 * 256 / 16000)


def _tone(freq: float, seconds: float, sr: int, amp: float = 0.01) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _covered(starts: list[int], w: int, n: int) -> np.ndarray:
    cover = np.zeros(n, dtype=int)
    for s in starts:
        cover[s : s + w] += 1
    return cover


def _brute_overlap_average(maps, starts, n_frames):
    out = np.zeros((maps[0].shape[0], n_frames))
    for f in range(n_frames):
        cols = [m[:, f - s] for m, s in zip(maps, starts) if s <= f < s + m.shape[1]]
        assert cols, f"frame {f} not covered"
        out[:, f] = np.mean(cols, axis=0)
    return out


# ----------------------------------------------------------------------------- MelConfig


def test_defaults():
    assert DEFAULT.sample_rate == 16000 and DEFAULT.n_fft == 1024 and DEFAULT.hop_length == 256
    assert DEFAULT.n_mels == 128 and DEFAULT.fmin == 0.0 and DEFAULT.fmax is None
    assert DEFAULT.fmax_hz == 8000.0 and CUSTOM.fmax_hz == 9000.0
    assert DEFAULT.seconds_per_frame == 0.016 and CUSTOM.seconds_per_frame == pytest.approx(512 / 22050)
    assert frames_per_window(DEFAULT) == 125  # 2 s / 16 ms
    assert window_hop_frames(DEFAULT) == frames_per_window(DEFAULT) == 125  # a whole window: each frame once
    assert frames_per_window(SMALL) == 32 and window_hop_frames(SMALL) == 16


@pytest.mark.parametrize("cfg", [DEFAULT, CUSTOM, SMALL], ids=["default", "custom", "small"])
def test_round_trip_through_dict_and_json(cfg):
    d = cfg.to_dict()
    assert set(d) == {f.name for f in dataclasses.fields(MelConfig)}
    assert MelConfig.from_dict(d) == cfg
    via_json = json.loads(json.dumps(d))
    back = MelConfig.from_dict(via_json)
    assert back == cfg and back.to_dict() == d
    assert type(back.sample_rate) is int and type(back.fmin) is float


def test_from_dict_missing_keys_take_defaults_and_numbers_are_normalised():
    assert MelConfig.from_dict({}) == DEFAULT
    cfg = MelConfig.from_dict({"hop_length": 512.0, "fmin": 20, "fmax": 4000, "db_max": 0})
    assert cfg.hop_length == 512 and type(cfg.hop_length) is int
    assert type(cfg.fmin) is float and type(cfg.fmax) is float and cfg.fmax == 4000.0
    assert cfg.db_max == 0.0 and cfg.n_mels == 128
    assert MelConfig.from_dict({"fmax": None}).fmax is None


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT.n_mels = 64  # type: ignore[misc]


def test_from_dict_unknown_keys():
    with pytest.raises(ModelError) as ei:
        MelConfig.from_dict({"n_mels": 64, "nmels": 64, "hop": 3})
    msg = str(ei.value)
    assert "unknown keys: hop, nmels" in msg and "Known keys:" in msg and "n_mels" in msg
    assert isinstance(ei.value, DecodemoError)


@pytest.mark.parametrize("d", [[1, 2], "n_mels=64", None, 3])
def test_from_dict_not_a_mapping(d):
    with pytest.raises(ModelError, match="JSON object"):
        MelConfig.from_dict(d)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "d, words",
    [
        ({"n_mels": 0}, "n_mels must be a positive integer"),
        ({"hop_length": 256.5}, "hop_length must be a positive integer"),
        ({"n_fft": True}, "n_fft must be a positive integer"),
        ({"sample_rate": "16000"}, "sample_rate must be a positive integer"),
        ({"fmax": 9000}, "Nyquist"),
        ({"fmin": 5000, "fmax": 4000}, "fmin < fmax"),
        ({"fmin": -1}, "fmin < fmax"),
        ({"db_min": 0, "db_max": 0}, "db_max > db_min"),
        ({"window_seconds": 0}, "must be positive"),
        ({"window_hop_seconds": -1}, "must be positive"),
        ({"window_seconds": 1.0, "window_hop_seconds": 1.5}, "window_hop_seconds"),
        ({"n_mels": 64, "bogus": 1}, "unknown keys: bogus"),
    ],
)
def test_invalid_settings(d, words):
    with pytest.raises(ModelError, match="mel settings") as ei:
        MelConfig.from_dict(d)
    assert words in str(ei.value)
    if "bogus" not in d:
        with pytest.raises(ValueError):
            MelConfig(**d)


def test_window_hop_may_equal_window():
    cfg = MelConfig(window_seconds=1.024, window_hop_seconds=1.024)
    assert frames_per_window(cfg) == window_hop_frames(cfg) == 64


# ----------------------------------------------------------------------------- log_mel


@pytest.mark.filterwarnings("ignore:n_fft=.*is too large for input signal")  # expected for tiny clips
@pytest.mark.parametrize("n", [1, 255, 256, 257, 16000, 16001])
def test_log_mel_shape_dtype_range(n):
    y = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    S = log_mel(y, DEFAULT)
    assert S.dtype == np.float32 and S.shape == (128, 1 + n // 256)
    assert S.min() >= 0.0 and S.max() <= 1.0


def test_log_mel_other_config_shape():
    S = log_mel(_tone(1000, 1.0, 22050), CUSTOM)
    assert S.shape == (64, 1 + 22050 // 512)


def test_log_mel_silence_is_the_floor_and_accepts_float64():
    S = log_mel(np.zeros(4000), DEFAULT)
    assert S.shape == (128, 16) and np.all(S == 0.0)


def test_log_mel_range_is_fixed_not_per_clip():
    # 20 dB quieter -> 20/100 lower on the [0, 1] scale wherever neither is clipped
    loud = log_mel(_tone(1000, 1.0, 16000, amp=0.01), DEFAULT)
    quiet = log_mel(_tone(1000, 1.0, 16000, amp=0.001), DEFAULT)
    inner = (loud > 0.25) & (loud < 0.99)
    assert inner.sum() > 100
    assert np.allclose(loud[inner] - quiet[inner], 0.2, atol=1e-3)
    assert quiet.max() < loud.max() < 1.0


def test_log_mel_rejects_bad_input():
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, 1000)), DEFAULT)
    with pytest.raises(ValueError, match="empty"):
        log_mel(np.zeros(0), DEFAULT)


# ----------------------------------------------------------------------------- where a tone / a click lands


@pytest.mark.parametrize("row", [4, 10, 30, 50, 64, 90, 120])
def test_tone_at_band_centre_peaks_in_that_band(row):
    hz = mel_band_hz(DEFAULT)
    S = log_mel(_tone(hz[row], 1.0, 16000), DEFAULT)
    peak = int(np.argmax(S[:, 4:-4].mean(axis=1)))
    assert peak == row
    n = S.shape[1]
    assert map_cell_to_time_freq(peak, n // 2, S.shape, n, DEFAULT)[1] == pytest.approx(hz[row])


@pytest.mark.parametrize("freq", [123.0, 440.0, 1000.0, 1240.0, 3000.0, 5555.0, 7000.0])
def test_tone_peaks_in_band_with_nearest_centre(freq):
    hz = mel_band_hz(DEFAULT)
    S = log_mel(_tone(freq, 1.0, 16000), DEFAULT)
    n = S.shape[1]
    peak = int(np.argmax(S[:, 4:-4].mean(axis=1)))
    assert peak == int(np.argmin(np.abs(hz - freq)))
    # the conversion functions agree
    assert time_freq_to_cell(0.5, freq, S.shape, n, DEFAULT)[0] == peak
    _, f_centre = map_cell_to_time_freq(peak, 0, S.shape, n, DEFAULT)
    neighbours = hz[max(peak - 1, 0) : peak + 2]
    assert abs(f_centre - freq) == pytest.approx(np.abs(neighbours - freq).min())


@pytest.mark.parametrize("freq", [200.0, 1500.0, 6000.0])
def test_tone_peak_with_custom_config(freq):
    hz = mel_band_hz(CUSTOM)
    assert hz[0] > CUSTOM.fmin and hz[-1] < CUSTOM.fmax_hz and len(hz) == 64
    S = log_mel(_tone(freq, 1.0, CUSTOM.sample_rate), CUSTOM)
    peak = int(np.argmax(S[:, 4:-4].mean(axis=1)))
    assert peak == int(np.argmin(np.abs(hz - freq)))


def test_mel_band_hz_matches_librosa_filter_peaks():
    import librosa

    for cfg in (DEFAULT, CUSTOM):
        hz = mel_band_hz(cfg)
        assert hz.shape == (cfg.n_mels,) and np.all(np.diff(hz) > 0)
        fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax_hz)
        fft_hz = librosa.fft_frequencies(sr=cfg.sample_rate, n_fft=cfg.n_fft)
        peak_hz = fft_hz[np.argmax(fb, axis=1)]
        spacing = cfg.sample_rate / cfg.n_fft
        assert np.all(np.abs(peak_hz - hz) <= spacing + 1e-6)  # each filter peaks at the FFT bin next to its centre


@pytest.mark.parametrize("t0", [0.0503, 0.7771, 1.2345, 1.9])
def test_click_shows_up_at_its_time(t0):
    sr, hop = DEFAULT.sample_rate, DEFAULT.hop_length
    y = np.zeros(2 * sr, dtype=np.float32)
    y[int(round(t0 * sr))] = 0.5
    S = log_mel(y, DEFAULT)
    n = S.shape[1]
    frame = int(np.argmax(S.sum(axis=0)))
    times = frame_times(n, DEFAULT)
    assert abs(times[frame] - t0) <= hop / sr / 2 + 1e-9  # the nearest frame: within half a hop
    assert time_freq_to_cell(t0, 1000.0, S.shape, n, DEFAULT)[1] == frame
    seconds, _ = map_cell_to_time_freq(0, frame, S.shape, n, DEFAULT)
    assert abs(seconds - t0) <= hop / sr
    # far from the click the image is the silent floor
    assert np.all(S[:, np.abs(times - t0) > DEFAULT.n_fft / sr] == 0.0)


def test_click_on_a_coarser_map():
    cfg = DEFAULT
    sr, hop = cfg.sample_rate, cfg.hop_length
    n_samples = 127 * hop  # -> 128 frames, 4 frames per coarse column
    t0 = 1.1
    y = np.zeros(n_samples, dtype=np.float32)
    y[int(t0 * sr)] = 0.5
    S = log_mel(y, cfg)
    n = S.shape[1]
    assert n == 128
    coarse = S.reshape(32, 4, 32, 4).max(axis=(1, 3))  # (32 rows, 32 cols)
    col = int(np.argmax(coarse.sum(axis=0)))
    assert col == int(np.argmax(S.sum(axis=0))) // 4
    assert time_freq_to_cell(t0, 2000.0, coarse.shape, n, cfg)[1] == col
    seconds = tf_axes(coarse.shape, n, cfg)[0]
    assert abs(seconds[col] - t0) <= 2 * hop / sr  # within half a coarse column


# ----------------------------------------------------------------------------- axes and cell conversions


@pytest.mark.parametrize("cfg", [DEFAULT, CUSTOM], ids=["default", "custom"])
def test_tf_axes_full_resolution(cfg):
    n = 77
    seconds, hz = tf_axes((cfg.n_mels, n), n, cfg)
    assert np.allclose(seconds, frame_times(n, cfg))
    assert np.allclose(seconds, np.arange(n) * cfg.hop_length / cfg.sample_rate)
    assert np.allclose(hz, mel_band_hz(cfg))


def test_tf_axes_coarse_map_is_block_centres():
    import librosa

    cfg, n = DEFAULT, 120
    seconds, hz = tf_axes((16, 30), n, cfg)
    assert seconds.shape == (30,) and hz.shape == (16,)
    assert np.allclose(seconds, frame_times(n, cfg).reshape(30, 4).mean(axis=1))
    mel_centres = librosa.hz_to_mel(mel_band_hz(cfg)).reshape(16, 8).mean(axis=1)
    assert np.allclose(librosa.hz_to_mel(hz), mel_centres)
    # a finer map is fine too
    s2, h2 = tf_axes((256, 240), n, cfg)
    assert np.all(np.diff(s2) > 0) and np.all(np.diff(h2) > 0)


@pytest.mark.parametrize("shape, n", [((128, 100), 100), ((16, 25), 100), ((7, 13), 94), ((1, 1), 5)])
def test_cell_round_trip(shape, n):
    for r in range(shape[0]):
        for c in range(shape[1]):
            s, f = map_cell_to_time_freq(r, c, shape, n, DEFAULT)
            assert time_freq_to_cell(s, f, shape, n, DEFAULT) == (r, c)


def test_cell_conversions_clamp_and_check():
    shape, n = (128, 100), 100
    assert time_freq_to_cell(-5.0, -100.0, shape, n, DEFAULT) == (0, 0)
    assert time_freq_to_cell(1e6, 1e6, shape, n, DEFAULT) == (127, 99)
    with pytest.raises(IndexError):
        map_cell_to_time_freq(128, 0, shape, n, DEFAULT)
    with pytest.raises(IndexError):
        map_cell_to_time_freq(0, -1, shape, n, DEFAULT)
    with pytest.raises(ValueError):
        map_cell_to_time_freq(0, 0, shape, 0, DEFAULT)
    with pytest.raises(ValueError):
        tf_axes((0, 5), 5, DEFAULT)


# ----------------------------------------------------------------------------- windows


@pytest.mark.parametrize("cfg", [DEFAULT, CUSTOM, SMALL, MelConfig(window_seconds=1.024, window_hop_seconds=1.024)],
                         ids=["default", "custom", "small", "no-overlap"])
def test_window_starts_cover_every_frame(cfg):
    w, hop = frames_per_window(cfg), window_hop_frames(cfg)
    for n in list(range(1, 3 * w + 5)) + [10 * w + 7, 1 + 600 * cfg.sample_rate // cfg.hop_length]:
        starts = window_starts(n, cfg)
        if n <= w:
            assert starts == [0]
            continue
        assert starts[0] == 0 and starts[-1] == n - w  # the last window ends at the last frame
        assert all(0 <= s <= n - w for s in starts)
        steps = np.diff(starts)
        assert np.all(steps > 0) and np.all(steps <= hop)
        assert np.all(steps[:-1] == hop)  # regular hop, only the end-aligned one may be shorter
        assert _covered(starts, w, n).min() >= 1


def test_window_starts_examples():
    # W = 125, hop = 62 (a half-window hop)
    assert window_starts(125, HALF) == [0]
    assert window_starts(126, HALF) == [0, 1]
    assert window_starts(187, HALF) == [0, 62]
    assert window_starts(300, HALF) == [0, 62, 124, 175]  # 300 - 125 is not a multiple of 62
    assert window_starts(311, HALF) == [0, 62, 124, 186]  # 311 - 125 is: no extra window
    # 10 s at 16 kHz
    n = 1 + 160000 // 256
    assert n == 626 and window_starts(n, HALF)[-3:] == [434, 496, 501]
    with pytest.raises(ValueError):
        window_starts(0, HALF)
    # the default hop is a whole window: each frame scored once, the last window end-aligned
    assert window_starts(300, DEFAULT) == [0, 125, 175] and window_starts(250, DEFAULT) == [0, 125]


def test_pad_to_window():
    w = frames_per_window(HALF)
    rng = np.random.default_rng(0)
    spec = rng.random((128, 40)).astype(np.float32)
    out = pad_to_window(spec, HALF)
    assert out.shape == (128, w) and out.dtype == np.float32
    assert np.array_equal(out[:, :40], spec) and np.all(out[:, 40:] == 0.0)
    long = rng.random((128, w)).astype(np.float32)
    assert pad_to_window(long, HALF) is long  # already one window: untouched
    edge = pad_to_window(spec, HALF, mode="edge")
    assert np.all(edge[:, 40:] == spec[:, -1:])
    wrap = pad_to_window(spec, HALF, mode="wrap")
    assert np.array_equal(wrap[:, 40:80], spec)
    refl = pad_to_window(spec, HALF, mode="reflect")
    assert np.array_equal(refl[:, 40], spec[:, 38])
    one = pad_to_window(spec[:, :1], HALF, mode="reflect")  # reflect of one frame = edge
    assert np.all(one == spec[:, :1])
    batch = pad_to_window(rng.random((2, 8, 10)), HALF)
    assert batch.shape == (2, 8, w)
    with pytest.raises(ValueError, match="unknown pad mode"):
        pad_to_window(spec, HALF, mode="mean")
    with pytest.raises(ValueError, match="empty"):
        pad_to_window(np.zeros((128, 0)), HALF)


@pytest.mark.parametrize("n", [1, 19, 32, 33, 47, 48, 82, 100, 113])
def test_overlap_average_matches_brute_force(n):
    cfg = SMALL
    w = frames_per_window(cfg)
    starts = window_starts(n, cfg)
    rng = np.random.default_rng(n)
    maps = [rng.random((5, w)) for _ in starts]
    avg = overlap_average(maps, starts, n)
    assert avg.shape == (5, n) and avg.dtype == np.float32
    assert np.allclose(avg, _brute_overlap_average(maps, starts, n), atol=1e-6)
    curve = frame_scores(avg)
    assert curve.shape == (n,) and curve.dtype == np.float32
    assert np.allclose(curve, avg.max(axis=0))


def test_overlap_average_by_window_index():
    # each window's map is its index: a frame gets the mean index of the windows covering it
    n, cfg = 300, HALF
    starts = window_starts(n, cfg)
    assert starts == [0, 62, 124, 175]
    maps = [np.full((3, 125), float(k)) for k in range(len(starts))]
    curve = frame_scores(overlap_average(maps, starts, n))
    assert curve.shape == (n,)
    assert np.all(curve[:62] == 0.0)  # window 0 only
    assert np.allclose(curve[62:124], 0.5)  # windows 0, 1
    assert curve[124] == pytest.approx(1.0)  # windows 0, 1, 2
    assert np.allclose(curve[125:175], 1.5)  # windows 1, 2
    assert np.allclose(curve[175:187], 2.0)  # windows 1, 2, 3
    assert np.allclose(curve[187:249], 2.5)  # windows 2, 3
    assert np.all(curve[249:] == 3.0)  # window 3 only


def test_overlap_average_short_clip_drops_padding():
    n, w = 19, frames_per_window(SMALL)
    m = np.arange(2 * w, dtype=np.float64).reshape(2, w)
    avg = overlap_average([m], window_starts(n, SMALL), n)
    assert avg.shape == (2, n) and np.array_equal(avg, m[:, :n].astype(np.float32))
    assert np.array_equal(frame_scores(avg), m[1, :n].astype(np.float32))


def test_overlap_average_errors():
    m = np.zeros((2, 4))
    with pytest.raises(ValueError, match="one start per map"):
        overlap_average([m, m], [0], 8)
    with pytest.raises(ValueError, match="at least one map"):
        overlap_average([], [], 8)
    with pytest.raises(ValueError, match="2-D"):
        overlap_average([np.zeros(4)], [0], 4)
    with pytest.raises(ValueError, match="shape"):
        overlap_average([m, np.zeros((3, 4))], [0, 4], 8)
    with pytest.raises(ValueError, match="frame 4 of 10 is covered by no window"):
        overlap_average([m, m], [0, 6], 10)
    # a window starting before the clip only counts where it overlaps
    assert np.array_equal(overlap_average([np.arange(8.0).reshape(2, 4)], [-2], 2), [[2, 3], [6, 7]])
    with pytest.raises(ValueError, match="2-D"):
        frame_scores(np.zeros(3))


# ----------------------------------------------------------------------------- through the detector


class _FakeDetector:
    """Scores a window by its mean; its anomaly map is the window image itself (channel 0),
    or a constant per window when ``const`` is set."""

    def __init__(self, const: bool = False):
        self.config = SimpleNamespace(clip_reduce="max")
        self.const = const
        self.seen = 0

    def detect(self, images: torch.Tensor) -> DetectionResult:
        b = images.shape[0]
        if self.const:
            maps = (self.seen + torch.arange(b, dtype=torch.float32))[:, None, None].expand(b, *images.shape[2:])
        else:
            maps = images[:, 0].clone()
        self.seen += b
        return DetectionResult(scores=images.mean(dim=(1, 2, 3)), maps=maps, nfe=3, variants={"m": images.amax(dim=(1, 2, 3))})


def _clip(seconds: float) -> AudioInput:
    rng = np.random.default_rng(int(seconds * 1000))
    y = (0.05 * rng.standard_normal(int(seconds * SMALL.sample_rate))).astype(np.float32)
    spec = log_mel(y, SMALL)
    windows, starts = spectrogram_windows(spec, SMALL, 32)
    return AudioInput(waveform=y, spectrogram=spec, windows=windows, starts=starts, mel=SMALL)


@pytest.mark.parametrize("seconds", [0.3, 0.512, 1.3, 2.0])
def test_detect_clip_identity_maps_give_back_the_spectrogram(seconds):
    clip = _clip(seconds)
    n = clip.n_frames
    assert n == 1 + int(seconds * 16000) // 256
    assert clip.starts == window_starts(n, SMALL)
    res = detect_clip(_FakeDetector(), clip, batch_size=2)
    assert res.tf_map.shape == (32, n)
    # windows overlap and the last one may be end-aligned or padded: still each frame is the spectrogram
    assert np.allclose(res.tf_map, clip.spectrogram, atol=1e-5)
    assert res.frame_scores.shape == (n,)
    assert np.allclose(res.frame_scores, clip.spectrogram.max(axis=0), atol=1e-5)
    assert res.window_scores.shape == (len(clip.starts),)
    assert res.score == pytest.approx(float(res.window_scores.max()))
    assert res.nfe == 3 * len(clip.starts) and set(res.variants) == {"m"}


@pytest.mark.parametrize("seconds", [0.3, 1.3, 2.0])
def test_detect_clip_averages_overlapping_windows(seconds):
    clip = _clip(seconds)
    n, w = clip.n_frames, frames_per_window(SMALL)
    res = detect_clip(_FakeDetector(const=True), clip, batch_size=3)
    expected = _brute_overlap_average([np.full((1, w), float(k)) for k in range(len(clip.starts))], clip.starts, n)[0]
    assert res.frame_scores.shape == (n,)
    assert np.allclose(res.frame_scores, expected, atol=1e-5)
    assert np.allclose(res.tf_map, expected[None, :], atol=1e-5)


def test_audio_input_from_a_wav_file(tmp_path):
    y = 0.1 * np.sin(2 * np.pi * 1000 * np.arange(int(1.3 * 44100)) / 44100)
    buf = io.BytesIO()
    sf.write(buf, y, 44100, format="WAV", subtype="PCM_16")
    path = tmp_path / "clip.wav"
    path.write_bytes(buf.getvalue())
    clip = audio_input(path, SMALL, 48)
    assert clip.waveform.dtype == np.float32 and len(clip.waveform) == int(1.3 * 16000)
    assert clip.spectrogram.shape == (32, 1 + len(clip.waveform) // 256)
    assert clip.starts == window_starts(clip.n_frames, SMALL)
    assert clip.windows.shape == (len(clip.starts), 3, 48, 48)
    row = int(np.argmax(clip.spectrogram[:, 4:-4].mean(axis=1)))
    assert row == int(np.argmin(np.abs(mel_band_hz(SMALL) - 1000.0)))
