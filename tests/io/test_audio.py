"""Tests of decodemo.io.audio: every accepted format, resampling, down-mixing, and every
refusal, on real files written to disk."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from decodemo.errors import (
    AudioTooLongError,
    AudioTooShortError,
    CorruptFileError,
    DecodemoError,
    EmptyFileError,
    FileTooLargeError,
    InputError,
    NonFiniteAudioError,
    SilentAudioError,
    UnsupportedFormatError,
)
from decodemo.io.audio import (
    ACCEPTED_AUDIO_FORMATS,
    AUDIO_EXTENSIONS,
    DEFAULT_MAX_AUDIO_BYTES,
    DEFAULT_SAMPLE_RATE,
    load_audio,
)

#: (libsndfile format, subtype, extension); subtype None = libsndfile's default.
FORMATS = {
    "WAV": ("WAV", "PCM_16", ".wav"),
    "FLAC": ("FLAC", "PCM_16", ".flac"),
    "OGG": ("OGG", "VORBIS", ".ogg"),
    "MP3": ("MP3", "MPEG_LAYER_III", ".mp3"),
}
LOSSY = {"OGG", "MP3"}
ACCEPTED_WORDS = "WAV, FLAC, Ogg (Vorbis/Opus) or MP3"


def _can_write(fmt: str, subtype: str | None) -> bool:
    if fmt not in sf.available_formats():
        return False
    return subtype is None or subtype in sf.available_subtypes(fmt)


def _require(fmt_key: str) -> tuple[str, str | None, str]:
    fmt, subtype, ext = FORMATS[fmt_key]
    if not _can_write(fmt, subtype):
        pytest.skip(
            f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}/{subtype} "
            "(MP3 needs libsndfile >= 1.1 built with LAME/mpg123)"
        )
    return fmt, subtype, ext


def _encode(y: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _sine(seconds: float, sr: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _dominant_hz(y: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / sr)[np.argmax(spec)])


def _rel_err(out: np.ndarray, ref: np.ndarray, trim: int) -> float:
    """RMS of the difference relative to the RMS of ``ref``, away from the clip edges."""
    o, r = out[trim:-trim].astype(np.float64), ref[trim:-trim].astype(np.float64)
    return float(np.sqrt(np.mean((o - r) ** 2)) / np.sqrt(np.mean(r**2)))


def _assert_refused(exc_type: type[InputError], excinfo: pytest.ExceptionInfo) -> str:
    """The exact class, a subclass of the common bases; returns the message."""
    assert type(excinfo.value) is exc_type
    assert isinstance(excinfo.value, InputError)
    assert isinstance(excinfo.value, DecodemoError)
    assert issubclass(exc_type, DecodemoError) and issubclass(exc_type, ValueError)
    msg = str(excinfo.value)
    assert msg.rstrip().endswith(".")  # a whole sentence, not a raw library error
    return msg


def test_constants():
    assert AUDIO_EXTENSIONS == (".wav", ".flac", ".ogg", ".mp3")
    assert ACCEPTED_AUDIO_FORMATS == ACCEPTED_WORDS
    assert DEFAULT_SAMPLE_RATE == 16000
    assert DEFAULT_MAX_AUDIO_BYTES == 200 * 2**20


# ----------------------------------------------------------------------------- positives


@pytest.mark.parametrize("src_rate", [44100, 8000])
@pytest.mark.parametrize("fmt_key", list(FORMATS))
def test_each_format_loads_mono_float32_resampled(tmp_path, fmt_key, src_rate):
    fmt, subtype, ext = _require(fmt_key)
    seconds = 1.3
    path = _write(tmp_path, f"tone{ext}", _encode(_sine(seconds, src_rate), src_rate, fmt, subtype))
    with sf.SoundFile(path) as check:  # the file really is what we asked for
        assert check.format == fmt and check.samplerate == src_rate and check.channels == 1

    out = load_audio(path)
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float32 and out.ndim == 1 and out.flags.c_contiguous
    # duration preserved at the new rate (lossy codecs: within 10 ms)
    tol = 0.01 * DEFAULT_SAMPLE_RATE if fmt_key in LOSSY else 2
    assert abs(len(out) - seconds * DEFAULT_SAMPLE_RATE) <= tol
    assert np.isfinite(out).all()
    # same tone, same level, at 16 kHz
    assert abs(_dominant_hz(out, DEFAULT_SAMPLE_RATE) - 440.0) < 2.0
    ref = _sine(len(out) / DEFAULT_SAMPLE_RATE, DEFAULT_SAMPLE_RATE)[: len(out)]
    assert _rel_err(out, ref, trim=320) < (0.1 if fmt_key in LOSSY else 1e-3)
    rms = float(np.sqrt(np.mean(out.astype(np.float64) ** 2)))
    assert abs(rms - 0.5 / np.sqrt(2)) < 0.02


@pytest.mark.parametrize("fmt_key", list(FORMATS))
def test_stereo_is_mean_of_channels(tmp_path, fmt_key):
    fmt, subtype, ext = _require(fmt_key)
    sr = 16000
    a = _sine(1.0, sr, 440.0, 0.4)
    b = _sine(1.0, sr, 1000.0, 0.2)
    path = _write(tmp_path, f"stereo{ext}", _encode(np.stack([a, b], 1), sr, fmt, subtype))
    with sf.SoundFile(path) as check:
        assert check.channels == 2
    out = load_audio(path, sample_rate=sr)
    assert out.ndim == 1 and out.dtype == np.float32
    assert abs(len(out) - len(a)) <= (0.01 * sr if fmt_key in LOSSY else 0)
    n = min(len(out), len(a))
    expected = (a[:n] + b[:n]) / 2
    assert _rel_err(out[:n], expected, trim=160) < (0.1 if fmt_key in LOSSY else 1e-3)
    # neither channel alone
    assert _rel_err(out[:n], a[:n], trim=160) > 0.3
    if fmt_key not in LOSSY:
        assert np.allclose(out, expected, atol=2 / 32768)


def test_stereo_downmix_with_resampling(tmp_path):
    sr = 44100
    a = _sine(1.0, sr, 300.0, 0.4)
    b = np.full_like(a, 0.2)
    path = _write(tmp_path, "dc.flac", _encode(np.stack([a, b], 1), sr, "FLAC"))
    out = load_audio(path)  # -> 16 kHz
    assert len(out) == 16000
    ref = (_sine(1.0, 16000, 300.0, 0.4) + 0.2) / 2
    assert _rel_err(out, ref, trim=320) < 1e-3
    assert abs(float(out[320:-320].mean()) - 0.1) < 1e-3


def test_many_channels_are_averaged(tmp_path):
    sr = 16000
    chans = np.stack([_sine(0.6, sr, f, 0.1 * (i + 1)) for i, f in enumerate([200, 500, 900, 1500])], 1)
    out = load_audio(_write(tmp_path, "four.wav", _encode(chans, sr, "WAV", "FLOAT")), sample_rate=sr)
    assert np.allclose(out, chans.mean(1), atol=1e-6)


def test_antiphase_stereo_mixes_to_silence(tmp_path):
    # left = sine, right = -sine: the mono mix is exactly zero and is refused as silent
    y = np.round(_sine(1.0, 16000) * 32767).astype(np.int16)  # integers, so -y is exact
    path = _write(tmp_path, "antiphase.wav", _encode(np.stack([y, -y], 1), 16000, "WAV", "PCM_16"))
    with pytest.raises(SilentAudioError) as ei:
        load_audio(path)
    msg = _assert_refused(SilentAudioError, ei)
    assert "all zeros" in msg
    # without the silence check, the mix is ~0 everywhere
    with pytest.raises(SilentAudioError):
        load_audio(path, silence_rms=0.0)


def test_antiphase_plus_common_signal(tmp_path):
    sr = 16000
    s, c = _sine(1.0, sr, 700.0, 0.3), _sine(1.0, sr, 250.0, 0.2)
    path = _write(tmp_path, "lr.wav", _encode(np.stack([c + s, c - s], 1), sr, "WAV", "FLOAT"))
    out = load_audio(path, sample_rate=sr)
    assert np.allclose(out, c, atol=1e-6)  # the antiphase part cancels


def test_upsampling_8k_tone_keeps_frequency_and_removes_nothing(tmp_path):
    path = _write(tmp_path, "low.wav", _encode(_sine(1.0, 8000, 1000.0), 8000, "WAV", "FLOAT"))
    out = load_audio(path, sample_rate=16000)
    assert len(out) == 16000
    assert abs(_dominant_hz(out, 16000) - 1000.0) < 2.0
    # nothing above the source's Nyquist frequency (4 kHz) is created
    spec = np.abs(np.fft.rfft(out[320:-320] * np.hanning(len(out) - 640))) ** 2
    freqs = np.fft.rfftfreq(len(out) - 640, 1 / 16000)
    assert spec[freqs > 4200].sum() < 1e-6 * spec.sum()


def test_downsampling_removes_content_above_new_nyquist(tmp_path):
    sr = 44100
    y = _sine(1.0, sr, 440.0, 0.3) + _sine(1.0, sr, 10000.0, 0.3)  # 10 kHz > 8 kHz
    out = load_audio(_write(tmp_path, "mix.wav", _encode(y, sr, "WAV", "FLOAT")), sample_rate=16000)
    ref = _sine(1.0, 16000, 440.0, 0.3)
    assert _rel_err(out, ref, trim=320) < 0.01  # no 6 kHz alias of the 10 kHz tone


@pytest.mark.parametrize("target", [8000, 16000, 22050, 48000])
def test_output_rate_parameter(tmp_path, target):
    path = _write(tmp_path, "t.wav", _encode(_sine(0.75, 44100, 300.0), 44100, "WAV", "PCM_16"))
    out = load_audio(path, sample_rate=target)
    assert abs(len(out) - 0.75 * target) <= 1
    assert abs(_dominant_hz(out, target) - 300.0) < 3.0


def test_no_resampling_when_rate_matches_is_exact(tmp_path):
    ints = (np.arange(16000) % 200 - 100).astype(np.int16) * 100
    out = load_audio(_write(tmp_path, "exact.wav", _encode(ints, 16000, "WAV", "PCM_16")))
    assert np.array_equal(out, ints.astype(np.float32) / 32768.0)


@pytest.mark.parametrize(
    "subtype, ints, expected",
    [
        ("PCM_16", np.array([16384, -32768, 0, 32767], dtype=np.int16), [0.5, -1.0, 0.0, 32767 / 32768]),
        ("PCM_24", np.array([2**30, -(2**31), 0, 2**8], dtype=np.int32), [0.5, -1.0, 0.0, 2**-23]),
        ("PCM_32", np.array([2**30, -(2**31), 0, 1], dtype=np.int32), [0.5, -1.0, 0.0, 2**-31]),
        ("PCM_U8", np.array([2**14, -(2**15), 0, 2**8], dtype=np.int16), [0.5, -1.0, 0.0, 2**-7]),
    ],
)
def test_integer_pcm_scaled_to_unit_range(tmp_path, subtype, ints, expected):
    y = np.tile(ints, 4000)  # 16,000 samples = 1 s at 16 kHz, no resampling
    path = _write(tmp_path, "pcm.wav", _encode(y, 16000, "WAV", subtype))
    with sf.SoundFile(path) as check:
        assert check.subtype == subtype
    out = load_audio(path)
    assert out.dtype == np.float32 and len(out) == len(y)
    assert out[:4].tolist() == pytest.approx(expected, abs=1e-9)


def test_float_wav_keeps_loudness_above_full_scale(tmp_path):
    y = _sine(1.0, 16000, 300.0, 2.5)  # float WAV may exceed 1.0; the loader keeps the scale
    out = load_audio(_write(tmp_path, "hot.wav", _encode(y, 16000, "WAV", "FLOAT")))
    assert np.allclose(out, y, atol=1e-6)
    assert out.max() > 2.4


@pytest.mark.parametrize("fmt, subtype", [("WAVEX", "PCM_16"), ("RF64", "PCM_16"), ("W64", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "DOUBLE"), ("FLAC", "PCM_24")])
def test_wav_family_variants(tmp_path, fmt, subtype):
    if not _can_write(fmt, subtype):
        pytest.skip(f"libsndfile cannot write {fmt}/{subtype}")
    y = _sine(0.6, 16000, 500.0)
    out = load_audio(_write(tmp_path, f"v_{fmt}.wav", _encode(y, 16000, fmt, subtype)))
    assert out.dtype == np.float32 and len(out) == len(y)
    assert np.allclose(out, y, atol=1e-4)


def test_ogg_opus(tmp_path):
    if not _can_write("OGG", "OPUS"):
        pytest.skip("libsndfile cannot write Ogg Opus")
    y = _sine(1.0, 48000, 440.0)
    out = load_audio(_write(tmp_path, "voice.ogg", _encode(y, 48000, "OGG", "OPUS")))
    assert out.dtype == np.float32 and abs(len(out) - 16000) <= 160
    assert abs(_dominant_hz(out, 16000) - 440.0) < 3.0


@pytest.mark.parametrize("source_kind", ["str", "path", "bytes", "bytearray", "bytesio", "fileobj"])
def test_source_kinds(tmp_path, source_kind):
    data = _encode(_sine(0.6, 16000), 16000, "FLAC")
    p = _write(tmp_path, "a.flac", data)
    if source_kind == "fileobj":
        with open(p, "rb") as f:
            out = load_audio(f)
    else:
        src = {"str": str(p), "path": p, "bytes": data, "bytearray": bytearray(data), "bytesio": io.BytesIO(data)}
        out = load_audio(src[source_kind])
    assert out.shape == (9600,) and out.dtype == np.float32


def test_name_does_not_decide_format(tmp_path):
    y = _sine(0.6, 16000)
    flac_as_wav = _write(tmp_path, "really_flac.wav", _encode(y, 16000, "FLAC"))
    wav_as_mp3 = _write(tmp_path, "really_wav.mp3", _encode(y, 16000, "WAV", "PCM_16"))
    no_ext = _write(tmp_path, "noext", _encode(y, 16000, "OGG", "VORBIS"))
    for p in (flac_as_wav, wav_as_mp3):
        assert np.allclose(load_audio(p), y, atol=1e-4)
    assert len(load_audio(no_ext)) == pytest.approx(9600, abs=160)


def test_limits_exactly_allowed(tmp_path):
    data = _encode(_sine(0.5, 8000), 8000, "WAV", "PCM_16")
    p = _write(tmp_path, "edge.wav", data)
    assert len(load_audio(p)) == 8000  # exactly the default minimum of 0.5 s
    load_audio(p, max_seconds=0.5)  # exactly the maximum
    load_audio(p, max_bytes=len(data))  # exactly the byte limit


def test_bad_sample_rate_argument_is_programming_error():
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(b"RIFF", sample_rate=0)


def test_wrong_source_type():
    with pytest.raises(TypeError):
        load_audio(12345)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- refusals


def test_empty_file(tmp_path):
    with pytest.raises(EmptyFileError) as ei:
        load_audio(_write(tmp_path, "empty.wav", b""))
    msg = _assert_refused(EmptyFileError, ei)
    assert "'empty.wav'" in msg and "empty (0 bytes)" in msg and "has content" in msg
    with pytest.raises(EmptyFileError):
        load_audio(io.BytesIO(b""))
    with pytest.raises(EmptyFileError):
        load_audio(b"")


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(InputError, match="no file"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(InputError, match="not a file"):
        load_audio(tmp_path)


@pytest.mark.parametrize(
    "name, data, words",
    [
        ("notes.txt", b"Fan recording notes.\nMotor at 1500 rpm, mic 20 cm away.\n" * 20, "a text file"),
        ("notes.wav", b"Fan recording notes.\nMotor at 1500 rpm, mic 20 cm away.\n" * 20, "a text file"),
        ("random.wav", b"\x42" + np.random.default_rng(1).bytes(4095), "is not a recognised audio file"),
        ("doc.flac", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" * 5, "a PDF document"),
        ("archive.mp3", b"PK\x03\x04" + bytes(200), "a ZIP archive"),
    ],
    ids=["text.txt", "text.wav", "random.wav", "pdf.flac", "zip.mp3"],
)
def test_not_audio(tmp_path, name, data, words):
    with pytest.raises(UnsupportedFormatError) as ei:
        load_audio(_write(tmp_path, name, data))
    msg = _assert_refused(UnsupportedFormatError, ei)
    assert f"'{name}'" in msg and words in msg
    assert f"Accepted: {ACCEPTED_WORDS} files (.wav, .flac, .ogg, .mp3)." in msg


def test_png_renamed_wav(tmp_path):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, "PNG")
    with pytest.raises(UnsupportedFormatError) as ei:
        load_audio(_write(tmp_path, "photo.wav", buf.getvalue()))
    msg = _assert_refused(UnsupportedFormatError, ei)
    assert "'photo.wav' is a PNG image, not an audio file" in msg and ACCEPTED_WORDS in msg


def test_aiff_is_not_accepted(tmp_path):
    # libsndfile decodes AIFF fine, but it is not one of the accepted formats
    data = _encode(_sine(1.0, 16000), 16000, "AIFF", "PCM_16")
    with pytest.raises(UnsupportedFormatError) as ei:
        load_audio(_write(tmp_path, "mac.aiff", data))
    msg = _assert_refused(UnsupportedFormatError, ei)
    assert "AIFF" in msg and "not accepted" in msg and ACCEPTED_WORDS in msg


def test_truncated_wav_header(tmp_path):
    data = _encode(_sine(1.0, 8000), 8000, "WAV", "PCM_16")
    for cut in (4, 20, 30):
        with pytest.raises(CorruptFileError) as ei:
            load_audio(_write(tmp_path, f"hdr{cut}.wav", data[:cut]))
        msg = _assert_refused(CorruptFileError, ei)
        assert f"'hdr{cut}.wav' could not be decoded as a WAV file" in msg
        assert "damaged or cut short" in msg and f"Export it again as {ACCEPTED_WORDS}" in msg


@pytest.mark.parametrize("keep", [44, 44 + 1000, 8044 // 2])
def test_wav_cut_short_names_the_missing_bytes(tmp_path, keep):
    data = _encode(_sine(1.0, 8000), 8000, "WAV", "PCM_16")
    assert len(data) == 16044  # 44-byte header + 16,000 bytes of samples
    with pytest.raises(CorruptFileError) as ei:
        load_audio(_write(tmp_path, "cut.wav", data[:keep]))
    msg = _assert_refused(CorruptFileError, ei)
    assert "16,000 bytes of samples" in msg and f"only {keep - 44:,} are present" in msg


def test_wav_with_garbage_after_riff_header(tmp_path):
    data = _encode(_sine(1.0, 8000), 8000, "WAV", "PCM_16")
    garbage = data[:12] + np.random.default_rng(5).bytes(4000)  # RIFF....WAVE, then noise
    with pytest.raises(CorruptFileError) as ei:
        load_audio(_write(tmp_path, "garbage.wav", garbage))
    msg = _assert_refused(CorruptFileError, ei)
    assert "WAV" in msg and "damaged" in msg


def test_wav_header_then_too_little_garbage(tmp_path):
    data = _encode(_sine(1.0, 8000), 8000, "WAV", "PCM_16")
    with pytest.raises(CorruptFileError, match="only 1,000 are present"):
        load_audio(_write(tmp_path, "g2.wav", data[:44] + np.random.default_rng(6).bytes(1000)))


@pytest.mark.parametrize("fmt_key, cut", [("FLAC", 0.5), ("FLAC", 30), ("OGG", 0.5), ("MP3", 100)])
def test_other_formats_cut_short(tmp_path, fmt_key, cut):
    fmt, subtype, ext = _require(fmt_key)
    data = _encode(_sine(1.0, 8000), 8000, fmt, subtype)
    n = int(len(data) * cut) if cut < 1 else int(cut)
    with pytest.raises(CorruptFileError) as ei:
        load_audio(_write(tmp_path, f"cut{ext}", data[:n]))
    msg = _assert_refused(CorruptFileError, ei)
    assert "damaged or cut short" in msg


def test_truncated_mp3_decodes_up_to_the_cut(tmp_path):
    fmt, subtype, _ = _require("MP3")
    data = _encode(_sine(2.0, 16000), 16000, fmt, subtype)
    out = load_audio(_write(tmp_path, "part.mp3", data[: int(len(data) * 0.6)]))
    assert 0.5 * 16000 < len(out) < 2.0 * 16000  # documented: decoded up to the cut, as players do
    assert np.isfinite(out).all()


def test_signature_then_garbage_is_corrupt_not_unsupported(tmp_path):
    rng = np.random.default_rng(7)
    for name, head in [("a.flac", b"fLaC"), ("a.ogg", b"OggS"), ("a.mp3", b"ID3\x04\x00\x00\x00\x00\x00\x00")]:
        with pytest.raises(CorruptFileError) as ei:
            load_audio(_write(tmp_path, name, head + rng.bytes(3000)))
        _assert_refused(CorruptFileError, ei)


def test_too_short(tmp_path):
    path = _write(tmp_path, "blip.flac", _encode(_sine(0.2, 8000), 8000, "FLAC"))
    with pytest.raises(AudioTooShortError) as ei:
        load_audio(path)
    msg = _assert_refused(AudioTooShortError, ei)
    assert "'blip.flac' lasts 0.20 s" in msg and "minimum is 0.25 s" in msg and "longer recording" in msg
    assert len(load_audio(path, min_seconds=0.2)) == 3200
    with pytest.raises(AudioTooShortError, match="minimum is 2.00 s"):
        load_audio(_write(tmp_path, "ok.wav", _encode(_sine(1.0, 8000), 8000)), min_seconds=2.0)


def test_too_long_default_limit(tmp_path):
    # 601 s at a 100 Hz rate: just over the default 600 s limit, yet only ~120 kB
    sr = 100
    y = np.tile(_sine(1.0, sr, 10.0), 601)
    data = _encode(y, sr, "WAV", "PCM_16")
    assert len(data) < 200_000
    with pytest.raises(AudioTooLongError) as ei:
        load_audio(_write(tmp_path, "long.wav", data))
    msg = _assert_refused(AudioTooLongError, ei)
    assert "'long.wav' lasts 10.0 min (601 s)" in msg and "the limit is 10.0 min (600 s)" in msg
    assert "shorter clips" in msg


@pytest.mark.parametrize("fmt_key", list(FORMATS))
def test_too_long_with_parameter(tmp_path, fmt_key):
    fmt, subtype, ext = _require(fmt_key)
    path = _write(tmp_path, f"long{ext}", _encode(_sine(2.1, 8000), 8000, fmt, subtype))
    # MP3's header duration is an estimate (checked with 10 % slack); the decoded length is
    # checked again, so 2.1 s is refused with a 2.0 s limit in every format
    with pytest.raises(AudioTooLongError) as ei:
        load_audio(path, max_seconds=2.0)
    msg = _assert_refused(AudioTooLongError, ei)
    assert "lasts 2.1" in msg and "the limit is 2.00 s" in msg
    assert len(load_audio(path, max_seconds=2.2)) == pytest.approx(2.1 * 16000, abs=160)


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_all_zeros_is_silent(tmp_path, subtype):
    path = _write(tmp_path, "zeros.wav", _encode(np.zeros(16000), 16000, "WAV", subtype))
    for kw in ({}, {"silence_rms": 0.0}):  # all zeros is refused whatever the level
        with pytest.raises(SilentAudioError) as ei:
            load_audio(path, **kw)
        msg = _assert_refused(SilentAudioError, ei)
        assert "'zeros.wav' is silent (all zeros)" in msg and "Check the recording" in msg
    with pytest.raises(SilentAudioError, match=r"minimum level is RMS 1\.0e-04 \(-80\.0 dBFS\)"):
        load_audio(path)


def test_zeros_in_flac_is_silent(tmp_path):
    with pytest.raises(SilentAudioError, match="all zeros"):
        load_audio(_write(tmp_path, "z.flac", _encode(np.zeros(16000), 16000, "FLAC")))


def test_near_silent(tmp_path):
    quiet = _sine(1.0, 16000, 300.0, 1e-5)  # RMS 7.1e-6, about -103 dBFS
    path = _write(tmp_path, "hiss.wav", _encode(quiet, 16000, "WAV", "FLOAT"))
    with pytest.raises(SilentAudioError) as ei:
        load_audio(path)
    msg = _assert_refused(SilentAudioError, ei)
    assert "'hiss.wav' is silent (RMS 7.07e-06 (-103.0 dBFS))" in msg
    assert "minimum level is RMS 1.0e-04 (-80.0 dBFS)" in msg
    assert np.allclose(load_audio(path, silence_rms=1e-6), quiet, atol=1e-9)  # a lower threshold lets it in


def test_one_lsb_pcm_is_near_silent(tmp_path):
    lsb = np.where(np.arange(16000) % 2, 1, -1).astype(np.int16)  # +-1 LSB: RMS 3.05e-05
    with pytest.raises(SilentAudioError, match=r"RMS 3\.05e-05"):
        load_audio(_write(tmp_path, "lsb.wav", _encode(lsb, 16000, "WAV", "PCM_16")))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_wav(tmp_path, bad):
    y = _sine(1.0, 8000)
    y[100] = bad
    y[4000] = bad
    path = _write(tmp_path, "nan.wav", _encode(y, 8000, "WAV", "FLOAT"))
    with sf.SoundFile(path) as check:
        assert check.subtype == "FLOAT"
    with pytest.raises(NonFiniteAudioError) as ei:
        load_audio(path)
    msg = _assert_refused(NonFiniteAudioError, ei)
    assert "'nan.wav' contains 2 invalid samples (NaN or infinite) out of 8,000" in msg
    assert "every sample must be a finite number" in msg


def test_non_finite_in_one_channel_of_stereo(tmp_path):
    y = np.stack([_sine(1.0, 16000), _sine(1.0, 16000)], 1)
    y[10, 1] = np.nan
    with pytest.raises(NonFiniteAudioError, match="1 invalid samples"):
        load_audio(_write(tmp_path, "st.wav", _encode(y, 16000, "WAV", "FLOAT")))


def test_huge_finite_float_samples_never_come_out_non_finite(tmp_path):
    # Finite float32 samples near the top of the range overflow when resampled; the loader
    # must refuse the clip rather than return NaN/inf.
    y = (3e38 * np.sign(_sine(1.0, 8000, 1000.0))).astype(np.float32)
    path = _write(tmp_path, "huge.wav", _encode(y, 8000, "WAV", "FLOAT"))
    with pytest.raises(NonFiniteAudioError) as ei:
        load_audio(path)
    msg = _assert_refused(NonFiniteAudioError, ei)
    assert "too large" in msg and "finite number" in msg


def test_file_too_large(tmp_path):
    data = _encode(_sine(1.0, 8000), 8000, "WAV", "PCM_16")
    path = _write(tmp_path, "big.wav", data)
    with pytest.raises(FileTooLargeError) as ei:
        load_audio(path, max_bytes=len(data) - 1)
    msg = _assert_refused(FileTooLargeError, ei)
    assert "'big.wav'" in msg and "the limit is" in msg and "smaller audio file" in msg
    with pytest.raises(FileTooLargeError, match="more than"):
        load_audio(io.BytesIO(data), max_bytes=1000)
    with pytest.raises(FileTooLargeError):
        load_audio(data, max_bytes=1000)


def test_refusals_are_value_errors():
    with pytest.raises(ValueError):
        load_audio(b"hello")
    with pytest.raises(DecodemoError):
        load_audio(b"hello")


# ----------------------------------------------------------------------------- fuzz


def _fuzz_seeds() -> list[bytes]:
    y = _sine(0.6, 8000, 700.0, 0.3)
    return [
        _encode(y, 8000, "WAV", "PCM_16"),
        _encode(np.stack([y, -0.5 * y], 1), 8000, "WAV", "PCM_16"),
        _encode(y, 8000, "FLAC"),
        _encode(np.stack([y, y], 1), 8000, "FLAC"),
    ]


def test_fuzz_only_decodemo_errors():
    rng = np.random.default_rng(2024)
    seeds = _fuzz_seeds()
    heads = [b"RIFF\x00\x10\x00\x00WAVE", b"fLaC", b"OggS", b"ID3\x03", b"\xff\xfb\x90", b""]
    outcomes = {"ok": 0, "refused": 0}
    for i in range(32):
        if i % 4 == 0:
            data = heads[(i // 4) % len(heads)] + rng.bytes(int(rng.integers(1, 3000)))
        else:
            buf = bytearray(seeds[i % len(seeds)])
            for _ in range(int(rng.integers(1, 5))):
                limit = len(buf) if rng.random() < 0.5 else min(len(buf), 64)  # half in the header
                pos = int(rng.integers(0, limit))
                buf[pos] ^= 1 << int(rng.integers(0, 8))
            if rng.random() < 0.3:
                buf = buf[: int(rng.integers(1, len(buf)))]
            data = bytes(buf)
        try:
            out = load_audio(data, max_seconds=30.0)
        except DecodemoError:
            outcomes["refused"] += 1
        else:
            assert out.dtype == np.float32 and out.ndim == 1 and len(out) > 0
            assert np.isfinite(out).all()
            outcomes["ok"] += 1
    assert outcomes["refused"] > 0 and outcomes["ok"] > 0
