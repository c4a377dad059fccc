"""Tests for colorot.imageio: faithful reading and writing of images."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from PIL import ImageCms, ImageFile, ImageOps, PngImagePlugin
from PIL import __version__ as PILLOW_VERSION

from colorot.errors import ImageMetadataWarning, ImageReadError, ImageWriteError
from colorot.imageio import (
    IMAGE_SUFFIXES,
    Image,
    codes_of_words,
    decode_image,
    encode_image,
    format_for_suffix,
    list_images,
    quantize,
    read_icc_profile,
    read_image,
    read_pixels,
    words_of_codes,
    write_image,
)

RNG = np.random.default_rng(0)
PILLOW_MAJOR = int(PILLOW_VERSION.split(".")[0])


def _codes(shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
    return RNG.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)


def _save(path: Path, array: np.ndarray, **options: object) -> Path:
    PILImage.fromarray(array).save(path, **options)
    return path


def _png16(codes: np.ndarray) -> bytes:
    """A 16-bit RGB/RGBA/LA PNG, written by hand, cycling through all five row filters."""
    height, width, channels = codes.shape
    step = 2 * channels
    rows = codes.astype(">u2").view(np.uint8).reshape(height, -1).astype(int)
    scanlines = b""
    for y in range(height):
        row, up = rows[y], rows[y - 1] if y else np.zeros_like(rows[0])
        left = np.concatenate((np.zeros(step, int), row[:-step]))
        upper_left = np.concatenate((np.zeros(step, int), up[:-step]))
        estimate = left + up - upper_left
        pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - upper_left)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upper_left))
        kind = y % 5
        predictor = [0, left, up, (left + up) // 2, paeth][kind]
        scanlines += bytes([kind]) + ((row - predictor) % 256).astype(np.uint8).tobytes()
    color_type = {2: 4, 3: 2, 4: 6}[channels]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(scanlines))
        + chunk(b"IEND", b"")
    )


def _tiff16(codes: np.ndarray, *, deflate: bool, order: str = "<") -> bytes:
    """A 16-bit RGB/RGBA TIFF with one strip, written by hand in byte ``order`` ("<" or ">")."""
    height, width, channels = codes.shape
    strip = codes.astype(f"{order}u2").tobytes()
    if deflate:
        strip = zlib.compress(strip)
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, channels, 0),  # BitsPerSample: offset patched below
        (259, 3, 1, 8 if deflate else 1),
        (262, 3, 1, 2),
        (273, 4, 1, 0),  # StripOffsets: patched below
        (277, 3, 1, channels),
        (278, 4, 1, height),
        (279, 4, 1, len(strip)),
        (284, 3, 1, 1),
    ] + ([(338, 3, 1, 2)] if channels == 4 else [])
    ifd_size = 2 + 12 * len(entries) + 4
    bits_offset = 8 + ifd_size
    strip_offset = bits_offset + 2 * channels
    ifd = struct.pack(f"{order}H", len(entries))
    for tag, kind, count, value in entries:
        value = {258: bits_offset, 273: strip_offset}.get(tag, value)
        inline_short = kind == 3 and count == 1
        packed = (
            struct.pack(f"{order}HH", value, 0) if inline_short else struct.pack(f"{order}I", value)
        )
        ifd += struct.pack(f"{order}HHI", tag, kind, count) + packed
    ifd += struct.pack(f"{order}I", 0)
    header = (b"II*\x00" if order == "<" else b"MM\x00*") + struct.pack(f"{order}I", 8)
    return header + ifd + struct.pack(f"{order}{channels}H", *[16] * channels) + strip


def _tiff16_planar(codes: np.ndarray) -> bytes:
    """A 16-bit RGB TIFF with separate colour planes (PlanarConfiguration 2), one strip per plane,
    little-endian, written by hand."""
    height, width, channels = codes.shape
    planes = [np.ascontiguousarray(codes[..., c]).astype("<u2").tobytes() for c in range(channels)]
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, channels, None), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, channels, None), (277, 3, 1, channels), (278, 4, 1, height), (279, 4, channels, None),
               (284, 3, 1, 2)]
    arrays_at = 8 + 2 + 12 * len(entries) + 4  # BitsPerSample, StripOffsets, StripByteCounts follow the IFD
    bits = struct.pack(f"<{channels}H", *[16] * channels)
    data_at = arrays_at + len(bits) + 8 * channels
    offsets = struct.pack(f"<{channels}I", *[data_at + c * len(planes[0]) for c in range(channels)])
    counts = struct.pack(f"<{channels}I", *[len(plane) for plane in planes])
    out_of_line = {258: arrays_at, 273: arrays_at + len(bits), 279: arrays_at + len(bits) + 4 * channels}
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = (struct.pack("<I", out_of_line[tag]) if value is None else
                  struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + bits + offsets + counts + b"".join(planes)


def _srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif(orientation: int) -> PILImage.Exif:
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "colorot test camera"
    return exif


# --- 8-bit round trips ---------------------------------------------------------------


def test_png_round_trip_is_exact(tmp_path: Path) -> None:
    codes = _codes((5, 7, 3))
    image = read_image(_save(tmp_path / "a.png", codes))
    assert image.rgb.dtype == np.float32 and image.rgb.shape == (5, 7, 3)
    assert (image.bit_depth, image.mode, image.format, image.alpha) == (8, "RGB", "PNG", None)
    write_image(tmp_path / "b.png", image, image.rgb)
    with PILImage.open(tmp_path / "b.png") as out:
        assert out.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(out), codes)


def test_jpeg_round_trip_keeps_size_and_mode(tmp_path: Path) -> None:
    image = read_image(_save(tmp_path / "a.jpg", _codes((16, 24, 3)), quality=95))
    write_image(tmp_path / "b.jpg", image, image.rgb)
    with PILImage.open(tmp_path / "b.jpg") as out:
        assert (out.format, out.mode, out.size) == ("JPEG", "RGB", (24, 16))
    again = read_image(tmp_path / "b.jpg")
    assert again.rgb.shape == image.rgb.shape


def test_identity_write_is_exact_for_every_lossless_8_bit_format(tmp_path: Path) -> None:
    codes = _codes((4, 6, 3))
    image = read_image(_save(tmp_path / "a.png", codes))
    for suffix in (".png", ".tif", ".bmp"):
        write_image(tmp_path / f"b{suffix}", image, image.rgb)  # rint(c / 255 · 255) = c in float32
        with PILImage.open(tmp_path / f"b{suffix}") as out:
            np.testing.assert_array_equal(np.asarray(out), codes)


# --- 16-bit precision --------------------------------------------------------------


@pytest.mark.parametrize("height", [5, 150], ids=["one-band", "three-bands"])  # the writers' bands: 64 rows
@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_png_keeps_full_precision_through_identity_write(
    tmp_path: Path, channels: int, height: int
) -> None:
    codes = _codes((height, 9, channels), np.uint16)
    (tmp_path / "a.png").write_bytes(_png16(codes))
    image = read_image(tmp_path / "a.png")
    assert image.bit_depth == 16
    np.testing.assert_array_equal(np.rint(image.rgb * 65535).astype(np.uint16), codes[..., :3])
    if channels == 4:
        assert image.alpha is not None and image.alpha.dtype == np.uint16
        np.testing.assert_array_equal(image.alpha, codes[..., 3])
    for suffix in (".png", ".tif"):
        write_image(tmp_path / f"b{suffix}", image, image.rgb)
        again = read_image(tmp_path / f"b{suffix}")
        assert again.bit_depth == 16
        np.testing.assert_array_equal(again.rgb, image.rgb)
        if channels == 4:
            np.testing.assert_array_equal(again.alpha, codes[..., 3])


def test_16_bit_grey_alpha_png_keeps_full_precision(tmp_path: Path) -> None:
    codes = _codes((4, 5, 2), np.uint16)
    image = decode_image(_png16(codes))
    assert image.bit_depth == 16
    np.testing.assert_array_equal(np.rint(image.rgb[..., 1] * 65535), codes[..., 0])
    np.testing.assert_array_equal(image.alpha, codes[..., 1])


@pytest.mark.parametrize("height", [6, 150], ids=["one-band", "three-bands"])
@pytest.mark.parametrize("order", ["<", ">"], ids=["II", "MM"])
@pytest.mark.parametrize("deflate", [False, True], ids=["raw", "deflate"])
@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_tiff_keeps_full_precision_through_identity_write(
    tmp_path: Path, deflate: bool, channels: int, order: str, height: int
) -> None:
    codes = _codes((height, 5, channels), np.uint16)
    (tmp_path / "a.tif").write_bytes(_tiff16(codes, deflate=deflate, order=order))
    image = read_image(tmp_path / "a.tif")
    assert image.bit_depth == 16
    np.testing.assert_array_equal(np.rint(image.rgb * 65535).astype(np.uint16), codes[..., :3])
    write_image(tmp_path / "b.tif", image, image.rgb)
    again = read_image(tmp_path / "b.tif")
    np.testing.assert_array_equal(again.rgb, image.rgb)
    if channels == 4:
        np.testing.assert_array_equal(again.alpha, codes[..., 3])


def test_16_bit_greyscale_png_is_read_at_16_bits_and_written_as_16_bit_rgb(tmp_path: Path) -> None:
    grey = _codes((4, 6), np.uint16)
    image = read_image(_save(tmp_path / "a.png", grey))
    assert (image.bit_depth, image.mode) == (16, "I;16")
    np.testing.assert_array_equal(np.rint(image.rgb * 65535), np.repeat(grey[..., None], 3, axis=2))
    write_image(tmp_path / "b.png", image, image.rgb)
    again = read_image(tmp_path / "b.png")
    np.testing.assert_array_equal(again.rgb, image.rgb)


def test_a_16_bit_grey_tiff_where_white_is_zero_is_read_the_right_way_up() -> None:
    """Pillow inverts an 8-bit one as it reads it, not a 16-bit one: that came out a negative."""
    stored = _codes((4, 6), np.uint16)
    buffer = io.BytesIO()
    PILImage.fromarray(stored).save(buffer, format="TIFF", tiffinfo={262: 0})  # PhotometricInterpretation 0
    assert stored.tobytes() in buffer.getvalue()  # the samples as stored, white 0
    image = decode_image(buffer.getvalue(), name="white-is-zero.tif")
    np.testing.assert_array_equal(image.codes, np.repeat((65535 - stored)[..., None], 3, axis=2))


def test_floating_point_images_are_refused(tmp_path: Path) -> None:
    PILImage.fromarray(np.zeros((2, 2), np.float32)).save(tmp_path / "a.tif")
    with pytest.raises(ImageReadError, match="unsupported pixel format"):
        read_image(tmp_path / "a.tif")


def test_a_16_bit_tiff_in_separate_planes_is_refused_not_misread() -> None:
    """Pillow decodes its planes with 8-bit raw modes: the green of (0, 65535, 0) came out black."""
    codes = np.zeros((6, 8, 3), np.uint16)
    codes[:, :4] = (0, 65535, 0)
    with pytest.raises(ImageReadError, match="separate colour planes"):
        decode_image(_tiff16_planar(codes), name="planes.tif")
    with PILImage.open(io.BytesIO(_tiff16_planar(codes))) as pil:  # the file is what it should be
        assert pil.tag_v2[284] == 2 and pil.tag_v2[258] == (16, 16, 16) and pil.size == (8, 6)


def test_a_multi_picture_jpeg_is_a_jpeg() -> None:
    """Phones' JPEGs with an MPF segment open as Pillow's 'MPO', which colorot cannot write: an
    image piped in kept that name as its output format and was refused."""
    first, second = _codes((6, 8, 3)), _codes((6, 8, 3))
    buffer = io.BytesIO()
    PILImage.fromarray(first).save(buffer, format="MPO", save_all=True, append_images=[PILImage.fromarray(second)])
    image = decode_image(buffer.getvalue())
    assert image.format == "JPEG" and image.codes.shape == (6, 8, 3)
    assert encode_image(image, image.rgb, image.format)[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize("animated", [False, True])
def test_a_lossless_webp_is_written_back_losslessly(animated: bool) -> None:
    """It was re-encoded lossily (up to 135 codes off at strength 0 on noise, 55 at quality 100),
    and the colours under transparent pixels were dropped."""
    codes = _codes((12, 16, 4))
    codes[:4, :, 3] = 0  # transparent, with colours under it
    frames = [PILImage.fromarray(codes), PILImage.fromarray(codes[::-1].copy())]
    for lossless in (False, True):  # the lossless one last: written back below
        buffer = io.BytesIO()
        frames[0].save(buffer, format="WEBP", lossless=lossless, exact=True, save_all=animated,
                       append_images=frames[1:])
        image = decode_image(buffer.getvalue(), metadata_warning=not animated)  # its frames: warned about elsewhere
        assert image.webp_lossless is lossless
    again = decode_image(encode_image(image, image.rgb, "WEBP"))  # the lossless source, written back
    assert again.webp_lossless
    shown = codes[..., 3] > 0 if animated else slice(None)  # Pillow composites an animation's frame on
    np.testing.assert_array_equal(again.codes[shown], codes[..., :3][shown])  # a transparent black canvas
    np.testing.assert_array_equal(again.alpha, codes[..., 3])


def test_encode_and_decode_bytes_round_trip() -> None:
    image = decode_image(_png_bytes((3, 4, 4)))
    again = decode_image(encode_image(image, image.rgb, "png"))
    np.testing.assert_array_equal(again.rgb, image.rgb)
    np.testing.assert_array_equal(again.alpha, image.alpha)


def test_16_bit_source_gives_8_bit_jpeg(tmp_path: Path) -> None:
    image = decode_image(_png16(np.tile(np.array([40000, 20000, 60000], np.uint16), (8, 8, 1))))
    write_image(tmp_path / "b.jpg", image, image.rgb, quality=100)
    with PILImage.open(tmp_path / "b.jpg") as out:
        assert out.mode == "RGB" and out.size == (8, 8)
        assert np.abs(np.asarray(out).astype(int) - (156, 78, 233)).max() <= 1  # rint(code / 257), JPEG's ±1


def test_a_16_bit_source_to_an_8_bit_format_with_alpha_rounds_codes_and_alpha(tmp_path: Path) -> None:
    """Colour by the output rule, alpha by rint(a / 257) (not its high or low byte)."""
    codes = _codes((6, 7, 4), np.uint16)
    codes[0, :, 3] = [0, 128, 129, 385, 65279, 65407, 65535]  # around the rounding points (x.5 · 257)
    image = decode_image(_png16(codes))
    write_image(tmp_path / "b.webp", image, image.rgb)  # WebP is 8-bit; its alpha is kept losslessly
    with PILImage.open(tmp_path / "b.webp") as out:
        assert out.mode == "RGBA"
        written = np.asarray(out)
    np.testing.assert_array_equal(written[..., 3], np.rint(codes[..., 3] / 257.0).astype(np.uint8))
    assert written[0, :, 3].tolist() == [0, 0, 1, 1, 254, 255, 255]


# --- alpha, modes, orientation and metadata ----------------------------------------


def test_rgba_alpha_passes_through_bit_exact(tmp_path: Path) -> None:
    codes = _codes((5, 6, 4))
    image = read_image(_save(tmp_path / "a.png", codes))
    assert image.alpha is not None and image.alpha.dtype == np.uint8
    np.testing.assert_array_equal(image.alpha, codes[..., 3])
    for suffix in (".png", ".tif"):
        write_image(tmp_path / f"b{suffix}", image, 1 - image.rgb)
        with PILImage.open(tmp_path / f"b{suffix}") as out:
            assert out.mode == "RGBA"
            np.testing.assert_array_equal(np.asarray(out)[..., 3], codes[..., 3])


def test_alpha_is_dropped_by_jpeg_and_bmp_with_a_warning_when_a_pixel_was_not_opaque(tmp_path: Path) -> None:
    codes = _codes((4, 4, 4))
    codes[0, 0, 3] = 254
    image = read_image(_save(tmp_path / "a.png", codes))
    for suffix in (".jpg", ".bmp"):
        with pytest.warns(ImageMetadataWarning, match=rf"b{suffix}: the input's transparency is dropped: "):
            write_image(tmp_path / f"b{suffix}", image, image.rgb)
        with PILImage.open(tmp_path / f"b{suffix}") as out:
            assert out.mode == "RGB"
    codes[..., 3] = 255  # an alpha channel with nothing transparent: nothing is lost
    opaque = read_image(_save(tmp_path / "opaque.png", codes))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_image(tmp_path / "c.jpg", opaque, opaque.rgb)
        encode_image(opaque, opaque.rgb, "BMP")
    with pytest.warns(ImageMetadataWarning, match="<stdout>: the input's transparency is dropped: JPEG"):
        encode_image(image, image.rgb, "JPEG", name="<stdout>")


def test_bmp_drops_a_profile_of_other_colours_with_a_warning(tmp_path: Path) -> None:
    """A BMP holds no profile: an Adobe RGB input's output was shown as sRGB, other colours, without
    a word.  An sRGB profile dropped changes nothing shown, and is dropped silently (one made of
    lookup tables too, as LittleCMS reads it)."""
    from _icc import lut_tag, rgb_profile

    codes = _codes((4, 4, 3))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for name, icc in (("adobe", rgb_profile("Adobe RGB (1998)")),
                      ("tables", rgb_profile("Adobe RGB (1998)", extra=((b"A2B0", lut_tag()),)))):
        PILImage.fromarray(codes).save(tmp_path / f"{name}.png", icc_profile=icc)
        image = read_image(tmp_path / f"{name}.png")
        with pytest.warns(ImageMetadataWarning, match=rf"{name}.bmp: the input's ICC profile is dropped: BMP holds "
                                                      "none, so viewers take the output's codes as sRGB's"):
            write_image(tmp_path / f"{name}.bmp", image, image.rgb)
    srgb_tables = rgb_profile("sRGB primaries, gamma 2.2",  # LittleCMS reads it by its tables: sRGB's colours too
                              extra=((b"A2B0", lut_tag("sRGB primaries, gamma 2.2", gamma=2.2)),))
    for name, icc in (("srgb", srgb), ("gamma", rgb_profile("sRGB primaries, gamma 2.2")), ("srgb_tables", srgb_tables)):
        PILImage.fromarray(codes).save(tmp_path / f"{name}.png", icc_profile=icc)
        image = read_image(tmp_path / f"{name}.png")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            write_image(tmp_path / f"{name}.bmp", image, image.rgb)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "CMYK", "1", "LAB", pytest.param("YCbCr", marks=pytest.mark.skipif(
    PILLOW_MAJOR < 13, reason="Pillow before 13 cannot read an uncompressed YCbCr TIFF, its own included"))])
def test_other_modes_are_read_as_rgb(tmp_path: Path, mode: str) -> None:
    source = PILImage.fromarray(_codes((5, 6, 3))).convert(mode)
    suffix = {"CMYK": ".jpg", "LAB": ".tif", "YCbCr": ".tif"}.get(mode, ".png")
    path = tmp_path / f"a{suffix}"
    source.save(path)
    lab_profile = mode == "LAB"  # Pillow's conversion tags the image with a Lab profile
    with pytest.warns(ImageMetadataWarning, match="Lab data") if lab_profile else contextlib.nullcontext():
        image = read_image(path)
    assert image.rgb.shape == (5, 6, 3) and image.bit_depth == 8 and image.mode == mode
    assert (image.alpha is not None) == (mode == "LA")
    with PILImage.open(path) as reopened:
        expected = np.asarray(reopened.convert("RGB"), dtype=np.float32) / 255
    np.testing.assert_array_equal(image.rgb, expected)


def test_palette_transparency_becomes_alpha(tmp_path: Path) -> None:
    source = PILImage.fromarray(_codes((4, 4, 3))).convert("P")
    source.save(tmp_path / "a.png", transparency=0)
    image = read_image(tmp_path / "a.png")
    assert image.alpha is not None
    np.testing.assert_array_equal(image.alpha == 0, np.asarray(source) == 0)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(tmp_path: Path, orientation: int) -> None:
    path = _save(tmp_path / "a.png", _codes((3, 5, 3)), exif=_exif(orientation))
    image = read_image(path)
    with PILImage.open(path) as source:
        upright = np.asarray(ImageOps.exif_transpose(source), dtype=np.float32) / 255
    np.testing.assert_array_equal(image.rgb, upright)


@pytest.mark.parametrize("orientation", [1, 6])
def test_8_bit_rgb_decodes_to_a_view_of_rgbx_words(tmp_path: Path, orientation: int) -> None:
    codes = _codes((5, 7, 3))
    image = read_image(_save(tmp_path / "a.png", codes, exif=_exif(orientation)))
    words = words_of_codes(image.codes)
    assert words is not None and words.dtype == np.dtype("<u4") and words.shape == image.codes.shape[:2]
    np.testing.assert_array_equal(words & 0xFFFFFF, image.codes.astype(np.uint32) @ [1, 256, 65536])
    if orientation == 1:
        np.testing.assert_array_equal(image.codes, codes)


def test_words_of_codes_refuses_what_is_not_a_whole_view_of_words() -> None:
    words = np.arange(12, dtype="<u4").reshape(3, 4) * 1000003
    codes = codes_of_words(words)
    assert words_of_codes(codes) is not None
    np.testing.assert_array_equal(words_of_codes(codes), words)
    assert words_of_codes(codes[1:]) is None  # starts past the first word
    assert words_of_codes(codes[:, ::2]) is None  # skips words
    assert words_of_codes(codes[:2]) is None  # covers part of them
    assert words_of_codes(np.ascontiguousarray(codes)) is None


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".bmp", ".tif"])
def test_codes_viewing_words_encode_to_the_same_bytes_as_plain_codes(suffix: str) -> None:
    words = RNG.integers(0, 1 << 32, (6, 9), dtype=np.uint64).astype("<u4")  # any 4th byte
    view = codes_of_words(words)
    source = Image(codes=view, alpha=None, bit_depth=8, mode="RGB", format="PNG",
                   icc_profile=_srgb_profile(), exif=_exif(1).tobytes())
    fmt = format_for_suffix(suffix)
    encoded = encode_image(source, view, fmt)
    assert encoded == encode_image(source, np.ascontiguousarray(view), fmt)  # metadata included
    if suffix not in (".jpg", ".webp"):
        np.testing.assert_array_equal(decode_image(encoded).codes, view)


def test_jpeg_orientation_is_applied_and_reset_to_1(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.jpg", _codes((8, 16, 3)), exif=_exif(6))
    image = read_image(path)
    assert image.rgb.shape == (16, 8, 3)
    write_image(tmp_path / "b.jpg", image, image.rgb)
    with PILImage.open(tmp_path / "b.jpg") as out:
        assert out.size == (8, 16)
        assert out.getexif()[0x0112] == 1
        assert out.getexif()[0x010F] == "colorot test camera"


@pytest.mark.parametrize(("suffix", "orientation_kind", "orientation"),
                         [(".jpg", "SHORT", turn) for turn in range(2, 9)] + [(".jpg", "LONG", 6)]
                         + [(".tif", "SHORT", turn) for turn in (3, 5, 6, 7, 8)])
def test_a_photo_turned_upright_swaps_its_exif_width_and_height(tmp_path: Path, suffix: str,
                                                                 orientation_kind: str, orientation: int) -> None:
    """PixelXDimension/PixelYDimension still described the sideways picture (every camera JPEG has
    them): patched in place, in a block Pillow rebuilds (an Orientation that is a LONG), and a TIFF's;
    after each quarter turn (5 to 8: transpose, 90°, transverse, 270°), and only then."""
    kind = 3 if orientation_kind == "SHORT" else 4
    # IFD0 at 8: the Orientation, the Exif directory at 38; there PixelXDimension 16 (SHORT), PixelYDimension 70000 (LONG)
    block = (b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2)
             + struct.pack("<HHI", 0x0112, kind, 1) + struct.pack("<HH", orientation, 0) if kind == 3 else
             b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2) + struct.pack("<HHII", 0x0112, kind, 1,
                                                                                   orientation))
    block += struct.pack("<HHII", 0x8769, 4, 1, 38) + struct.pack("<I", 0)
    block += struct.pack("<H", 2) + struct.pack("<HHIHH", 0xA002, 3, 1, 16, 0) + struct.pack("<HHII", 0xA003, 4, 1, 70000)
    block += struct.pack("<I", 0)
    path = tmp_path / f"a{suffix}"
    if suffix == ".tif":
        PILImage.fromarray(_codes((8, 16, 3))).save(path, tiffinfo={0x0112: orientation,
                                                                    0x8769: {0xA002: 16, 0xA003: 70000}})
    else:
        PILImage.fromarray(_codes((8, 16, 3))).save(path, exif=b"Exif\x00\x00" + block)
    image = read_image(path)
    turned = orientation >= 5
    assert image.rgb.shape == ((16, 8, 3) if turned else (8, 16, 3))
    write_image(tmp_path / f"b{suffix}", image, image.rgb)
    with PILImage.open(tmp_path / f"b{suffix}") as out:
        exif = out.getexif()
        assert exif.get(0x0112, 1) == 1 and out.size == ((8, 16) if turned else (16, 8))
        assert (exif.get_ifd(0x8769)[0xA002], exif.get_ifd(0x8769)[0xA003]) == ((70000, 16) if turned else (16, 70000))


def test_a_photo_turned_upright_swaps_its_xmp_width_and_height_too(tmp_path: Path) -> None:
    """Lightroom writes exif:PixelXDimension/PixelYDimension into the XMP as well; they stayed stale."""
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
           b'tiff:Orientation="6" exif:PixelXDimension="16"><exif:PixelYDimension>8</exif:PixelYDimension>'
           b'</rdf:Description></rdf:RDF></x:xmpmeta>')
    path = _save(tmp_path / "a.jpg", _codes((8, 16, 3)), exif=_exif(6), xmp=xmp)
    image = read_image(path)
    assert b'tiff:Orientation="1"' in image.xmp and b'exif:PixelYDimension="16"' in image.xmp
    assert b"<exif:PixelXDimension>8</exif:PixelXDimension>" in image.xmp  # the names swapped, each value its own
    tiff = tmp_path / "a.tif"
    PILImage.fromarray(_codes((8, 16, 3))).save(tiff, tiffinfo={0x0112: 6, 700: xmp})  # Pillow turns a TIFF itself
    assert b'exif:PixelYDimension="16"' in read_image(tiff).xmp


def test_xmp_width_and_height_names_are_swapped_not_their_values() -> None:
    """Values were swapped across elements (two pairs: both got the second's), and a lone one or
    tiff:ImageWidth/ImageLength stayed stale."""
    from colorot.exif import upright_xmp

    xmp = (b'<d exif:PixelXDimension="16" exif:PixelYDimension="8"/><e exif:PixelXDimension="320" '
           b'exif:PixelYDimension="200"/><f tiff:ImageWidth="4" tiff:ImageLength="3"/><g exif:PixelXDimension="7"/>'
           b'<h myexif:PixelXDimension="1"/>')
    assert upright_xmp(xmp, 6) == (b'<d exif:PixelYDimension="16" exif:PixelXDimension="8"/><e exif:PixelYDimension='
                                    b'"320" exif:PixelXDimension="200"/><f tiff:ImageLength="4" tiff:ImageWidth="3"/>'
                                    b'<g exif:PixelYDimension="7"/><h myexif:PixelXDimension="1"/>')
    for turn in (5, 7, 8):  # every quarter turn as 6
        assert upright_xmp(xmp, turn) == upright_xmp(xmp, 6)
    for turn in (1, 2, 3, 4):  # a mirror or half a turn: width and height stay
        assert upright_xmp(xmp, turn) == xmp


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_resolution_swaps_after_a_quarter_turn_only(orientation: int) -> None:
    from colorot.exif import upright_dpi

    assert upright_dpi((300, 72), orientation) == ((72.0, 300.0) if orientation >= 5 else (300.0, 72.0))


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_an_orientation_that_is_none_is_left_unapplied_and_reset_to_1(tmp_path: Path, orientation: int) -> None:
    """Such a value was copied to the output, where the docs say orientation tags are reset to 1."""
    codes = _codes((8, 16, 3))
    image = read_image(_save(tmp_path / "a.png", codes, exif=_exif(orientation)))
    np.testing.assert_array_equal(image.codes, codes)  # not turned
    exif = PILImage.Exif()
    exif.load(image.exif)
    assert exif[0x0112] == 1 and exif[0x010F] == "colorot test camera"


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif", ".webp"])
def test_icc_profile_and_exif_are_carried(tmp_path: Path, suffix: str) -> None:
    icc = _srgb_profile()
    image = read_image(_save(tmp_path / "a.jpg", _codes((4, 4, 3)), icc_profile=icc, exif=_exif(1)))
    assert image.icc_profile == icc
    write_image(tmp_path / f"b{suffix}", image, image.rgb)
    with PILImage.open(tmp_path / f"b{suffix}") as out:
        assert out.info.get("icc_profile") == icc
        assert out.getexif()[0x010F] == "colorot test camera"


def _damaged_exif_jpeg(path: Path) -> Path:
    """A JPEG whose EXIF block is cut short: its directory promises more bytes than follow."""
    exif = _exif(1)
    exif[0x0110] = "a model name long enough to be stored after the directory"
    return _save(path, _codes((6, 8, 3)), exif=exif.tobytes()[:-30])


@pytest.mark.filterwarnings("ignore:Truncated File Read")  # the test's own look with Pillow
def test_damaged_exif_is_one_warning_naming_the_image(tmp_path: Path) -> None:
    """Pillow warned "Truncated File Read" on its own, once per process, naming no file."""
    path = _damaged_exif_jpeg(tmp_path / "a.jpg")
    with pytest.warns(ImageMetadataWarning, match=r"a\.jpg: damaged metadata \(Truncated File Read") as caught:
        image = read_image(path)
    assert len(caught) == 1
    with PILImage.open(path) as pil:
        np.testing.assert_array_equal(image.rgb, np.asarray(pil, np.float32) / 255)
        assert image.exif == pil.info["exif"]  # carried as it came


def test_a_tiff_cut_in_its_tags_is_one_warning_that_names_the_icc_profile(tmp_path: Path) -> None:
    """Pillow parses a TIFF's tags again as it loads the pixels: its own "Truncated File Read" came out
    raw beside colorot's warning, which spoke of the EXIF alone, while the ICC profile was lost too."""
    tags = _exif(1)
    tags[0x8298] = "(c) colorot"
    _save(tmp_path / "whole.tif", _codes((40, 50, 3)), exif=tags, compression="tiff_adobe_deflate",
          icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    data = (tmp_path / "whole.tif").read_bytes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decode_image(data[:-8], name="cut.tif")  # the end of the tag data (Pillow writes the IFD last)
    assert [type(w.message) for w in caught] == [ImageMetadataWarning], [str(w.message) for w in caught]
    assert "cut.tif: damaged metadata" in str(caught[0].message) and "ICC profile" in str(caught[0].message)


def test_metadata_warnings_leave_the_warnings_machinery_as_it_was(tmp_path: Path, monkeypatch) -> None:
    """catch_warnings is process-wide: threads decoding at once must neither lose an image's warning
    nor leave another thread's recorder or filters installed. (Opening is slowed down so that
    the threads' header reads would overlap if nothing kept them apart.)"""
    import threading
    import time
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    real_open = PILImage.open
    monkeypatch.setattr(PILImage, "open", lambda *args: time.sleep(0.002) or real_open(*args))

    paths = [_damaged_exif_jpeg(tmp_path / f"{index}.jpg") for index in range(4)]
    paths += [_save(tmp_path / f"{index}.png", _codes((64, 64, 3))) for index in range(4)]
    names = []
    seen = threading.Lock()

    def show(message, *_):
        with seen:
            names.append(str(message).split(":")[0])

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        filters = list(warnings.filters)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(read_image, paths * 5))
        assert warnings.showwarning is show and warnings.filters == filters
    assert sorted(names) == sorted(str(path) for path in paths[:4] for _ in range(5))


_XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        b'tiff:Orientation="6" xmp:Rating="5"/></rdf:RDF></x:xmpmeta>')


@pytest.mark.parametrize("suffix, bits", [(".jpg", 8), (".png", 8), (".png", 16), (".tif", 8), (".tif", 16),
                                          (".webp", 8), (".bmp", 8)])
def test_xmp_resolution_and_chroma_subsampling_are_carried(tmp_path: Path, suffix: str, bits: int) -> None:
    """XMP (ratings, keywords, rights), the resolution and a JPEG's chroma subsampling were dropped;
    the pixels are turned upright, so XMP's copy of the orientation is reset as EXIF's is."""
    source = _save(tmp_path / "a.jpg", _codes((4, 6, 3)), exif=_exif(6), xmp=_XMP, dpi=(300, 72), subsampling=0)
    image = read_image(source)
    assert image.codes.shape == (6, 4, 3) and image.dpi == (72, 300) and image.jpeg_subsampling == 0
    if bits == 16:
        image.codes, image.bit_depth = image.codes.astype(np.uint16) * 257, 16
    write_image(tmp_path / f"b{suffix}", image, image.rgb)
    with PILImage.open(tmp_path / f"b{suffix}") as out:
        xmp = out.info.get("xmp")
        if suffix == ".bmp":  # BMP holds no metadata but its resolution
            assert xmp is None
        else:
            assert b'xmp:Rating="5"' in xmp and b'tiff:Orientation="1"' in xmp and b'Orientation="6"' not in xmp
            # no orientation but 1: a TIFF leaves the tag out (Pillow from 11.2 reads XMP's tiff:Orientation into it)
            assert out.getexif().get(0x0112, 1) == 1 and out.getexif()[0x010F] == "colorot test camera"
        if suffix != ".webp":  # WebP has no resolution field
            assert tuple(round(d) for d in out.info["dpi"]) == (72, 300)
        if suffix == ".jpg":
            from PIL import JpegImagePlugin

            assert JpegImagePlugin.get_sampling(out) == 0  # 4:4:4 kept (Pillow's default is 4:2:0)
    assert read_image(tmp_path / f"b{suffix}").bit_depth == bits


@pytest.mark.parametrize("description, carried", [("a caption", True), ('{"shape": [2, 4, 6, 3]}', False),
                                                  ("ImageJ=1.11a\nimages=2\n", False)])
def test_a_tiff_s_description_is_carried_unless_it_describes_its_layout(description: str, carried: bool) -> None:
    """tifffile and ImageJ describe the array's shape there: carried, it misdescribed the output
    (a multi-page input's one page written), and tifffile could not read the output back."""
    buffer = io.BytesIO()
    PILImage.fromarray(_codes((4, 6, 3))).save(buffer, format="TIFF", tiffinfo={270: description})
    exif = PILImage.Exif()
    exif.load(decode_image(buffer.getvalue(), name="a.tif").exif or b"")
    assert exif.get(270) == (description if carried else None)


def test_a_tiff_turned_by_its_orientation_swaps_its_resolution_as_a_jpeg_does() -> None:
    """Pillow turns a TIFF upright itself and drops the tag: its resolution stayed unswapped."""
    buffer = io.BytesIO()
    tags = PILImage.Exif()
    tags[0x0112] = 6
    PILImage.fromarray(_codes((4, 6, 3))).save(buffer, format="TIFF", dpi=(300, 100), exif=tags)
    image = decode_image(buffer.getvalue())
    assert image.codes.shape == (6, 4, 3) and image.dpi == (100.0, 300.0)


@pytest.mark.parametrize("dpi", [None, (300, 150)])
def test_a_tiff_without_a_resolution_gives_none(dpi: tuple[int, int] | None) -> None:
    """Pillow reports (1, 1) for a TIFF without one, and outputs claimed 1 dpi."""
    buffer = io.BytesIO()
    PILImage.fromarray(_codes((4, 6, 3))).save(buffer, format="TIFF", **({} if dpi is None else {"dpi": dpi}))
    image = decode_image(buffer.getvalue(), name="a.tif")
    assert image.dpi == (None if dpi is None else tuple(float(d) for d in dpi))


@pytest.mark.parametrize("bits", [8, 16])
def test_a_tiff_s_descriptive_tags_are_carried_as_exif(tmp_path: Path, bits: int) -> None:
    """A TIFF's own tags (Make, Copyright, its Exif and GPS directories) were dropped from every
    output; its layout tags (width, strips…) describe the input only and are left behind."""
    tags = _exif(1)
    tags[0x8298] = "(c) colorot"
    tags.get_ifd(0x8769)[0x9003] = "2026:01:01 10:00:00"  # DateTimeOriginal
    tags.get_ifd(0x8825)[1] = "N"  # GPSLatitudeRef
    image = read_image(_save(tmp_path / "a.jpg", _codes((4, 6, 3)), exif=tags))
    if bits == 16:
        image.codes, image.bit_depth = image.codes.astype(np.uint16) * 257, 16
    write_image(tmp_path / "a.tif", image, image.rgb)  # a TIFF carrying them as its own tags
    write_image(tmp_path / "b.png", read_image(tmp_path / "a.tif"), read_image(tmp_path / "a.tif").rgb)
    with PILImage.open(tmp_path / "b.png") as out:
        exif = out.getexif()
        assert exif[0x010F] == "colorot test camera" and exif[0x8298] == "(c) colorot"
        assert exif.get_ifd(0x8769)[0x9003] == "2026:01:01 10:00:00" and exif.get_ifd(0x8825)[1] == "N"
        assert 256 not in exif and 273 not in exif  # ImageWidth, StripOffsets
    assert read_image(_save(tmp_path / "plain.tif", _codes((4, 6, 3)))).exif is None


@pytest.mark.parametrize("bits", [8, 16])
def test_a_tiff_output_takes_no_layout_tags_from_a_photo_s_exif(tmp_path: Path, bits: int) -> None:
    """Phones put ImageWidth, ImageLength and the like in a JPEG's EXIF; the TIFF writer took them for
    its own (a 4000×3000 TIFF of 6×4 pixels: unreadable; PhotometricInterpretation 5: CMYK)."""
    tags = _exif(1)
    tags[256], tags[257], tags[262], tags[284] = 4000, 3000, 5, 2  # width, length, photometric, planar
    tags[269], tags[0x4746], tags[0x9C9B] = "a document", 5, "Holiday".encode("utf-16le") + b"\0\0"  # kept
    image = read_image(_save(tmp_path / "a.jpg", _codes((4, 6, 3)), exif=tags))
    if bits == 16:
        image.codes, image.bit_depth = image.codes.astype(np.uint16) * 257, 16
    write_image(tmp_path / "a.tif", image, image.rgb)
    again = read_image(tmp_path / "a.tif")
    np.testing.assert_array_equal(again.codes, image.codes)
    with PILImage.open(tmp_path / "a.tif") as out:
        assert out.getexif()[0x010F] == "colorot test camera"
        assert (out.tag_v2[269], out.tag_v2[0x4746]) == ("a document", 5) and 0x9C9B in out.tag_v2


def test_an_exif_block_that_cannot_be_parsed_leaves_a_tiff_without_it(tmp_path: Path) -> None:
    """Its filter for a TIFF output raised Pillow's SyntaxError as a traceback, which stopped the batch."""
    image = read_image(_save(tmp_path / "a.jpg", _codes((4, 6, 3)), exif=b"Exif\x00\x00" + b"X" * 16))
    write_image(tmp_path / "a.tif", image, image.rgb)
    with PILImage.open(tmp_path / "a.tif") as out:
        assert out.size == (6, 4) and 0x010F not in out.getexif()


@pytest.mark.parametrize("compression", ["tiff_lzw", "tiff_adobe_deflate", "packbits"])
def test_a_compressed_tiff_is_written_back_compressed(tmp_path: Path, compression: str) -> None:
    """TIFF outputs were always uncompressed: an LZW or deflate source grew on every pass."""
    codes = _codes((20, 30, 3))
    image = read_image(_save(tmp_path / "a.tif", codes, compression=compression))
    write_image(tmp_path / "b.tif", image, image.rgb)
    with PILImage.open(tmp_path / "b.tif") as out:
        assert out.info["compression"] == compression
        np.testing.assert_array_equal(np.asarray(out), codes)
    image.codes, image.bit_depth = image.codes.astype(np.uint16) * 257, 16
    write_image(tmp_path / "c.tif", image, image.rgb)  # colorot's own 16-bit encoder: deflate
    with PILImage.open(tmp_path / "c.tif") as out:
        assert out.info["compression"] == "tiff_adobe_deflate"
    np.testing.assert_array_equal(read_image(tmp_path / "c.tif").codes, image.codes)


def _exif_directories() -> PILImage.Exif:
    """A photo's EXIF with an Exif directory (its Interop directory in it, as cameras write) and a GPS one."""
    tags = _exif(1)
    tags[0x8769] = {0x9003: "2026:01:01 10:00:00", 0xA005: {1: "R98", 2: b"0100"}}
    tags[0x8825] = {1: "N"}
    return tags


def _assert_exif_directories(path: Path) -> None:
    with PILImage.open(path) as out:
        exif = out.getexif()
        assert exif[0x010F] == "colorot test camera" and exif.get_ifd(0x8825) == {1: "N"}
        assert exif.get_ifd(0x8769)[0x9003] == "2026:01:01 10:00:00"
        assert exif.get_ifd(0xA005) == {1: "R98", 2: b"0100"}


def test_a_compressed_tiff_with_exif_directories_is_written_compressed_with_them(tmp_path: Path) -> None:
    """libtiff's compressors cannot write a sub-directory: a deflated (LZW, PackBits) TIFF whose EXIF had an
    Exif or GPS directory, as Lightroom and cameras write them, failed to be written ("Error setting from
    dictionary"); colorot's own encoder now deflates it, sub-directories and all."""
    from colorot.exif import tiff_tags
    from colorot.imageio import _write_tiff

    codes = _codes((20, 30, 3))
    with (tmp_path / "a.tif").open("wb") as file:  # a deflated TIFF with its Exif and GPS directories
        _write_tiff(file, codes, None, tiff_tags(_exif_directories().tobytes()), None, None, deflate=True)
    image = read_image(tmp_path / "a.tif")
    assert image.tiff_compression == "tiff_adobe_deflate"
    write_image(tmp_path / "b.tif", image, image.rgb)
    with PILImage.open(tmp_path / "b.tif") as out:
        assert out.info["compression"] == "tiff_adobe_deflate"
        np.testing.assert_array_equal(np.asarray(out), codes)
    _assert_exif_directories(tmp_path / "b.tif")
    image.tiff_compression = "tiff_lzw"  # an LZW source: deflated too
    write_image(tmp_path / "c.tif", image, image.rgb)
    with PILImage.open(tmp_path / "c.tif") as out:
        assert out.info["compression"] == "tiff_adobe_deflate"
    _save(tmp_path / "p.tif", codes, save_all=True, append_images=[PILImage.fromarray(codes)],
          tiffinfo=dict(_exif_directories()))
    pages = decode_image((tmp_path / "p.tif").read_bytes(), name="p.tif", frames=True)
    pages.tiff_compression = "tiff_lzw"  # a multi-page one: written uncompressed, with a warning
    with pytest.warns(ImageMetadataWarning, match="uncompressed"):
        write_image(tmp_path / "q.tif", pages, pages.rgb, frames=[frame.rgb for frame in pages.frames])
    with PILImage.open(tmp_path / "q.tif") as out:
        assert out.n_frames == 2 and out.info["compression"] == "raw"
    _assert_exif_directories(tmp_path / "q.tif")


@pytest.mark.parametrize("bits", [8, 16])
def test_the_interop_directory_of_a_camera_s_exif_is_carried_whole(tmp_path: Path, bits: int) -> None:
    """Into a TIFF, the Exif directory's link to its Interop directory kept its old offset, which then
    pointed into other tags (an empty or garbled directory; a JPEG made from it warned of corrupt EXIF)."""
    image = read_image(_save(tmp_path / "a.jpg", _codes((4, 6, 3)), exif=_exif_directories()))
    if bits == 16:
        image.codes, image.bit_depth = image.codes.astype(np.uint16) * 257, 16
    write_image(tmp_path / "a.tif", image, image.rgb)
    _assert_exif_directories(tmp_path / "a.tif")
    again = read_image(tmp_path / "a.tif")
    write_image(tmp_path / "b.jpg", again, again.rgb)
    _assert_exif_directories(tmp_path / "b.jpg")


def _camera_exif(orientation: int, thumbnail_last: bool = False) -> bytes:
    """An EXIF block as a camera lays it out: IFD0 (Make, Orientation, the Exif directory), the Exif
    directory with a maker note whose entry points at an offset counted from the TIFF header (as Canon's
    do), and IFD1 with a JPEG thumbnail; the Make's text after it, or before IFD1 with ``thumbnail_last``
    (the thumbnail then ends the block)."""
    def entry(tag: int, kind: int, count: int, value: int) -> bytes:
        return struct.pack("<HHII", tag, kind, count, value)

    thumbnail = io.BytesIO()
    PILImage.new("RGB", (16, 10), "red").save(thumbnail, "JPEG")
    exif_at = 8 + 2 + 3 * 12 + 4
    note_at = exif_at + 2 + 12 + 4
    text = b"FIRMWARE 1.2.3\0"
    note = struct.pack("<H", 1) + entry(0x0007, 2, len(text), note_at + 18) + b"\0" * 4 + text
    ifd1_at = note_at + len(note) + (6 if thumbnail_last else 0)
    make_at = note_at + len(note) if thumbnail_last else ifd1_at + 2 + 24 + 4 + len(thumbnail.getvalue())
    ifd0 = (struct.pack("<H", 3) + entry(0x010F, 2, 6, make_at) + entry(0x0112, 3, 1, orientation)
            + entry(0x8769, 4, 1, exif_at) + struct.pack("<I", ifd1_at))
    exif_ifd = struct.pack("<H", 1) + entry(0x927C, 7, len(note), note_at) + b"\0" * 4
    ifd1 = (struct.pack("<H", 2) + entry(0x0201, 4, 1, ifd1_at + 30) + entry(0x0202, 4, 1, len(thumbnail.getvalue()))
            + b"\0" * 4)
    if thumbnail_last:
        return b"Exif\0\0II*\0" + struct.pack("<I", 8) + ifd0 + exif_ifd + note + b"Canon\0" + ifd1 + thumbnail.getvalue()
    return b"Exif\0\0II*\0" + struct.pack("<I", 8) + ifd0 + exif_ifd + note + ifd1 + thumbnail.getvalue() + b"Canon\0"


@pytest.mark.parametrize("thumbnail_last", [False, True])
@pytest.mark.parametrize("orientation", [1, 6])
def test_exif_is_patched_in_place_keeping_the_maker_note_and_leaving_out_the_thumbnail(
        tmp_path: Path, orientation: int, thumbnail_last: bool) -> None:
    """Turning a photo upright rebuilt its EXIF: the maker note moved, so an entry that counts from the
    TIFF header (Canon's, Sony's) read other bytes, and the thumbnail was dropped; an upright photo kept
    its thumbnail, which showed the colours before the map.  A thumbnail that ends the block (as cameras
    lay it out) is cut off; one with other bytes after it is zeroed in place."""
    original = _camera_exif(orientation, thumbnail_last).removeprefix(b"Exif\0\0")
    image = read_image(_save(tmp_path / "a.jpg", _codes((4, 6, 3)), exif=b"Exif\0\0" + original))
    assert image.codes.shape == ((6, 4, 3) if orientation == 6 else (4, 6, 3))
    block = image.exif.removeprefix(b"Exif\0\0")
    assert len(block) == (original.index(b"\xff\xd8\xff") if thumbnail_last else len(original))
    tags = PILImage.Exif()
    tags.load(block)
    assert tags[0x0112] == 1 and tags[0x010F] == "Canon"
    note = tags.get_ifd(0x8769)[0x927C]
    count, offset = struct.unpack("<II", note[6:14])
    assert block[offset:offset + count] == b"FIRMWARE 1.2.3\0"
    (count,) = struct.unpack_from("<H", block, 8)
    assert struct.unpack_from("<I", block, 10 + 12 * count) == (0,)  # no link to IFD1
    assert b"\xff\xd8\xff" not in block  # nor the thumbnail's picture (a file carver would find it)
    assert b"\xff\xd8\xff" in original
    write_image(tmp_path / "b.jpg", image, image.rgb)
    with PILImage.open(tmp_path / "b.jpg") as out:
        assert out.getexif()[0x0112] == 1 and out.getexif().get_ifd(0x8769)[0x927C] == note


def test_exif_too_long_for_a_jpeg_marker_is_left_out_of_a_jpeg_with_a_warning(tmp_path: Path) -> None:
    """It made the write fail ("EXIF data is too long"), exit 3."""
    tags = _exif(1)
    tags.get_ifd(0x8769)[0x927C] = b"M" * 70_000  # a maker note
    image = read_image(_save(tmp_path / "a.png", _codes((4, 4, 3)), exif=tags))
    with pytest.warns(ImageMetadataWarning, match="EXIF .* is left out"):
        data = encode_image(image, image.rgb, "JPEG", name="b.jpg")
    with PILImage.open(io.BytesIO(data)) as out:
        assert "exif" not in out.info
    with PILImage.open(io.BytesIO(encode_image(image, image.rgb, "PNG"))) as out:
        assert out.getexif().get_ifd(0x8769)[0x927C] == b"M" * 70_000


@pytest.mark.parametrize("bits", [8, 16])
def test_a_png_s_gamma_chromaticity_and_srgb_chunks_are_carried_to_png(tmp_path: Path, bits: int) -> None:
    """They were dropped: a linear-light PNG (gAMA 1.0) then displayed as sRGB, darker or lighter."""
    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", struct.pack(">I", 100_000))
    info.add(b"cHRM", struct.pack(">8I", 31_270, 32_900, 64_000, 33_000, 30_000, 60_000, 15_000, 6_000))
    info.add(b"sRGB", b"\x01")
    image = read_image(_save(tmp_path / "a.png", _codes((4, 6, 3)), pnginfo=info))
    if bits == 16:
        image.codes, image.bit_depth = image.codes.astype(np.uint16) * 257, 16
    write_image(tmp_path / "b.png", image, image.rgb)
    with PILImage.open(tmp_path / "b.png") as out:
        assert out.info["gamma"] == 1.0 and out.info["srgb"] == 1
        assert out.info["chromaticity"] == (0.3127, 0.329, 0.64, 0.33, 0.3, 0.6, 0.15, 0.06)
    assert read_image(tmp_path / "b.png").bit_depth == bits


def test_a_jpeg_s_comment_and_progressive_coding_are_kept(tmp_path: Path) -> None:
    image = read_image(_save(tmp_path / "a.jpg", _codes((16, 16, 3)), progressive=True, comment=b"for client X"))
    write_image(tmp_path / "b.jpg", image, image.rgb)
    with PILImage.open(tmp_path / "b.jpg") as out:
        assert out.info["comment"] == b"for client X" and out.info.get("progressive")
    plain = read_image(_save(tmp_path / "c.jpg", _codes((16, 16, 3))))
    write_image(tmp_path / "d.jpg", plain, plain.rgb)
    with PILImage.open(tmp_path / "d.jpg") as out:
        assert "comment" not in out.info and not out.info.get("progressive")


def test_xmp_too_long_for_a_jpeg_marker_is_left_out_of_a_jpeg(tmp_path: Path) -> None:
    image = read_image(_save(tmp_path / "a.png", _codes((4, 4, 3))))
    image.xmp = b"<x:xmpmeta>" + b" " * 70_000 + b"</x:xmpmeta>"
    with PILImage.open(io.BytesIO(encode_image(image, image.rgb, "JPEG"))) as out:
        assert "xmp" not in out.info
    with PILImage.open(io.BytesIO(encode_image(image, image.rgb, "PNG"))) as out:
        assert out.info["xmp"] == image.xmp


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_icc_profile_and_exif_are_carried_into_16_bit_output(tmp_path: Path, suffix: str) -> None:
    icc = _srgb_profile()
    image = decode_image(_png16(_codes((3, 4, 3), np.uint16)))
    image.icc_profile, image.exif = icc, _exif(1).tobytes()
    write_image(tmp_path / f"b{suffix}", image, image.rgb)
    again = read_image(tmp_path / f"b{suffix}")
    assert again.bit_depth == 16 and again.icc_profile == icc
    with PILImage.open(tmp_path / f"b{suffix}") as out:
        assert out.getexif()[0x010F] == "colorot test camera"


def test_a_profile_read_from_a_damaged_header_lets_no_pillow_warning_out(tmp_path: Path) -> None:
    """`colorot fit` printed Pillow's raw "UserWarning: Truncated File Read" above its one-line error."""
    buffer = io.BytesIO()
    PILImage.fromarray(_codes((40, 64, 3))).save(buffer, format="TIFF")
    (tmp_path / "cut.tif").write_bytes(buffer.getvalue()[:100])  # in the first directory of tags
    with pytest.warns(UserWarning, match="Truncated File Read"), pytest.raises(PILImage.UnidentifiedImageError):
        PILImage.open(tmp_path / "cut.tif")  # what Pillow says of it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_icc_profile(tmp_path / "cut.tif") is None


def test_non_rgb_icc_profile_is_not_written_and_is_told(tmp_path: Path) -> None:
    """Dropped without a word: a greyscale image's own profile, a gamma other than sRGB's, made its
    output show other tones."""
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    with pytest.warns(ImageMetadataWarning, match="a.png: its ICC profile is for Lab data, .* read as sRGB codes"):
        image = read_image(_save(tmp_path / "a.png", _codes((4, 4, 3)), icc_profile=lab))
    write_image(tmp_path / "b.png", image, image.rgb)
    with PILImage.open(tmp_path / "b.png") as out:
        assert "icc_profile" not in out.info


# --- the output rule ---------------------------------------------------------------


def test_output_rule_clips_and_rounds_without_stretching(tmp_path: Path) -> None:
    image = read_image(_save(tmp_path / "a.png", _codes((1, 5, 3))))
    rgb = np.array([[-0.5, 1.7, 0.5, np.nan, 0.2]] * 3, dtype=np.float32).T.reshape(1, 5, 3)
    write_image(tmp_path / "b.png", image, rgb)
    with PILImage.open(tmp_path / "b.png") as out:
        assert np.asarray(out)[0, :, 0].tolist() == [0, 255, 128, 0, 51]


def test_quantize_16_bit() -> None:
    codes = quantize(np.array([-1.0, 0.0, 0.5, 1.0, 2.0]), 16)
    assert codes.dtype == np.uint16 and codes.tolist() == [0, 0, 32768, 65535, 65535]


@pytest.mark.parametrize("bits", [8, 16])
def test_quantize_rounds_an_image_of_several_bands_as_one(bits: int) -> None:
    """quantize works a band of 2¹⁸ values at a time (no float copy of a 16-bit image held whole):
    every band, the last partial one included, follows the output rule in float32."""
    values = np.random.default_rng(0).normal(0.5, 0.6, (300, 301, 3))  # 3 bands and a part; float64
    values[0, 0], values[150, 7, 1], values[-1, -1, 2] = np.nan, np.inf, -np.inf
    top = 2**bits - 1
    expected = np.rint(np.clip(np.nan_to_num(values.astype(np.float32), nan=0.0), 0, 1) * np.float32(top))
    codes = quantize(values, bits)
    assert codes.dtype == (np.uint16 if bits == 16 else np.uint8) and codes.shape == values.shape
    np.testing.assert_array_equal(codes, expected.astype(codes.dtype))
    np.testing.assert_array_equal(quantize(values[:, :, ::2], bits), codes[:, :, ::2])  # a strided view


# --- failures ----------------------------------------------------------------------


def test_loading_truncated_images_stays_disabled() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.write_bytes(b""),
        lambda p: p.write_text("this is not an image\n"),
        lambda p: p.write_bytes(_png_bytes((40, 40, 3))[:-200]),
    ],
    ids=["empty", "text", "truncated"],
)
def test_bad_files_raise_image_read_error_naming_the_file(tmp_path: Path, make) -> None:
    path = tmp_path / "bad.jpg"
    make(path)
    with pytest.raises(ImageReadError, match="bad.jpg") as info:
        read_image(path)
    assert "\n" not in str(info.value)


def test_truncated_jpeg_raises(tmp_path: Path) -> None:
    data = io.BytesIO()
    PILImage.fromarray(_codes((64, 64, 3))).save(data, format="JPEG")
    with pytest.raises(ImageReadError):
        decode_image(data.getvalue()[:-300])


def test_missing_file_and_folder_raise(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError):
        read_image(tmp_path)


def test_max_pixels_is_enforced_and_can_exceed_pillows_limit(tmp_path: Path, monkeypatch) -> None:
    path = _save(tmp_path / "a.png", _codes((10, 10, 3)))
    with pytest.raises(ImageReadError, match="--max-image-pixels"):
        read_image(path, max_pixels=99)
    for limit in (60, 10):  # over Pillow's limit, and over twice it (where Pillow raises its own error)
        monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(ImageReadError, match=f"10x10 is 100 pixels, over the decompression-bomb limit of "
                                                 f"{limit}; raise it with --max-image-pixels"):
            read_image(path)
    assert read_image(path, max_pixels=100).rgb.shape == (10, 10, 3)
    assert PILImage.MAX_IMAGE_PIXELS == 10


@pytest.mark.skipif(PILLOW_MAJOR < 13, reason="Pillow before 13 refuses the body before the size: a clean error, "
                                            "'could not create decoder object'")
def test_a_damaged_file_claiming_a_huge_size_is_refused_cleanly() -> None:
    """A WebP header claiming 16384² pixels with a broken body: re-opened to name its size after
    Pillow's bomb error, it raised a raw OSError (found by the fuzz test)."""
    canvas = b"\x10\x00\x00\x00" + (16383).to_bytes(3, "little") * 2
    body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + canvas + b"VP8 " + struct.pack("<I", 4) + b"\x00\x01\x02\x03"
    with pytest.raises(ImageReadError, match="huge.webp: over the decompression-bomb limit of .*--max-image-pixels"):
        decode_image(b"RIFF" + struct.pack("<I", len(body)) + body, name="huge.webp")


def test_read_pixels_leaves_out_transparent_pixels(tmp_path: Path) -> None:
    codes = _codes((4, 5, 4))
    codes[..., 3] = 255
    codes[0, :, 3] = 0
    pixels = read_pixels(_save(tmp_path / "a.png", codes))
    assert pixels.dtype == np.float32 and pixels.shape == (15, 3)
    codes[..., 3] = 0
    with pytest.raises(ImageReadError, match="transparent"):
        read_pixels(_save(tmp_path / "b.png", codes))


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about corrupt EXIF
@settings(max_examples=50, deadline=None)
@given(
    st.binary(max_size=512),
    st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00"]),
)
def test_random_bytes_only_raise_image_read_error(data: bytes, magic: bytes) -> None:
    with contextlib.suppress(ImageReadError):
        decode_image(magic + data)


# --- writing -----------------------------------------------------------------------


def test_unknown_output_suffix_is_refused(tmp_path: Path) -> None:
    image = read_image(_save(tmp_path / "a.png", _codes((2, 2, 3))))
    with pytest.raises(ImageWriteError, match="suffix"):
        write_image(tmp_path / "b.xyz", image, image.rgb)
    with pytest.raises(ImageWriteError):
        encode_image(image, image.rgb, "GIF")


def test_atomic_write_leaves_only_the_output(tmp_path: Path) -> None:
    image = read_image(_save(tmp_path / "a.png", _codes((3, 3, 3))))
    out = tmp_path / "out"
    out.mkdir()
    write_image(out / "b.png", image, image.rgb)
    write_image(out / "b.png", image, 1 - image.rgb)  # overwrite in place
    assert [p.name for p in out.iterdir()] == ["b.png"]
    with pytest.raises(ImageWriteError, match="nowhere"):
        write_image(tmp_path / "nowhere" / "b.png", image, image.rgb)
    assert not (tmp_path / "nowhere").exists()


def test_failed_encoding_leaves_no_file(tmp_path: Path) -> None:
    image = read_image(_save(tmp_path / "a.png", _codes((3, 3, 3))))
    image.jpeg_comment = b"x" * 70000  # too long for a JPEG marker (which a JPEG source's cannot be)
    with pytest.raises(ImageWriteError, match="b.jpg"):
        write_image(tmp_path / "b.jpg", image, image.rgb)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".bmp", ".tif"])
@pytest.mark.parametrize("bits", [8, 16])
def test_written_file_is_the_encoded_bytes(tmp_path: Path, suffix: str, bits: int) -> None:
    """write_image encodes into the file itself; encode_image into memory: the same bytes."""
    dtype = np.uint16 if bits == 16 else np.uint8
    image = read_image(_save(tmp_path / "a.png", _codes((9, 11, 3))))
    image.bit_depth, image.codes = bits, _codes((9, 11, 3), dtype)
    image.icc_profile, image.exif = _srgb_profile(), _exif(1).tobytes()
    write_image(tmp_path / f"b{suffix}", image, image.rgb)
    assert (tmp_path / f"b{suffix}").read_bytes() == encode_image(image, image.rgb, format_for_suffix(suffix))


def test_file_system_errors_while_encoding_are_write_errors(tmp_path: Path, monkeypatch) -> None:
    image = read_image(_save(tmp_path / "a.png", _codes((3, 3, 3))))

    def disk_full(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PILImage.Image, "save", disk_full)
    with pytest.raises(ImageWriteError, match=r"b.jpg: cannot write file \(No space left"):
        write_image(tmp_path / "b.jpg", image, image.rgb)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_failed_rename_removes_the_temp_file(tmp_path: Path, monkeypatch) -> None:
    image = read_image(_save(tmp_path / "a.png", _codes((3, 3, 3))))

    def refuse(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(ImageWriteError, match="No space left"):
        write_image(tmp_path / "b.png", image, image.rgb)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_folder_raises_and_leaves_no_temp_file(tmp_path: Path) -> None:
    image = read_image(_save(tmp_path / "a.png", _codes((3, 3, 3))))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ImageWriteError):
            write_image(locked / "b.png", image, image.rgb)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_written_file_permissions_follow_the_umask(tmp_path: Path) -> None:
    image = read_image(_save(tmp_path / "a.png", _codes((2, 2, 3))))
    write_image(tmp_path / "b.png", image, image.rgb)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "b.png").stat().st_mode & 0o777 == 0o666 & ~umask


# --- listing -----------------------------------------------------------------------


def _png_bytes(shape: tuple[int, ...]) -> bytes:
    data = io.BytesIO()
    PILImage.fromarray(_codes(shape)).save(data, format="PNG")
    return data.getvalue()


def test_list_images(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for name in [
        "b.PNG",
        "a.jpg",
        "notes.txt",
        ".a.png.1234.tmp",
        ".hidden.png",
        "sub/c.TIFF",
        "sub/deeper/d.webp",
        ".hidden/e.png",
    ]:
        (tmp_path / name).write_bytes(b"x")
    assert list_images(tmp_path, recursive=False) == [tmp_path / "a.jpg", tmp_path / "b.PNG"]
    assert list_images(tmp_path, recursive=True) == [
        tmp_path / "a.jpg",
        tmp_path / "b.PNG",
        tmp_path / "sub" / "c.TIFF",
        tmp_path / "sub" / "deeper" / "d.webp",
    ]
    assert ".jpeg" in IMAGE_SUFFIXES and ".gif" not in IMAGE_SUFFIXES


@pytest.mark.parametrize("listing", ["as listed", "reversed"])
def test_a_folder_reached_by_links_too_is_listed_by_its_real_name(tmp_path: Path, monkeypatch, listing) -> None:
    """The name taken was the first in the file system's listing order: outputs moved between machines."""
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.png").write_bytes(b"x")
    for link in ("a_link", "z_link"):
        (tmp_path / link).symlink_to(tmp_path / "b", target_is_directory=True)
    walk = os.walk

    def walk_in_another_order(top, **options):
        for folder, subfolders, files in walk(top, **options):
            if listing == "reversed":
                subfolders.reverse()  # in place: the walk descends in this order
            yield folder, subfolders, files

    monkeypatch.setattr("colorot.imageio.os.walk", walk_in_another_order)
    assert list_images(tmp_path, recursive=True) == [tmp_path / "b" / "x.png"]


def test_a_folder_linked_from_deeper_in_an_earlier_subtree_keeps_its_own_path(tmp_path: Path) -> None:
    """a/x/link → b: the depth-first walk reached b through the link before b itself, and listed its
    images under a/x/link (outputs moved when a link was added or removed)."""
    (tmp_path / "a" / "x").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "p.png").write_bytes(b"x")
    (tmp_path / "a" / "x" / "link").symlink_to(tmp_path / "b", target_is_directory=True)
    assert list_images(tmp_path, recursive=True) == [tmp_path / "b" / "p.png"]
    (tmp_path / "elsewhere").mkdir()  # a folder reached only through links keeps the first link's path
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "q.png").write_bytes(b"x")
    (tmp_path / "elsewhere" / "in").symlink_to(tmp_path / "outside", target_is_directory=True)
    assert list_images(tmp_path / "elsewhere", recursive=True) == [tmp_path / "elsewhere" / "in" / "q.png"]


def test_list_images_survives_symlink_loops(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(b"x")
    (tmp_path / "sub" / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "self").symlink_to(tmp_path / "sub", target_is_directory=True)
    images = list_images(tmp_path, recursive=True)
    assert len(images) == 1 and images[0].name == "a.png"


def test_running_out_of_memory_is_no_damaged_file(tmp_path: Path, monkeypatch) -> None:
    """A decode or an encode that ran out of memory was reported as "cannot decode image
    (MemoryError)", a corrupt file (copy it again), and a batch went on without it."""
    path = tmp_path / "a.png"
    PILImage.new("RGB", (8, 6), (10, 20, 30)).save(path)
    image = read_image(path)

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(PILImage.Image, "load", no_memory)
    with pytest.raises(MemoryError):
        read_image(path)
    monkeypatch.undo()
    monkeypatch.setattr(PILImage.Image, "save", no_memory)
    with pytest.raises(MemoryError):
        write_image(tmp_path / "b.jpg", image, image.codes)
