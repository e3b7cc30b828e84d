"""Typed exceptions for decodemo, all in one module.

Every refusal the product makes derives from :class:`DecodemoError`, so callers (the
command line, the app) catch one class and show its message to a person. Each message
says what was wrong and what is accepted.
"""

from __future__ import annotations

__all__ = [
    "DecodemoError",
    "InputError",
    "EmptyFileError",
    "UnsupportedFormatError",
    "CorruptFileError",
    "FileTooLargeError",
    "ImageTooLargeError",
    "AudioTooShortError",
    "AudioTooLongError",
    "SilentAudioError",
    "NonFiniteAudioError",
    "DatasetError",
    "ExportError",
    "NothingToExportError",
    "OutputNotEmptyError",
    "ModelError",
    "UnsafeWeightsError",
]


class DecodemoError(Exception):
    """Base class of every error decodemo raises on purpose."""


class InputError(DecodemoError, ValueError):
    """An uploaded or given file cannot be used as input."""


class EmptyFileError(InputError):
    """The file has no bytes."""


class UnsupportedFormatError(InputError):
    """The file is of a kind decodemo does not read (e.g. a PDF given as an image)."""


class CorruptFileError(InputError):
    """The file claims a supported format but cannot be decoded."""


class FileTooLargeError(InputError):
    """The file has more bytes than the configured limit."""


class ImageTooLargeError(InputError):
    """The image has more pixels than the limit (decompression-bomb guard)."""


class AudioTooShortError(InputError):
    """The clip is shorter than the minimum duration."""


class AudioTooLongError(InputError):
    """The clip is longer than the maximum duration."""


class SilentAudioError(InputError):
    """The clip carries no signal (all zeros or below the silence level)."""


class NonFiniteAudioError(InputError):
    """The clip contains NaN or infinite samples."""


class DatasetError(DecodemoError):
    """A dataset folder does not follow the expected layout."""


class ExportError(DecodemoError):
    """Reviewed items cannot be exported as a dataset as asked."""


class NothingToExportError(ExportError):
    """The model set has no items in the review store, or none with a normal or anomalous verdict."""


class OutputNotEmptyError(ExportError):
    """The export's output folder already holds files (``--force`` writes over an earlier export)."""


class ModelError(DecodemoError):
    """A model folder or its config cannot be loaded."""


class UnsafeWeightsError(ModelError):
    """A model folder holds pickle weights; only safetensors are loaded."""
