"""A corpus of bad and odd input files, made by code, each with the outcome decodemo owes it.

:func:`generate` writes every file into a folder and returns its :class:`Case` list: the file's
name, one line saying what it is, and the expected outcome, either refused with a named
:mod:`decodemo.errors` class (and words its message must hold) or accepted (with the working
size of an image, the duration of a sound). Nothing is downloaded or copied: every file is
encoded here with Pillow, soundfile, zlib and ``struct`` (hand-written headers where a library
will not write the oddity). The limits are read from the code (:mod:`decodemo.io.images`,
:func:`decodemo.io.audio.load_audio`), so a changed limit moves the edge cases with it.

Where decodemo does not do today what a case expects, the case says what it does instead
(``Case.known_issue``); the test treats it as a strict expected failure, so a fix is noticed.

A file name has at most 255 bytes on the usual file systems (NAME_MAX), so no upload can carry a
300-character name: the longest names are 255 bytes, and one path runs to 300 characters.

The corpus is small (about 4 MB on disk; the two files over the byte limits are sparse, so they
take no disk) and is made in well under 5 s (about half a second).
``python tests/reliability/corpus.py DIR`` writes it to ``DIR`` and prints the table.
"""

from __future__ import annotations

import inspect
import io
import json
import math
import os
import struct
import sys
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from decodemo.io import audio as _audio
from decodemo.io import images as _images

__all__ = ["ACCEPTED", "Case", "cases", "write", "generate", "LIMITS", "working_size"]

ACCEPTED = "accepted"

_LOAD_AUDIO = inspect.signature(_audio.load_audio).parameters
#: the limits the cases are placed around, read from the code
LIMITS = {
    "max_pixels": _images.DEFAULT_MAX_PIXELS,
    "working_pixels": _images.DEFAULT_WORKING_PIXELS,
    "max_image_bytes": _images.DEFAULT_MAX_BYTES,
    "max_audio_bytes": _audio.DEFAULT_MAX_AUDIO_BYTES,
    "min_seconds": float(_LOAD_AUDIO["min_seconds"].default),
    "max_seconds": float(_LOAD_AUDIO["max_seconds"].default),
    "silence_rms": float(_LOAD_AUDIO["silence_rms"].default),
    "sample_rate": int(_audio.DEFAULT_SAMPLE_RATE),
}


@dataclass(frozen=True)
class Case:
    """One corpus file and the outcome expected of it."""

    name: str  # path inside the corpus folder (a sub-folder only for the long-path case)
    description: str
    expect: str  # ACCEPTED, or the name of a decodemo.errors class
    kind: str  # "image" or "audio": what the service must take it for (by content, else by name)
    phrase: str = ""  # a refusal: words its message must contain (besides the file's name)
    size: tuple[int, int] | None = None  # an accepted image: (height, width) after loading
    size_tol: int = 0  # pixels of slack on ``size`` (images reduced to the working resolution)
    seconds: float | None = None  # an accepted sound: its duration after decoding
    seconds_tol: float = 0.02  # seconds of slack on ``seconds``
    full: bool = False  # also sent through the whole Service.compare (models run)
    #: where decodemo does not do what is expected today: what it does instead (the test is
    #: then an expected failure, strict, so that a fix is noticed)
    known_issue: str = ""
    data: bytes = field(default=b"", repr=False, compare=False)  # the file's bytes
    sparse_size: int | None = None  # a sparse file: ``data`` then a hole up to this size (no disk used)

    @property
    def refused(self) -> bool:
        return self.expect != ACCEPTED

    @property
    def basename(self) -> str:
        return self.name.rsplit("/", 1)[-1]


def working_size(width: int, height: int) -> tuple[int, int]:
    """(height, width) of an image reduced, aspect kept, to the working resolution (as documented
    in :mod:`decodemo.io.images`); the loader may land a pixel off (``Case.size_tol``)."""
    limit = LIMITS["working_pixels"]
    if width * height <= limit:
        return height, width
    f = math.sqrt(width * height / limit)
    return max(1, int(height / f)), max(1, int(width / f))


# ------------------------------------------------------------------------------- encoders
def _pattern(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A small textured RGB picture (gradients, a checker and a little noise), uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    r = (255 * x / max(1, w - 1)).astype(np.float64)
    g = (255 * y / max(1, h - 1)).astype(np.float64)
    b = np.where(((x // 4) + (y // 4)) % 2 == 0, 200.0, 60.0)
    img = np.stack([r, g, b], -1) + rng.normal(0, 6, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _enc(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(ctype: bytes, body: bytes, crc: int | None = None) -> bytes:
    """A PNG chunk; ``crc`` overrides the right one."""
    crc = zlib.crc32(ctype + body) if crc is None else crc
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc & 0xFFFFFFFF)


_PNG_SIG = b"\x89PNG\r\n\x1a\n"


def _ihdr(width: int, height: int, bit_depth: int = 8, color: int = 0, compression: int = 0,
          crc: int | None = None) -> bytes:
    return _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color, compression, 0, 0), crc)


def _png_zero(width: int, height: int, bit_depth: int = 8, level: int = 9) -> bytes:
    """A complete grey PNG of zeros (filter 0 rows): tiny however many pixels it has."""
    row = 1 + (width * bit_depth + 7) // 8
    comp = zlib.compressobj(level)
    block = bytes(row * 256)
    out = []
    for start in range(0, height, 256):
        out.append(comp.compress(block if height - start >= 256 else bytes(row * (height - start))))
    out.append(comp.flush())
    return _PNG_SIG + _ihdr(width, height, bit_depth, 0) + _chunk(b"IDAT", b"".join(out)) + _chunk(b"IEND", b"")


def _png_header_only(width: int, height: int, bit_depth: int = 8, color: int = 0) -> bytes:
    """A PNG that claims a size: signature, IHDR, one tiny IDAT (a few zeros), IEND."""
    return (_PNG_SIG + _ihdr(width, height, bit_depth, color)
            + _chunk(b"IDAT", zlib.compress(bytes(64))) + _chunk(b"IEND", b""))


def _png_chunks(data: bytes) -> list[tuple[int, bytes, int]]:
    """(offset, type, length) of each chunk of a PNG."""
    pos, out = 8, []
    while pos + 8 <= len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        out.append((pos, data[pos + 4:pos + 8], n))
        pos += 12 + n
    return out


def _jpeg_sof(width: int, height: int, precision: int = 8) -> bytes:
    """SOI, a quantisation table, SOF0 for ``width x height`` grey, a Huffman table, SOS, EOI:
    a JPEG header that claims a size and has no scan data."""
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes([1] * 64)
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, precision, height, width, 1) + b"\x01\x11\x00"
    dht = b"\xff\xc4" + struct.pack(">H", 31) + b"\x00" + bytes([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]) \
        + bytes(range(12))
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00"
    return b"\xff\xd8" + dqt + sof + dht + sos + b"\xff\xd9"


def _jpeg_segments(data: bytes) -> dict[int, int]:
    """marker -> offset of the first segment with it (up to the start of scan)."""
    pos, out = 2, {}
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        out.setdefault(marker, pos)
        if marker == 0xDA:
            break
        pos += 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
    return out


def _tiff_header_claiming(width: int, height: int, strip_offset: int | None = None) -> bytes:
    """A little-endian TIFF with one IFD (8-bit grey, one strip) claiming ``width x height``;
    the strip lies at ``strip_offset`` (default: just after the IFD, with no bytes there)."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 0), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, min(width * height, 0xFFFFFFFF))]
    ifd_size = 2 + 12 * len(entries) + 4
    offset = 8 + ifd_size if strip_offset is None else strip_offset
    body = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        value = offset if tag == 273 else value
        packed = struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        body += struct.pack("<HHI", tag, typ, count) + packed
    return b"II*\x00" + struct.pack("<I", 8) + body + struct.pack("<I", 0)


def _bmp(width: int, height: int, bpp: int = 24, pixels: bytes | None = None, top_down: bool = False) -> bytes:
    """A BITMAPINFOHEADER BMP (no palette: 24 or 32 bits); ``pixels`` None: the rows it needs,
    of a gradient; b"": header only."""
    stride = ((width * bpp + 31) // 32) * 4
    if pixels is None:
        rows = []
        for yy in range(height):
            row = bytes((3 * xx + 5 * yy) % 256 for xx in range(width * bpp // 8))
            rows.append(row + bytes(stride - len(row)))
        pixels = b"".join(rows)
    header_size = 14 + 40
    file_size = min(header_size + stride * height, 0xFFFFFFFF)
    h = -height if top_down else height
    return (b"BM" + struct.pack("<IHHI", file_size, 0, 0, header_size)
            + struct.pack("<IiiHHIIiiII", 40, width, h, 1, bpp, 0, min(stride * height, 0xFFFFFFFF), 2835, 2835, 0, 0)
            + pixels)


def _webp_vp8l_header(width: int, height: int) -> bytes:
    """A lossless WebP (VP8L) that claims ``width x height`` (max 16384) with almost no data."""
    bits = (width - 1) | ((height - 1) << 14)  # alpha 0, version 0
    body = b"\x2f" + struct.pack("<I", bits) + bytes(8)
    chunk = b"VP8L" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def _tone(seconds: float, sr: int, freq: float = 440.0, amp: float = 0.3, channels: int = 1, seed: int = 0
          ) -> np.ndarray:
    n = max(0, int(round(seconds * sr)))
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    y = amp * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(n)
    if channels == 1:
        return y.astype(np.float32)
    return np.stack([y * (1.0 - 0.1 * c) for c in range(channels)], 1).astype(np.float32)


def _snd(y: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _wav(samples: bytes, *, tag: int = 1, channels: int = 1, rate: int = 16000, bits: int = 16,
         block_align: int | None = None, byte_rate: int | None = None, data_size: int | None = None,
         riff_size: int | None = None, before_data: bytes = b"", data_first: bool = False,
         with_data: bool = True) -> bytes:
    """A RIFF/WAVE file written by hand, so that every header field can lie."""
    block_align = channels * bits // 8 if block_align is None else block_align
    byte_rate = rate * block_align if byte_rate is None else byte_rate
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, tag, channels, rate, byte_rate, block_align, bits)
    data = (b"data" + struct.pack("<I", len(samples) if data_size is None else data_size) + samples) if with_data \
        else b""
    body = before_data + (data + fmt if data_first else fmt + data)
    return b"RIFF" + struct.pack("<I", 4 + len(body) if riff_size is None else riff_size) + b"WAVE" + body


def _pcm16(y: np.ndarray) -> bytes:
    return (np.clip(y, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes()


def _elf() -> bytes:
    """The 64-byte header of an x86-64 ELF executable, then zeros."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    rest = struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, 0x401000, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    return ident + rest + bytes(512)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in members.items():
            z.writestr(n, d)
    return buf.getvalue()


def _exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


# ------------------------------------------------------------------------------- the corpus
def generate(folder: str | os.PathLike) -> list[Case]:
    """Make the corpus, write it into ``folder`` and return its cases (:func:`cases`, :func:`write`)."""
    return write(folder, cases())


def write(folder: str | os.PathLike, corpus: list[Case]) -> list[Case]:
    """Write the files of ``corpus`` into ``folder`` (created; files of the same names are
    replaced); returns ``corpus``."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    for c in corpus:
        path = root / c.name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(c.data)
            if c.sparse_size is not None:
                f.truncate(c.sparse_size)  # a hole: the apparent size, no disk used
    return corpus


def cases() -> list[Case]:
    """Every case of the corpus, with its bytes, in a fixed order (nothing is written)."""
    out: list[Case] = []
    seen: set[str] = set()

    def add(name: str, data: bytes, description: str, expect: str, kind: str, **kw) -> None:
        if name in seen:
            raise ValueError(f"duplicate corpus name {name!r}")
        if any(len(part.encode()) > 255 for part in name.split("/")):
            raise ValueError(f"{name!r}: a name of more than 255 bytes cannot be made on the usual file systems")
        seen.add(name)
        out.append(Case(name, description, expect, kind, data=data, **kw))

    def sparse(name: str, head: bytes, size: int, description: str, expect: str, kind: str, **kw) -> None:
        add(name, head, description, expect, kind, sparse_size=size, **kw)

    L = LIMITS
    sr = L["sample_rate"]

    # ---- the valid files everything else is cut or bent from
    pic = _pattern(64, 48)
    rgb = Image.fromarray(pic)
    png = _enc(rgb, "PNG")
    jpg = _enc(rgb, "JPEG", quality=90)
    webp = _enc(rgb, "WEBP", quality=80)
    tif = _enc(rgb, "TIFF")
    bmp = _enc(rgb, "BMP")
    one_s = _tone(1.0, sr)
    wav = _snd(one_s, sr, "WAV", "PCM_16")
    flac = _snd(one_s, sr, "FLAC", "PCM_16")
    ogg = _snd(one_s, sr, "OGG", "VORBIS")
    mp3 = _snd(_tone(2.0, sr), sr, "MP3", "MPEG_LAYER_III")
    img_ok = dict(size=(48, 64))

    # ================================================================ empty files
    for name, kind in [("empty.png", "image"), ("empty.jpg", "image"), ("empty.wav", "audio"),
                       ("empty.flac", "audio"), ("empty_no_extension", "image")]:
        add(name, b"", "zero bytes", "EmptyFileError", kind, phrase="empty (0 bytes)")

    # ================================================================ not images, not sounds
    text = b"Inspection notes: bottle 17 looks fine, check the cap.\n" * 12
    html = b"<!DOCTYPE html>\n<html><head><title>part</title></head><body><img src='part.png'></body></html>\n"
    pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\ntrailer\n<<>>\n%%EOF\n"
    svg = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48">'
           b'<rect width="64" height="48" fill="red"/></svg>\n')
    gif = _enc(rgb.convert("P"), "GIF")
    zipped = _zip({"parts/part.png": png, "parts/readme.txt": text})
    doc = json.dumps({"image": "part.png", "pixels": [[0, 1], [2, 3]]}).encode()
    ico = _enc(rgb, "ICO", sizes=[(32, 32)])
    aiff = _snd(one_s, sr, "AIFF", "PCM_16")
    au = _snd(one_s, sr, "AU", "PCM_16")
    refusals = [
        ("notes.txt.png", text, "a text file named .png", "image", "a text file"),
        ("page.jpg", html, "an HTML page named .jpg", "image", "XML/HTML document"),
        ("report.png", pdf, "a PDF named .png", "image", "PDF document"),
        ("drawing.png", svg, "an SVG drawing named .png", "image", "SVG drawing"),
        ("animation.png", gif, "a real GIF named .png", "image", "GIF image"),
        ("animation.gif", gif, "a real GIF under its own name", "image", "GIF image"),
        ("parts.png", zipped, "a ZIP archive (a PNG and a text inside) named .png", "image", "ZIP archive"),
        ("parts.zip", zipped, "a ZIP archive given to the single-file compare", "image", "ZIP archive"),
        ("program.png", _elf(), "an ELF executable header named .png", "image", "not a recognised image"),
        ("data.json.png", doc, "a JSON document named .png", "image", "a text file"),
        ("icon.png", ico, "a Windows ICO image named .png", "image", "not a recognised image"),
        ("random.png", np.random.default_rng(3).bytes(2048), "2 KB of random bytes named .png", "image",
         "not a recognised image"),
        ("riff_text.webp", b"RIFF is a container; WEBP is a format.\n" * 4, "text starting with 'RIFF' named .webp",
         "image", "a text file"),
        ("jp2.jpg", b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(64), "a JPEG 2000 signature named .jpg", "image",
         "JPEG 2000 image"),
        ("photo.png", b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(64),
         "an AVIF header named .png", "image", "AVIF image"),
        ("photo.jpg", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64),
         "a HEIC header named .jpg", "image", "HEIC/HEIF image"),
        ("notes.wav", text, "a text file named .wav", "audio", "a text file"),
        ("page.wav", html, "an HTML page named .wav", "audio", "XML/HTML document"),
        ("report.flac", pdf, "a PDF named .flac", "audio", "PDF document"),
        ("drawing.ogg", svg, "an SVG drawing named .ogg", "audio", "SVG drawing"),
        ("animation.wav", gif, "a GIF named .wav", "audio", "GIF image"),
        ("parts.mp3", zipped, "a ZIP archive named .mp3", "audio", "ZIP archive"),
        ("program.wav", _elf(), "an ELF executable header named .wav", "audio", "not a recognised audio file"),
        ("data.wav", doc, "a JSON document named .wav", "audio", "a text file"),
        ("movie.wav", b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + bytes(64),
         "an MP4 header named .wav", "audio", "video or MP4-family"),
        ("random.wav", b"\x42" + np.random.default_rng(4).bytes(4095), "4 KB of random bytes named .wav", "audio",
         "not a recognised audio file"),
        ("tone.aiff.wav", aiff, "a real AIFF clip named .wav", "audio", "AIFF"),
        ("tone.au.wav", au, "a real Sun AU clip named .wav", "audio", "not accepted"),
    ]
    for name, data, desc, kind, phrase in refusals:
        add(name, data, desc, "UnsupportedFormatError", kind, phrase=phrase)
    add("utf16.png", "notes in UTF-16".encode("utf-16-le").join([b"\xff\xfe", b""]),
        "UTF-16 LE text (BOM FF FE) named .png", "UnsupportedFormatError", "image", phrase="not a recognised image")
    add("bmw.bmp", b"BMW 320d service log, 2019-2023\n" * 8, "text starting with 'BM' named .bmp",
        "UnsupportedFormatError", "image", phrase="a text file",
        known_issue="Pillow's BMP plugin opens text that starts with 'BM' (the sniff does not claim it); refused "
        "as CorruptFileError 'could not be decoded as an image file (Truncated File Read)'")

    # ================================================================ truncated files
    ihdr_end = 8 + 25
    for cut, what in [(8, "the signature only"), (20, "inside IHDR"), (ihdr_end, "IHDR, nothing after"),
                      (len(png) // 2, "half the file"), (len(png) - 40, "40 bytes short, inside IDAT")]:
        add(f"cut_png_{cut}.png", png[:cut], f"a 64x48 PNG cut to {cut} of {len(png)} bytes ({what})",
            "CorruptFileError", "image", phrase="PNG")
    add("cut_png_no_iend.png", png[:-12], "a 64x48 PNG without its IEND chunk (every pixel present)", ACCEPTED,
        "image", **img_ok)
    add("cut_png_4.png", png[:4], "a PNG cut to 4 bytes (half its signature)", "UnsupportedFormatError", "image",
        phrase="not a recognised image")
    segs = _jpeg_segments(jpg)
    add("cut_jpeg_2.jpg", jpg[:2], "a JPEG cut to its 2-byte SOI marker (too short to be recognised)",
        "UnsupportedFormatError", "image", phrase="not a recognised image")
    for cut, what in [(20, "inside APP0"), (segs[0xDA], "every header, no scan"),
                      (len(jpg) // 2, "half the scan"), (len(jpg) - 40, "40 bytes short")]:
        add(f"cut_jpeg_{cut}.jpg", jpg[:cut], f"a 64x48 JPEG cut to {cut} of {len(jpg)} bytes ({what})",
            "CorruptFileError", "image", phrase="JPEG")
    for cut, what in [(12, "RIFF/WEBP only"), (30, "inside the VP8 header"), (len(webp) // 2, "half the file"),
                      (len(webp) - 1, "one byte short")]:
        add(f"cut_webp_{cut}.webp", webp[:cut], f"a 64x48 WebP cut to {cut} of {len(webp)} bytes ({what})",
            "CorruptFileError", "image", phrase="WebP")
    for cut, what in [(8, "the header only"), (len(tif) // 2, "half the strip"), (len(tif) - 60, "inside the IFD")]:
        add(f"cut_tiff_{cut}.tif", tif[:cut], f"a 64x48 TIFF cut to {cut} of {len(tif)} bytes ({what})",
            "CorruptFileError", "image", phrase="TIFF")
    for cut, what in [(14, "the file header only"), (54, "headers, no pixels"), (len(bmp) // 2, "half the rows")]:
        add(f"cut_bmp_{cut}.bmp", bmp[:cut], f"a 64x48 BMP cut to {cut} of {len(bmp)} bytes ({what})",
            "CorruptFileError", "image", phrase="BMP")
    for cut, what in [(4, "'RIFF' only"), (12, "RIFF/WAVE only"), (30, "inside the fmt chunk"),
                      (44, "the header only"), (44 + (len(wav) - 44) // 2, "half the samples")]:
        add(f"cut_wav_{cut}.wav", wav[:cut], f"a 1 s 16-bit WAV cut to {cut} of {len(wav)} bytes ({what})",
            "CorruptFileError", "audio", phrase="WAV")
    for cut, what in [(4, "'fLaC' only"), (42, "STREAMINFO only"), (len(flac) // 2, "half the frames"),
                      (len(flac) - 10, "10 bytes short")]:
        add(f"cut_flac_{cut}.flac", flac[:cut], f"a 1 s FLAC cut to {cut} of {len(flac)} bytes ({what})",
            "CorruptFileError", "audio", phrase="FLAC")
    add("cut_ogg_4.ogg", ogg[:4], "an Ogg Vorbis clip cut to its 4-byte 'OggS'", "CorruptFileError", "audio",
        phrase="Ogg")
    add("cut_ogg_half.ogg", ogg[: len(ogg) // 2], f"a 1 s Ogg Vorbis ({len(ogg)} bytes, one audio page) cut in half",
        "CorruptFileError", "audio", phrase="Ogg",
        known_issue="libsndfile opens it with 0 frames, so it is refused as AudioTooShortError 'lasts 0.00 s ... "
        "Give a longer recording' instead of as a damaged file")
    ogg3 = _snd(_tone(3.0, sr), sr, "OGG", "VORBIS")
    add("cut_ogg_3s.ogg", ogg3[: len(ogg3) * 3 // 4], "a 3 s Ogg Vorbis cut at three quarters: decoded up to the "
        "last whole page, as players do", ACCEPTED, "audio", seconds=2.0, seconds_tol=0.3)
    add("cut_mp3_half.mp3", mp3[: len(mp3) // 2], "a 2 s MP3 cut in half: decoded up to the cut, as players do",
        ACCEPTED, "audio", seconds=0.95, seconds_tol=0.1)

    # ================================================================ damaged chunks, headers only
    chunks = _png_chunks(png)
    idat = next(c for c in chunks if c[1] == b"IDAT")
    bad = bytearray(png)
    bad[29:33] = b"\x00\x00\x00\x00"
    add("bad_ihdr_crc.png", bytes(bad), "a PNG whose IHDR CRC is zeroed", "CorruptFileError", "image", phrase="PNG")
    bad = bytearray(png)
    crc_at = idat[0] + 8 + idat[2]
    bad[crc_at:crc_at + 4] = bytes(4)
    add("bad_idat_crc.png", bytes(bad), "a PNG whose IDAT CRC is zeroed, the data intact (Pillow does not check "
        "IDAT CRCs)", ACCEPTED, "image", **img_ok)
    bad = bytearray(png)
    mid = idat[0] + 8 + idat[2] // 2
    bad[mid:mid + 16] = bytes(b ^ 0x5A for b in bad[mid:mid + 16])
    add("bad_idat_data.png", bytes(bad), "a PNG with 16 bytes of its deflate stream flipped", "CorruptFileError",
        "image", phrase="PNG")
    add("bad_bit_depth.png", _PNG_SIG + _ihdr(64, 48, 7, 0) + png[ihdr_end:],
        "a PNG whose IHDR says bit depth 7", "CorruptFileError", "image", phrase="PNG")
    add("bad_color_type.png", _PNG_SIG + _ihdr(64, 48, 8, 5) + png[ihdr_end:],
        "a PNG whose IHDR says colour type 5 (none such)", "CorruptFileError", "image", phrase="PNG")
    add("zero_width.png", _PNG_SIG + _ihdr(0, 48, 8, 2) + png[ihdr_end:],
        "a PNG whose IHDR says width 0", "CorruptFileError", "image", phrase="PNG")
    add("no_idat.png", _PNG_SIG + _ihdr(64, 48, 8, 2) + _chunk(b"IEND", b""),
        "a PNG header only: IHDR and IEND, no image data", "CorruptFileError", "image", phrase="PNG")
    add("huge_chunk_length.png", _PNG_SIG + _ihdr(64, 48, 8, 2) + struct.pack(">I", 0x7FFFFFF0) + b"IDAT" + bytes(32),
        "a PNG whose IDAT claims 2 GB of data", "CorruptFileError", "image", phrase="PNG")
    add("header_only.jpg", _jpeg_sof(64, 48), "a JPEG header (tables, SOF 64x48, SOS) then EOI: no scan data",
        "CorruptFileError", "image", phrase="JPEG",
        known_issue="accepted: libjpeg fills the missing scan with flat grey (a warning only) and the three models "
        "score a picture that is not in the file")
    add("jpeg_12bit.jpg", _jpeg_sof(64, 48, precision=12), "a JPEG header claiming 12-bit precision",
        "CorruptFileError", "image", phrase="JPEG")
    add("header_only.bmp", _bmp(64, 48, 24, b""), "a BMP header (64x48, 24 bits) with no pixels",
        "CorruptFileError", "image", phrase="BMP")
    add("bmp_7bit.bmp", _bmp(64, 48, 7, bytes(64 * 48)), "a BMP claiming 7 bits per pixel",
        "CorruptFileError", "image", phrase="BMP")
    add("header_only.tif", _tiff_header_claiming(64, 48), "a TIFF header (64x48 grey, one strip) with no strip",
        "CorruptFileError", "image", phrase="TIFF")
    add("strip_past_end.tif", _tiff_header_claiming(64, 48, strip_offset=10**6) + bytes(100),
        "a TIFF whose strip offset points 1 MB past the end", "CorruptFileError", "image", phrase="TIFF")
    add("header_only.webp", _webp_vp8l_header(64, 48), "a lossless WebP header (64x48) with no image data",
        "CorruptFileError", "image", phrase="WebP")
    add("bad_riff_size.webp", b"RIFF" + struct.pack("<I", 10**7) + webp[8:],
        "a WebP whose RIFF size claims 10 MB", "CorruptFileError", "image", phrase="WebP")

    # ================================================================ decompression bombs, pixel limit
    w40, h40 = 8000, L["max_pixels"] // 8000  # exactly the limit: 8000 x 5000 for 40 MP
    add("limit_exact.png", _png_zero(w40, h40), f"a {w40}x{h40} grey PNG of zeros, exactly the pixel limit "
        f"({w40 * h40:,}); reduced to the working resolution while decoding", ACCEPTED, "image",
        size=working_size(w40, h40), size_tol=1)
    add("limit_plus_one_row.png", _png_header_only(w40, h40 + 1),
        f"a PNG header claiming {w40}x{h40 + 1}, just over the pixel limit", "ImageTooLargeError", "image",
        phrase=f"{w40:,} x {h40 + 1:,}")
    add("bomb_10k.png", _png_zero(10000, 10000, bit_depth=1),
        "a complete 10000x10000 1-bit PNG of zeros (100 MP in 12 KB)", "ImageTooLargeError", "image",
        phrase="10,000 x 10,000")
    add("bomb_100k.png", _png_header_only(100000, 100000), "a PNG header claiming 100000x100000 (10 GP)",
        "ImageTooLargeError", "image", phrase="limit is")
    add("bomb_65k.jpg", _jpeg_sof(65000, 65000), "a JPEG header claiming 65000x65000", "ImageTooLargeError",
        "image", phrase="limit is")
    add("claims_16k.webp", _webp_vp8l_header(16384, 16384), "a lossless WebP header claiming 16384x16384 with no "
        "image data (libwebp refuses it before any size is read)", "CorruptFileError", "image", phrase="WebP")
    add("bomb_80k.tif", _tiff_header_claiming(80000, 80000), "a TIFF header claiming 80000x80000",
        "ImageTooLargeError", "image", phrase="limit is")
    add("bomb_50k.bmp", _bmp(50000, 50000, 24, b""), "a BMP header claiming 50000x50000", "ImageTooLargeError",
        "image", phrase="limit is")
    add("bomb_wide.png", _png_header_only(2**31 - 1, 1), "a PNG header claiming 2147483647x1", "ImageTooLargeError",
        "image", phrase="limit is")
    sparse("too_many_bytes.png", png, L["max_image_bytes"] + 1, "a PNG padded to one byte over the image byte "
           "limit (sparse)", "FileTooLargeError", "image", phrase="the limit is")
    sparse("too_many_bytes.wav", wav, L["max_audio_bytes"] + 1, "a WAV padded to one byte over the audio byte "
           "limit (sparse)", "FileTooLargeError", "audio", phrase="the limit is")
    jw, jh = 5000, 4000
    add("big_grey_20mp.jpg", _enc(Image.new("L", (jw, jh), 128), "JPEG", quality=50),
        f"a flat grey {jw}x{jh} JPEG (20 MP): decoded at a reduced scale", ACCEPTED, "image",
        size=working_size(jw, jh), size_tol=1)

    # ================================================================ odd but valid images
    grey16 = Image.fromarray((np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16))
    add("grey16.png", _enc(grey16, "PNG"), "a 16-bit grey PNG", ACCEPTED, "image", **img_ok)
    rgb48 = _PNG_SIG + _ihdr(64, 48, 16, 2) + _chunk(b"IDAT", zlib.compress(
        b"".join(b"\x00" + (np.full((64, 3), 4000 + 900 * yy, ">u2")).tobytes() for yy in range(48)))) \
        + _chunk(b"IEND", b"")
    add("rgb48.png", rgb48, "a 16-bit-per-channel RGB PNG (written by hand)", ACCEPTED, "image", **img_ok)
    add("cmyk.jpg", _enc(rgb.convert("CMYK"), "JPEG"), "a CMYK JPEG", ACCEPTED, "image", **img_ok)
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    add("palette_trns.png", _enc(pal, "PNG", transparency=0), "a 16-colour palette PNG, colour 0 transparent",
        ACCEPTED, "image", **img_ok)
    add("grey_trns.png", _enc(rgb.convert("L"), "PNG", transparency=128), "a grey PNG with a transparent grey level",
        ACCEPTED, "image", **img_ok)
    add("la.png", _enc(rgb.convert("LA"), "PNG"), "a grey + alpha PNG", ACCEPTED, "image", **img_ok)
    clear = rgb.convert("RGBA")
    clear.putalpha(0)
    add("all_transparent.png", _enc(clear, "PNG"), "an RGBA PNG entirely transparent (white once composited)",
        ACCEPTED, "image", **img_ok)
    add("one_bit.png", _enc(rgb.convert("1"), "PNG"), "a 1-bit PNG", ACCEPTED, "image", **img_ok)
    add("exif_rotated.jpg", _enc(rgb, "JPEG", exif=_exif_orientation(6)),
        "a 64x48 JPEG with EXIF orientation 6 (rotate 90): comes out 48 wide, 64 high", ACCEPTED, "image",
        size=(64, 48), full=True)
    add("exif_broken.jpg", _enc(rgb, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\xff\xff\xff\xf0" + bytes(8)),
        "a JPEG whose EXIF block points outside itself (ignored)", ACCEPTED, "image", **img_ok)
    add("one_pixel.png", _enc(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"), "a 1x1 PNG", ACCEPTED, "image",
        size=(1, 1), full=True)
    add("two_by_two.bmp", _enc(Image.new("RGB", (2, 2), (0, 0, 255)), "BMP"), "a 2x2 BMP", ACCEPTED, "image",
        size=(2, 2))
    add("tall_1x3000.png", _enc(Image.fromarray(_pattern(1, 3000)), "PNG"), "a 1 px wide, 3000 px high PNG",
        ACCEPTED, "image", size=(3000, 1))
    add("wide_4000x2.png", _enc(Image.fromarray(_pattern(4000, 2)), "PNG"), "a 4000 px wide, 2 px high PNG",
        ACCEPTED, "image", size=(2, 4000))
    add("grey.jpg", _enc(rgb.convert("L"), "JPEG"), "a greyscale JPEG", ACCEPTED, "image", **img_ok)
    add("progressive.jpg", _enc(rgb, "JPEG", progressive=True), "a progressive JPEG", ACCEPTED, "image", **img_ok)
    bad = bytearray(jpg)
    scan = _jpeg_segments(jpg)[0xDA] + 40
    bad[scan:scan + 8] = bytes(b ^ 0x33 for b in bad[scan:scan + 8])
    add("flipped_scan.jpg", bytes(bad), "a JPEG with 8 bytes of entropy-coded data flipped (decodes with "
        "artefacts, as every viewer shows it)", ACCEPTED, "image", **img_ok)
    add("no_eoi.jpg", jpg[:-2], "a JPEG missing only its final EOI marker (Pillow calls it truncated)",
        "CorruptFileError", "image", phrase="truncated")
    pages = [Image.fromarray(_pattern(64, 48, s)) for s in range(3)]
    add("three_pages.tif", _enc(pages[0], "TIFF", save_all=True, append_images=pages[1:]),
        "a 3-page TIFF (the first page is used)", ACCEPTED, "image", **img_ok)
    frames = [Image.fromarray(_pattern(64, 48, s)) for s in range(3)]
    add("animated.webp", _enc(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, loop=0),
        "an animated WebP of 3 frames (the first is used)", ACCEPTED, "image", **img_ok)
    add("lossless_alpha.webp", _enc(rgb.convert("RGBA"), "WEBP", lossless=True), "a lossless WebP with alpha",
        ACCEPTED, "image", **img_ok)
    fl = np.linspace(-1, 3, 64 * 48, dtype=np.float32).reshape(48, 64)
    fl[0, :8] = np.nan
    add("float_nan.tif", _enc(Image.fromarray(fl, mode="F"), "TIFF"),
        "a 32-bit float TIFF, values -1..3 and a few NaN", ACCEPTED, "image", **img_ok)
    add("int32_negative.tif", _enc(Image.fromarray(np.arange(-1536, 1536, dtype=np.int32).reshape(48, 64)), "TIFF"),
        "a 32-bit integer TIFF with negative values", ACCEPTED, "image", **img_ok)
    add("cmyk_lzw.tif", _enc(rgb.convert("CMYK"), "TIFF", compression="tiff_lzw"), "an LZW CMYK TIFF", ACCEPTED,
        "image", **img_ok)
    add("palette.bmp", _enc(rgb.convert("P"), "BMP"), "an 8-bit palette BMP", ACCEPTED, "image", **img_ok)
    add("top_down.bmp", _bmp(64, 48, 24, top_down=True), "a top-down BMP (negative height, written by hand)",
        ACCEPTED, "image", **img_ok)
    add("jpeg_named.png", jpg, "a JPEG named .png (the content decides)", ACCEPTED, "image", **img_ok)
    add("webp_named.tif", webp, "a WebP named .tif", ACCEPTED, "image", **img_ok)
    add("png_named.wav", png, "a PNG named .wav: compared as the image it is", ACCEPTED, "image", **img_ok)
    add("png_no_extension", png, "a PNG without an extension", ACCEPTED, "image", **img_ok)
    add("UPPER.PNG", png, "a PNG with an upper-case extension", ACCEPTED, "image", **img_ok)

    # ================================================================ odd but valid sounds
    add("wav_named.png", wav, "a WAV named .png: compared as the clip it is", ACCEPTED, "audio", seconds=1.0,
        full=True)
    add("flac_named.jpg", flac, "a FLAC named .jpg", ACCEPTED, "audio", seconds=1.0)
    add("wav_no_extension", wav, "a WAV without an extension", ACCEPTED, "audio", seconds=1.0)
    add("stereo_48k.wav", _snd(_tone(1.0, 48000, channels=2), 48000, "WAV", "PCM_16"),
        "a stereo 48 kHz 16-bit WAV (mixed to mono, resampled)", ACCEPTED, "audio", seconds=1.0, full=True)
    add("six_channels.wav", _snd(_tone(1.0, sr, channels=6), sr, "WAV", "PCM_16"), "a 6-channel 16-bit WAV",
        ACCEPTED, "audio", seconds=1.0)
    for subtype in ("PCM_U8", "PCM_24", "PCM_32", "DOUBLE", "ULAW", "ALAW", "IMA_ADPCM", "MS_ADPCM"):
        add(f"sub_{subtype.lower()}.wav", _snd(one_s, sr, "WAV", subtype), f"a 1 s {subtype} WAV", ACCEPTED, "audio",
            seconds=1.0)
    add("sub_gsm610.wav", _snd(_tone(1.0, 8000), 8000, "WAV", "GSM610"), "a 1 s GSM 6.10 WAV at 8 kHz (libsndfile "
        "writes and reads it)", ACCEPTED, "audio", seconds=1.0, seconds_tol=0.05,
        known_issue="refused as CorruptFileError '(frames must be specified for non-seekable files)': libsndfile "
        "says a GSM 6.10 file is not seekable and the loader reads it with frames=-1")
    add("wavex.wav", _snd(one_s, sr, "WAVEX", "FLOAT"), "a WAVE_FORMAT_EXTENSIBLE float WAV", ACCEPTED, "audio",
        seconds=1.0)
    add("rf64.wav", _snd(one_s, sr, "RF64", "PCM_16"), "an RF64 file", ACCEPTED, "audio", seconds=1.0)
    add("sony.w64", _snd(one_s, sr, "W64", "PCM_16"), "a Sony Wave64 file", ACCEPTED, "audio", seconds=1.0)
    add("tone.flac", _snd(_tone(1.0, 44100, channels=2), 44100, "FLAC", "PCM_24"), "a 24-bit stereo 44.1 kHz FLAC",
        ACCEPTED, "audio", seconds=1.0)
    add("tone.ogg", ogg, "an Ogg Vorbis clip", ACCEPTED, "audio", seconds=1.0)
    add("tone.opus", _snd(_tone(1.0, 48000), 48000, "OGG", "OPUS"), "an Ogg Opus clip", ACCEPTED, "audio",
        seconds=1.0)
    add("tone.mp3", mp3, "an MP3 clip", ACCEPTED, "audio", seconds=2.0)
    short_ok = round(L["min_seconds"] + 0.05, 3)
    add("short_ok.wav", _snd(_tone(short_ok, sr), sr, "WAV", "PCM_16"),
        f"a {short_ok} s clip, just over the minimum", ACCEPTED, "audio", seconds=short_ok, full=True)
    add("hi_rate_192k.wav", _snd(_tone(0.5, 192000, freq=1000), 192000, "WAV", "PCM_16"),
        "a 0.5 s 192 kHz WAV", ACCEPTED, "audio", seconds=0.5)
    add("low_rate_1k.wav", _snd(_tone(1.0, 1000, freq=100), 1000, "WAV", "PCM_16"), "a 1 s clip at 1 kHz",
        ACCEPTED, "audio", seconds=1.0)
    add("dc_only.wav", _snd(np.full(sr, 0.5, np.float32), sr, "WAV", "FLOAT"),
        "a 1 s clip of constant +0.5 (no sound, not silent)", ACCEPTED, "audio", seconds=1.0)
    add("full_scale_square.wav", _snd(np.sign(_tone(1.0, sr, amp=1.0)).astype(np.float32) * 0.999, sr, "WAV",
                                      "PCM_16"), "a full-scale square wave", ACCEPTED, "audio", seconds=1.0)
    add("loud_float.wav", _snd(_tone(1.0, sr, amp=40.0), sr, "WAV", "FLOAT"),
        "a float WAV peaking at 40x full scale", ACCEPTED, "audio", seconds=1.0)
    add("huge_float_16k.wav", _snd((1e30 * np.sign(_tone(1.0, sr, amp=1.0))).astype(np.float32), sr, "WAV", "FLOAT"),
        "a float WAV of +-1e30 (finite) at the models' own rate, so it is not resampled", "NonFiniteAudioError",
        "audio", phrase="too large")
    samples = _pcm16(one_s)
    add("streaming_size.wav", _wav(samples, data_size=0xFFFFFFFF, riff_size=0xFFFFFFFF),
        "a WAV with the 0xFFFFFFFF placeholder sizes a streaming recorder writes", ACCEPTED, "audio", seconds=1.0)
    add("riff_size_lies.wav", _wav(samples, riff_size=36),
        "a WAV whose RIFF size says 36 bytes (data chunk right)", ACCEPTED, "audio", seconds=1.0)
    add("data_shorter_than_file.wav", _wav(samples + _pcm16(one_s), data_size=len(samples)),
        "a WAV whose data chunk says 1 s, followed by 1 s more of samples", ACCEPTED, "audio", seconds=1.0)
    info = b"INFOISFT\x05\x00\x00\x00tool\x00"  # 17 bytes: an odd size, so a pad byte follows
    add("list_chunk.wav", _wav(samples, before_data=b"LIST" + struct.pack("<I", len(info)) + info + b"\x00"),
        "a WAV with an odd-sized LIST chunk (padded) before fmt", ACCEPTED, "audio", seconds=1.0)

    # ================================================================ bad sounds
    for name, bad_value in [("nan.wav", np.nan), ("inf.wav", np.inf), ("neg_inf.wav", -np.inf)]:
        y = one_s.copy()
        y[100] = y[9000] = bad_value
        add(name, _snd(y, sr, "WAV", "FLOAT"), f"a 1 s float WAV with 2 samples {bad_value}", "NonFiniteAudioError",
            "audio", phrase="2 invalid samples")
    add("all_nan.wav", _snd(np.full(sr, np.nan, np.float32), sr, "WAV", "FLOAT"), "a 1 s float WAV, all NaN",
        "NonFiniteAudioError", "audio", phrase="invalid samples")
    y = _tone(1.0, sr, channels=2)
    y[5, 1] = np.nan
    add("nan_one_channel.wav", _snd(y.astype(np.float64), sr, "WAV", "DOUBLE"),
        "a stereo float64 WAV with one NaN in its right channel", "NonFiniteAudioError", "audio",
        phrase="1 invalid samples")
    add("huge_float_8k.wav", _snd((3e38 * np.sign(_tone(1.0, 8000, amp=1.0))).astype(np.float32), 8000, "WAV",
                                  "FLOAT"), "a float WAV of +-3e38 at 8 kHz (overflows when resampled)",
        "NonFiniteAudioError", "audio", phrase="too large")
    add("silent.wav", _snd(np.zeros(2 * sr, np.float32), sr, "WAV", "PCM_16"), "2 s of 16-bit zeros",
        "SilentAudioError", "audio", phrase="silent")
    add("silent_u8.wav", _snd(np.zeros(sr, np.float32), sr, "WAV", "PCM_U8"), "1 s of 8-bit silence (value 128)",
        "SilentAudioError", "audio", phrase="silent")
    add("silent.flac", _snd(np.zeros(sr, np.float32), sr, "FLAC", "PCM_16"), "1 s of FLAC silence",
        "SilentAudioError", "audio", phrase="silent")
    quiet = L["silence_rms"] / 2 * math.sqrt(2)
    add("below_silence_level.wav", _snd(quiet * np.sin(np.arange(sr) * 0.3), sr, "WAV", "DOUBLE"),
        f"a sine at RMS {L['silence_rms'] / 2:.1e}, half the silence level", "SilentAudioError", "audio",
        phrase="minimum level")
    add("antiphase.wav", _snd(np.stack([one_s, -one_s], 1), sr, "WAV", "FLOAT"),
        "a stereo clip whose channels cancel (silent once mixed to mono)", "SilentAudioError", "audio",
        phrase="silent")
    too_short = round(L["min_seconds"] * 0.9, 3)
    add("too_short.wav", _snd(_tone(too_short, sr), sr, "WAV", "PCM_16"), f"a {too_short} s clip",
        "AudioTooShortError", "audio", phrase="the minimum is")
    add("one_sample.wav", _snd(np.array([0.5], np.float32), sr, "WAV", "FLOAT"), "a clip of one sample",
        "AudioTooShortError", "audio", phrase="the minimum is")
    add("zero_frames.wav", _wav(b""), "a valid WAV header with an empty data chunk", "AudioTooShortError", "audio",
        phrase="lasts 0.00 s")
    add("too_short.ogg", _snd(_tone(0.1, sr), sr, "OGG", "VORBIS"), "a 0.1 s Ogg Vorbis clip", "AudioTooShortError",
        "audio", phrase="the minimum is")
    long_s = L["max_seconds"] + 1
    add("too_long_100hz.wav", _snd(_tone(long_s, 100, freq=10), 100, "WAV", "PCM_U8"),
        f"{long_s:.0f} s at 100 Hz, 8 bits ({int(long_s * 100 / 1000)} KB): over the duration limit",
        "AudioTooLongError", "audio", phrase="the limit is")
    add("too_long_1hz.wav", _wav(bytes(int(long_s) * 2), rate=1), f"{long_s:.0f} samples at 1 Hz: {long_s:.0f} s",
        "AudioTooLongError", "audio", phrase="the limit is")
    add("too_long.flac", _snd(_tone(long_s, 100, freq=10), 100, "FLAC", "PCM_16"),
        f"a {long_s:.0f} s FLAC at 100 Hz", "AudioTooLongError", "audio", phrase="the limit is")
    add("claims_an_hour.wav", _wav(samples, data_size=3600 * sr * 2),
        "a 1 s WAV whose data chunk claims an hour", "CorruptFileError", "audio", phrase="cut short")
    add("claims_10mb.wav", _wav(samples, data_size=10 * 2**20, riff_size=10 * 2**20 + 36),
        "a 1 s WAV whose RIFF and data sizes claim 10 MB", "CorruptFileError", "audio", phrase="cut short")
    add("zero_channels.wav", _wav(samples, channels=0, block_align=2, byte_rate=2 * sr),
        "a WAV header with 0 channels", "CorruptFileError", "audio", phrase="WAV")
    add("zero_rate.wav", _wav(samples, rate=0, byte_rate=2 * sr), "a WAV header with a sample rate of 0",
        "CorruptFileError", "audio", phrase="WAV")
    add("max_rate.wav", _wav(samples, rate=0xFFFFFFFF, byte_rate=0xFFFFFFFF),
        "a WAV header with a sample rate of 4294967295 Hz", "CorruptFileError", "audio", phrase="WAV")
    add("65535_channels.wav", _wav(samples, channels=65535, block_align=2, byte_rate=2 * sr),
        "a WAV header with 65535 channels", "CorruptFileError", "audio", phrase="WAV")
    add("zero_bits.wav", _wav(samples, bits=0, block_align=2, byte_rate=2 * sr),
        "a WAV header with 0 bits per sample", "CorruptFileError", "audio", phrase="WAV")
    add("unknown_codec.wav", _wav(samples, tag=0x1234), "a WAV whose format tag is 0x1234 (no such codec)",
        "CorruptFileError", "audio", phrase="WAV")
    add("no_data_chunk.wav", _wav(samples, with_data=False), "a WAV with a fmt chunk and no data chunk",
        "CorruptFileError", "audio", phrase="WAV")
    add("no_fmt_chunk.wav", b"RIFF" + struct.pack("<I", 12 + len(samples)) + b"WAVEdata"
        + struct.pack("<I", len(samples)) + samples, "a WAV with a data chunk and no fmt chunk", "CorruptFileError",
        "audio", phrase="WAV")
    add("id3_garbage.mp3", b"ID3\x04\x00\x00\x00\x00\x00\x10" + bytes(16) + np.random.default_rng(5).bytes(4000),
        "an ID3 tag followed by random bytes, named .mp3", "CorruptFileError", "audio", phrase="MP3")

    # ================================================================ odd names (small valid or bad files)
    names = [
        ("ünïcödé 画像 🔧.png", png, ACCEPTED, "unicode letters, CJK and an emoji in the name"),
        ("with   spaces  .png", png, ACCEPTED, "runs of spaces in the name"),
        (" leading and trailing spaces .png ", png, ACCEPTED, "leading and trailing spaces (extension '.png ')"),
        ("..double-dot-start.png", png, ACCEPTED, "a name starting with '..'"),
        ("a..b...c.png", png, ACCEPTED, "dots inside the name"),
        ("trailing.png..", png, ACCEPTED, "a name ending in '..'"),
        ("..%2F..%2Fetc%2Fpasswd.png", png, ACCEPTED, "a URL-encoded traversal in the name"),
        ("-rf.png", png, ACCEPTED, "a name that looks like an option"),
        ("$(touch pwned); `id` | & ;.png", png, ACCEPTED, "shell metacharacters in the name"),
        ("bell\x07.png", png, ACCEPTED, "a BEL control character in the name"),
        ("tab\tname.png", png, ACCEPTED, "a tab in the name"),
        ("new\nline.png", png, ACCEPTED, "a newline in the name"),
        ("esc\x1b[31mred\x1b[0m.txt.png", text, "UnsupportedFormatError", "ANSI escapes in the name of a text file"),
        ("cr\rlf\n.pdf.png", pdf, "UnsupportedFormatError", "CR and LF in the name of a PDF"),
        ("<img src=x onerror=alert(1)>.txt.png", text, "UnsupportedFormatError",
         "HTML markup in the name of a text file"),
        ("del\x7f.wav", wav, ACCEPTED, "a DEL character in the name of a WAV"),
        ("ünïcödé 音.wav", b"", "EmptyFileError", "a unicode name of an empty WAV"),
    ]
    for name, data, expect, desc in names:
        kind = "audio" if name.endswith(".wav") else "image"
        kw = {}
        if expect == ACCEPTED:
            kw = dict(seconds=1.0) if kind == "audio" else dict(img_ok)
        add(name, data, desc, expect, kind, phrase={"UnsupportedFormatError": "Accepted:",
                                                    "EmptyFileError": "empty"}.get(expect, ""), **kw)

    # very long names: a name (one path component) has at most 255 bytes on ext4, tmpfs, xfs and btrfs
    # (NAME_MAX), so no upload can carry a 300-character one; a 300-character path is made instead
    add("L" * 251 + ".png", png, "a 255-byte name (NAME_MAX; 300 characters cannot be made)", ACCEPTED, "image",
        **img_ok)
    add("x." + "e" * 253, text, "a text file whose 253-character extension fills a 255-byte name",
        "UnsupportedFormatError", "image", phrase="a text file")
    add("é" * 125 + ".wav", wav, "a 254-byte name of 129 characters (two-byte UTF-8)", ACCEPTED, "audio",
        seconds=1.0)
    deep = "/".join(["d" * 60] * 4) + "/" + "n" * 56 + ".png"  # 300 characters, in nested folders
    add(deep, png, f"a {len(deep)}-character path (four nested folders)", ACCEPTED, "image", **img_ok)
    add("pdf_with_long_ext.pdf" + "_" * 200 + ".wav", pdf, "a PDF whose name runs to 225 characters, named .wav",
        "UnsupportedFormatError", "audio", phrase="PDF document")
    return out


def _main(argv: list[str]) -> int:
    import time

    if len(argv) != 1:
        print("usage: python tests/reliability/corpus.py DIR", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    cases = generate(argv[0])
    dt = time.perf_counter() - t0
    for c in cases:
        print(f"{c.expect:24s} {c.kind:5s} {c.name!r:60.60s} {c.description}")
    print(f"{len(cases)} files in {dt:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
