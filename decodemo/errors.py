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
    "IntegrityError",
    "UnpinnedReferenceError",
    "PermissionDeniedError",
    "ThresholdOutOfBoundsError",
    "StoreError",
    "StoreBusyError",
    "StoreUnavailableError",
    "StoreFileError",
    "ReviewError",
    "NoteTooLongError",
    "RequestIdError",
    "RequestIdConflictError",
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


class PermissionDeniedError(DecodemoError, PermissionError):
    """The signed-in person (or an anonymous visitor) may not do this: the message says who may."""


class ThresholdOutOfBoundsError(DecodemoError, ValueError):
    """A threshold outside the bounds its model's normal reference allows."""


class StoreError(DecodemoError):
    """The review store refused or could not carry out a read or a write. Nothing of a refused
    write is kept (its transaction is rolled back); no database driver's error leaves the store
    untyped."""


class StoreBusyError(StoreError):
    """A write kept losing to other writers (a lock, a serialisation failure, a deadlock or a
    unique key taken at the same moment) after every retry; sending it again is safe."""


class StoreUnavailableError(StoreError):
    """The store's database cannot be reached or used (server down, wrong ``DECODEMO_DB_URL``,
    locked or unreadable file)."""


class StoreFileError(StoreError):
    """A file of the store (an upload, a map, a mask) cannot be written or read under its data
    directory."""


class ReviewError(StoreError, ValueError):
    """A review or a threshold change that cannot be stored as given."""


class NoteTooLongError(ReviewError):
    """A review's note is longer than the store keeps (it is refused, never cut)."""


class RequestIdError(ReviewError):
    """A review's request id is not a short token (letters, digits, ``.``, ``_``, ``:``, ``-``)."""


class RequestIdConflictError(ReviewError):
    """A review sent again under a request id already used by the reviewer, with other content."""


class IntegrityError(UnsafeWeightsError):
    """A model (or in-domain reference) folder is not what its manifest pins: a file was changed,
    added or removed, or the folder or a file in it is a symbolic link (links are never followed
    inside a registry root). The message names the file."""


class UnpinnedReferenceError(ModelError):
    """A reference to weights on the Hugging Face Hub is not pinned to a commit (a 40-hex
    revision): a branch or tag can move, so what loads would change under the same name."""
