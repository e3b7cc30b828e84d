"""Turning files into the tensors a detector takes, the same way at training and test time.

Images: :func:`decodemo.io.images.load_image` -> RGB float ``(3, S, S)`` in [0, 1].
Audio: :func:`decodemo.io.audio.load_audio` -> log-mel spectrogram (settings from the model's
config) -> sliding windows, each resized to ``S x S`` and repeated over three channels, so
every method sees a spectrogram window as a one-channel image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from decodemo.io.audio import load_audio
from decodemo.io.images import image_to_array, load_image
from decodemo.io.spectrogram import MelConfig, frames_per_window, log_mel, pad_to_window, window_starts

__all__ = ["image_tensor", "AudioInput", "audio_input", "spectrogram_windows", "spec_to_image"]


def image_tensor(source, size: int) -> torch.Tensor:
    """Load an image file (or bytes) -> ``(3, size, size)`` float in [0, 1]."""
    arr = image_to_array(load_image(source), size)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def spec_to_image(spec: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """A ``(n_mels, frames)`` window in [0, 1] -> ``(3, size, size)`` (bilinear, grey to RGB).

    Row 0 (lowest frequency) is put at the bottom, as a spectrogram is usually drawn.
    """
    t = torch.as_tensor(np.asarray(spec, dtype=np.float32)).flip(0)[None, None]
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0]
    return t.expand(3, -1, -1).clamp(0, 1).contiguous()


def spectrogram_windows(spec: np.ndarray, cfg: MelConfig, size: int, *, hop_frames: int | None = None) -> tuple[torch.Tensor, list[int]]:
    """Cut a clip's spectrogram into windows -> ``(W, 3, size, size)`` and their start frames.

    ``hop_frames`` overrides the config's window hop (training uses a denser hop as augmentation).
    """
    n_frames = spec.shape[1]
    padded = pad_to_window(spec, cfg)
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
    y = load_audio(source, sample_rate=cfg.sample_rate, **load_kwargs)
    spec = log_mel(y, cfg)
    windows, starts = spectrogram_windows(spec, cfg, size)
    return AudioInput(waveform=y, spectrogram=spec, windows=windows, starts=starts, mel=cfg)


def is_audio_path(path: str | Path) -> bool:
    from decodemo.io.audio import AUDIO_EXTENSIONS

    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def sample_tensors(paths, *, modality: str, size: int, mel: MelConfig | None = None,
                   hop_frames: int | None = None, desc: str = "loading") -> list[torch.Tensor]:
    """Load files -> one tensor per file: ``(1, 3, S, S)`` for an image, ``(W, 3, S, S)`` for
    the windows of an audio clip. Shows a progress bar."""
    from tqdm.auto import tqdm

    out = []
    for path in tqdm(list(paths), desc=desc, leave=False, dynamic_ncols=True):
        if modality == "audio":
            if mel is None:
                raise ValueError("Audio inputs need the model's mel settings.")
            y = load_audio(path, sample_rate=mel.sample_rate)
            windows, _ = spectrogram_windows(log_mel(y, mel), mel, size, hop_frames=hop_frames)
            out.append(windows)
        else:
            out.append(image_tensor(path, size)[None])
    return out
