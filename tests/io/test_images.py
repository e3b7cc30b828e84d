"""Tests of decodemo.io.images: every accepted format and mode, and every refusal, on real files."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from decodemo.errors import (
    CorruptFileError,
    DecodemoError,
    EmptyFileError,
    FileTooLargeError,
    ImageTooLargeError,
    InputError,
    UnsupportedFormatError,
)
from decodemo.io.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    image_to_array,
    load_image,
)

FORMATS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}
LOSSY = {"JPEG", "WEBP"}


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    if fmt == "WEBP":
        kw.setdefault("lossless", True)
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _rgb_test_image(w: int = 48, h: int = 32) -> Image.Image:
    """A smooth colour ramp (survives lossy codecs within a few levels)."""
    x = np.linspace(0, 255, w)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h)[:, None].repeat(w, 1)
    arr = np.stack([x, y, 255 - x], -1).round().astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def _assert_rgb8(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    assert isinstance(img, Image.Image)
    assert img.mode == "RGB"
    assert img.size == size
    arr = np.asarray(img)
    assert arr.dtype == np.uint8 and arr.shape == (size[1], size[0], 3)
    return arr


def test_constants():
    assert IMAGE_EXTENSIONS == (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
    assert DEFAULT_MAX_PIXELS == 40_000_000
    assert DEFAULT_MAX_BYTES == 50 * 2**20


# ----------------------------------------------------------------------------- positives


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "1", "LA", "CMYK"])
def test_each_format_and_mode_loads_as_rgb(tmp_path, fmt, mode):
    base = _rgb_test_image()
    try:
        src = base.convert(mode)
        data = _encode(src, fmt)
    except (OSError, ValueError, KeyError):
        pytest.skip(f"Pillow cannot write mode {mode} as {fmt}")
    path = _write(tmp_path, f"img{FORMATS[fmt]}", data)
    out = _assert_rgb8(load_image(path), base.size)
    if mode in ("RGB", "RGBA") and fmt not in LOSSY:
        # opaque RGBA composited on white is the RGB image itself
        assert np.array_equal(out, np.asarray(base))
    elif mode == "L" and fmt not in LOSSY:
        grey = np.asarray(src)
        assert all(np.array_equal(out[..., c], grey) for c in range(3))
    elif mode == "1":
        assert set(np.unique(out).tolist()) <= {0, 255} or fmt in LOSSY


@pytest.mark.parametrize("source_kind", ["str", "path", "bytes", "bytearray", "fileobj", "bytesio"])
def test_source_kinds(tmp_path, source_kind):
    data = _encode(_rgb_test_image(), "PNG")
    p = _write(tmp_path, "a.png", data)
    src = {
        "str": str(p),
        "path": p,
        "bytes": data,
        "bytearray": bytearray(data),
        "bytesio": io.BytesIO(data),
    }.get(source_kind)
    if source_kind == "fileobj":
        with open(p, "rb") as f:
            out = load_image(f)
    else:
        out = load_image(src)
    _assert_rgb8(out, (48, 32))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
@pytest.mark.parametrize("dtype", ["<u2", ">u2"])
def test_16bit_grey_scaled_by_257(tmp_path, fmt, dtype):
    values = np.array([[0, 257, 514, 32896, 65278, 65535, 1000, 128]], dtype=np.uint16)
    if fmt == "PNG" and dtype == ">u2":
        pytest.skip("Pillow writes I;16B only as TIFF")
    img = Image.fromarray(values.astype(dtype))
    assert img.mode in ("I;16", "I;16B")
    path = _write(tmp_path, f"g16{FORMATS[fmt]}", _encode(img, fmt))
    with Image.open(path) as check:
        assert check.mode.startswith("I;16")  # the file really is 16-bit
    out = _assert_rgb8(load_image(path), (8, 1))
    expected = np.clip(np.rint(values.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    assert np.array_equal(out[..., 0], expected)
    assert np.array_equal(out[..., 1], expected) and np.array_equal(out[..., 2], expected)
    assert out[0, :6, 0].tolist() == [0, 1, 2, 128, 254, 255]


def test_32bit_int_grey_tiff(tmp_path):
    values = np.array([[0, 65535, 257, 32896]], dtype=np.int32)
    path = _write(tmp_path, "i32.tif", _encode(Image.fromarray(values), "TIFF"))
    with Image.open(path) as check:
        assert check.mode == "I"
    out = _assert_rgb8(load_image(path), (4, 1))
    assert out[0, :, 0].tolist() == [0, 255, 1, 128]


def test_32bit_int_grey_outside_16bit_range_is_stretched(tmp_path):
    values = np.array([[-1000, 0, 1000]], dtype=np.int32)
    path = _write(tmp_path, "i32s.tif", _encode(Image.fromarray(values), "TIFF"))
    out = load_image(path)
    assert np.asarray(out)[0, :, 0].tolist() == [0, 128, 255]


def test_float_grey_tiff(tmp_path):
    values = np.array([[0.0, 0.5, 1.0, np.nan]], dtype=np.float32)
    path = _write(tmp_path, "f.tif", _encode(Image.fromarray(values), "TIFF"))
    with Image.open(path) as check:
        assert check.mode == "F"
    out = _assert_rgb8(load_image(path), (4, 1))
    assert out[0, :, 0].tolist() == [0, 128, 255, 0]
    # outside [0, 1]: min-max stretched
    wide = np.array([[-2.0, 0.0, 2.0]], dtype=np.float32)
    out = load_image(_encode(Image.fromarray(wide), "TIFF"))
    assert np.asarray(out)[0, :, 0].tolist() == [0, 128, 255]


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (16, 8), (0, 255, 255, 0))  # pure red in CMYK
    path = _write(tmp_path, "cmyk.jpg", _encode(cmyk, "JPEG", quality=95))
    with Image.open(path) as check:
        assert check.mode == "CMYK"
    out = _assert_rgb8(load_image(path), (16, 8))
    r, g, b = out[4, 8].astype(int)
    assert r > 240 and g < 15 and b < 15


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_rgba_composited_on_white(tmp_path, fmt):
    arr = np.array(
        [[[255, 0, 0, 0], [255, 0, 0, 255], [0, 0, 0, 128], [0, 0, 255, 255]]], dtype=np.uint8
    )
    path = _write(tmp_path, f"rgba{FORMATS[fmt]}", _encode(Image.fromarray(arr, "RGBA"), fmt))
    out = _assert_rgb8(load_image(path), (4, 1))
    assert out[0, 0].tolist() == [255, 255, 255]  # fully transparent -> white
    assert out[0, 1].tolist() == [255, 0, 0]  # opaque -> unchanged
    assert all(abs(v - 127) <= 1 for v in out[0, 2].tolist())  # half black over white -> grey
    assert out[0, 3].tolist() == [0, 0, 255]


def test_la_composited_on_white(tmp_path):
    arr = np.array([[[0, 0], [0, 255], [100, 255]]], dtype=np.uint8)
    path = _write(tmp_path, "la.png", _encode(Image.fromarray(arr, "LA"), "PNG"))
    out = load_image(path)
    assert np.asarray(out)[0, :, 0].tolist() == [255, 0, 100]


def test_palette_with_transparency(tmp_path):
    p = Image.new("P", (3, 1))
    p.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    p.putdata([0, 1, 2])
    path = _write(tmp_path, "pal.png", _encode(p, "PNG", transparency=1))
    with Image.open(path) as check:
        assert check.mode == "P" and "transparency" in check.info
    out = _assert_rgb8(load_image(path), (3, 1))
    assert out[0].tolist() == [[255, 0, 0], [255, 255, 255], [0, 0, 255]]


def test_palette_without_transparency(tmp_path):
    p = Image.new("P", (2, 1))
    p.putpalette([10, 20, 30, 200, 100, 50] + [0] * (256 * 3 - 6))
    p.putdata([0, 1])
    for fmt in ("PNG", "BMP", "TIFF"):
        out = load_image(_write(tmp_path, f"p{FORMATS[fmt]}", _encode(p, fmt)))
        assert np.asarray(out)[0].tolist() == [[10, 20, 30], [200, 100, 50]]


def test_one_bit(tmp_path):
    bits = Image.fromarray(np.array([[True, False, True]]))
    assert bits.mode == "1"
    for fmt in ("PNG", "BMP", "TIFF"):
        out = load_image(_write(tmp_path, f"b{FORMATS[fmt]}", _encode(bits, fmt)))
        assert np.asarray(out)[0, :, 0].tolist() == [255, 0, 255]


def test_exif_orientation_applied(tmp_path):
    img = _rgb_test_image(64, 32)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _write(tmp_path, "rot.jpg", _encode(img, "JPEG", exif=exif.tobytes(), quality=95))
    with Image.open(path) as raw:
        assert raw.size == (64, 32) and raw.getexif().get(0x0112) == 6
    out = load_image(path)
    assert out.size == (32, 64)
    # orientation 6 = rotate 270 (i.e. 90 clockwise): top-left of the result is bottom-left of the source
    expected = np.asarray(img.transpose(Image.Transpose.ROTATE_270)).astype(int)
    assert np.abs(np.asarray(out).astype(int) - expected).mean() < 4


def test_first_frame_of_multipage_tiff(tmp_path):
    a = Image.new("RGB", (8, 8), (255, 0, 0))
    b = Image.new("RGB", (8, 8), (0, 255, 0))
    buf = io.BytesIO()
    a.save(buf, "TIFF", save_all=True, append_images=[b])
    out = load_image(_write(tmp_path, "multi.tif", buf.getvalue()))
    assert np.asarray(out)[0, 0].tolist() == [255, 0, 0]


def test_name_does_not_decide_format(tmp_path):
    data = _encode(_rgb_test_image(), "JPEG")
    out = load_image(_write(tmp_path, "actually_a_jpeg.png", data))
    _assert_rgb8(out, (48, 32))


def test_pixel_limit_exactly_allowed(tmp_path):
    data = _encode(Image.new("RGB", (10, 10)), "PNG")
    _assert_rgb8(load_image(data, max_pixels=100), (10, 10))


# ----------------------------------------------------------------------------- refusals


def test_empty_file(tmp_path):
    with pytest.raises(EmptyFileError, match="empty"):
        load_image(_write(tmp_path, "empty.png", b""))
    with pytest.raises(EmptyFileError):
        load_image(io.BytesIO(b""))


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(InputError, match="no file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="not a file"):
        load_image(tmp_path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "WEBP"])
def test_truncated_file_is_corrupt(tmp_path, fmt):
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = _encode(noisy, fmt)
    path = _write(tmp_path, f"cut{FORMATS[fmt]}", data[: len(data) // 2])
    with pytest.raises(CorruptFileError) as ei:
        load_image(path)
    msg = str(ei.value)
    assert "cut.". lower() in msg.lower() or "cut" in msg
    assert "damaged" in msg
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_png_header_is_corrupt(tmp_path):
    data = _encode(_rgb_test_image(), "PNG")
    with pytest.raises(CorruptFileError, match="PNG"):
        load_image(_write(tmp_path, "hdr.png", data[:20]))


def test_random_bytes_named_png(tmp_path):
    data = np.random.default_rng(1).bytes(4096)
    with pytest.raises(UnsupportedFormatError) as ei:
        load_image(_write(tmp_path, "random.png", data))
    assert "random.png" in str(ei.value) and "PNG, JPEG" in str(ei.value)


def test_png_signature_then_garbage_is_corrupt(tmp_path):
    data = b"\x89PNG\r\n\x1a\n" + np.random.default_rng(2).bytes(4096)
    with pytest.raises(CorruptFileError):
        load_image(_write(tmp_path, "garbage.png", data))


@pytest.mark.parametrize(
    "name, data, words",
    [
        ("notes.png", b"These are my notes about the fan.\nLine two.\n" * 20, "text"),
        ("doc.jpg", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" * 5, "PDF"),
        ("drawing.png", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>', "SVG"),
    ],
)
def test_not_an_image(tmp_path, name, data, words):
    with pytest.raises(UnsupportedFormatError) as ei:
        load_image(_write(tmp_path, name, data))
    msg = str(ei.value)
    assert words in msg
    assert "Accepted: PNG, JPEG, BMP, TIFF or WebP" in msg


def test_gif_is_not_accepted(tmp_path):
    data = _encode(Image.new("P", (4, 4)), "GIF")
    with pytest.raises(UnsupportedFormatError, match="GIF"):
        load_image(_write(tmp_path, "anim.gif", data))


def test_file_too_large(tmp_path):
    data = _encode(_rgb_test_image(), "PNG")
    path = _write(tmp_path, "big.png", data)
    with pytest.raises(FileTooLargeError, match="limit"):
        load_image(path, max_bytes=len(data) - 1)
    with pytest.raises(FileTooLargeError, match="more than"):
        load_image(io.BytesIO(data), max_bytes=100)
    load_image(path, max_bytes=len(data))  # exactly at the limit is fine


def test_pixel_limit_from_header_before_decoding(tmp_path):
    data = _encode(Image.new("RGB", (100, 60)), "PNG")
    with pytest.raises(ImageTooLargeError) as ei:
        load_image(_write(tmp_path, "wide.png", data), max_pixels=5_000)
    msg = str(ei.value)
    assert "6,000" in msg and "5,000" in msg and "Resize" in msg


def _png_header_claiming(width: int, height: int) -> bytes:
    """A structurally valid PNG whose IHDR claims width x height but carries one tiny IDAT."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_default_limit(tmp_path):
    path = _write(tmp_path, "bomb.png", _png_header_claiming(10_000, 6_000))
    with pytest.raises(ImageTooLargeError) as ei:
        load_image(path)
    msg = str(ei.value)
    assert "60,000,000 pixels" in msg
    assert "40,000,000 (about 6300 x 6300)" in msg


def test_decompression_bomb_above_pillow_limit(tmp_path):
    # 200 M pixels: Pillow itself raises DecompressionBombError; we still answer ImageTooLargeError,
    # even when our own limit would allow it.
    path = _write(tmp_path, "bomb2.png", _png_header_claiming(20_000, 10_000))
    with pytest.raises(ImageTooLargeError):
        load_image(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageTooLargeError):
            load_image(path, max_pixels=10**12)


def test_png_claiming_big_size_within_limit_is_corrupt(tmp_path):
    path = _write(tmp_path, "short.png", _png_header_claiming(400, 300))
    with pytest.raises(CorruptFileError):
        load_image(path)


def test_errors_are_input_and_value_errors(tmp_path):
    with pytest.raises(ValueError):
        load_image(b"hello")
    with pytest.raises(DecodemoError):
        load_image(b"hello")


def test_wrong_source_type():
    with pytest.raises(TypeError):
        load_image(12345)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- fuzz


def _fuzz_seeds() -> list[bytes]:
    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    seeds = [_encode(img, f) for f in FORMATS]
    seeds.append(_encode(img.convert("P"), "PNG", transparency=3))
    seeds.append(_encode(Image.fromarray(rng.integers(0, 65535, (24, 32), dtype=np.uint16)), "PNG"))
    seeds.append(_encode(img, "TIFF", compression="tiff_lzw"))
    seeds.append(_encode(img.convert("CMYK"), "JPEG"))
    return seeds


def test_fuzz_only_decodemo_errors():
    rng = np.random.default_rng(12345)
    seeds = _fuzz_seeds()
    outcomes = {"ok": 0, "refused": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF etc.
        for i in range(200):
            if i % 4 == 0:
                data = rng.bytes(int(rng.integers(1, 3000)))
            else:
                buf = bytearray(seeds[i % len(seeds)])
                for _ in range(int(rng.integers(1, 8))):
                    limit = len(buf) if rng.random() < 0.3 else min(len(buf), 200)
                    pos = int(rng.integers(0, limit))
                    buf[pos] ^= 1 << int(rng.integers(0, 8))
                if rng.random() < 0.3:
                    buf = buf[: int(rng.integers(1, len(buf)))]
                data = bytes(buf)
            try:
                out = load_image(data, max_pixels=1_000_000)
            except DecodemoError:
                outcomes["refused"] += 1
            else:
                assert out.mode == "RGB"
                outcomes["ok"] += 1
    assert outcomes["refused"] > 0


# ----------------------------------------------------------------------------- image_to_array


def test_image_to_array_no_resize():
    img = _rgb_test_image(48, 32)
    arr = image_to_array(img, None)
    assert arr.dtype == np.float32 and arr.shape == (32, 48, 3)
    assert np.allclose(arr * 255.0, np.asarray(img), atol=1e-4)
    assert arr.min() >= 0.0 and arr.max() <= 1.0


def test_image_to_array_resize_int_and_tuple():
    img = _rgb_test_image(48, 32)
    sq = image_to_array(img, 20)
    assert sq.shape == (20, 20, 3) and sq.dtype == np.float32
    hw = image_to_array(img, (10, 30))  # (height, width)
    assert hw.shape == (10, 30, 3)
    assert 0.0 <= hw.min() and hw.max() <= 1.0
    # bicubic, not nearest: a resize of a constant image is the same constant
    const = image_to_array(Image.new("RGB", (37, 23), (51, 102, 204)), 64)
    assert np.allclose(const[..., 0], 0.2) and np.allclose(const[..., 2], 0.8)


def test_image_to_array_matches_pil_bicubic():
    img = _rgb_test_image(48, 32)
    expected = np.asarray(img.resize((16, 12), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    assert np.array_equal(image_to_array(img, (12, 16)), expected)


def test_image_to_array_converts_other_modes():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.allclose(image_to_array(rgba), 1.0)  # transparent -> white
    with pytest.raises(ValueError):
        image_to_array(_rgb_test_image(), 0)
