"""The inference layer: one place that tells images from sounds, reads an upload once and
prepares it for a model exactly as the file-based loaders do."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from decodemo.data.synthetic import SAMPLE_RATE, make_hum, make_texture
from decodemo.errors import InputError
from decodemo.inference import (LoadedClip, LoadedImage, audio_input, image_tensor, load_input, modality_of, prepare,
                                prepare_path)
from decodemo.io.audio import load_audio
from decodemo.io.spectrogram import MelConfig


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    img, _ = make_texture(np.random.default_rng(5), size=96, defect="scratch")
    Image.fromarray(img[:80]).save(root / "part.png")  # not square
    y, _ = make_hum(np.random.default_rng(6), seconds=2.0, sample_rate=SAMPLE_RATE, anomaly="click")
    sf.write(root / "clip.wav", y, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    (root / "notes.png").write_text("not an image at all\n")
    return root


@pytest.mark.parametrize("name, modality", [("a.wav", "audio"), ("b.FLAC", "audio"), ("c.mp3", "audio"),
                                            ("d.png", "image"), ("e.JPG", "image"), ("f.txt", "image")])
def test_modality_is_told_by_the_extension(name, modality):
    assert modality_of(name) == modality


def test_an_image_is_read_once_and_prepared_as_the_file_loader_does(files):
    loaded = load_input(files / "part.png")
    assert isinstance(loaded, LoadedImage) and loaded.modality == "image"
    data = (files / "part.png").read_bytes()
    assert loaded.data == data and loaded.sha256 == hashlib.sha256(data).hexdigest()
    assert loaded.pixels.shape == (80, 96, 3) and loaded.pixels.dtype == np.uint8
    squash = SimpleNamespace(image_size=64, modality="image", image_fit="squash")
    x = prepare(loaded, squash)
    assert x.tiles.shape == (1, 3, 64, 64) and x.geometry.mode == "squash"
    assert torch.equal(x.tiles, image_tensor(files / "part.png", 64)[None])
    assert torch.equal(x.tiles, prepare_path(files / "part.png", squash).tiles)
    cfg = SimpleNamespace(image_size=64, modality="image")  # image_fit "auto": 80 x 96 is padded
    x = prepare(loaded, cfg)
    assert x.tiles.shape == (1, 3, 64, 64) and x.geometry.mode == "pad" and x.geometry.canvas == (53, 64)
    assert torch.equal(x.tiles, prepare_path(files / "part.png", cfg).tiles)


def test_a_clip_is_decoded_once_and_each_model_gets_its_own_mel_settings(files):
    mel = MelConfig()
    loaded = load_input(files / "clip.wav", mel=mel.to_dict())
    assert isinstance(loaded, LoadedClip) and loaded.mel == mel
    np.testing.assert_array_equal(loaded.waveform, load_audio(files / "clip.wav", sample_rate=mel.sample_rate))
    cfg = SimpleNamespace(image_size=32, modality="audio", mel=mel.to_dict())
    got, want = prepare(loaded, cfg), audio_input(files / "clip.wav", mel, 32)
    assert got.starts == want.starts and torch.equal(got.windows, want.windows)
    # a model with another sample rate: decoded again from the bytes in memory, as from the file
    other = MelConfig.from_dict({**mel.to_dict(), "sample_rate": mel.sample_rate // 2})
    got = prepare(loaded, SimpleNamespace(image_size=32, modality="audio", mel=other.to_dict()))
    want = audio_input(files / "clip.wav", other, 32)
    assert got.waveform.shape == want.waveform.shape and torch.equal(got.windows, want.windows)


def test_a_bad_upload_is_refused_with_a_message_naming_the_file(files):
    with pytest.raises(InputError, match="notes.png"):
        load_input(files / "notes.png")
