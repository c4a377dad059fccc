"""ICC matrix/TRC RGB profiles evaluated in numpy: colour conversions at any bit depth.

Pillow's LittleCMS converts 8-bit RGB codes only. The RGB profiles that cameras, phones and
editors embed (sRGB, Adobe RGB, Display P3, ProPhoto) are mostly of the *matrix/TRC* kind:
a code c ∈ [0, 1]³ stands for the colour XYZ = M·(f_r(c_r), f_g(c_g), f_b(c_b)) in the profile
connection space (CIE XYZ, D50), M's columns the colorants rXYZ, gXYZ, bXYZ and f the tone
curves rTRC, gTRC, bTRC. Between two such profiles the relative colorimetric conversion is

    c' = f'⁻¹(clip(M'⁻¹ M f(c), 0, 1)),

colours outside the second space's gamut clipped to it, as LittleCMS clips them. This module
reads such a profile (:func:`matrix_profile`) and converts float pixels with it
(:func:`convert_floats`), for 16-bit images. A profile with lookup tables (an A2B/B2A tag, which
a colour management module uses in preference to the matrix) is not read: None.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

#: Tags that make a profile a lookup-table one (LittleCMS evaluates them, not the matrix).
_TABLE_TAGS = frozenset({b"A2B0", b"A2B1", b"A2B2", b"B2A0", b"B2A1", b"B2A2", b"D2B0", b"B2D0"})
#: Parameters of each 'para' curve function type (ICC.1:2010, 10.16).
_PARA_COUNTS = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}
#: Pixels converted at a time (float32 work arrays of 12 MB).
_CHUNK = 1 << 20


@dataclass(frozen=True)
class MatrixProfile:
    """A matrix/TRC RGB profile: ``matrix`` (3, 3) takes linear RGB to XYZ (D50); ``curves``, one per
    channel, each ("power", (g, a, b, c, d, e, f)): y = (ax + b)^g + e from x = d on, cx + f below
    (every 'para' type and a 'curv' gamma in that form), or ("table", values): equally spaced
    entries, linear in between."""

    matrix: np.ndarray
    curves: tuple[tuple, tuple, tuple]

    def to_linear(self, codes: np.ndarray) -> np.ndarray:
        """f(c): codes (3, N), channels first, in [0, 1] as linear RGB (float32)."""
        return np.stack([_evaluate(curve, channel) for curve, channel in zip(self.curves, codes)])

    def from_linear(self, linear: np.ndarray) -> np.ndarray:
        """f⁻¹(l): linear RGB (3, N), channels first, as codes in [0, 1] (float32; on a flat piece of a
        curve, one of its ends)."""
        return np.stack([_invert(curve, channel) for curve, channel in zip(self.curves, linear)])


def matrix_profile(icc: bytes) -> MatrixProfile | None:
    """The matrix/TRC profile an ICC profile is, or None: not an RGB display profile with XYZ as its
    connection space, lookup tables present, a tag missing, damaged or of an unknown type, a tone
    curve that falls or does not rise."""
    try:
        return _parse(bytes(icc))
    except (struct.error, ValueError, KeyError, IndexError):
        return None


def convert_floats(pixels: np.ndarray, source: MatrixProfile, target: MatrixProfile) -> np.ndarray:
    """``pixels`` (…, 3), floats in ``source``'s space (clipped to [0, 1] first, NaN as 0), as the codes of
    the same colours in ``target``'s (float32 in [0, 1]; relative colorimetric, outside ``target``'s
    gamut clipped). In float32 arithmetic: within a 16-bit code of the formulas in float64."""
    flat = np.asarray(pixels).reshape(-1, 3)
    out = np.empty(flat.shape, np.float32)
    to_target = np.linalg.solve(target.matrix, source.matrix).astype(np.float32)  # linear source → linear target
    for start in range(0, len(flat), _CHUNK):
        codes = np.ascontiguousarray(flat[start:start + _CHUNK].T, dtype=np.float32)
        np.nan_to_num(codes, copy=False, nan=0.0)
        np.clip(codes, 0.0, 1.0, out=codes)
        linear = to_target @ source.to_linear(codes)
        np.clip(linear, 0.0, 1.0, out=linear)
        out[start:start + _CHUNK] = target.from_linear(linear).T
    return out.reshape(np.shape(pixels))


def _parse(icc: bytes) -> MatrixProfile | None:
    if len(icc) < 132 or icc[36:40] != b"acsp" or icc[16:20] != b"RGB " or icc[20:24] != b"XYZ ":
        return None
    (count,) = struct.unpack_from(">I", icc, 128)
    tags = {}
    for index in range(count):
        signature, offset, size = struct.unpack_from(">4sII", icc, 132 + 12 * index)
        tags[signature] = icc[offset:offset + size]
    if _TABLE_TAGS & tags.keys():
        return None
    matrix = np.array([_xyz(tags[name]) for name in (b"rXYZ", b"gXYZ", b"bXYZ")]).T
    if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-9:
        return None
    curves = tuple(_curve(tags[name]) for name in (b"rTRC", b"gTRC", b"bTRC"))
    if any(curve is None for curve in curves):
        return None
    return MatrixProfile(matrix, curves)


def _s15f16(data: bytes, offset: int, count: int) -> list[float]:
    return [value / 65536 for value in struct.unpack_from(f">{count}i", data, offset)]


def _xyz(tag: bytes) -> list[float]:
    if tag[:4] != b"XYZ ":
        raise ValueError("not an XYZ tag")
    return _s15f16(tag, 8, 3)


def _curve(tag: bytes) -> tuple | None:
    """A 'curv' or 'para' tone curve in :class:`MatrixProfile`'s form, or None for another type or a
    curve that falls somewhere or does not rise."""
    if tag[:4] == b"curv":
        (entries,) = struct.unpack_from(">I", tag, 8)
        if entries <= 1:  # none: the identity; one: a gamma in u8Fixed8
            gamma = struct.unpack_from(">H", tag, 12)[0] / 256 if entries else 1.0
            curve = ("power", (gamma, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0))
        else:
            curve = ("table", tuple(value / 65535 for value in struct.unpack_from(f">{entries}H", tag, 12)))
    elif tag[:4] == b"para":
        (kind,) = struct.unpack_from(">H", tag, 8)
        if kind not in _PARA_COUNTS:
            return None
        g, a, b, c, d, e, f = (_s15f16(tag, 12, _PARA_COUNTS[kind]) + [0.0] * 6)[:7]
        if kind == 0:
            a, b, c, d = 1.0, 0.0, 0.0, 0.0
        elif kind in (1, 2):  # (ax + b)^g (+ c) from x = −b/a on, 0 (c) below
            d, e, f, c = (-b / a if a else 0.0), (c if kind == 2 else 0.0), (c if kind == 2 else 0.0), 0.0
        elif kind == 3:
            e = f = 0.0
        curve = ("power", (g, a, b, c, d, e, f))
        if not (g > 0 and a > 0):
            return None
    else:
        return None
    samples = _evaluate(curve, np.linspace(0.0, 1.0, 4097))
    rising = np.all(np.isfinite(samples)) and np.all(np.diff(samples) >= 0) and samples[-1] > samples[0]
    return curve if rising else None


def _evaluate(curve: tuple, x: np.ndarray) -> np.ndarray:
    """The tone curve at x ∈ [0, 1] (a new float32 array)."""
    x = np.asarray(x, np.float32)
    if curve[0] == "table":  # linear between equally spaced entries
        values = np.asarray(curve[1], np.float32)
        position = x * np.float32(len(values) - 1)
        index = np.minimum(position.astype(np.intp), len(values) - 2)
        position -= index
        low = values[index]
        return low + position * (values[index + 1] - low)
    g, a, b, c, d, e, f = (np.float32(v) for v in curve[1])
    y = x * a
    y += b
    np.maximum(y, 0, out=y)
    np.power(y, g, out=y)
    y += e
    if d > 0:  # the linear piece below d
        below = x < d
        y[below] = x[below] * c + f
    return y


def _invert(curve: tuple, y: np.ndarray) -> np.ndarray:
    """An x ∈ [0, 1] with f(x) = y, float32: the nearest where none is; at or below f(0), 0, and at or above
    f(1), 1 (where a curve is flat at an end, a log curve's knees, every code there stands for its
    black or white: the code range's own end); on a flat piece between, one of its ends."""
    y = np.asarray(y, np.float32)
    x = _invert_inside(curve, y)
    bottom, top = _evaluate(curve, np.array([0.0, 1.0]))
    x[y <= bottom] = 0.0
    x[y >= top] = 1.0
    return x


def _invert_inside(curve: tuple, y: np.ndarray) -> np.ndarray:
    """:func:`_invert` but at the ends."""
    if curve[0] == "table":  # the entries' own knots: exactly the inverse of the linear pieces
        values = np.asarray(curve[1])
        return np.interp(y, values, np.linspace(0.0, 1.0, len(values))).astype(np.float32)
    g, a, b, c, d, e, f = curve[1]
    x = y - np.float32(e)  # (ax + b)^g + e = y
    np.maximum(x, 0, out=x)
    np.power(x, np.float32(1 / g), out=x)
    x -= np.float32(b)
    x /= np.float32(a)
    if d > 0:  # below d the linear piece: cx + f = y (a flat one: its ends); in a jump between the pieces, d
        np.maximum(x, np.float32(d), out=x)
        below = y < max(a * d + b, 0.0) ** g + e
        low = y[below].astype(np.float64)
        inverse = (low - f) / c if c > 0 else np.where(low > f, d, 0.0)
        x[below] = np.where(low > c * d + f, d, np.minimum(inverse, d))
    np.clip(x, 0.0, 1.0, out=x)
    return x
