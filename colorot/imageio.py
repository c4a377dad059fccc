"""Read and write images faithfully.

Reading gives float32 RGB in [0, 1] with the alpha channel split off, EXIF
orientation applied and 16-bit sources kept at 16-bit precision. Writing puts
the result back in the source's bit depth, with its alpha and metadata (ICC profile,
EXIF, XMP, resolution: made upright by :mod:`colorot.exif`).

Output rule: each channel is clipped to [0, 1] (NaN counts as 0) and rounded to
the nearest code value, ``round(x * 255)`` or ``round(x * 65535)``; there is no
min-max stretch.

Pillow decodes 16-bit RGB(A) PNG and TIFF to 8-bit modes, keeping only the high
byte of each sample, and cannot encode 16-bit RGB at all. Reading therefore
decodes such files a second time with the opposite byte order, which yields the
low bytes, and writing 16-bit PNG and TIFF uses the small encoders below.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import stat
import struct
import sys
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFile, JpegImagePlugin, PngImagePlugin, TiffImagePlugin, TiffTags, UnidentifiedImageError

from colorot.atomic import write_atomic
from colorot.caught_warnings import LOCK as caught_warnings_lock
from colorot.caught_warnings import caught_warnings, pillow_warnings_recorded
from colorot.errors import ColorotError, ImageMetadataWarning, ImageReadError, ImageWriteError
from colorot.exif import (EXIF_HEADER, ORIENTATION_TAG, QUARTER_TURNS, tiff_exif, tiff_tags, upright_dpi, upright_exif,
                          upright_xmp)
from colorot.srgb_grid import GRID_CODES, rendered_in_srgb, renderings_apart

_FORMAT_BY_SUFFIX = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".avif": "AVIF",
    ".heic": "HEIF",
    ".heif": "HEIF",
    ".bmp": "BMP",
}

IMAGE_SUFFIXES = frozenset(_FORMAT_BY_SUFFIX)
"""Lower-case suffixes of the images a folder run reads and can write back."""

#: Formats Pillow reads under their own name that are written as another: a multi-picture JPEG
#: (phones' MPO, a JPEG with an MPF segment) is a JPEG.
_WRITTEN_AS = {"MPO": "JPEG"}
#: Formats whose later "frames" are not pictures of the image: an MPO's are a phone's previews, a
#: PSD's are its layers (Pillow opens a PSD at its composite, the picture Photoshop shows).
_FIRST_PICTURE_ONLY = frozenset({"MPO", "PSD"})
_ALPHA_FORMATS = frozenset({"PNG", "TIFF", "WEBP", "AVIF", "HEIF"})
_SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF"})
#: Formats whose files hold several 8-bit pictures that colorot writes back as such: animated WebP,
#: PNG (APNG) and AVIF, multi-page TIFF (GIF is read, not written; HEIC and JPEG hold one).
_ANIMATION_FORMATS = frozenset({"WEBP", "PNG", "TIFF", "AVIF"})
_XMP_TIFF_TAG = 700
#: The data colour spaces an ICC profile's header names (bytes 16–20) other than RGB.
_OTHER_ICC_SPACES = frozenset({b"GRAY", b"CMYK", b"CMY ", b"Lab ", b"Luv ", b"XYZ ", b"Yxy ", b"YCbr", b"HSV ",
                               b"HLS "})
_PHOTOMETRIC_TAG = 262  # a TIFF's PhotometricInterpretation: 0 white is zero, 1 black is zero, 2 RGB, …
#: A TIFF source's lossless compressions (Pillow's names) that a TIFF output keeps; a 16-bit output
#: (colorot's own encoder) uses Adobe deflate for any of them.
_LOSSLESS_TIFF_COMPRESSIONS = frozenset({"tiff_lzw", "tiff_adobe_deflate", "packbits"})
#: The most XMP a JPEG's APP1 marker holds (65 533 bytes less its 29-byte namespace header);
#: longer XMP (which Adobe splits into "extended XMP") is not written to JPEG.
_JPEG_XMP_LIMIT = 65_504
#: The most bytes one JPEG marker holds: an EXIF block (``Exif\\0\\0`` and its TIFF data) longer than
#: that is not written to JPEG.
_JPEG_MARKER_LIMIT = 65_533
#: ISOBMFF major brands (bytes 8–12, after "ftyp") of AVIF files, and of HEIF/HEIC ones (read by pillow-heif).
_AVIF_BRANDS = (b"avif", b"avis")
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
#: CICP codes (ITU-T H.273) an AVIF or HEIF may give its colours by instead of an ICC profile, that
#: mean sRGB's colours: primaries BT.709 or unspecified; the sRGB curve, or the BT.709/601/2020
#: camera curve close to it, or unspecified.
_SRGB_CICP_PRIMARIES = frozenset({1, 2})
_SRGB_CICP_TRANSFERS = frozenset({1, 2, 6, 13, 14, 15})

_TRANSPOSES: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}
"""EXIF orientation value → the array operation that makes the pixels upright."""

# A 16-bit raw mode that Pillow truncates to the high bytes → (the raw mode that decodes
# the same stream to the low bytes, the channels to keep). LA;16B has no low-byte twin,
# but plain RGBA reads its 32-bit pixels as the raw bytes Lhi Llo Ahi Alo.
_OTHER_BYTE_ORDER = {"B": "L", "L": "B", "N": "B" if sys.byteorder == "little" else "L"}
_LOW_BYTES: dict[str, tuple[str, list[int] | None]] = {
    f"{base};16{order}": (f"{base};16{other}", None)
    for base in ("RGB", "RGBA", "RGBX")
    for order, other in _OTHER_BYTE_ORDER.items()
}
_LOW_BYTES["LA;16B"] = ("RGBA", [1, 1, 1, 3])

#: The threads in which Pillow's decompression-bomb check is lifted (:func:`_pillow_pixel_limit_lifted`).
_LIFTED = threading.local()
_PILLOW_BOMB_CHECK = PILImage._decompression_bomb_check


def _bomb_check_unless_lifted(*args: object, **kwargs: object) -> None:
    """Pillow's decompression-bomb check (``PIL.Image._decompression_bomb_check``, which every Pillow
    plugin calls), skipped in a thread that lifted it: lifting the global ``MAX_IMAGE_PIXELS``
    instead lifted it for every thread, the user's own Pillow work included."""
    if not getattr(_LIFTED, "depth", 0):
        _PILLOW_BOMB_CHECK(*args, **kwargs)


PILImage._decompression_bomb_check = _bomb_check_unless_lifted


@dataclass
class Image:
    """A decoded image: its RGB code values plus what is needed to write it back faithfully.

    ``codes`` is the RGB code values (H, W, 3), uint8 or uint16 as ``bit_depth``
    (8 or 16) says (decoded 8-bit RGB without alpha: a read-only view of RGBX words, see
    :func:`codes_of_words`); ``rgb`` is the same as float32 in [0, 1]. ``alpha`` is the
    original alpha channel (H, W) in its original dtype, or None. ``mode`` and
    ``format`` are Pillow's names for the source (a multi-picture JPEG's format:
    JPEG), ``icc_profile``, ``exif`` and ``xmp`` its raw metadata (orientation reset
    to 1 where it was applied), ``dpi`` its resolution; ``jpeg_subsampling`` a JPEG
    source's chroma subsampling (Pillow's 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0), kept by a
    JPEG output; ``webp_lossless`` says the source is a lossless WebP, written back to
    WebP losslessly; ``tiff_compression`` a TIFF source's lossless compression
    (:data:`_LOSSLESS_TIFF_COMPRESSIONS`), which a TIFF output keeps; ``jpeg_comment`` and
    ``jpeg_progressive`` a JPEG source's comment and progressive coding, and ``png_colour_chunks`` a PNG
    source's gAMA, cHRM and sRGB chunks (type, body), kept by an output of the same format. ``frames``: an animation's
    or a multi-page file's later pictures, each whole (its own codes and alpha, this image's
    metadata), where they were asked for (:func:`decode_image`'s ``frames``); ``durations`` every
    frame's display time in ms (the first's included) and ``loop`` the animation's loop count,
    where the file gives them; ``default_image``: the first picture is an APNG's default image, which
    viewers that do not animate show and the animation leaves out (``durations`` then give the
    animation's frames alone). ``unread_frames``: how many later frames were left undecoded because
    the image is to be written in a format that holds one picture (:func:`decode_image`'s
    ``written_as``), for the writer's warning.
    """

    codes: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    mode: str
    format: str
    icc_profile: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    dpi: tuple[float, float] | None = None
    jpeg_subsampling: int | None = None
    webp_lossless: bool = False
    tiff_compression: str | None = None
    jpeg_comment: bytes | None = None
    jpeg_progressive: bool = False
    png_colour_chunks: tuple[tuple[bytes, bytes], ...] = ()
    frames: tuple["Image", ...] = ()
    durations: tuple[int, ...] | None = None
    loop: int | None = None
    default_image: bool = False
    unread_frames: int = 0

    @property
    def pictures(self) -> tuple["Image", ...]:
        """This image, then its later frames."""
        return (self, *self.frames)

    @property
    def rgb(self) -> np.ndarray:
        """The pixels as float32 (H, W, 3) in [0, 1]."""
        return as_floats(self.codes)


@functools.lru_cache(maxsize=1)
def has_avif() -> bool:
    """Whether this Pillow reads and writes AVIF (its AVIF plugin, with libavif)."""
    from PIL import features

    with caught_warnings():  # Pillow before 11.2 knows no "avif" feature: "Unknown feature" warned
        warnings.simplefilter("ignore")
        return bool(features.check("avif"))


@functools.lru_cache(maxsize=1)
def has_heif() -> bool:
    """Whether HEIC/HEIF is read and written: pillow-heif is installed (``pip install pillow-heif``, or
    colorot's ``heif`` extra). Its Pillow plugin is registered by the first call, made only when a
    HEIC is read or written, so other images never import it."""
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except Exception:  # not installed, or an install whose native library does not load
        return False
    return True


def _register_plugin_for(data: bytes) -> None:
    """Register pillow-heif's Pillow plugin (where it is installed) when ``data``, a file's first
    bytes at least, are a HEIC's, before Pillow opens it."""
    if isobmff_kind(data) == "HEIC":
        has_heif()


def isobmff_kind(data: bytes) -> str | None:
    """"AVIF" or "HEIC" for the bytes of an ISOBMFF image file (by its major brand), else None."""
    brand = data[8:12] if data[4:8] == b"ftyp" else None
    return "AVIF" if brand in _AVIF_BRANDS else "HEIC" if brand in _HEIF_BRANDS else None


def format_for_suffix(name: str) -> str:
    """An output format from a suffix or name ("png", ".jpg", "JPEG") → Pillow's name ("PNG")."""
    key = name.lower() if name.startswith(".") else f".{name.lower()}"
    if key in _FORMAT_BY_SUFFIX:
        return _FORMAT_BY_SUFFIX[key]
    if name.upper() in _FORMAT_BY_SUFFIX.values():
        return name.upper()
    raise ImageWriteError(f"cannot write the {name!r} format; choose one of "
                          f"{', '.join(sorted(s.lstrip('.') for s in _FORMAT_BY_SUFFIX))}")


def writable_format(name: str) -> str:
    """Pillow's name of a format colorot writes here, from its name or suffix ("png", ".jpg",
    "JPEG"); ImageWriteError for another, and for AVIF or HEIC where this Pillow cannot write them."""
    try:
        fmt = format_for_suffix(name)
    except ImageWriteError as exc:
        raise ImageWriteError(f"{exc} (--format or --suffix)") from None
    if fmt == "AVIF" and not has_avif():
        raise ImageWriteError("cannot write AVIF: this Pillow has no AVIF support; a recent Pillow has "
                              "(pip install -U pillow), or choose another format")
    if fmt == "HEIF" and not has_heif():
        raise ImageWriteError("cannot write HEIC: it needs pillow-heif (pip install pillow-heif), or choose "
                              "another format")
    return fmt


def written_format(path: str | os.PathLike[str]) -> str | None:
    """The format a write to ``path`` takes, by its suffix (Pillow's name), or None for a suffix of
    no format colorot writes."""
    return _FORMAT_BY_SUFFIX.get(Path(path).suffix.lower())


def holds_frames(format: str) -> bool:
    """Whether an output ``format`` (Pillow's name: "WEBP", "JPEG") writes an animation's or a
    multi-page file's later frames back (:data:`_ANIMATION_FORMATS`)."""
    return format.upper() in _ANIMATION_FORMATS


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = None,
               metadata_warning: bool = True, frames: bool = False, written_as: str | None = None) -> Image:
    """Read an image file; raise ImageReadError naming the file on any failure.

    See :func:`decode_image` for what is decoded and how.
    """
    return decode_image(read_file(path), name=str(path), max_pixels=max_pixels, metadata_warning=metadata_warning,
                        frames=frames, written_as=written_as)


def decode_to_write(data: bytes, format: str | None, *, name: str,
                    max_pixels: int | None = None) -> tuple[Image, str]:
    """``data`` decoded to be written in ``format`` (a name or suffix; None: the input's own), with
    the later frames that format holds (:func:`decode_image`'s ``frames`` and ``written_as``), and
    the format to write (Pillow's name)."""
    written_as = format_for_suffix(format) if format else None
    image = decode_image(data, name=name, max_pixels=max_pixels, frames=True, written_as=written_as)
    return image, written_as or image.format


def read_icc_profile(path: str | os.PathLike[str]) -> bytes | None:
    """The ICC profile of the image file ``path`` from its header (the pixels are not decoded, and
    the decompression-bomb limit is left to the read of the image itself); None when it has none
    or cannot be opened."""
    if _is_stream(path):  # not read here: the read of its pixels refuses it
        return None
    try:
        with open(path, "rb") as file:
            _register_plugin_for(file.read(12))
        with pillow_warnings_recorded([]), _pillow_pixel_limit_lifted(True), PILImage.open(path) as pil:
            return pil.info.get("icc_profile") or None  # damage is told by the read of the image itself
    except Exception:  # noqa: BLE001 (Pillow's plugins raise many types: AVIF's a RuntimeError)
        return None


def _is_stream(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a pipe, a device or a socket (a shell's ``<(…)``, ``/dev/stdin``): what is read
    from it is gone, where colorot reads an input more than once (its profile, then its pixels)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def read_file(path: str | os.PathLike[str]) -> bytes:
    """An image file's bytes; ImageReadError naming the file when it cannot be read (or is a pipe,
    :func:`_is_stream`)."""
    if _is_stream(path):
        raise ImageReadError(f"{path!s}: a pipe or a device, not a file: colorot reads an input more than once; "
                             "save it to a file first ('colorot apply' and 'colorot match' take one image piped "
                             "to stdin as '-')")
    try:
        return Path(path).read_bytes()
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        if str(path) == "-" and isinstance(exc, FileNotFoundError):
            raise ImageReadError("-: stdin is read only as the input of 'colorot apply' or 'colorot match'; "
                                 "give an image file here") from exc
        if isinstance(exc, IsADirectoryError):  # `fit photos/ ...`, or match's reference and inputs swapped
            raise ImageReadError(f"{path!s} is a folder; an image file goes here (for a folder's images, give them "
                                 f"as files, e.g. {Path(path) / '*.jpg'})") from exc
        raise ImageReadError(f"{path!s}: cannot read file ({getattr(exc, 'strerror', None) or exc})") from exc


def decode_image(data: bytes, *, name: str = "<bytes>", max_pixels: int | None = None,
                 metadata_warning: bool = True, frames: bool = False, written_as: str | None = None) -> Image:
    """Decode encoded image bytes to an :class:`Image`.

    EXIF orientation is applied and the EXIF kept has its orientation reset to 1.
    Palette, greyscale, CMYK and other modes become RGB (CMYK by Pillow's plain
    conversion, without colour management); an ICC profile for other data (a greyscale or
    CMYK image's own) describes none of that RGB, which is then read as sRGB codes, with an
    :class:`ImageMetadataWarning` (the writers leave such a profile out). Animated and multi-page files give
    their first frame, with an :class:`ImageMetadataWarning` (an MPO's extra pictures,
    a phone's previews, without one); with ``frames``, their later 8-bit frames too, in
    :attr:`Image.frames`, without the warning, when they are all of one size and together within
    the pixel limit (else the first, with a warning saying why); with ``frames`` and ``written_as``,
    the output format the image is to be written in, where that format holds one picture (JPEG,
    BMP, HEIC: not :func:`holds_frames`), the first alone, without a warning here: the later frames
    are counted in :attr:`Image.unread_frames`, and the writer warns that only the first is written.
    16-bit greyscale, RGB and RGBA PNG and TIFF, and grey+alpha PNG, keep their full precision (a
    16-bit grey+alpha TIFF Pillow cannot open: "not an image, or a format Pillow cannot read"); rarer 16-bit
    layouts (premultiplied alpha, CMYK) come at Pillow's 8-bit precision with ``bit_depth`` 8; TIFFs
    of over 8 bits a sample in separate planes, and 32-bit integer and floating-point modes, are
    refused.
    EXIF is read from JPEG, PNG and WebP, and from a TIFF's descriptive tags (Make,
    Model, DateTime, Copyright…, its Exif and GPS directories), not its layout tags.
    ``max_pixels`` replaces Pillow's decompression-bomb limit (while such a
    decode runs, Pillow's check is lifted in its thread alone); without it an
    image over ``PIL.Image.MAX_IMAGE_PIXELS`` is refused (Pillow itself only
    warns up to twice that). Truncated data (a file cut short) is an error, never a partial image;
    a file that ends as a whole one but holds less picture than its header declares (a damaged
    PNG's height, a JPEG's scan cut short but its end marker there) is read as Pillow reads it,
    the rest filled in.
    Damaged metadata gives an :class:`ImageMetadataWarning` naming the image; neither warning
    is given when not ``metadata_warning`` (a second decode of an image already warned about).
    """
    if not data:
        raise ImageReadError(f"{name}: empty file")
    try:
        with _pillow_pixel_limit_lifted(max_pixels is not None):
            one_picture = frames and written_as is not None and not holds_frames(written_as)
            return _decode(data, name, max_pixels, metadata_warning, frames and not one_picture, one_picture)
    except ColorotError:
        raise
    except PILImage.DecompressionBombError as exc:  # over twice Pillow's limit: refused as over once
        limit = PILImage.MAX_IMAGE_PIXELS
        try:
            with _pillow_pixel_limit_lifted(True), PILImage.open(io.BytesIO(data)) as pil:  # the header only
                size = pil.size
        except Exception:  # a damaged file whose header claims the size: no size to name
            size = None
        raise ImageReadError(_over_limit(name, limit, size)) from exc
    except UnidentifiedImageError as exc:
        if data.startswith(b"PK\x03\x04"):  # what torch.save writes
            raise ImageReadError(f"{name}: a zip archive (a colorot checkpoint?), not an image; a checkpoint is "
                                 "applied by 'colorot apply MODEL INPUT... OUTPUT'") from exc
        raise ImageReadError(_unreadable(data, name)) from exc
    except MemoryError:  # no fault of the file's: the CLI's out-of-memory message says what to do
        raise
    except Exception as exc:  # Pillow's decoders raise many exception types on bad data
        raise ImageReadError(f"{name}: cannot decode image ({_one_line(exc)})") from exc


def _unreadable(data: bytes, name: str) -> str:
    """The message for bytes Pillow could not identify: an AVIF (damaged, or Pillow without its AVIF
    plugin) and a HEIC/HEIF (damaged, or pillow-heif not installed) are named."""
    kind = isobmff_kind(data)
    if kind == "AVIF":
        return (f"{name}: an AVIF file that cannot be read (truncated or damaged)" if has_avif() else
                f"{name}: an AVIF image, which this Pillow cannot read (no AVIF support); a recent Pillow reads "
                "and writes AVIF: pip install -U pillow")
    if kind == "HEIC":
        return (f"{name}: a HEIC/HEIF file that cannot be read (truncated or damaged)" if has_heif() else
                f"{name}: a HEIC/HEIF image, which needs pillow-heif to be read: pip install pillow-heif, or "
                "convert it to JPEG, PNG, TIFF, WebP or AVIF")
    return f"{name}: not an image, or a format Pillow cannot read"


def read_pixels(path: str | os.PathLike[str], **kwargs: int | None) -> np.ndarray:
    """Read an image's pixels as float32 (N, 3), leaving out fully transparent ones.

    Keyword arguments go to :func:`read_image`. An image with no pixel left
    raises ImageReadError.
    """
    return visible_pixels(read_image(path, **kwargs), str(path))


def visible_pixels(image: Image, name: str) -> np.ndarray:
    """A decoded image's pixels as float32 (N, 3), those of its later frames (:attr:`Image.frames`)
    after them, leaving out fully transparent ones; ImageReadError naming the image when none is left."""
    parts = []
    for picture in image.pictures:
        pixels = picture.rgb.reshape(-1, 3)
        parts.append(pixels if picture.alpha is None else pixels[picture.alpha.reshape(-1) != 0])
    pixels = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if len(pixels) == 0:
        raise ImageReadError(f"{name}: every pixel is fully transparent")
    return pixels


def codes_of_words(words: np.ndarray) -> np.ndarray:
    """RGBX words (H, W) → their RGB codes (H, W, 3) uint8, as a view.

    A word is the little-endian uint32 ``r | g << 8 | b << 16 | x << 24``: the four bytes
    r, g, b, x of Pillow's own RGB pixel layout, and the colour table's index and entry. 8-bit RGB
    images decode to codes that are views of words, so the colour table can gather on the words
    and the JPEG encoder take them without repacking (:func:`words_of_codes`).
    """
    words = np.asarray(words, dtype="<u4")
    return words.view(np.uint8).reshape(*words.shape, 4)[..., :3]


def words_of_codes(codes: np.ndarray) -> np.ndarray | None:
    """The RGBX words (H, W) that uint8 codes (H, W, 3) are a view of (:func:`codes_of_words`),
    or None when they are not such a view."""
    base = codes.base
    if (codes.dtype != np.uint8 or codes.ndim != 3 or codes.shape[2] != 3 or not isinstance(base, np.ndarray)
            or base.dtype != np.dtype("<u4") or not base.flags.c_contiguous
            or base.size != codes.shape[0] * codes.shape[1] or codes.strides != (4 * codes.shape[1], 4, 1)
            or codes.__array_interface__["data"][0] != base.__array_interface__["data"][0]):
        return None
    return base.reshape(codes.shape[:2])


def unit_values(array: np.ndarray) -> np.ndarray | None:
    """Pixel values in [0, 1] units: uint8 and uint16 codes (either byte order) divided by 255 and
    65 535, as float32; floats as they are; None for any other type (its scale is unknown)."""
    if array.dtype.kind == "u" and array.dtype.itemsize in (1, 2):
        return array / np.float32(255 if array.dtype.itemsize == 1 else 65535)
    return array if np.issubdtype(array.dtype, np.floating) else None


#: Rows the 16-bit PNG and TIFF writers filter and compress at a time.
_ROWS_A_BAND = 64
#: Values :func:`quantize` rounds at a time.
_QUANTIZE_BAND = 1 << 18


def as_floats(values: np.ndarray) -> np.ndarray:
    """uint8 or uint16 codes as float32 in [0, 1] (:func:`unit_values`: what :attr:`Image.rgb`
    holds); floats as they are."""
    return unit_values(values) if values.dtype.kind == "u" else values


def quantize(rgb: np.ndarray, bit_depth: int) -> np.ndarray:
    """Apply the output rule: clip to [0, 1] (NaN → 0) and round to uint8 or uint16 codes, in
    float32, a band of values at a time (of a contiguous array, no float copy of the whole is made)."""
    top, dtype = (65535, np.uint16) if bit_depth == 16 else (255, np.uint8)
    rgb = np.asarray(rgb)
    flat = rgb.reshape(-1)
    codes = np.empty(flat.shape, dtype=dtype)
    for start in range(0, len(flat), _QUANTIZE_BAND):
        values = np.array(flat[start:start + _QUANTIZE_BAND], dtype=np.float32)
        np.nan_to_num(values, copy=False, nan=0.0)
        np.clip(values, 0.0, 1.0, out=values)
        values *= top
        np.rint(values, out=values)
        codes[start:start + _QUANTIZE_BAND] = values
    return codes.reshape(rgb.shape)


def encode_image(image: Image, rgb: np.ndarray, format: str, *, quality: int = 95, name: str = "<bytes>",
                 frames: Sequence[np.ndarray] = ()) -> bytes:
    """Encode ``rgb`` (H, W, 3) in ``format`` with ``image``'s metadata: the bytes of the file
    :func:`write_image` would write (see :func:`image_writer`; ``name`` names the output in a warning)."""
    buffer = io.BytesIO()
    image_writer(image, rgb, format, quality=quality, name=name, frames=frames)(buffer)
    return buffer.getvalue()


def image_writer(image: Image, rgb: np.ndarray, format: str, *, quality: int = 95,
                 name: str = "<bytes>", frames: Sequence[np.ndarray] = ()) -> Callable[[BinaryIO], None]:
    """Check and prepare ``rgb`` (H, W, 3) for ``format``; the function that encodes it, with
    ``image``'s metadata, into a binary file object.

    Given a real file on a file system with room to spare (:func:`_room_to_spare`), Pillow encodes a
    JPEG straight into it without holding the GIL, so file workers encode in parallel, and the file
    is then checked to end as a JPEG does; every other write goes through the file object's
    ``write``, which raises on a short write (a full disk; see :class:`_WritesOnly`).

    Float ``rgb`` (any values) goes through the output rule (:func:`quantize`);
    an integer ``rgb`` is taken as code values, uint8 for an 8-bit output and
    uint16 for a 16-bit one.

    ``format`` is a Pillow name: JPEG, PNG, TIFF, WEBP, AVIF (where Pillow has AVIF support), HEIF
    (HEIC, where pillow-heif is installed) or BMP. 16-bit sources give 16-bit PNG and TIFF, 8-bit
    everything else. Greyscale and palette sources are written as RGB. The alpha channel is written
    by PNG, TIFF and WebP untouched (rounded to 8 bits where the output is 8-bit), by AVIF and HEIC
    lossily, and dropped by JPEG and BMP (an :class:`ImageMetadataWarning` naming the output
    ``name`` when a pixel was not opaque). The ICC profile is written when it is an RGB profile and
    the format takes one (not BMP); so are the EXIF (a TIFF source's: its descriptive tags; into
    a TIFF: all but the tags of the TIFF's own, :data:`colorot.exif.TIFF_OWN_TAGS`, as its tags) and XMP (either
    too long for one JPEG marker is not written to JPEG; the EXIF with a warning), and the resolution
    (not WebP, AVIF or HEIC). ``quality`` applies to JPEG, lossy WebP, AVIF and HEIC (4:2:0 chroma);
    a lossless WebP source is written to WebP losslessly, a JPEG source to JPEG with its chroma
    subsampling, comment and progressive coding, a PNG source to PNG with its gAMA, cHRM and sRGB
    chunks. A compressed TIFF source gives a TIFF compressed as it was, or Adobe-deflated by
    :func:`_write_tiff` where it is 16-bit or its EXIF has sub-directories (which libtiff's
    compressors cannot write; a multi-page one is then written uncompressed, with a warning).

    ``frames``: the pixels of ``image.frames`` (an animation's or a multi-page file's later
    frames, prepared like ``rgb``), written after it as one animated WebP, PNG (APNG) or AVIF, or
    multi-page TIFF, with the source's frame durations and loop count (an APNG's default image
    stays one in PNG and is left out of the others, whose first picture is the animation's first
    frame); another format holds one picture, so it gets the first with an :class:`ImageMetadataWarning`.
    """
    fmt = writable_format(format)
    if len(frames) != len(image.frames):
        raise ValueError(f"{len(frames)} frames given for the image's {len(image.frames)} later ones")
    animated = holds_frames(fmt)  # frames are 8-bit (decode_image reads no 16-bit ones)
    if image.unread_frames and animated:
        raise ValueError(f"the image's {image.unread_frames} later frames were not read, but {fmt} would hold them")
    bits = 16 if image.bit_depth == 16 and fmt in _SIXTEEN_BIT_FORMATS else 8

    def prepared(picture: Image, rgb: np.ndarray) -> np.ndarray:
        """``rgb`` as the codes (and alpha) to write for ``picture``."""
        if rgb.shape != picture.codes.shape:
            raise ValueError(f"rgb has shape {rgb.shape}, the image {picture.codes.shape}")
        if np.issubdtype(rgb.dtype, np.floating):
            pixels = quantize(rgb, bits)
        elif rgb.dtype == (np.uint16 if bits == 16 else np.uint8):
            pixels = rgb
        else:
            raise ValueError(f"{rgb.dtype} code values cannot be written at {bits} bits")
        if picture.alpha is not None and fmt in _ALPHA_FORMATS:
            pixels = np.dstack((pixels, _alpha_codes(picture.alpha, bits)))
        return pixels

    pixels = prepared(image, rgb)
    later = [prepared(frame, mapped) for frame, mapped in zip(image.frames, frames)] if animated else []
    if later and image.default_image and fmt != "PNG":  # only an APNG has a picture outside its animation
        pixels, later = later[0], later[1:]
    dropped = len(image.frames) + image.unread_frames
    if dropped and not animated:
        warnings.warn(f"{name}: the input has {dropped + 1} frames, but {fmt} holds one picture: only the "
                      "first is written (WebP, PNG, TIFF and AVIF keep them all)", ImageMetadataWarning, stacklevel=3)
    if image.alpha is not None and fmt not in _ALPHA_FORMATS and image.alpha.min() < np.iinfo(image.alpha.dtype).max:
        warnings.warn(f"{name}: the input's transparency is dropped: {fmt} has no alpha channel (PNG, TIFF, WebP, "
                      "AVIF and HEIC keep it)", ImageMetadataWarning, stacklevel=3)
    icc = image.icc_profile if _is_rgb_profile(image.icc_profile) and fmt != "BMP" else None
    if fmt == "BMP" and _is_rgb_profile(image.icc_profile) and not _shows_srgb(bytes(image.icc_profile)):
        warnings.warn(f"{name}: the input's ICC profile is dropped: BMP holds none, so viewers take the output's "
                      "codes as sRGB's, which are other colours (PNG, JPEG, TIFF, WebP, AVIF and HEIC keep it)",
                      ImageMetadataWarning, stacklevel=3)
    exif = image.exif if fmt not in ("BMP", "TIFF") else None
    if exif and fmt == "JPEG" and len(exif) > _JPEG_MARKER_LIMIT:
        warnings.warn(f"{name}: the input's EXIF ({len(exif)} bytes) is left out: a JPEG's EXIF marker holds "
                      f"{_JPEG_MARKER_LIMIT} (PNG, TIFF, WebP, AVIF and HEIC keep it)", ImageMetadataWarning, stacklevel=3)
        exif = None
    # the TIFF writer would take the EXIF's layout tags for its own: a TIFF gets the others as its tags
    carried_tags = tiff_tags(image.exif) if image.exif and fmt == "TIFF" else None
    xmp = image.xmp if fmt != "BMP" and not (fmt == "JPEG" and len(image.xmp or b"") > _JPEG_XMP_LIMIT) else None
    dpi = image.dpi if fmt not in ("WEBP", "AVIF", "HEIF") else None
    compressed = fmt == "TIFF" and image.tiff_compression is not None
    nested = carried_tags is not None and any(isinstance(value, dict) for value in carried_tags.values())
    if compressed and nested and later and bits == 8:
        warnings.warn(f"{name}: written uncompressed: libtiff's compressors cannot write a multi-page TIFF's "
                      "Exif or GPS directory", ImageMetadataWarning, stacklevel=3)
        compressed = False
    own_tiff = fmt == "TIFF" and (bits == 16 or compressed and nested)  # libtiff's compressors write no sub-IFD
    options = {key: value for key, value in (("icc_profile", icc), ("exif", exif), ("dpi", dpi)) if value is not None}
    if fmt == "WEBP":  # exact: the colours under transparent pixels are kept, as PNG and TIFF keep them
        options.update({"lossless": True} if image.webp_lossless else {"quality": quality}, exact=True)
    elif fmt == "TIFF":
        options.update({"compression": image.tiff_compression} if compressed else {})
        tiffinfo = {**(carried_tags or {}), **({_XMP_TIFF_TAG: xmp} if xmp is not None else {})}
        options.update({"tiffinfo": tiffinfo} if tiffinfo else {})
    elif fmt in ("AVIF", "HEIF"):
        options["quality"] = quality
    elif fmt == "JPEG":
        options["quality"] = quality
        if image.jpeg_subsampling is not None:
            options["subsampling"] = image.jpeg_subsampling
        options.update({"comment": image.jpeg_comment} if image.jpeg_comment else {})
        options.update({"progressive": True} if image.jpeg_progressive else {})
    elif fmt == "PNG" and (image.png_colour_chunks or xmp is not None):
        options["pnginfo"] = PngImagePlugin.PngInfo()
        for kind, body in image.png_colour_chunks:
            options["pnginfo"].add(kind, body)
    if xmp is not None and fmt in ("JPEG", "WEBP", "AVIF", "HEIF"):
        options["xmp"] = xmp
    elif xmp is not None and fmt == "PNG":
        options["pnginfo"].add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"))
    if later:
        options.update(save_all=True, append_images=[PILImage.fromarray(frame) for frame in later])
        options.update({} if image.durations is None else {"duration": list(image.durations)})
        options.update({} if image.loop is None else {"loop": image.loop})
        options.update({"default_image": True} if image.default_image and fmt == "PNG" else {})

    def write(file: BinaryIO) -> None:
        try:
            if own_tiff:
                _write_tiff(file, pixels, icc, carried_tags, xmp, dpi, deflate=compressed)
            elif bits == 16:
                _write_png16(file, pixels, icc, exif, xmp, dpi, image.png_colour_chunks)
            elif later:  # via memory: Pillow's multi-page TIFF writer reads back what it wrote
                buffer = io.BytesIO()
                _pillow_image(pixels, fmt).save(buffer, format=fmt, **options)
                file.write(buffer.getvalue())
            else:
                picture = _pillow_image(pixels, fmt)
                if fmt == "JPEG" and _room_to_spare(file, pixels.size):  # the hot path, encoded in parallel
                    picture.save(file, format=fmt, **options)
                    if not _ends_a_jpeg(file):  # its last write fell short: again, to raise why
                        file.seek(0)
                        file.truncate()
                        picture.save(_WritesOnly(file), format=fmt, **options)
                else:
                    picture.save(_WritesOnly(file), format=fmt, **options)
        except MemoryError:
            raise
        except Exception as exc:  # Pillow's encoders raise many exception types
            if isinstance(exc, OSError) and exc.errno is not None:  # the file system's: the writer reports it
                raise
            raise ImageWriteError(f"cannot encode as {fmt} ({_one_line(exc)})") from exc

    return write


class _WritesOnly:
    """A binary file without its descriptor. Given one, Pillow's JPEG, BMP and uncompressed TIFF
    writers encode straight into it from C, which takes a short write (the disk full) for a whole
    one: the cut file was then renamed into place as written. Without it, they (and libtiff, whose
    errors carry no errno) hand each encoded block to ``write``, which raises the file system's
    error, but hold the GIL as they encode (a JPEG batch on 2 workers took 15 % longer)."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")

    def __getattr__(self, name: str):
        return getattr(self._file, name)


#: The free space a JPEG of N raw bytes (height × width × 3) is encoded straight into its file
#: with: room for it (a JPEG is smaller than its raw pixels) 8 times over, for other workers'
#: files, and 256 MiB besides.
_SPARE_FACTOR, _SPARE_BYTES = 8, 256 << 20


def _room_to_spare(file: BinaryIO, raw_bytes: int) -> bool:
    """Whether Pillow may encode a JPEG of ``raw_bytes`` of pixels straight into ``file``'s descriptor:
    its C loop takes a short write (the disk full, a quota, a file-size limit) for a whole one, so
    it does only where the file system has room to spare (a cut in the last write would still
    show: :func:`_ends_a_jpeg`) and no file-size limit applies; False where that cannot be known
    (Windows has no ``fstatvfs``: every write there goes through ``write``)."""
    try:
        stats = os.fstatvfs(file.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation):
        return False
    try:
        import resource
    except ImportError:
        return False
    if resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
        return False
    return stats.f_bavail * stats.f_frsize >= _SPARE_FACTOR * raw_bytes + _SPARE_BYTES


def _ends_a_jpeg(file: BinaryIO) -> bool:
    """Whether the file Pillow wrote into ends with a JPEG's end-of-image marker, FF D9: a cut in
    its last write leaves a file that does not (the coded data hold FF only before 00 or a restart
    marker); a cut before it, where a later write went on, would end so, which the room to spare
    (:func:`_room_to_spare`) keeps out. True for a file object without a descriptor, which reports
    a short write itself."""
    try:
        descriptor = file.fileno()
    except (AttributeError, io.UnsupportedOperation):
        return True
    file.flush()
    size = os.fstat(descriptor).st_size
    if size < 2:
        return False
    if hasattr(os, "pread"):
        return os.pread(descriptor, 2, size - 2) == b"\xff\xd9"
    position = os.lseek(descriptor, 0, os.SEEK_CUR)  # Windows has no pread: read, then put the offset back
    os.lseek(descriptor, size - 2, os.SEEK_SET)
    try:
        return os.read(descriptor, 2) == b"\xff\xd9"
    finally:
        os.lseek(descriptor, position, os.SEEK_SET)


def write_image(
    path: str | os.PathLike[str], image: Image, rgb: np.ndarray, *, quality: int = 95, replace: bool = True,
    frames: Sequence[np.ndarray] = ()
) -> None:
    """Write ``rgb`` (and ``frames``, :func:`image_writer`'s) atomically to ``path``, in the format its
    suffix names.

    The pixels are encoded as by :func:`encode_image`, straight into a hidden temp
    file in the destination folder, synced and renamed into place; on failure
    the temp file is removed and ImageWriteError raised. Unless ``replace``, a file
    that exists at ``path`` by then is kept and OutputExistsError raised
    (:func:`colorot.atomic.write_atomic`).
    """
    path = Path(path)
    fmt = written_format(path)
    if fmt is None:
        raise ImageWriteError(
            f"{path}: cannot tell the output format from the suffix {path.suffix!r}"
        )
    try:
        encode = image_writer(image, rgb, fmt, quality=quality, name=str(path), frames=frames)
    except ImageWriteError as exc:
        raise ImageWriteError(f"{path}: {exc}") from exc

    def write(file: BinaryIO) -> None:
        try:
            encode(file)
        except ImageWriteError as exc:
            raise ImageWriteError(f"{path}: {exc}") from exc

    write_atomic(path, write, ImageWriteError, replace=replace)


def list_images(root: str | os.PathLike[str], *, recursive: bool, folders: list[Path] | None = None) -> list[Path]:
    """The image files under ``root``, sorted; hidden files and folders are skipped.

    Suffixes match :data:`IMAGE_SUFFIXES` whatever their case. Symbolic links
    to folders are followed, but each real folder is visited once, so loops end: by its own path
    when it can be reached without links, else by its first path in a walk that takes each folder's
    real subfolders before its links, each in name order (so the outputs' mirrored paths depend
    neither on the file system's listing order nor on links into the tree).
    Pipes, sockets and devices are left out (reading a pipe would wait for a writer);
    a broken link is kept, to be reported when it cannot be read. A folder that cannot be listed
    (no permission, a path over the system's limit) is an ImageReadError naming it: its images
    would be left out without a word. ``folders``, if given, gets every folder walked (as reached).
    """
    images: list[Path] = []
    visited: set[str] = set()
    direct: set[str] | None = None  # the folders reached without links: walked for once a link to a folder is met

    def linked_elsewhere(path: str) -> bool:
        """Whether ``path`` is a link to a folder the walk reaches by its own path."""
        nonlocal direct
        if not os.path.islink(path):
            return False
        if direct is None:
            direct = _reached_without_links(root)
        return os.path.realpath(path) in direct

    for folder, subfolders, files in os.walk(root, followlinks=True, onerror=_unlistable):
        real = os.path.realpath(folder)
        if real in visited:
            subfolders.clear()
            continue
        visited.add(real)
        if folders is not None:
            folders.append(Path(folder))
        subfolders[:] = sorted((name for name in subfolders if recursive and not name.startswith(".")
                                and not linked_elsewhere(os.path.join(folder, name))),
                               key=lambda name: (os.path.islink(os.path.join(folder, name)), name))
        images.extend(path for path in (Path(folder, name) for name in files if _is_image_name(name))
                      if path.is_file() or not path.exists())
    return sorted(images)


def _reached_without_links(root: str | os.PathLike[str]) -> set[str]:
    """The real paths of the folders under ``root`` (itself included) that a walk reaches without
    following a link to a folder, hidden ones left out as :func:`list_images` leaves them."""
    reached = set()
    for folder, subfolders, _ in os.walk(root, onerror=_unlistable):
        reached.add(os.path.realpath(folder))
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
    return reached


def _unlistable(exc: OSError) -> None:
    raise ImageReadError(f"cannot list the folder {exc.filename} ({exc.strerror or exc}): its images would "
                         "be left out") from exc


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES


@contextlib.contextmanager
def _pillow_pixel_limit_lifted(lifted: bool) -> Iterator[None]:
    """Lift Pillow's decompression-bomb check in the calling thread while the block runs, if ``lifted``
    (:func:`_bomb_check_unless_lifted`; other threads keep it)."""
    if not lifted:
        yield
        return
    _LIFTED.depth = getattr(_LIFTED, "depth", 0) + 1
    try:
        yield
    finally:
        _LIFTED.depth -= 1


def _decode(data: bytes, name: str, max_pixels: int | None, metadata_warning: bool, all_frames: bool,
            one_picture: bool) -> Image:
    """Decode with Pillow, then apply the orientation, split alpha off and scale to floats; with
    ``all_frames``, the later frames too; with ``one_picture``, the first alone, the others counted."""
    notes: list[str] = []
    _register_plugin_for(data)
    with pillow_warnings_recorded(notes):
        pil = PILImage.open(io.BytesIO(data))
    with pil:
        limit = max_pixels if max_pixels is not None else PILImage.MAX_IMAGE_PIXELS
        if limit is not None and pil.width * pil.height > limit:
            raise ImageReadError(_over_limit(name, limit, pil.size))
        count, uncounted = _frame_count(pil, notes)
        if uncounted and metadata_warning and all_frames:
            warnings.warn(f"{name}: an animation or a multi-page image whose frames cannot be counted past the "
                          f"first ({uncounted}): colorot maps only the first (written out, a still image)",
                          ImageMetadataWarning, stacklevel=4)
        if count > 1 and metadata_warning and not all_frames and not one_picture:
            warnings.warn(f"{name}: {count} frames (an animation or a multi-page image): colorot reads only the "
                          "first here (apply and match map every frame); save the frames as images of their own to "
                          "use them all", ImageMetadataWarning, stacklevel=4)
        cicp = _cicp(data) if pil.format in ("AVIF", "HEIF") and not pil.info.get("icc_profile") else None
        if cicp is not None and metadata_warning and (cicp[0] not in _SRGB_CICP_PRIMARIES
                                                      or cicp[1] not in _SRGB_CICP_TRANSFERS):
            kind = "an AVIF" if pil.format == "AVIF" else "a HEIC/HEIF"
            warnings.warn(f"{name}: {kind} whose colours are given by CICP codes (primaries {cicp[0]}, transfer "
                          f"{cicp[1]}), not an ICC profile: colorot reads its codes as sRGB's (and writes its "
                          "output as sRGB); convert it to sRGB, or tag it with an ICC profile, first",
                          ImageMetadataWarning, stacklevel=4)
        icc = pil.info.get("icc_profile") or None
        if icc is not None and bytes(icc[16:20]) in _OTHER_ICC_SPACES and metadata_warning:
            kind = bytes(icc[16:20]).decode("ascii").strip()
            warnings.warn(f"{name}: its ICC profile is for {kind} data, which colorot reads as RGB (Pillow's "
                          "conversion): the colours are read as sRGB codes, and the output carries no profile; "
                          "convert the image to RGB through its profile first to keep its colours",
                          ImageMetadataWarning, stacklevel=4)
        turned = None  # a TIFF's orientation, which its load() applies (and drops) itself
        if pil.format == "TIFF":  # its load() parses the EXIF: parsed here first, where Pillow's warnings are noted
            with pillow_warnings_recorded(notes):
                tags = pil.getexif()
                turned = tags.get(ORIENTATION_TAG, 1)
                for key in TiffTags.TAGS_V2_GROUPS:
                    if key in tags:
                        tags.get_ifd(key)
        codes, bit_depth = _pixel_codes(pil, data, name)
        with pillow_warnings_recorded(notes):
            orientation = pil.getexif().get(ORIENTATION_TAG, 1)
            exif = tiff_exif(pil, turned in QUARTER_TURNS) if pil.format == "TIFF" else upright_exif(pil, orientation)
        if notes and metadata_warning:
            with caught_warnings_lock:  # not into another thread's record
                warnings.warn(f"{name}: damaged metadata ({'; '.join(dict.fromkeys(notes))}, says Pillow): the "
                              "pixels are read in full, the EXIF is carried as far as it could be read"
                              + (" (a TIFF's ICC profile and other tags too: an ICC profile lost leaves the "
                                 "output untagged)" if pil.format == "TIFF" else ""),
                              ImageMetadataWarning, stacklevel=4)
        codes = np.ascontiguousarray(_TRANSPOSES.get(orientation, np.asarray)(codes))
        first = Image(
            codes=codes_of_words(codes) if codes.ndim == 2 else np.ascontiguousarray(codes[..., :3]),
            alpha=codes[..., 3].copy() if codes.ndim == 3 and codes.shape[2] == 4 else None,
            bit_depth=bit_depth,
            mode=pil.mode,
            format=_WRITTEN_AS.get(pil.format, pil.format or ""),
            icc_profile=icc,
            exif=exif,
            xmp=upright_xmp(pil.info.get("xmp"), orientation if turned is None else turned),
            dpi=upright_dpi(_source_dpi(pil), orientation if turned is None else turned),
            jpeg_subsampling=_jpeg_subsampling(pil),
            webp_lossless=pil.format == "WEBP" and _webp_is_lossless(data),
            tiff_compression=_tiff_compression(pil),
            jpeg_comment=pil.info.get("comment") or None if pil.format in ("JPEG", "MPO") else None,
            jpeg_progressive=pil.format in ("JPEG", "MPO") and bool(pil.info.get("progressive")),
            png_colour_chunks=_png_colour_chunks(pil),
            unread_frames=count - 1 if one_picture else 0,
        )
        if not all_frames or count < 2:
            return first
        return _with_later_frames(first, pil, count, orientation, limit, name, metadata_warning)


def _with_later_frames(first: Image, pil: PILImage.Image, count: int, orientation: object, limit: int | None,
                       name: str, warn: bool) -> Image:
    """``first`` (frame 0 of ``pil``, decoded) with the ``count`` − 1 later frames of an animation or
    multi-page file, each decoded whole as RGBA (Pillow composes an animation's frames) and turned
    upright as the first; alpha on every frame where any is not opaque.  ``first`` alone, with a
    warning saying why (unless not ``warn``), where they cannot all be written back: 16-bit pages
    (the first, or a later 16-bit, 32-bit or float grey one, which Pillow's conversion would clip),
    pages of several sizes, frames together over the pixel ``limit``, or a later frame that
    cannot be decoded."""
    default_image = pil.format == "PNG" and bool(pil.info.get("default_image"))  # no frame of the animation
    durations = [] if default_image else [pil.info.get("duration")]  # WebP and AVIF set frame 0's as they load it
    later = []
    why = None
    if first.bit_depth != 8:
        why = "16-bit pages, which colorot does not write as one file"
    elif limit is not None and count * pil.width * pil.height > limit:
        why = f"together over the pixel limit of {limit} (raise it with --max-image-pixels)"
    else:
        size = pil.size
        try:
            for index in range(1, count):
                pil.seek(index)
                if pil.size != size:
                    why = "pages of different sizes"
                    break
                if pil.mode in ("I", "F") or pil.mode.startswith("I;16"):  # convert() would clip it to white or black
                    why = f"a later page of 16-bit, 32-bit or floating-point grey (Pillow mode {pil.mode}), which " \
                          "colorot does not write with 8-bit ones"
                    break
                later.append(np.ascontiguousarray(_TRANSPOSES.get(orientation, np.asarray)(
                    np.asarray(pil.convert("RGBA")))))
                durations.append(pil.info.get("duration"))
        except MemoryError:  # not a damaged frame: the whole file must not fall back to its first
            raise
        except Exception as exc:  # Pillow's decoders raise many exception types on a damaged frame
            why = f"frame {len(later) + 2} cannot be read ({_one_line(exc)})"
    if why is not None:
        if warn:
            warnings.warn(f"{name}: {count} frames (an animation or a multi-page image), {why}: colorot maps only "
                          "the first (written out, a still image)", ImageMetadataWarning, stacklevel=5)
        return first
    opaque = first.alpha is None and all(int(frame[..., 3].min()) == 255 for frame in later)
    frames = tuple(replace(first, codes=np.ascontiguousarray(frame[..., :3]),
                           alpha=None if opaque else frame[..., 3].copy()) for frame in later)
    alpha = first.alpha if first.alpha is not None or opaque else np.full(first.codes.shape[:2], 255, np.uint8)
    return replace(first, alpha=alpha, frames=frames,
                   durations=None if None in durations else tuple(round(d) for d in durations),
                   default_image=default_image,
                   loop=pil.info.get("loop", 1 if pil.format == "GIF" else None))  # a GIF without one plays once


def _cicp(data: bytes) -> tuple[int, int] | None:
    """An AVIF's or HEIF's CICP colour primaries and transfer codes, from its ``colr`` box of type ``nclx``
    (in the metadata, before the pixel data), or None when it has none."""
    end = data.find(b"mdat", 0, 1 << 16)
    at = data.find(b"colrnclx", 0, end if end >= 0 else 1 << 16)
    if at < 0 or len(data) < at + 12:
        return None
    primaries, transfer = struct.unpack(">HH", data[at + 8:at + 12])
    return primaries, transfer


def _frame_count(pil: PILImage.Image, notes: list[str]) -> tuple[int, str | None]:
    """How many frames (an animation's) or pages (a TIFF's) the image has, by its header: 1 for an
    MPO and a PSD (:data:`_FIRST_PICTURE_ONLY`), and 1 with the reason where the count cannot be
    read past the first frame (a damaged frame or page chain: the first is read as before).
    Leaves ``pil`` at the frame it was at."""
    if pil.format in _FIRST_PICTURE_ONLY:
        return 1, None
    opened_at = pil.tell()
    try:
        with pillow_warnings_recorded(notes):
            return max(1, int(getattr(pil, "n_frames", 1))), None
    except Exception as exc:  # Pillow's parsers raise many exception types on a damaged chain
        return 1, _one_line(exc)
    finally:
        if pil.tell() != opened_at:
            pil.seek(opened_at)


def _over_limit(name: str, limit: int, size: tuple[int, int] | None) -> str:
    """The message for an image of ``size`` (width, height; None: unknown) over the pixel limit."""
    pixels = "" if size is None else f"{size[0]}x{size[1]} is {size[0] * size[1]} pixels, "
    return (f"{name}: {pixels}over the decompression-bomb limit of {limit}; raise it with --max-image-pixels "
            "(max_image_pixels in Python)")


def _pixel_codes(pil: PILImage.Image, data: bytes, name: str) -> tuple[np.ndarray, int]:
    """The integer pixel codes and their bit depth: (H, W, 3) or (H, W, 4) with alpha last, or
    for 8-bit RGB without alpha, (H, W) RGBX words (see :func:`codes_of_words`)."""
    if pil.mode.startswith("I;16"):
        return grey16_codes(pil), 16
    if _planar_deep_tiff(pil):
        raise ImageReadError(f"{name}: a TIFF of over 8 bits a sample with separate colour planes is not supported "
                             "(Pillow misreads it); save it with interleaved (contiguous) samples")
    low_bytes = _low_byte_decoder(pil)
    if low_bytes is not None:
        pil.load()
        codes = (np.asarray(pil).astype(np.uint16) << 8) | low_bytes(data)
        return (_with_colour_key(codes, pil.info.get("transparency")) if codes.shape[2] == 3 else codes), 16
    if pil.mode in ("I", "F"):
        raise ImageReadError(f"{name}: unsupported pixel format (Pillow mode {pil.mode})")
    pil.load()
    if pil.has_transparency_data:
        return np.asarray(pil if pil.mode == "RGBA" else pil.convert("RGBA")), 8  # convert() would copy
    rgb = pil if pil.mode == "RGB" else pil.convert("RGB")
    return np.frombuffer(rgb.tobytes("raw", "RGBX"), dtype="<u4").reshape(rgb.height, rgb.width), 8


def grey16_codes(pil: PILImage.Image) -> np.ndarray:
    """A 16-bit grey image's (Pillow mode ``I;16*``) codes as RGB (H, W, 3), or (H, W, 4) with an
    alpha of 0 or 65535 where the file names one grey level transparent (a PNG's tRNS); a TIFF whose
    white is zero is turned round (Pillow leaves its 16 bits as stored). A file and a PIL image
    are read alike through it."""
    pil.load()
    grey = np.asarray(pil).astype(np.uint16)
    if pil.format == "TIFF" and pil.tag_v2.get(_PHOTOMETRIC_TAG) == 0:
        grey = np.uint16(65535) - grey
    return _with_colour_key(np.repeat(grey[..., None], 3, axis=2), pil.info.get("transparency"))


def _webp_is_lossless(data: bytes) -> bool:
    """Whether a WebP's (first) image is coded losslessly: its bitstream chunk is 'VP8L', not
    'VP8 ' (RIFF chunks: a FourCC, a little-endian size, the payload padded to even; an
    animation's frames are 'ANMF' chunks holding a 16-byte header and then their own chunks)."""
    at, end = 12, len(data)
    while at + 8 <= end:
        kind, size = data[at:at + 4], struct.unpack_from("<I", data, at + 4)[0]
        if kind in (b"VP8L", b"VP8 "):
            return kind == b"VP8L"
        if kind == b"ANMF":
            at, end = at + 8 + 16, min(end, at + 8 + size)  # into the first frame
            continue
        at += 8 + size + (size & 1)
    return False


def _planar_deep_tiff(pil: PILImage.Image) -> bool:
    """A TIFF with separate planes (PlanarConfiguration 2) of more than 8 bits a sample, which
    Pillow decodes with 8-bit raw modes: wrong values, not truncated ones."""
    if pil.format != "TIFF" or pil.tag_v2.get(TiffImagePlugin.PLANAR_CONFIGURATION) != 2:
        return False
    bits = pil.tag_v2.get(TiffImagePlugin.BITSPERSAMPLE, 1)
    return max(bits if isinstance(bits, tuple) else (bits,)) > 8


def _with_colour_key(codes: np.ndarray, key: object) -> np.ndarray:
    """16-bit RGB ``codes`` with their alpha (H, W, 4) when the file names one colour transparent
    (a PNG's tRNS ``key``: a grey level or an (R, G, B) triple, which Pillow's 8-bit conversion
    would compare with the truncated samples); untouched without a key."""
    if key is None:
        return codes
    key = np.broadcast_to(np.asarray(key, np.uint16), (3,))
    alpha = np.where((codes == key).all(axis=2), 0, 65535).astype(np.uint16)
    return np.dstack((codes, alpha))


def _low_byte_decoder(pil: PILImage.Image) -> Callable[[bytes], np.ndarray] | None:
    """For a 16-bit colour PNG or TIFF that Pillow truncates, a decoder of the low bytes."""
    if pil.format not in _SIXTEEN_BIT_FORMATS or not pil.tile:
        return None
    rawmodes = {_tile_rawmode(tile) for tile in pil.tile}
    if len(rawmodes) != 1 or (rawmode := rawmodes.pop()) not in _LOW_BYTES:
        return None
    low_rawmode, channels = _LOW_BYTES[rawmode]

    def decode_low_bytes(data: bytes) -> np.ndarray:
        low = PILImage.open(io.BytesIO(data))
        low.tile = [_with_rawmode(tile, low_rawmode) for tile in low.tile]
        low.load()
        codes = np.asarray(low)
        return codes if channels is None else codes[..., channels]

    return decode_low_bytes


def _tile_rawmode(tile: ImageFile._Tile) -> str:
    """The raw mode of a PNG ("zip") or TIFF tile."""
    return tile.args if isinstance(tile.args, str) else tile.args[0]


def _with_rawmode(tile: ImageFile._Tile, rawmode: str) -> ImageFile._Tile:
    args = rawmode if isinstance(tile.args, str) else (rawmode, *tile.args[1:])
    return tile._replace(args=args)


def _source_dpi(pil: PILImage.Image) -> object:
    """The resolution the file gives (Pillow reports (1, 1) for a TIFF without one)."""
    if pil.format == "TIFF" and TiffImagePlugin.X_RESOLUTION not in pil.tag_v2:
        return None
    return pil.info.get("dpi")


def _tiff_compression(pil: PILImage.Image) -> str | None:
    compression = pil.info.get("compression") if pil.format == "TIFF" else None
    return compression if compression in _LOSSLESS_TIFF_COMPRESSIONS else None


def _png_colour_chunks(pil: PILImage.Image) -> tuple[tuple[bytes, bytes], ...]:
    """A PNG's gAMA, cHRM and sRGB chunks (type, body) as the file gave them (Pillow reads their
    integers as floats, /100 000, which give them back exactly)."""
    if pil.format != "PNG":
        return ()
    info, chunks = pil.info, []
    if isinstance(info.get("gamma"), (int, float)):
        chunks.append((b"gAMA", struct.pack(">I", round(info["gamma"] * 100_000))))
    if isinstance(info.get("chromaticity"), tuple) and len(info["chromaticity"]) == 8:
        chunks.append((b"cHRM", struct.pack(">8I", *(round(v * 100_000) for v in info["chromaticity"]))))
    if info.get("srgb") in (0, 1, 2, 3):
        chunks.append((b"sRGB", bytes([info["srgb"]])))
    return tuple(chunks)


def _jpeg_subsampling(pil: PILImage.Image) -> int | None:
    if pil.format not in ("JPEG", "MPO") or pil.mode != "RGB":
        return None
    sampling = JpegImagePlugin.get_sampling(pil)
    return sampling if sampling in (0, 1, 2) else None


def _alpha_codes(alpha: np.ndarray, bits: int) -> np.ndarray:
    """The alpha channel at ``bits`` bits per sample, untouched when it already is."""
    if alpha.dtype == (np.uint16 if bits == 16 else np.uint8):
        return alpha
    if bits == 16:
        return alpha.astype(np.uint16) * 257
    return np.rint(alpha / 257.0).astype(np.uint8)


def _is_rgb_profile(icc: bytes | None) -> bool:
    """Whether an ICC profile describes RGB data (its header's colour space field)."""
    return icc is not None and icc[16:20] == b"RGB "


@functools.lru_cache(maxsize=8)
def _shows_srgb(icc: bytes) -> bool:
    """Whether an RGB profile's codes are sRGB's colours, as a viewer takes an untagged image's
    (:mod:`colorot.srgb_grid`, as :func:`colorot.profiles.apart` judges); False where LittleCMS
    cannot read it."""
    from PIL import ImageCms

    try:
        rendered = rendered_in_srgb(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    except (OSError, ValueError, ImageCms.PyCMSError):
        return False
    return rendered is not None and not renderings_apart(rendered, GRID_CODES.tobytes())


def _pillow_image(pixels: np.ndarray, fmt: str) -> PILImage.Image:
    """uint8 pixels (H, W, C) as a Pillow image; codes that are views of RGBX words
    (:func:`codes_of_words`) are wrapped without a copy, and given as they are to the JPEG encoder."""
    words = words_of_codes(pixels)
    if words is None:
        return PILImage.fromarray(pixels)
    rgbx = PILImage.frombuffer("RGBX", (pixels.shape[1], pixels.shape[0]), words, "raw", "RGBX", 0, 1)
    return rgbx if fmt == "JPEG" else rgbx.convert("RGB")


def _write_png16(file: BinaryIO, pixels: np.ndarray, icc: bytes | None, exif: bytes | None, xmp: bytes | None,
                 dpi: tuple[float, float] | None, colour_chunks: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """A 16-bit RGB or RGBA PNG written to ``file``, with ``colour_chunks`` (gAMA, cHRM, sRGB: an sRGB
    chunk beside an ICC profile left out, as the PNG standard asks); every row uses the Sub filter.
    The rows are filtered and compressed a band at a time, each band's compressed piece written as it
    comes (one IDAT chunk each), so no more than a band is held."""
    height, width, channels = pixels.shape
    chunks = [
        (b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2 if channels == 3 else 6, 0, 0, 0))
    ]
    if icc:
        chunks.append((b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    chunks.extend((kind, body) for kind, body in colour_chunks if not (icc and kind == b"sRGB"))
    if exif:
        chunks.append((b"eXIf", exif.removeprefix(EXIF_HEADER)))
    if xmp:  # iTXt: keyword, NUL, uncompressed, no language tag or translated keyword
        chunks.append((b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp))
    if dpi:  # pixels per metre
        chunks.append((b"pHYs", struct.pack(">IIB", *(round(d / 0.0254) for d in dpi), 1)))
    file.write(b"\x89PNG\r\n\x1a\n")
    for kind, body in chunks:
        _write_png_chunk(file, kind, body)
    step = 2 * channels
    compressor = zlib.compressobj()
    for top in range(0, height, _ROWS_A_BAND):
        rows = pixels[top:top + _ROWS_A_BAND].astype(">u2").view(np.uint8).reshape(-1, width * step)
        filtered = rows.copy()
        filtered[:, step:] -= rows[:, :-step]
        _write_png_chunk(file, b"IDAT", compressor.compress(np.hstack((np.ones((len(rows), 1), np.uint8), filtered))))
    _write_png_chunk(file, b"IDAT", compressor.flush())
    _write_png_chunk(file, b"IEND", b"", empty=True)


def _write_png_chunk(file: BinaryIO, kind: bytes, body: bytes, *, empty: bool = False) -> None:
    """One PNG chunk (length, type, body, CRC-32 of type and body); an empty body is left out
    unless ``empty`` (a band zlib held back whole)."""
    if body or empty:
        file.write(struct.pack(">I", len(body)) + kind)
        file.write(body)
        file.write(struct.pack(">I", zlib.crc32(body, zlib.crc32(kind))))


def _write_tiff(file: BinaryIO, pixels: np.ndarray, icc: bytes | None, tags: dict | None, xmp: bytes | None,
                dpi: tuple[float, float] | None, *, deflate: bool = False) -> None:
    """An 8- or 16-bit RGB or RGBA TIFF (``pixels``' dtype; unassociated alpha), one strip,
    uncompressed or Adobe-deflated, written to ``file`` with ``tags`` (:func:`tiff_tags`, their
    sub-directories too, which libtiff's compressors cannot write): the samples straight from
    ``pixels`` (a copy only where they are not little-endian and contiguous), deflated a band of
    rows at a time."""
    height, width, channels = pixels.shape
    samples = np.ascontiguousarray(pixels, dtype="<u2" if pixels.dtype == np.uint16 else np.uint8)
    if deflate:
        compressor = zlib.compressobj(6)
        strip = [compressor.compress(samples[top:top + _ROWS_A_BAND]) for top in range(0, height, _ROWS_A_BAND)]
        strip.append(compressor.flush())
    else:
        strip = [samples.reshape(-1).view(np.uint8)]
    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    for tag, value in (tags or {}).items():
        ifd[tag] = value
    ifd[TiffImagePlugin.IMAGEWIDTH] = width
    ifd[TiffImagePlugin.IMAGELENGTH] = height
    ifd[TiffImagePlugin.BITSPERSAMPLE] = (8 * samples.itemsize,) * channels
    ifd[TiffImagePlugin.COMPRESSION] = 8 if deflate else 1  # 8: Adobe deflate
    ifd[TiffImagePlugin.PHOTOMETRIC_INTERPRETATION] = 2
    ifd[TiffImagePlugin.SAMPLESPERPIXEL] = channels
    ifd[TiffImagePlugin.ROWSPERSTRIP] = height
    ifd.tagtype[TiffImagePlugin.STRIPBYTECOUNTS] = TiffTags.LONG
    ifd[TiffImagePlugin.STRIPBYTECOUNTS] = sum(memoryview(piece).nbytes for piece in strip)
    ifd[TiffImagePlugin.STRIPOFFSETS] = 0  # made absolute by the IFD writer
    ifd[TiffImagePlugin.PLANAR_CONFIGURATION] = 1
    if channels == 4:
        ifd[TiffImagePlugin.EXTRASAMPLES] = 2
    if icc:
        ifd[TiffImagePlugin.ICCPROFILE] = icc
    if xmp:
        ifd.tagtype[_XMP_TIFF_TAG] = TiffTags.BYTE
        ifd[_XMP_TIFF_TAG] = xmp
    if dpi:
        ifd[TiffImagePlugin.X_RESOLUTION], ifd[TiffImagePlugin.Y_RESOLUTION] = dpi
        ifd[TiffImagePlugin.RESOLUTION_UNIT] = 2  # inches
    header = io.BytesIO()
    ifd.save(header)
    file.write(header.getvalue())
    for piece in strip:
        file.write(piece)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
