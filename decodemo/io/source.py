"""Reading an upload's bytes with size limits, and recognising what a file is from its first
bytes (shared by the image and audio loaders, so every refusal is worded the same way)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Union

from decodemo.errors import EmptyFileError, FileTooLargeError, InputError

__all__ = ["Source", "read_source"]

Source = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]


def _a(word: str) -> str:
    """``word`` with its indefinite article: "an MP3", "an image", "a PNG", "a WAV"."""
    spelled_out = {"MP3", "MP4", "RGB", "RGBA", "L", "LA", "SVG", "HEIC"}  # read letter by letter
    vowel_sound = word[:1].lower() in "aeiou" or word.split()[0] in spelled_out
    return f"{'an' if vowel_sound else 'a'} {word}"


def _human_bytes(n: int) -> str:
    """``n`` bytes as a short string: ``"512 bytes"``, ``"3.2 MB"`` (MB = 2**20 bytes)."""
    if n < 1024:
        return f"{n} bytes"
    if n < 2**20:
        return f"{n / 1024:.1f} KB"
    if n < 2**30:
        return f"{n / 2**20:.1f} MB"
    return f"{n / 2**30:.2f} GB"


def read_source(source: Source, *, max_bytes: int, kind: str = "file") -> tuple[bytes, str | None]:
    """Read all bytes of ``source``; return ``(data, name)``.

    Args:
        source: a path (``str`` or :class:`os.PathLike`), ``bytes``/``bytearray``/
            ``memoryview``, or a binary file object with ``read()`` (read from its current
            position).
        max_bytes: refuse more bytes than this. A path's size is checked with ``stat``
            before reading; a file object is read at most ``max_bytes + 1`` bytes.
        kind: what the file should be ("image", "audio file"); only words the messages.

    Returns:
        ``(data, name)``: the bytes and the file's base name for messages (``None`` when
        the source has no name, e.g. raw bytes).

    Raises:
        InputError: the path does not exist, is a folder, or cannot be read.
        EmptyFileError: the source has zero bytes.
        FileTooLargeError: the source has more than ``max_bytes`` bytes.
        TypeError: ``source`` is none of the accepted types, or a text-mode file object
            (programming errors, not input errors).
    """
    name: str | None = None
    exact = True
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = path.name
        if not path.exists():
            raise InputError(f"There is no file at '{path}'. Check the path and try again.")
        if not path.is_file():
            raise InputError(f"'{path}' is not a file (it is a folder or a special file). Give one {kind}.")
        _check_size(path.stat().st_size, max_bytes, name, kind, exact=True)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"The file '{path}' could not be read ({exc.strerror or exc}).") from exc
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        raw_name = getattr(source, "name", None)
        if isinstance(raw_name, (str, os.PathLike)):
            name = Path(raw_name).name
        try:
            data = source.read(max_bytes + 1)
        except OSError as exc:
            raise InputError(f"The {kind} could not be read ({exc}).") from exc
        if isinstance(data, str):
            raise TypeError("the file object is open in text mode; open it with mode 'rb'")
        data = bytes(data or b"")
        exact = len(data) <= max_bytes
    else:
        raise TypeError(f"expected a path, bytes or a binary file object, got {type(source).__name__}")
    _check_size(len(data), max_bytes, name, kind, exact=exact)
    return data, name


def _check_size(size: int, max_bytes: int, name: str | None, kind: str, *, exact: bool) -> None:
    label = f"'{name}'" if name else f"The {kind}"
    if size == 0:
        raise EmptyFileError(f"{label} is empty (0 bytes). Give {_a(kind)} that has content.")
    if size > max_bytes:
        shown = _human_bytes(size) if exact else f"more than {_human_bytes(max_bytes)}"
        raise FileTooLargeError(
            f"{label} is {shown}; the limit is {_human_bytes(max_bytes)}. "
            f"Use a smaller {kind} and try again."
        )


def _sniff_image(data: bytes) -> str | None:
    """The accepted format whose signature ``data`` starts with, else ``None``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "TIFF"
    if data[:4] == b"RIFF" and (len(data) < 12 or data[8:12] == b"WEBP"):
        return "WebP"
    if data.startswith(b"BM") and _describe_other(data) != "a text file":
        return "BMP"
    return None


def _describe_other(data: bytes) -> str | None:
    """A short description of a known non-accepted kind of file, for messages."""
    head = data[:512].lstrip()
    lower = head.lower()
    if data.startswith(b"%PDF"):
        return "a PDF document"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "a GIF image"
    if b"<svg" in lower:
        return "an SVG drawing"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "an AVIF image"
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
            return "a HEIC/HEIF image"
        return "a video or MP4-family file"
    if data.startswith(b"PK\x03\x04"):
        return "a ZIP archive (or an Office document)"
    if data.startswith(b"\x00\x00\x00\x0cjP  ") or data.startswith(b"\xff\x4f\xff\x51"):
        return "a JPEG 2000 image"
    if lower.startswith((b"<?xml", b"<!doctype html", b"<html")):
        return "an XML/HTML document"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "a WAV audio file"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if head and all(c >= 32 or c in b"\t\r\n\f" for c in head):
        return "a text file"
    return None
