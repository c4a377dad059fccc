"""The EXIF, XMP and resolution an output carries from its input, once the pixels are upright.

Reading turns a picture upright by its EXIF orientation (:mod:`colorot.imageio`), so its metadata
must say so: the orientation reset to 1 (in the EXIF and in XMP's copy), and after a quarter turn
the width and height traded (EXIF's PixelXDimension/PixelYDimension, XMP's names for them, the
resolution).  The EXIF block is patched where it lies, so that a camera's maker note keeps its
offsets; the thumbnail (the picture before the map) is dropped.  A TIFF's own tags are not EXIF:
its descriptive ones are carried as an EXIF block, and a TIFF output takes an EXIF block's tags less
those a TIFF writes of its own.
"""

from __future__ import annotations

import re
import struct

from PIL import Image as PILImage
from PIL import TiffTags

from colorot.caught_warnings import pillow_warnings_recorded

#: EXIF's Orientation tag (IFD0): 1 upright, 2–8 mirrored and/or turned.
ORIENTATION_TAG = 0x0112
#: What precedes the TIFF-structured EXIF data in a JPEG's APP1 marker (and in Pillow's ``info["exif"]``).
EXIF_HEADER = b"Exif\x00\x00"
_DESCRIPTION_TAG = 270
#: How tifffile and ImageJ begin the ImageDescription they write: the input's array layout (its
#: shape, pages), which would misdescribe the output, so it is not carried.
_LAYOUT_DESCRIPTIONS = ('{"shape":', "ImageJ=")
#: A TIFF's own descriptive tags, carried as EXIF (its structural tags describe the input's own
#: layout and are not): ImageDescription, Make, Model, Software, DateTime, Artist, HostComputer,
#: Copyright; and its Exif and GPS sub-directories.
_TIFF_DESCRIPTIVE_TAGS = (270, 271, 272, 305, 306, 315, 316, 33432)
_EXIF_IFD_TAG, _INTEROP_IFD_TAG = 0x8769, 0xA005
_EXIF_SUB_IFDS = (_EXIF_IFD_TAG, 0x8825)
#: The tags a TIFF writes of its own, left out of the EXIF it carries: the layout of its pixels
#: (size, samples, compression, strips and tiles, sub-files, predictor, sample format, the old JPEG
#: and YCbCr tags), their colour response, orientation (the pixels are upright), resolution (written
#: from ``dpi``), and the ICC profile and XMP (written from the image's own).
TIFF_OWN_TAGS = frozenset({
    254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 274, 277, 278, 279, 280, 281, 282, 283,
    284, 290, 291, 292, 293, 296, 301, 317, 318, 319, 320, 321, 322, 323, 324, 325, 330, 332, 338, 339,
    340, 341, 347, 512, 513, 514, 515, 517, 518, 519, 520, 521, 529, 530, 531, 532, 700, 34675,
})
#: XMP's copy of the orientation, as an attribute or an element.
_XMP_ORIENTATION = re.compile(rb"(tiff:Orientation\s*=\s*[\"']|<tiff:Orientation>\s*)[1-8]")
#: XMP's names for the picture's width and height (EXIF's copies, and TIFF's that Photoshop writes),
#: each paired with the other: a quarter turn swaps the names, so each value keeps its own number.
_XMP_SIZE_NAMES = {b"exif:PixelXDimension": b"exif:PixelYDimension", b"exif:PixelYDimension": b"exif:PixelXDimension",
                   b"tiff:ImageWidth": b"tiff:ImageLength", b"tiff:ImageLength": b"tiff:ImageWidth"}
_XMP_SIZE = re.compile(rb"(?<![\w:.-])(" + b"|".join(map(re.escape, _XMP_SIZE_NAMES)) + rb")(?![\w.-])")
#: The orientations that turn the picture by a quarter: its width and height trade places.
QUARTER_TURNS = (5, 6, 7, 8)
#: The Exif directory's PixelXDimension and PixelYDimension: the picture's width and height.
_PIXEL_DIMENSION_TAGS = (0xA002, 0xA003)
#: IFD1's tags that give its thumbnail's bytes: a JPEG's offset and length, or one strip's.
_THUMBNAIL_TAGS = ((0x0201, 0x0202), (0x0111, 0x0117))
#: The orientations that move the pixels (1 is upright; EXIF defines 1 to 8).
_APPLIED_ORIENTATIONS = frozenset(range(2, 9))


def upright_exif(pil: PILImage.Image, orientation: object) -> bytes | None:
    """The source's EXIF block, with the orientation reset to 1 if it was applied, or was no
    orientation at all (0, 9 and the like, which no viewer can apply either), and without its
    thumbnail (:func:`_patched_exif`).  A block laid out otherwise than EXIF says is rebuilt by
    Pillow where the orientation must change (which moves a maker note's data), else kept as it is."""
    raw = pil.info.get("exif")
    if not raw:
        return None
    turned = orientation in QUARTER_TURNS
    patched = _patched_exif(raw, reset_orientation=orientation != 1, swap_dimensions=turned)
    if patched is not None:
        return patched
    if orientation != 1:
        exif = pil.getexif()
        exif[ORIENTATION_TAG] = 1
        if turned and _EXIF_IFD_TAG in exif:
            _swap_pixel_dimensions(exif.get_ifd(_EXIF_IFD_TAG))  # the dict Pillow writes back
        return exif.tobytes()
    return raw if raw.startswith(EXIF_HEADER) else EXIF_HEADER + raw


def _swap_pixel_dimensions(directory: dict) -> None:
    """Trade the Exif directory's width and height (a dict of its tags), where it holds both."""
    x_tag, y_tag = _PIXEL_DIMENSION_TAGS
    if x_tag in directory and y_tag in directory:
        directory[x_tag], directory[y_tag] = directory[y_tag], directory[x_tag]


def _patched_exif(raw: bytes, *, reset_orientation: bool, swap_dimensions: bool = False) -> bytes | None:
    """The EXIF block ``raw`` (a TIFF header, after ``Exif\\0\\0`` or not) patched where it lies,
    so that every offset in it stays valid (a maker note's too, which cameras count from the TIFF
    header): IFD0's Orientation set to 1 if ``reset_orientation``, the Exif directory's width and
    height traded if ``swap_dimensions`` (:func:`_swapped_in_place`), and IFD0's link to IFD1 cut (IFD1
    holds the thumbnail, which shows the picture before the map), the thumbnail's bytes zeroed, or
    cut off where they end the block.  None where the block is not laid
    out as EXIF says (no TIFF header, IFD0 out of the block, an Orientation that is not one SHORT,
    or none to reset)."""
    block = bytearray(raw.removeprefix(EXIF_HEADER))
    if len(block) < 8 or block[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    order = "<" if block[:2] == b"II" else ">"
    (ifd0,) = struct.unpack_from(order + "I", block, 4)
    if ifd0 + 2 > len(block):
        return None
    (count,) = struct.unpack_from(order + "H", block, ifd0)
    link = ifd0 + 2 + 12 * count  # the offset of the next IFD
    if link + 4 > len(block):
        return None
    reset = False
    for entry in range(ifd0 + 2, link, 12):
        tag, kind, values = struct.unpack_from(order + "HHI", block, entry)
        if tag == ORIENTATION_TAG and reset_orientation:
            if kind != 3 or values != 1:  # 3: SHORT
                return None
            struct.pack_into(order + "H", block, entry + 8, 1)
            reset = True
        elif tag == _EXIF_IFD_TAG and swap_dimensions and kind in (4, 13) and values == 1:  # LONG, IFD
            _swapped_in_place(block, order, struct.unpack_from(order + "I", block, entry + 8)[0])
    if reset_orientation and not reset:
        return None
    (ifd1,) = struct.unpack_from(order + "I", block, link)
    struct.pack_into(order + "I", block, link, 0)
    start, end = _thumbnail_bytes(block, order, ifd1)
    block[start:end] = bytes(end - start)  # unlinked, and its picture gone too
    if end == len(block):  # where it ends the block, as cameras lay it out: cut
        del block[start:]
    return EXIF_HEADER + bytes(block)


def _swapped_in_place(block: bytearray, order: str, directory: int) -> None:
    """Trade the width and height (:data:`_PIXEL_DIMENSION_TAGS`, each one SHORT or LONG) of the
    Exif directory at ``directory`` in ``block``, each written back as one LONG in its own entry;
    nothing where the directory lies outside the block or lacks either."""
    if directory + 2 > len(block):
        return
    (count,) = struct.unpack_from(order + "H", block, directory)
    entries, values = {}, {}
    for entry in range(directory + 2, min(directory + 2 + 12 * count, len(block) - 11), 12):
        tag, kind, number = struct.unpack_from(order + "HHI", block, entry)
        if tag in _PIXEL_DIMENSION_TAGS and kind in (3, 4) and number == 1:  # SHORT, LONG
            entries[tag] = entry
            values[tag] = struct.unpack_from(order + ("H" if kind == 3 else "I"), block, entry + 8)[0]
    if len(entries) == 2:
        x_tag, y_tag = _PIXEL_DIMENSION_TAGS
        for tag, value in ((x_tag, values[y_tag]), (y_tag, values[x_tag])):
            struct.pack_into(order + "HII", block, entries[tag] + 2, 4, 1, value)


def _thumbnail_bytes(block: bytearray, order: str, ifd1: int) -> tuple[int, int]:
    """Where in the EXIF ``block`` the thumbnail of the IFD1 at ``ifd1`` lies (start, end); (0, 0)
    where there is none, or it lies outside the block."""
    if not 8 <= ifd1 <= len(block) - 2:
        return 0, 0
    (count,) = struct.unpack_from(order + "H", block, ifd1)
    values = {}
    for entry in range(ifd1 + 2, min(ifd1 + 2 + 12 * count, len(block) - 11), 12):
        tag, kind, number = struct.unpack_from(order + "HHI", block, entry)
        if number == 1 and kind in (3, 4):  # one SHORT or LONG
            values[tag] = struct.unpack_from(order + ("H" if kind == 3 else "I"), block, entry + 8)[0]
    for offset_tag, length_tag in _THUMBNAIL_TAGS:
        start, length = values.get(offset_tag, 0), values.get(length_tag, 0)
        if 8 <= start and length and start + length <= len(block):
            return start, start + length
    return 0, 0


def _sub_directory(tags: PILImage.Exif, tag: int) -> dict:
    """The sub-directory ``tag`` (:data:`TiffTags.TAGS_V2_GROUPS`) of ``tags`` as a dict for Pillow
    to write, the Exif directory's Interop directory nested in it as one too (left as the offset it
    had, Pillow would write that stale offset into the new block), or left out where it is empty."""
    directory = dict(tags.get_ifd(tag))
    if tag == _EXIF_IFD_TAG and _INTEROP_IFD_TAG in directory:
        interop = dict(tags.get_ifd(_INTEROP_IFD_TAG))
        if interop:
            directory[_INTEROP_IFD_TAG] = interop
        else:
            del directory[_INTEROP_IFD_TAG]
    return directory


def tiff_exif(pil: PILImage.Image, turned: bool) -> bytes | None:
    """A TIFF's descriptive tags and Exif/GPS sub-directories as an EXIF block (None without any).
    Pillow has already turned the pixels upright and dropped the orientation tag; ``turned``: by a
    quarter, so the Exif directory's width and height trade places."""
    tags, exif = pil.getexif(), PILImage.Exif()
    for tag in _TIFF_DESCRIPTIVE_TAGS:
        if tag in tags and not (tag == _DESCRIPTION_TAG and str(tags[tag]).startswith(_LAYOUT_DESCRIPTIONS)):
            exif[tag] = tags[tag]
    for tag in _EXIF_SUB_IFDS:
        if directory := _sub_directory(tags, tag):
            if tag == _EXIF_IFD_TAG and turned:
                _swap_pixel_dimensions(directory)
            exif[tag] = directory
    return exif.tobytes() if len(exif) else None


def _loaded_exif(block: bytes) -> PILImage.Exif:
    """An EXIF block's tags."""
    tags = PILImage.Exif()
    tags.load(block)
    return tags


def tiff_tags(block: bytes) -> dict | None:
    """What a TIFF output takes of an EXIF block, as tags for Pillow's TIFF writer (``tiffinfo``):
    every tag but :data:`TIFF_OWN_TAGS` (the layout a phone or editor puts in a JPEG's EXIF would be
    taken for the TIFF's own: an unreadable or sheared file), its sub-directories as dicts
    (:func:`_sub_directory`); None without any, or where the block cannot be parsed (its read warned
    of damaged metadata)."""
    try:
        with pillow_warnings_recorded([]):
            tags = _loaded_exif(block)
            kept = {tag: _sub_directory(tags, tag) if tag in TiffTags.TAGS_V2_GROUPS else value
                    for tag, value in tags.items() if tag not in TIFF_OWN_TAGS}
            return kept or None
    except Exception:  # noqa: BLE001 (Pillow's EXIF parser raises many types on a damaged block)
        return None


def upright_xmp(xmp: object, orientation: object) -> bytes | None:
    """The source's XMP packet, with its copy of the orientation reset to 1 if it was applied, and
    the names of its width and height swapped where that turned the picture by a quarter
    (:data:`_XMP_SIZE_NAMES`: opening and closing tags and attributes alike)."""
    if not xmp:
        return None
    xmp = xmp if isinstance(xmp, bytes) else str(xmp).encode()
    if orientation not in _APPLIED_ORIENTATIONS:
        return xmp
    xmp = _XMP_ORIENTATION.sub(rb"\g<1>1", xmp)
    if orientation in QUARTER_TURNS:  # width and height trade places, as in the EXIF
        xmp = _XMP_SIZE.sub(lambda match: _XMP_SIZE_NAMES[match.group(1)], xmp)
    return xmp


def upright_dpi(dpi: object, orientation: object) -> tuple[float, float] | None:
    """The source's horizontal and vertical resolution, swapped where the pixels were turned by 90°."""
    if not (isinstance(dpi, tuple) and len(dpi) == 2 and all(float(d) > 0 for d in dpi)):
        return None
    x, y = (float(d) for d in dpi)
    return (y, x) if orientation in QUARTER_TURNS else (x, y)
