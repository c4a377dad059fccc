"""Colour profiles: whether two images' RGB code values stand for the same colours, and the
conversion of a target's pixels into a source's colour space.

colorot maps code values. An image whose ICC profile is not sRGB (Display P3 from a phone, Adobe
RGB from a camera) is shown through that profile, so its codes stand for other colours than an
sRGB image's. A fit between two such images would land on the target's codes, not on its colours;
so the target's pixels are first converted into the source's space (:func:`convert`: LittleCMS,
relative colorimetric, colours outside the source's gamut clipped to it), and the output, written
with the source's profile, shows the target's colours (:func:`in_source_space`, which warns and
leaves the codes where LittleCMS cannot convert). A profile that cannot be read, or is not an RGB
one, says nothing of its space: its image's codes are taken as they are. LittleCMS here converts
8-bit codes; a 16-bit image is converted in floating point through its profile's matrix and tone
curves (:func:`convert_deep`, :mod:`colorot.icc_matrix`), which needs matrix/TRC profiles.

A colour space is told by where a 5³ grid of codes lands in sRGB through the image's profile
(an untagged image is sRGB, as browsers and viewers show it); two spaces differ when some grid
code lands more than :data:`colorot.srgb_grid.SAME_SPACE_CODES` apart.
"""

from __future__ import annotations

import base64
import io
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from colorot.errors import ImageMetadataWarning
from colorot.icc_matrix import MatrixProfile, convert_floats, matrix_profile
from colorot.imageio import quantize, read_icc_profile
from colorot.srgb_grid import GRID_CODES, rendered_in_srgb, renderings_apart

if TYPE_CHECKING:
    import torch

#: Pixels per row of the image a conversion passes to LittleCMS.
_ROW = 4096
#: Largest ICC profile a checkpoint keeps: its base64 text (4 characters for 3 bytes) is the longest
#: text a checkpoint's record holds (``checkpoint.MAX_RECORD_TEXT``, 2²⁰ characters).  Image profiles
#: take a few KiB, a camera's or scanner's lookup tables a few hundred.
MAX_RECORDED_PROFILE = 3 << 18


@dataclass(frozen=True)
class ColourSpace:
    """An image's colour space: ``name`` (the profile's description, or "sRGB (untagged)"),
    ``srgb_codes``, the grid's codes rendered in sRGB (bytes), or None when the profile cannot
    be read or is not an RGB profile (nothing can be said), and ``icc``, the profile itself."""

    name: str
    srgb_codes: bytes | None
    icc: bytes | None = field(default=None, repr=False)  # the profile (None: untagged, sRGB)
    #: a checkpoint's space only: the size of a profile too large to keep (:data:`MAX_RECORDED_PROFILE`)
    icc_left_out: int = field(default=0, compare=False)


UNTAGGED = ColourSpace("sRGB (untagged)", GRID_CODES.tobytes())


def colour_space(icc: bytes | None) -> ColourSpace:
    """The colour space of an image with the ICC profile ``icc`` (None: untagged, sRGB; a readable
    profile that is not an RGB one, such as a greyscale image's, describes none of the RGB its
    pixels are read as, which are then sRGB codes: untagged too)."""
    return UNTAGGED if not icc else _profile_space(bytes(icc))


def convert(pixels: np.ndarray, source: ColourSpace, target: ColourSpace) -> np.ndarray:
    """``pixels`` (N, 3), floats in [0, 1] in the space ``source``, as the codes of the same colours
    in ``target`` (float32 in [0, 1]): through both profiles at 8 bits, relative colorimetric, colours
    outside ``target``'s gamut clipped to it (:func:`convert_codes`, on rows of :data:`_ROW` pixels).
    Both spaces must be readable RGB ones."""
    codes = quantize(np.asarray(pixels).reshape(-1, 3), 8)
    if not len(codes):
        return codes.astype(np.float32)
    rows = -(-len(codes) // _ROW)
    padded = np.zeros((rows * _ROW, 3), np.uint8)
    padded[:len(codes)] = codes
    converted = convert_codes(padded.reshape(rows, _ROW, 3), source, target)
    return converted.reshape(-1, 3)[:len(codes)].astype(np.float32) / np.float32(255)


@lru_cache(maxsize=8)
def _transform(source_icc: bytes | None, target_icc: bytes | None):
    from PIL import ImageCms

    def profile(icc: bytes | None):
        return ImageCms.createProfile("sRGB") if icc is None else ImageCms.ImageCmsProfile(io.BytesIO(icc))

    return ImageCms.buildTransform(profile(source_icc), profile(target_icc), "RGB", "RGB",
                                   renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)


@lru_cache(maxsize=16)
def _profile_space(icc: bytes) -> ColourSpace:
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        name = ImageCms.getProfileDescription(profile).strip() or "an ICC profile"
    except (OSError, ImageCms.PyCMSError, ValueError):
        return ColourSpace("an unreadable ICC profile", None)
    if icc[16:20] != b"RGB ":
        return UNTAGGED
    rendered = rendered_in_srgb(profile)
    return ColourSpace(name, None) if rendered is None else ColourSpace(name, rendered, icc)


def space_record(space: ColourSpace | None) -> dict:
    """What a checkpoint keeps of the colour space a map was fitted in (``train``'s ``colour_space``,
    ``colour_space_codes``, the grid's sRGB codes in hex, and ``colour_space_icc``, the profile in
    base64 when the space has one of at most :data:`MAX_RECORDED_PROFILE` bytes, else its size as
    ``colour_space_icc_bytes``); nothing for an unknown one."""
    if space is None or space.srgb_codes is None:
        return {}
    record = {"colour_space": space.name, "colour_space_codes": space.srgb_codes.hex()}
    if space.icc is not None and len(space.icc) <= MAX_RECORDED_PROFILE:
        record["colour_space_icc"] = base64.b64encode(space.icc).decode("ascii")
    elif space.icc is not None:
        record["colour_space_icc_bytes"] = len(space.icc)
    return record


def recorded_space(train: dict) -> ColourSpace | None:
    """The colour space a checkpoint's ``train`` record names (:func:`space_record`), or None (none,
    or a record whose codes are not the grid's); its ``icc`` is None where the record keeps no
    profile (untagged, fitted by an earlier colorot, or a profile too large to keep)."""
    name, codes, icc = train.get("colour_space"), train.get("colour_space_codes"), train.get("colour_space_icc")
    if not (isinstance(name, str) and isinstance(codes, str)):
        return None
    left_out = train.get("colour_space_icc_bytes")
    try:
        grid = bytes.fromhex(codes)
        if len(grid) != GRID_CODES.size:  # a damaged or crafted record: no space named
            return None
        return ColourSpace(name, grid, base64.b64decode(icc, validate=True) if isinstance(icc, str) else None,
                           left_out if isinstance(left_out, int) and not isinstance(left_out, bool) else 0)
    except ValueError:  # binascii.Error is one
        return None


def warn_not_in(image_name: str, space: ColourSpace, map_space: ColourSpace, why_not_converted: str = "") -> None:
    """The :class:`ImageMetadataWarning` for an image to be mapped in ``space``, :func:`apart` from
    ``map_space``, the one its map was fitted in: its codes stand for other colours
    (``why_not_converted``: why ``--convert-space`` could not take it there, when it was asked to)."""
    advice = (f"it is mapped as it is ({why_not_converted})" if why_not_converted else
              "pass --convert-space (convert_space=True) to take it into that space and back, convert it "
              "first, or fit a map on an image in its own")
    warnings.warn(not_in_message(image_name, space, map_space, advice), ImageMetadataWarning,
                  stacklevel=4)  # the caller of apply_to_file (through map_in_space)


def not_in_message(image_name: str, space: ColourSpace, map_space: ColourSpace, advice: str) -> str:
    """What :func:`warn_not_in` says (``advice``: what to do)."""
    return (f"{image_name} ({space.name}) is not in the colour space the map was fitted in "
            f"({map_space.name}): its codes stand for other colours; {advice}")


def conversion_refusal(image_space: ColourSpace, bit_depth: int, map_space: ColourSpace) -> str | None:
    """Why an image (in ``image_space``, of ``bit_depth`` bits) cannot be taken into the map's
    space and back (8 bits: :func:`convert_codes`; 16 bits: :func:`convert_deep`), or None when it can."""
    if map_space.icc is None and map_space.name != UNTAGGED.name:
        why = (f"{map_space.icc_left_out} bytes, over the {MAX_RECORDED_PROFILE} a checkpoint keeps"
               if map_space.icc_left_out > 0 else "fitted by an earlier colorot")
        return f"the checkpoint does not hold the profile of its colour space ({why})"
    if bit_depth != 8:
        if _matrix_form(image_space.icc) is None or _matrix_form(map_space.icc) is None:
            return ("16-bit images are converted between matrix/TRC profiles (sRGB, Adobe RGB, Display P3, "
                    "ProPhoto, …) only, and a profile here has lookup tables")
        return None
    from PIL import ImageCms

    try:  # both ways, built once per pair of profiles (cached)
        _transform(image_space.icc, map_space.icc), _transform(map_space.icc, image_space.icc)
    except (OSError, ValueError, ImageCms.PyCMSError) as exc:
        return f"LittleCMS cannot convert between the two profiles: {exc}"
    return None


def convert_codes(codes: np.ndarray, source: ColourSpace, target: ColourSpace) -> np.ndarray:
    """8-bit codes (H, W, 3) in ``source`` as the codes of the same colours in ``target`` (uint8,
    relative colorimetric, clipped to ``target``'s gamut)."""
    from PIL import Image as PILImage
    from PIL import ImageCms

    image = PILImage.fromarray(np.ascontiguousarray(codes, dtype=np.uint8), "RGB")
    return np.asarray(ImageCms.applyTransform(image, _transform(source.icc, target.icc)), np.uint8)


def convert_deep(pixels: np.ndarray, source: ColourSpace, target: ColourSpace) -> np.ndarray:
    """``pixels`` (…, 3), floats in the space ``source`` (clipped to [0, 1] first, NaN as 0), as the
    codes of the same colours in ``target`` (float32 in [0, 1]), in floating point through both
    profiles' matrices and tone curves (:mod:`colorot.icc_matrix`; relative colorimetric, colours
    outside ``target``'s gamut clipped), for 16-bit images, which LittleCMS here cannot convert.
    Both profiles must be matrix/TRC ones (:func:`conversion_refusal` says so)."""
    return convert_floats(pixels, _matrix_form(source.icc), _matrix_form(target.icc))


def for_srgb_codes(fitted_map: Callable[[torch.Tensor], torch.Tensor], space: ColourSpace
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fitted_map``, a map of codes in ``space``, as a map of sRGB codes (rows (N, 3) in [0, 1]):
    each colour is taken into ``space``, mapped, and taken back (:func:`convert_deep`, in floating point;
    both ways relative colorimetric, clipped to the gamut of the space it goes into): what
    ``export-lut --convert-space`` bakes.  ``space`` needs a matrix/TRC profile (:func:`conversion_refusal`)."""
    import torch

    def mapped(colours: torch.Tensor) -> torch.Tensor:
        inside = torch.from_numpy(convert_deep(colours.numpy(), UNTAGGED, space))
        return torch.from_numpy(convert_deep(fitted_map(inside).to("cpu", torch.float32).numpy(), space, UNTAGGED))

    return mapped


@lru_cache(maxsize=16)
def _matrix_form(icc: bytes | None) -> MatrixProfile | None:
    """The matrix/TRC form of a profile (None: untagged, LittleCMS's own sRGB profile, as
    :func:`convert_codes` takes it), or None when it has lookup tables or cannot be read."""
    if icc is None:
        from PIL import ImageCms

        icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return matrix_profile(icc)


def image_colour_space(image: object) -> ColourSpace | None:
    """The colour space of an image given as a path (its header only is read) or a PIL image;
    None for anything else (arrays carry no profile) or a missing file."""
    from PIL import Image as PILImage

    if isinstance(image, (str, os.PathLike)):
        icc = read_icc_profile(image)
        return colour_space(icc) if icc is not None or Path(image).is_file() else None
    if isinstance(image, PILImage.Image):
        return colour_space(image.info.get("icc_profile"))
    return None


def apart(a: ColourSpace | None, b: ColourSpace | None) -> bool:
    """Whether ``a`` and ``b`` are known to be different colour spaces."""
    if a is None or b is None or a.srgb_codes is None or b.srgb_codes is None:
        return False
    return renderings_apart(a.srgb_codes, b.srgb_codes)


def in_source_space(pixels: np.ndarray, target: str, target_space: ColourSpace | None, source: str,
                    source_space: ColourSpace | None) -> np.ndarray:
    """The target's ``pixels`` as codes of the source's colour space when the two are apart
    (:func:`convert`), else as they are. ``target`` and ``source`` name the images in the
    :class:`ImageMetadataWarning` given when LittleCMS cannot convert between their profiles
    (the result then takes the target's codes, not its colours)."""
    if not apart(source_space, target_space):
        return pixels
    from PIL import ImageCms

    try:
        return convert(pixels, target_space, source_space)
    except (OSError, ValueError, ImageCms.PyCMSError) as exc:
        warnings.warn(f"{source} ({source_space.name}) and {target} ({target_space.name}) are in different colour "
                      f"spaces and cannot be converted ({exc}): colorot matches their code values, not their "
                      "colours; convert both to one profile first", ImageMetadataWarning, stacklevel=3)
        return pixels
