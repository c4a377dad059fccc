"""Colour profiles: whether two images' RGB code values stand for the same colours.

colorot matches code values. An image whose ICC profile is not sRGB (Display P3 from a phone,
Adobe RGB from a camera) is shown through that profile, so its codes stand for other colours than
an sRGB image's. A match between two such images lands on the reference's codes, not on its colours.
This module tells when that happens, so that it can be said (:func:`warn_if_apart`).

A colour space is told by where a 5³ grid of codes lands in sRGB through the image's profile
(an untagged image is sRGB, as browsers and viewers show it); two spaces differ when some grid
code lands more than :data:`SAME_SPACE_CODES` apart.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from colorot.errors import ImageMetadataWarning
from colorot.imageio import read_icc_profile

#: Largest difference, in 8-bit codes, between two profiles' sRGB renderings of the same codes
#: that still counts as one colour space (two sRGB profiles of different makers differ by ≤ 1).
SAME_SPACE_CODES = 3
_GRID = np.linspace(0, 255, 5).round().astype(np.uint8)
_GRID_CODES = np.stack(np.meshgrid(_GRID, _GRID, _GRID, indexing="ij"), axis=-1).reshape(1, -1, 3)


@dataclass(frozen=True)
class ColourSpace:
    """An image's colour space: ``name`` (the profile's description, or "sRGB (untagged)") and
    ``srgb_codes``, the grid's codes rendered in sRGB (bytes), or None when the profile cannot
    be read or is not an RGB profile (nothing can be said)."""

    name: str
    srgb_codes: bytes | None


UNTAGGED = ColourSpace("sRGB (untagged)", _GRID_CODES.tobytes())


def colour_space(icc: bytes | None) -> ColourSpace:
    """The colour space of an image with the ICC profile ``icc`` (None: untagged, sRGB)."""
    return UNTAGGED if not icc else _profile_space(bytes(icc))


@lru_cache(maxsize=16)
def _profile_space(icc: bytes) -> ColourSpace:
    from PIL import Image as PILImage
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        name = ImageCms.getProfileDescription(profile).strip() or "an ICC profile"
    except (OSError, ImageCms.PyCMSError, ValueError):
        return ColourSpace("an unreadable ICC profile", None)
    if icc[16:20] != b"RGB ":
        return ColourSpace(name, None)
    try:
        transform = ImageCms.buildTransform(profile, ImageCms.createProfile("sRGB"), "RGB", "RGB")
        rendered = ImageCms.applyTransform(PILImage.fromarray(_GRID_CODES, "RGB"), transform)
    except (OSError, ImageCms.PyCMSError, ValueError):
        return ColourSpace(name, None)
    return ColourSpace(name, np.asarray(rendered).tobytes())


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
    difference = np.abs(np.frombuffer(a.srgb_codes, np.uint8).astype(np.int16)
                        - np.frombuffer(b.srgb_codes, np.uint8).astype(np.int16))
    return int(difference.max()) > SAME_SPACE_CODES


def warn_if_apart(source: str, source_space: ColourSpace | None, target: str,
                  target_space: ColourSpace | None) -> None:
    """An :class:`ImageMetadataWarning` when ``source`` and ``target`` (names) are in different
    colour spaces: the result then takes the target's codes, not its colours."""
    if apart(source_space, target_space):
        warnings.warn(f"{source} ({source_space.name}) and {target} ({target_space.name}) are in different colour "
                      "spaces: colorot matches code values, not colours, so convert both to one profile first for a "
                      "faithful match", ImageMetadataWarning, stacklevel=3)
