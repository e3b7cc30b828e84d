"""Loading audio clips safely: any accepted file in, one float32 mono signal out.

Accepted formats are WAV (incl. WAVE_FORMAT_EXTENSIBLE, RF64, W64), FLAC, Ogg (Vorbis or
Opus) and MP3 (:data:`AUDIO_EXTENSIONS`), all decoded by libsndfile through ``soundfile``
(libsndfile >= 1.1 reads and writes MP3 itself; no ffmpeg/audioread is used). As for
images, the format is decided by the file's *contents*, not its name.

Every refusal is a typed :class:`~decodemo.errors.InputError` whose message gives the
numbers (duration, limit, RMS level, ...); no raw ``soundfile``/``RuntimeError`` escapes
:func:`load_audio`.

Processing: all channels are averaged to mono; the clip is resampled with
:func:`librosa.resample` (soxr, high quality) when its rate differs from the requested one.
Sample values are kept as decoded (integer PCM scaled to [-1, 1); float files unchanged),
so a clip's loudness is preserved.
"""

from __future__ import annotations

import io
import math
from typing import NamedTuple

import numpy as np
import soundfile as sf

from decodemo.errors import (
    AudioTooLongError,
    AudioTooShortError,
    CorruptFileError,
    DecodemoError,
    NonFiniteAudioError,
    SilentAudioError,
    UnsupportedFormatError,
)
from decodemo.io.source import Source, _a, _describe_other, _sniff_image, read_source

__all__ = [
    "AUDIO_EXTENSIONS",
    "ACCEPTED_AUDIO_FORMATS",
    "DEFAULT_SAMPLE_RATE",
    "DEFAULT_MAX_AUDIO_BYTES",
    "load_audio",
]

#: File extensions recognised as audio (lower case, with the dot).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
#: Human wording of the accepted formats, used in messages.
ACCEPTED_AUDIO_FORMATS = "WAV, FLAC, Ogg (Vorbis/Opus) or MP3"
DEFAULT_SAMPLE_RATE = 16000
DEFAULT_MAX_AUDIO_BYTES = 200 * 2**20

#: libsndfile major formats we accept (``SoundFile.format``).
_SF_FORMATS = ("WAV", "WAVEX", "RF64", "W64", "FLAC", "OGG", "MP3")


def _fmt_seconds(s: float) -> str:
    """A duration for messages: ``"0.10 s"``, ``"12.5 min (750 s)"``."""
    if s < 120:
        return f"{s:.2f} s"
    return f"{s / 60:.1f} min ({s:.0f} s)"


def _sniff_audio(data: bytes) -> str | None:
    """The accepted audio format whose signature ``data`` starts with, else ``None``."""
    if data[:4] in (b"RIFF", b"RF64") and (len(data) < 12 or data[8:12] == b"WAVE"):
        return "WAV"
    if data.startswith(b"riff\x2e\x91\xcf\x11"):
        return "WAV"  # Sony Wave64
    if data.startswith(b"fLaC"):
        return "FLAC"
    if data.startswith(b"OggS"):
        return "Ogg"
    if data.startswith(b"\xff\xfe"):
        return None  # the UTF-16 LE byte-order mark (text), not an MP3 frame (MPEG-1 layer I without CRC)
    if data.startswith(b"ID3") or (len(data) >= 2 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0):
        return "MP3"
    return None


def _describe_non_audio(data: bytes) -> str | None:
    img = _sniff_image(data)
    if img is not None:
        return f"{_a(img)} image"
    other = _describe_other(data)
    return None if other == "a WAV audio file" else other


def _wav_missing_bytes(data: bytes) -> tuple[int, int] | None:
    """For a RIFF/WAVE file whose ``data`` chunk is cut short: ``(declared, present)`` bytes.

    ``None`` when the file is not RIFF/WAVE, has no ``data`` chunk header, is complete, or
    uses a placeholder size (0 or 0xFFFFFFFF, written by streaming recorders).
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if cid == b"data":
            present = len(data) - (pos + 8)
            if size in (0, 0xFFFFFFFF) or size - present <= 8:
                return None  # placeholder size, or at most a partial last frame missing
            return size, present
        pos += 8 + size + (size & 1)
    return None


class _Decoded(NamedTuple):
    """The decoded samples of an accepted file and what its header says."""

    samples: np.ndarray  # (n, channels) float32
    fmt: str  # libsndfile major format, one of _SF_FORMATS
    sample_rate: int
    channels: int
    frames: int  # as announced by the header


def _corrupt(label: str, claimed: str | None, detail: str, exc: BaseException | None = None) -> CorruptFileError:
    """The error for a file that starts like ``claimed`` audio but cannot be decoded."""
    fmt = claimed or "audio"
    err = CorruptFileError(
        f"{label} could not be decoded as {_a(fmt)} file ({detail}); it is damaged or cut short. "
        f"Export it again as {ACCEPTED_AUDIO_FORMATS} and retry."
    )
    if exc is not None:
        err.__cause__ = exc
    return err


def _too_long(clip: str, seconds: float, max_seconds: float) -> AudioTooLongError:
    """The error for a clip of ``seconds`` over the ``max_seconds`` limit."""
    return AudioTooLongError(
        f"{clip} lasts {_fmt_seconds(seconds)}; the limit is {_fmt_seconds(max_seconds)}. "
        "Cut it into shorter clips and try again."
    )


def _open(data: bytes, label: str, claimed: str | None) -> sf.SoundFile:
    """Open ``data`` with libsndfile; a refusal is a corrupt file when the bytes start like an
    accepted format, else an unsupported one (naming what the file looks like)."""
    try:
        return sf.SoundFile(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - libsndfile refuses in many ways
        if claimed is not None:
            raise _corrupt(label, claimed, _sf_detail(exc), exc) from exc
        other = _describe_non_audio(data)
        what = f"{label} is {other}, not an audio file we read" if other else f"{label} is not a recognised audio file"
        raise UnsupportedFormatError(
            f"{what}. Accepted: {ACCEPTED_AUDIO_FORMATS} files ({', '.join(AUDIO_EXTENSIONS)})."
        ) from exc


def _check_header(snd: sf.SoundFile, data: bytes, label: str, clip: str, claimed: str | None,
                  max_seconds: float) -> tuple[str, int, int, int]:
    """``(format, rate, channels, frames)`` from the header, after refusing, before any sample
    is decoded: a format we do not accept, an invalid header, a clip announced as too long
    (MP3 only when 10 % over, its length being an estimate) and a WAV cut short."""
    fmt = snd.format
    if fmt not in _SF_FORMATS:
        raise UnsupportedFormatError(
            f"{label} is in the {sf.available_formats().get(fmt, fmt)} format, which is not accepted. "
            f"Convert it to {ACCEPTED_AUDIO_FORMATS} and try again."
        )
    sr_in, channels, frames = int(snd.samplerate), int(snd.channels), int(snd.frames)
    if sr_in <= 0 or channels <= 0 or frames < 0:
        raise _corrupt(label, claimed, f"invalid header: {sr_in} Hz, {channels} channels")
    header_seconds = frames / sr_in
    slack = 1.1 if fmt == "MP3" else 1.0
    if header_seconds > max_seconds * slack:
        raise _too_long(clip, header_seconds, max_seconds)
    missing = _wav_missing_bytes(data)
    if missing is not None:
        declared, present = missing
        raise _corrupt(
            label, claimed,
            f"cut short: the header announces {declared:,} bytes of samples "
            f"but only {present:,} are present"
        )
    return fmt, sr_in, channels, frames


def _decode(data: bytes, label: str, clip: str, max_seconds: float) -> _Decoded:
    """Open, check the header of and decode ``data``; any decoder failure is a damaged file,
    and so is a non-MP3 file that yields fewer samples than its header announces."""
    claimed = _sniff_audio(data)
    try:
        snd = _open(data, label, claimed)
        with snd:
            fmt, sr_in, channels, frames = _check_header(snd, data, label, clip, claimed, max_seconds)
            y = snd.read(dtype="float32", always_2d=True)
    except DecodemoError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a damaged file
        raise _corrupt(label, claimed, _sf_detail(exc), exc) from exc
    n = int(y.shape[0])
    if fmt != "MP3" and n < frames:
        raise _corrupt(label, claimed, f"only {n:,} of the {frames:,} samples announced by the header could be decoded")
    return _Decoded(y, fmt, sr_in, channels, frames)


def _check_duration(seconds: float, clip: str, min_seconds: float, max_seconds: float) -> None:
    """Refuse a decoded clip shorter than ``min_seconds`` or longer than ``max_seconds``."""
    if seconds < min_seconds:
        raise AudioTooShortError(
            f"{clip} lasts {_fmt_seconds(seconds)}; the minimum is {_fmt_seconds(min_seconds)}. "
            "Give a longer recording."
        )
    if seconds > max_seconds:
        raise _too_long(clip, seconds, max_seconds)


#: the largest sample magnitude accepted (full scale is 1.0): 80 dB above full scale. Beyond it a
#: float file's power overflows float32 in the spectrogram (NaN everywhere, no score)
MAX_PEAK = 1e4


def _check_finite(y: np.ndarray, clip: str) -> None:
    """Refuse samples with any NaN or infinite value (possible in float WAV), or finite ones
    larger than :data:`MAX_PEAK`."""
    finite = np.isfinite(y)
    if not finite.all():
        bad = int(y.size - np.count_nonzero(finite))
        raise NonFiniteAudioError(
            f"{clip} contains {bad:,} invalid samples (NaN or infinite) out of {y.size:,}. "
            "Re-export it from the recording software; every sample must be a finite number."
        )
    peak = float(np.abs(y).max()) if y.size else 0.0
    if peak > MAX_PEAK:
        raise NonFiniteAudioError(
            f"{clip} has sample values too large to process (peak {peak:.3g}; full scale is 1.0, at most "
            f"{MAX_PEAK:.0e} accepted): its spectrogram would hold only invalid numbers. Re-export it from the "
            "recording software; every sample must be a finite number of ordinary size."
        )


def _check_level(mono: np.ndarray, clip: str, silence_rms: float) -> None:
    """Refuse an all-zero clip, or one whose RMS is below ``silence_rms``."""
    rms = float(np.sqrt(np.mean(np.square(mono, dtype=np.float64)))) if mono.size else 0.0
    if rms == 0.0 or rms < silence_rms:
        level = "all zeros" if rms == 0.0 else f"RMS {rms:.2e} ({20 * math.log10(rms):.1f} dBFS)"
        raise SilentAudioError(
            f"{clip} is silent ({level}); the minimum level is RMS {silence_rms:.1e} "
            f"({20 * math.log10(silence_rms):.1f} dBFS). Check the recording and its gain."
            if silence_rms > 0
            else f"{clip} is silent (all zeros). Check the recording and its gain."
        )


def _resample(mono: np.ndarray, y: np.ndarray, sr_in: int, sample_rate: int, clip: str) -> np.ndarray:
    """``mono`` resampled from ``sr_in`` to ``sample_rate`` (soxr, high quality); refused when
    huge (finite) samples of ``y``, the decoded channels, overflow float32 on the way."""
    import librosa  # deferred: importing librosa costs about a second

    out = librosa.resample(mono, orig_sr=sr_in, target_sr=sample_rate, res_type="soxr_hq")
    if not np.isfinite(out).all():  # finite but huge float samples overflow float32 when resampled
        raise NonFiniteAudioError(
            f"{clip} has sample values too large to process (peak {float(np.abs(y).max()):.3g}; full scale is 1.0): "
            "resampling them gives invalid numbers (NaN or infinite). Re-export it from the recording software; "
            "every sample must be a finite number of ordinary size."
        )
    return out


def load_audio(
    source: Source,
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    min_seconds: float = 0.25,
    max_seconds: float = 600.0,
    silence_rms: float = 1e-4,
    max_bytes: int = DEFAULT_MAX_AUDIO_BYTES,
) -> np.ndarray:
    """Load an audio file as a float32 mono signal at ``sample_rate``.

    Args:
        source: a path (``str`` or :class:`~pathlib.Path`), the file's ``bytes``, or a
            binary file object (read from its current position to the end).
        sample_rate: output rate in Hz; the clip is resampled (soxr) when it differs.
        min_seconds: refuse clips shorter than this (duration at the file's own rate).
        max_seconds: refuse clips longer than this. Checked from the header *before*
            decoding the samples (for MP3, whose header length is an estimate, only when
            the estimate exceeds the limit by more than 10 %), and again after decoding.
        silence_rms: refuse clips whose RMS (of the mono mix, full scale = 1.0) is below
            this; an all-zero clip is refused whatever the value.
        max_bytes: refuse files larger than this many bytes.

    Returns:
        ``np.ndarray`` of dtype float32, shape ``(n_samples,)``: the mean of all channels,
        at ``sample_rate``. Values are on the file's scale (integer PCM maps to [-1, 1)).

    Raises:
        EmptyFileError: zero bytes.
        FileTooLargeError: more than ``max_bytes`` bytes.
        UnsupportedFormatError: not a WAV/FLAC/Ogg/MP3 file (text, image, PDF, AIFF, ...).
        CorruptFileError: starts like an accepted format but cannot be decoded, or a WAV
            whose data is cut short of what its header announces. (A truncated MP3 is
            decoded up to the cut, as players do, since MP3 headers carry no exact length.)
        AudioTooShortError, AudioTooLongError: duration outside
            ``[min_seconds, max_seconds]``.
        NonFiniteAudioError: any NaN or infinite sample (possible in float WAV).
        SilentAudioError: all zeros, or RMS below ``silence_rms``.
        InputError: a path that does not exist or is not a regular file.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    data, name = read_source(source, max_bytes=max_bytes, kind="audio file")
    label = f"'{name}'" if name else "The file"
    clip = f"'{name}'" if name else "The clip"
    dec = _decode(data, label, clip, max_seconds)
    y = dec.samples
    _check_duration(y.shape[0] / dec.sample_rate, clip, min_seconds, max_seconds)
    _check_finite(y, clip)
    mono = y[:, 0] if dec.channels == 1 else y.mean(axis=1, dtype=np.float64).astype(np.float32)
    _check_level(mono, clip, silence_rms)
    if dec.sample_rate != sample_rate:
        mono = _resample(mono, y, dec.sample_rate, sample_rate, clip)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _sf_detail(exc: BaseException) -> str:
    """libsndfile's own words without the ``Error opening <_io.BytesIO ...>:`` prefix."""
    msg = str(exc).strip()
    if ">: " in msg:
        msg = msg.split(">: ", 1)[1]
    return msg or type(exc).__name__
