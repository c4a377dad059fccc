"""Hand-built ICC v2 RGB profiles (matrix and gamma curves), for images tagged with a colour space,
and how a viewer shows an image's codes.

Pillow can build only an sRGB profile, and no wide-gamut profile ships with it; these are
written byte by byte after the ICC.1:2001-04 layout (header, tag table, desc/wtpt/cprt tags,
rXYZ/gXYZ/bXYZ colorants and r/g/bTRC curves), which LittleCMS reads.
"""

from __future__ import annotations

import struct

import numpy as np
from PIL import Image as PILImage
from PIL import ImageCms

from colorot.profiles import _transform

#: Colorants adapted to D50 (the PCS white) and the gamma of each space.
SPACES = {
    "Adobe RGB (1998)": (((0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446)), 563 / 256),
    "sRGB primaries, gamma 2.2": (((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)), 2.2),
}
D50 = (0.9642, 1.0, 0.8249)


def _s15f16(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(xyz: tuple[float, float, float]) -> bytes:
    return b"XYZ " + bytes(4) + b"".join(_s15f16(v) for v in xyz)


def _curve(gamma: float) -> bytes:
    return b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)


def table_curve(values: np.ndarray) -> bytes:
    """A 'curv' tone curve of equally spaced entries (values in [0, 1])."""
    entries = np.rint(np.asarray(values) * 65535).astype(int)
    return b"curv" + bytes(4) + struct.pack(f">I{len(entries)}H", len(entries), *entries)


def parametric_curve(kind: int, parameters: tuple[float, ...]) -> bytes:
    """A 'para' tone curve of function type ``kind`` (0–4) with its parameters (g, a, b, c, d, e, f)."""
    return b"para" + bytes(4) + struct.pack(">HH", kind, 0) + b"".join(_s15f16(v) for v in parameters)


def lut_tag(space: str = "Adobe RGB (1998)", gamma: float | None = None) -> bytes:
    """An 'mft2' (lut16Type) A2B0 tag: a 2-point grid taking RGB corners to XYZ by ``space``'s colorants
    (linear in between), identity output tables, and as input tables identity or, with ``gamma``, the
    curve x^gamma (256 entries); enough for LittleCMS to read the profile by it."""
    colorants = np.array(SPACES[space][0]).T  # columns: rXYZ, gXYZ, bXYZ
    grid = [colorants @ np.array(corner, float) for corner in np.ndindex(2, 2, 2)]
    encode = [min(65535, round(v * 32768)) for xyz in grid for v in xyz]  # XYZ as u1Fixed15
    identity = [0, 65535]
    entries = identity if gamma is None else list(np.rint(np.linspace(0, 1, 256) ** gamma * 65535).astype(int))
    return (b"mft2" + bytes(4) + struct.pack(">BBBB", 3, 3, 2, 0) + b"".join(_s15f16(v) for v in np.eye(3).ravel())
            + struct.pack(">HH", len(entries), 2) + struct.pack(f">{3 * len(entries)}H", *entries * 3)
            + struct.pack(f">{len(encode)}H", *encode) + struct.pack(">6H", *identity * 3))


def _desc(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    return (b"desc" + bytes(4) + struct.pack(">I", len(ascii_text)) + ascii_text
            + struct.pack(">II", 0, 0) + struct.pack(">HB", 0, 0) + bytes(67))


def _mluc(text: str) -> bytes:
    """A v4 multi-localised description: any Unicode text, as localised profiles name themselves."""
    encoded = text.encode("utf-16-be")
    return b"mluc" + bytes(4) + struct.pack(">II", 1, 12) + b"enUS" + struct.pack(">II", len(encoded), 28) + encoded


def rgb_profile(name: str, curve: bytes | None = None, extra: tuple[tuple[bytes, bytes], ...] = (),
                description: str | None = None) -> bytes:
    """The ICC profile of the space ``name`` (a key of :data:`SPACES`); ``curve``: the tone curve tag of
    all three channels (default: the space's gamma); ``extra``: more (signature, tag) pairs;
    ``description``: the name it gives itself, any Unicode (default: ``name``, ASCII)."""
    colorants, gamma = SPACES[name]
    curve = curve or _curve(gamma)
    tags = [(b"desc", _desc(name) if description is None else _mluc(description)), (b"cprt", b"text" + bytes(4) + b"No copyright\0"), (b"wtpt", _xyz(D50)),
            (b"rXYZ", _xyz(colorants[0])), (b"gXYZ", _xyz(colorants[1])), (b"bXYZ", _xyz(colorants[2])),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve), *extra]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + bytes(4) + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + bytes(4 * 4) + bytes(8) + bytes(4)
              + b"".join(_s15f16(v) for v in D50) + bytes(4) + bytes(44))
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def shown_in_srgb(codes: np.ndarray, icc: bytes | None) -> np.ndarray:
    """Codes (H, W, 3) of the profile ``icc`` (None: untagged) as the sRGB pixels (N, 3) in [0, 1] a
    viewer shows."""
    image = PILImage.fromarray(np.asarray(codes, np.uint8), "RGB")
    if icc is not None:
        image = ImageCms.applyTransform(image, _transform(icc, None))
    return np.asarray(image, np.float32).reshape(-1, 3) / 255

