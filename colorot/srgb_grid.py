"""How colorot tells colour spaces apart: where a 5³ grid of RGB codes lands in sRGB through an
ICC profile (LittleCMS).  An untagged image is sRGB, as browsers and viewers show it, so its
rendering is the grid itself; two renderings more than :data:`SAME_SPACE_CODES` apart at some grid
code are two colour spaces (:func:`colorot.profiles.apart`, and a BMP output dropping a profile).
"""

from __future__ import annotations

import numpy as np

#: Largest difference, in 8-bit codes, between two profiles' sRGB renderings of the same codes
#: that still counts as one colour space (two sRGB profiles of different makers differ by ≤ 1).
SAME_SPACE_CODES = 3
_LEVELS = np.linspace(0, 255, 5).round().astype(np.uint8)
#: The grid, as a one-row image (1, 125, 3) of uint8 codes.
GRID_CODES = np.stack(np.meshgrid(_LEVELS, _LEVELS, _LEVELS, indexing="ij"), axis=-1).reshape(1, -1, 3)


def rendered_in_srgb(profile) -> bytes | None:
    """The grid's codes rendered in sRGB through ``profile`` (Pillow's ``ImageCmsProfile``), or None
    where LittleCMS cannot render them."""
    from PIL import Image as PILImage
    from PIL import ImageCms

    try:
        transform = ImageCms.buildTransform(profile, ImageCms.createProfile("sRGB"), "RGB", "RGB")
        rendered = ImageCms.applyTransform(PILImage.fromarray(GRID_CODES, "RGB"), transform)
    except (OSError, ImageCms.PyCMSError, ValueError):
        return None
    return np.asarray(rendered).tobytes()


def renderings_apart(a: bytes, b: bytes) -> bool:
    """Whether two renderings of the grid (:func:`rendered_in_srgb`) are two colour spaces."""
    difference = np.abs(np.frombuffer(a, np.uint8).astype(np.int16) - np.frombuffer(b, np.uint8).astype(np.int16))
    return int(difference.max()) > SAME_SPACE_CODES
