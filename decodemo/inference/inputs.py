"""Turning files into the tensors a detector takes, the same way at training and test time.

The one place that tells an image from a sound (:func:`modality_of`) and loads either
(:func:`load_input`, reading the file once); everything else takes what these return.

Images: :func:`decodemo.io.images.load_image` -> RGB float in [0, 1] -> one or more ``(3, S, S)``
inputs by the model's ``image_fit`` (:mod:`decodemo.inference.shapes`: aspect kept, mirror-padded
or tiled), held with their geometry in an :class:`ImageInput` so maps go back to the image's shape.
Audio: :func:`decodemo.io.audio.load_audio` -> log-mel spectrogram (settings from the model's
config) -> sliding windows, each resized to ``S x S`` and repeated over three channels, so
every method sees a spectrogram window as a one-channel image.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F

from decodemo.io.audio import AUDIO_EXTENSIONS, DEFAULT_MAX_AUDIO_BYTES, load_audio
from decodemo.io.images import DEFAULT_MAX_BYTES, image_to_array, load_image
from decodemo.io.source import read_source
from decodemo.inference.shapes import Geometry, fit_geometry, to_inputs
from decodemo.io.spectrogram import (MelConfig, frames_per_window, log_mel, pad_to_window, window_spectrogram,
                                     window_starts)

__all__ = ["modality_of", "sniff_modality", "file_modality", "is_audio_path", "LoadedImage", "LoadedClip", "load_input", "prepare", "prepare_path",
           "image_tensor", "ImageInput", "image_input", "AudioInput", "audio_input", "spectrogram_windows",
           "spec_to_image", "sample_tensors"]


def is_audio_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def modality_of(path: str | Path) -> str:
    """``"audio"`` for an audio file extension, else ``"image"``: a file's kind by its name, for
    folders of training data (:func:`sniff_modality` decides an upload's kind by its content)."""
    return "audio" if is_audio_path(path) else "image"


def sniff_modality(data: bytes, name: str | Path = "") -> str:
    """What a file is by its first bytes, as the loaders decide: ``"audio"`` for a WAV, FLAC, Ogg
    or MP3 signature, ``"image"`` for an image signature; by ``name``'s extension when the content
    says neither (the loader then says what the file is). So a clip named ``.png`` is compared
    and scored as the clip it is."""
    from decodemo.io.audio import _sniff_audio
    from decodemo.io.source import _sniff_image

    head = bytes(data[:64])
    if head and _sniff_audio(head):
        return "audio"
    if head and _sniff_image(head):
        return "image"
    return modality_of(name)


def file_modality(path: str | Path) -> str:
    """:func:`sniff_modality` of the file at ``path`` (its first bytes only)."""
    try:
        with open(path, "rb") as f:
            return sniff_modality(f.read(64), path)
    except OSError:
        return modality_of(path)


def image_tensor(source, size: int) -> torch.Tensor:
    """Load an image file (or bytes) -> ``(3, size, size)`` float in [0, 1]."""
    arr = image_to_array(load_image(source), size)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


@dataclass
class ImageInput:
    """One image ready for a detector: its square inputs and where they lie on the image."""

    tiles: torch.Tensor  # (n, 3, S, S)
    geometry: Geometry


def image_input(img, size: int, image_fit: str = "auto") -> ImageInput:
    """An RGB PIL image -> :class:`ImageInput` under ``image_fit``."""
    geometry = fit_geometry(img.height, img.width, size, image_fit)
    return ImageInput(tiles=to_inputs(img, geometry), geometry=geometry)


def spec_to_image(spec: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """A ``(n_mels, frames)`` window in [0, 1] -> ``(3, size, size)`` (bilinear, grey to RGB).

    Row 0 (lowest frequency) is put at the bottom, as a spectrogram is usually drawn.
    """
    t = torch.as_tensor(np.asarray(spec, dtype=np.float32)).flip(0)[None, None]
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0]
    return t.expand(3, -1, -1).clamp(0, 1).contiguous()


def spectrogram_windows(spec: np.ndarray, cfg: MelConfig, size: int, *, hop_frames: int | None = None,
                        waveform: np.ndarray | None = None) -> tuple[torch.Tensor, list[int]]:
    """Cut a clip's spectrogram into windows -> ``(W, 3, size, size)`` and their start frames.

    ``hop_frames`` overrides the config's window hop (training uses a denser hop as augmentation).
    A clip shorter than one window becomes one window by ``cfg.short_pad``; ``"loop"`` needs the
    clip's ``waveform`` (without it, the spectrogram's frames are wrapped).
    """
    n_frames = spec.shape[1]
    if waveform is not None:
        padded = window_spectrogram(waveform, spec, cfg)
    else:
        padded = pad_to_window(spec, cfg, mode="wrap" if cfg.short_pad == "loop" else cfg.short_pad)
    width = frames_per_window(cfg)
    if hop_frames is None:
        starts = window_starts(n_frames, cfg)
    else:
        last = max(0, padded.shape[1] - width)
        starts = list(range(0, last + 1, hop_frames))
        if starts[-1] != last:
            starts.append(last)
    return torch.stack([spec_to_image(padded[:, s : s + width], size) for s in starts]), starts


@dataclass
class AudioInput:
    """One clip ready for a detector: waveform, spectrogram, its windows as images."""

    waveform: np.ndarray  # (samples,) float32 at cfg.sample_rate
    spectrogram: np.ndarray  # (n_mels, n_frames) in [0, 1], row 0 = lowest frequency
    windows: torch.Tensor  # (W, 3, S, S)
    starts: list[int]  # start frame of each window
    mel: MelConfig

    @property
    def n_frames(self) -> int:
        return self.spectrogram.shape[1]


def audio_input(source, cfg: MelConfig, size: int, **load_kwargs) -> AudioInput:
    """Load an audio file -> :class:`AudioInput` (refusals are :class:`decodemo.errors.InputError`)."""
    return _from_file(source, "audio", size, cfg, **load_kwargs)


# ---------------------------------------------------------------------- one upload, read once
def _named_bytes(data: bytes, name: str) -> io.BytesIO:
    buf = io.BytesIO(data)
    buf.name = name  # the loaders' messages name the file
    return buf


@dataclass
class LoadedImage:
    """An uploaded image, decoded once: its bytes, SHA-256 and RGB pixels."""

    name: str
    data: bytes
    image: Any  # PIL.Image.Image, RGB
    modality: str = "image"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pixels(self) -> np.ndarray:
        """``(H, W, 3)`` uint8."""
        return np.asarray(self.image, dtype=np.uint8)


@dataclass
class LoadedClip:
    """An uploaded sound, decoded once at ``mel``'s rate: its bytes, waveform and spectrogram.
    A model with other mel settings gets its own spectrogram of the same clip (:meth:`for_mel`),
    decoded again from the bytes in memory only when its sample rate differs."""

    name: str
    data: bytes
    mel: MelConfig
    waveform: np.ndarray  # (samples,) float32 at mel.sample_rate
    spectrogram: np.ndarray  # (n_mels, frames) in [0, 1], row 0 = lowest frequency
    modality: str = "audio"
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def for_mel(self, mel: MelConfig) -> tuple[np.ndarray, np.ndarray]:
        """``(waveform, spectrogram)`` of the clip under ``mel``."""
        if mel == self.mel:
            return self.waveform, self.spectrogram
        key = mel  # frozen, hashable
        if key not in self._cache:
            y = (self.waveform if mel.sample_rate == self.mel.sample_rate
                 else load_audio(_named_bytes(self.data, self.name), sample_rate=mel.sample_rate))
            self._cache[key] = (y, log_mel(y, mel))
        return self._cache[key]


Loaded = Union[LoadedImage, LoadedClip]


def load_input(source: str | Path, *, mel: MelConfig | dict | None = None, name: str | None = None,
               data: bytes | None = None) -> Loaded:
    """Read the file at ``source`` once (or take its ``data``, already read) and decode it as
    what its content says (:func:`sniff_modality`).

    Images -> :class:`LoadedImage`; audio -> :class:`LoadedClip` at ``mel``'s settings
    (a dict is read as :class:`MelConfig`; default: the default mel settings). Bad files raise
    the input layer's typed :class:`decodemo.errors.InputError`.
    """
    path = Path(source)
    label = name or path.name
    if data is None:
        data, _ = read_source(path, max_bytes=max(DEFAULT_MAX_AUDIO_BYTES, DEFAULT_MAX_BYTES), kind="file")
    if sniff_modality(data, path.name) == "audio":
        data, _ = read_source(_named_bytes(data, path.name), max_bytes=DEFAULT_MAX_AUDIO_BYTES, kind="audio file")
        mel = mel if isinstance(mel, MelConfig) else MelConfig.from_dict(mel or {})
        y = load_audio(_named_bytes(data, path.name), sample_rate=mel.sample_rate)
        return LoadedClip(name=label, data=data, mel=mel, waveform=y, spectrogram=log_mel(y, mel))
    data, _ = read_source(_named_bytes(data, path.name), max_bytes=DEFAULT_MAX_BYTES, kind="image")
    return LoadedImage(name=label, data=data, image=load_image(_named_bytes(data, path.name)))


def prepare(loaded: Loaded, cfg) -> ImageInput | AudioInput:
    """What model config ``cfg`` takes for ``loaded``: the image's :class:`ImageInput` under the
    model's ``image_fit`` or the clip's :class:`AudioInput` windows under its own mel settings."""
    size = cfg.image_size
    if isinstance(loaded, LoadedImage):
        return image_input(loaded.image, size, getattr(cfg, "image_fit", "auto"))
    mel = MelConfig.from_dict(cfg.mel)
    y, spec = loaded.for_mel(mel)
    windows, starts = spectrogram_windows(spec, mel, size, waveform=y)
    return AudioInput(waveform=y, spectrogram=spec, windows=windows, starts=starts, mel=mel)


def prepare_path(path: str | Path, cfg, **load_kwargs) -> ImageInput | AudioInput:
    """:func:`prepare` straight from a file, decoded at the model's own settings."""
    mel = getattr(cfg, "mel", None)
    mel = MelConfig.from_dict(mel) if mel is not None else None
    return _from_file(path, cfg.modality, cfg.image_size, mel, image_fit=getattr(cfg, "image_fit", "auto"),
                      **load_kwargs)


def _from_file(path, modality: str, size: int, mel: MelConfig | None, *, hop_frames: int | None = None,
               image_fit: str = "auto", **load_kwargs) -> ImageInput | AudioInput:
    """The one place a file becomes model input: the image's :class:`ImageInput` (inputs by
    ``image_fit``), the clip's :class:`AudioInput` (windows at ``hop_frames`` if given) for a sound."""
    if modality != "audio":
        return image_input(load_image(path), size, image_fit)
    if mel is None:
        raise ValueError("Audio inputs need the model's mel settings.")
    y = load_audio(path, sample_rate=mel.sample_rate, **load_kwargs)
    spec = log_mel(y, mel)
    windows, starts = spectrogram_windows(spec, mel, size, hop_frames=hop_frames, waveform=y)
    return AudioInput(waveform=y, spectrogram=spec, windows=windows, starts=starts, mel=mel)


def sample_tensors(paths, *, modality: str, size: int, mel: MelConfig | None = None,
                   hop_frames: int | None = None, image_fit: str = "auto", desc: str = "loading") -> list[torch.Tensor]:
    """Load files -> one tensor per file: ``(n, 3, S, S)`` for an image (``n`` = 1 unless
    ``image_fit`` tiles it), ``(W, 3, S, S)`` for the windows of an audio clip. Shows a progress bar."""
    from tqdm.auto import tqdm

    out = []
    for path in tqdm(list(paths), desc=desc, leave=False, dynamic_ncols=True):
        x = _from_file(path, modality, size, mel, hop_frames=hop_frames, image_fit=image_fit)
        out.append(x.windows if isinstance(x, AudioInput) else x.tiles)
    return out
