"""Loading images safely: any accepted file in, one 8-bit RGB :class:`PIL.Image.Image` out.

Accepted formats are PNG, JPEG, BMP, TIFF and WebP (:data:`IMAGE_EXTENSIONS`). The format
is decided by the file's *contents*, never by its name: a JPEG named ``x.png`` loads fine,
a text file named ``x.png`` is refused. Every refusal is a typed
:class:`~decodemo.errors.InputError` whose message says what was wrong and what is accepted;
no raw ``OSError``/``ValueError`` from Pillow escapes :func:`load_image`.

Conversion rules (applied in this order):

1. EXIF orientation is applied (:func:`PIL.ImageOps.exif_transpose`), so a portrait photo
   taken with a rotated camera comes out portrait. A broken EXIF block is ignored.
2. 16-bit grey (``I;16``, ``I;16B``, ``I;16L``) is scaled ``v / 257`` (65535 -> 255).
   32-bit integer grey (``I``) is treated as 16-bit when all values lie in 0..65535, and
   min-max stretched to 0..255 otherwise. 32-bit float grey (``F``) is taken as 0..1 when
   all finite values lie in [0, 1] and min-max stretched otherwise; NaN becomes 0.
3. Transparency (``RGBA``, ``LA``, ``PA``, palette or grey with a transparent colour) is
   **composited on white**: transparent pixels become white, half-transparent ones are
   blended. (Dropping alpha instead would expose whatever colour happens to be stored
   under transparent pixels, often black or garbage.)
4. Everything else (``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ...) goes through
   Pillow's ``convert("RGB")``. ICC profiles are ignored: pixel values are taken as sRGB,
   and CMYK uses Pillow's plain conversion.

Multi-frame files (animated WebP, multi-page TIFF) give their first frame.

Working resolution: an image of more than ``max_working_pixels`` (default
:data:`DEFAULT_WORKING_PIXELS`, 1024 x 1024: every image of the bundled data sets fits) is reduced,
aspect kept, to at most that many pixels while it is decoded: a JPEG is decoded at a reduced
scale (``Image.draft``), every other format in 8 bits and reduced at once by box filtering. Every
model works at 256 px or in 256 px tiles, so little is lost to them, and what a request holds is
bounded: about 3 bytes per pixel of the file (at most :data:`DEFAULT_MAX_PIXELS`) while decoding,
and the working size from then on, in memory and on disk. Maps and normal versions are drawn at
the working size.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from decodemo.errors import CorruptFileError, DecodemoError, ImageTooLargeError, UnsupportedFormatError
from decodemo.io.source import Source, _a, _describe_other, _sniff_image, read_source

__all__ = [
    "IMAGE_EXTENSIONS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_WORKING_PIXELS",
    "DEFAULT_MAX_BYTES",
    "ACCEPTED_IMAGE_FORMATS",
    "Source",
    "load_image",
    "image_to_array",
    "read_source",
]

#: File extensions recognised as images (lower case, with the dot).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Default pixel limit (width x height), checked from the header before decoding.
DEFAULT_MAX_PIXELS = 40_000_000
#: Default working resolution (pixels): larger images are reduced to it while decoding.
DEFAULT_WORKING_PIXELS = 1024 * 1024
#: Default size limit of an image file in bytes (50 MiB).
DEFAULT_MAX_BYTES = 50 * 2**20

#: Pillow format names :func:`load_image` lets Pillow try; nothing else is even opened.
_PIL_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")
#: Human wording of the accepted formats, used in messages.
ACCEPTED_IMAGE_FORMATS = "PNG, JPEG, BMP, TIFF or WebP"

#: A path (``str`` / :class:`os.PathLike`), the file's bytes, or a binary file object
#: opened for reading (``open(p, "rb")``, :class:`io.BytesIO`, a web upload).

_GREY_16 = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")


# --------------------------------------------------------------------------------------
# Reading bytes (shared with decodemo.io.audio)
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# load_image
# --------------------------------------------------------------------------------------


def _too_many_pixels(label: str, width: int | None, height: int | None, max_pixels: int) -> ImageTooLargeError:
    side = int(round(math.sqrt(max_pixels), -2)) if max_pixels >= 10_000 else int(math.sqrt(max_pixels))
    if width is not None and height is not None:
        what = f"{label} is {width:,} x {height:,} = {width * height:,} pixels"
    else:
        what = f"{label} has more pixels than can be decoded safely"
    return ImageTooLargeError(
        f"{what}; the limit is {max_pixels:,} (about {side} x {side}). Resize it and try again."
    )


def load_image(
    source: Source,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_working_pixels: int | None = DEFAULT_WORKING_PIXELS,
) -> Image.Image:
    """Load an image file as a fully decoded 8-bit RGB :class:`PIL.Image.Image`.

    Args:
        source: a path (``str`` or :class:`~pathlib.Path`), the file's ``bytes``, or a
            binary file object (read from its current position to the end).
        max_pixels: refuse images with more than this many pixels (width x height). The
            size is read from the header *before* any pixel is decoded (decompression-bomb
            guard). Pillow's own bomb limit (``Image.MAX_IMAGE_PIXELS``, ~179 M pixels for
            the hard error) still applies above it.
        max_bytes: refuse files larger than this many bytes (checked before reading a path).
        max_working_pixels: reduce larger images to at most this many pixels, aspect kept,
            while decoding (module docstring); None keeps every pixel.

    Returns:
        A new image of mode ``"RGB"`` (3 x 8 bits), size ``(width, height)`` after EXIF
        orientation. The conversion rules (alpha composited on white, 16-bit scaled by
        1/257, ...) are described in the module docstring. The file is fully decoded
        (``.load()``), so truncation is detected here and never later. This relies on
        Pillow's global ``ImageFile.LOAD_TRUNCATED_IMAGES`` being ``False`` (its default,
        which decodemo never changes).

    Raises:
        EmptyFileError: zero bytes.
        FileTooLargeError: more than ``max_bytes`` bytes.
        UnsupportedFormatError: not a PNG, JPEG, BMP, TIFF or WebP file (text, PDF, SVG,
            GIF, ...), or an image mode that cannot be converted to RGB.
        ImageTooLargeError: more than ``max_pixels`` pixels.
        CorruptFileError: the file starts like an accepted format but cannot be decoded
            (truncated, damaged); every other exception from Pillow while decoding.
        InputError: a path that does not exist or is not a regular file.
    """
    data, name = read_source(source, max_bytes=max_bytes, kind="image")
    label = f"'{name}'" if name else "The file"
    big_label = f"'{name}'" if name else "The image"
    claimed = _sniff_image(data)

    try:
        with warnings.catch_warnings():
            # We apply our own (lower) limit below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                img = Image.open(io.BytesIO(data), formats=_PIL_FORMATS)
            except Image.DecompressionBombError as exc:
                raise _too_many_pixels(big_label, None, None, max_pixels) from exc
            except UnidentifiedImageError as exc:
                if claimed is not None:
                    raise CorruptFileError(
                        f"{label} starts like {_a(claimed)} image but its header cannot be read; "
                        f"the file is damaged or cut short. Accepted: {ACCEPTED_IMAGE_FORMATS} files."
                    ) from exc
                other = _describe_other(data)
                what = f"{label} is {other}, not an image we read" if other else f"{label} is not a recognised image"
                raise UnsupportedFormatError(
                    f"{what}. Accepted: {ACCEPTED_IMAGE_FORMATS} files "
                    f"({', '.join(IMAGE_EXTENSIONS)})."
                ) from exc

            width, height = img.size
            if width * height > max_pixels:
                raise _too_many_pixels(big_label, width, height, max_pixels)

            if max_working_pixels and width * height > max_working_pixels and img.format == "JPEG":
                f = math.sqrt(width * height / max_working_pixels)
                img.draft("RGB", (max(1, math.ceil(width / f)), max(1, math.ceil(height / f))))
            img.load()
            img = _apply_exif_orientation(img)
            return _working_size(_to_rgb8(img, label), max_working_pixels)
    except DecodemoError:
        raise
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(big_label, None, None, max_pixels) from exc
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a damaged file
        fmt = claimed or "image"
        detail = str(exc).strip() or type(exc).__name__
        raise CorruptFileError(
            f"{label} could not be decoded as {_a(fmt)} file ({detail}); it is damaged or cut short. "
            f"Save or export it again as {ACCEPTED_IMAGE_FORMATS} and retry."
        ) from exc


def _working_size(img: Image.Image, max_pixels: int | None) -> Image.Image:
    """``img`` reduced, aspect kept, to at most ``max_pixels`` pixels (as it is when smaller)."""
    w, h = img.size
    if not max_pixels or w * h <= max_pixels:
        return img
    f = math.sqrt(w * h / max_pixels)
    size = (max(1, int(w / f)), max(1, int(h / f)))
    factor = int(f)
    if factor >= 2:  # an integer box reduction first: fast, and it holds only the smaller copy
        img = img.reduce(factor)
    return img.resize(size, Image.BILINEAR) if img.size != size else img


def _apply_exif_orientation(img: Image.Image) -> Image.Image:
    """Apply the EXIF Orientation tag; an unreadable EXIF block leaves the image as is."""
    try:
        orientation = img.getexif().get(0x0112)
        if orientation in (2, 3, 4, 5, 6, 7, 8):
            return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - broken metadata must not refuse good pixels
        pass
    return img


def _grey_to_uint8(img: Image.Image) -> np.ndarray:
    """High-bit-depth grey (``I;16*``, ``I``, ``F``) -> ``(H, W)`` uint8 (rules in module doc)."""
    mode = img.mode
    if mode in _GREY_16:
        a = np.asarray(img).astype(np.float64) / 257.0
    elif mode == "F":
        a = np.asarray(img, dtype=np.float64)
        finite = np.isfinite(a)
        if not finite.any():
            a = np.zeros(a.shape)
        else:
            lo, hi = float(a[finite].min()), float(a[finite].max())
            if lo >= 0.0 and hi <= 1.0:
                a = np.where(finite, a, 0.0) * 255.0
            elif hi > lo:
                a = (np.where(finite, a, lo) - lo) / (hi - lo) * 255.0
            else:
                a = np.zeros(a.shape)
    else:  # "I" and other integer grey modes
        a = np.asarray(img).astype(np.float64)
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0 and hi <= 65535:
            a = a / 257.0
        else:
            a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros(a.shape)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _to_rgb8(img: Image.Image, label: str = "The image") -> Image.Image:
    """Convert a loaded image of any Pillow mode to 8-bit RGB (rules in module doc)."""
    mode = img.mode
    if mode in _GREY_16 or mode == "F" or mode.startswith("I"):
        return Image.fromarray(_grey_to_uint8(img), mode="L").convert("RGB")
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "RGB":
        return img
    try:
        return img.convert("RGB")
    except ValueError as exc:
        raise UnsupportedFormatError(
            f"{label} uses the pixel mode '{mode}', which cannot be converted to RGB. "
            "Save it as 8-bit RGB, RGBA or greyscale and try again."
        ) from exc


# --------------------------------------------------------------------------------------
# image_to_array
# --------------------------------------------------------------------------------------


def image_to_array(img: Image.Image, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """An image as a float32 array ``(H, W, 3)`` with values in ``[0, 1]``.

    Args:
        img: a PIL image, normally from :func:`load_image` (mode ``"RGB"``). Other modes
            are converted with the same rules as :func:`load_image`.
        size: ``None`` keeps the image's size; an ``int`` ``s`` resizes to ``s x s``; a
            tuple is ``(height, width)`` (numpy order, **not** PIL's ``(width, height)``).
            Resizing is Pillow bicubic (antialiased when shrinking), done in 8 bits, so
            the result stays within ``[0, 1]``.

    Returns:
        ``np.ndarray`` of dtype float32, shape ``(H, W, 3)``, channel order RGB,
        ``pixel / 255``.
    """
    if img.mode != "RGB":
        img = _to_rgb8(img)
    if size is not None:
        if isinstance(size, (int, np.integer)):
            h = w = int(size)
        else:
            h, w = (int(v) for v in size)
        if h <= 0 or w <= 0:
            raise ValueError(f"size must be positive, got {size!r}")
        if (w, h) != img.size:
            img = img.resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32) / np.float32(255.0)

