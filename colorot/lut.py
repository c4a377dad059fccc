"""3-D lookup tables: bake a colour map onto a grid, apply it, measure how its interpolations stray.

A table of size S holds T at the S³ grid colours (i, j, k)/(S − 1), red varying
fastest, then green, then blue: the order of the Adobe/Resolve ``.cube`` format
and of Pillow's ``Color3DLUT``.  Applying a table to 8-bit pixels runs in
Pillow's C code, with no floating-point copy of the image; outputs are clipped
to [0, 1] (the output rule).  Tables are what ``colorot export-lut`` writes (.cube);
``colorot apply`` maps 8-bit images through a :class:`~colorot.colour_table.ColourTable`
instead, because a grid of 65³ cannot follow steps narrower than its cells (the sliced
solver's maps stray up to 2 code values; ``tests/test_lut.py``).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFilter

from colorot.errors import ConfigError

#: Default grid size: Pillow's largest (2 ≤ S ≤ 65).
DEFAULT_LUT_SIZE = 65
#: Grid colours evaluated at a time while baking.
BAKE_CHUNK = 1 << 15
#: The table entries Pillow's Color3DLUT holds as they are: 16-bit fixed point of 255·2⁶ a unit
#: keeps |v| ≤ 32767 / 16320 ≈ 2.008, and cuts what lies beyond.
PILLOW_TABLE_RANGE = 2.0
#: Seeded uniform colours on which :func:`interpolation_error` compares a table with its map.
ERROR_SAMPLES = 1 << 15


def lut_grid(size: int) -> np.ndarray:
    """The S³ grid colours (S³, 3) float32 in [0, 1], red fastest, blue slowest."""
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    blue, green, red = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack([red, green, blue], axis=-1).reshape(-1, 3)


@dataclass
class Lut:
    """A baked table: ``table`` (S³, 3) float32 of map outputs (unclipped), red fastest."""

    size: int
    table: np.ndarray
    _filter: ImageFilter.Color3DLUT = field(init=False, repr=False)
    _in_pillow_range: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Pillow clips the interpolated outputs to [0, 1] (the output rule).
        self._filter = ImageFilter.Color3DLUT(self.size, self.table, channels=3)
        self._in_pillow_range = bool(np.abs(self.table).max() <= PILLOW_TABLE_RANGE)

    def apply_codes(self, codes: np.ndarray) -> np.ndarray:
        """Map uint8 RGB codes (..., 3), an image (H, W, 3) or rows (N, 3), to uint8 codes of the
        same shape by trilinear interpolation, then the output rule (clip to [0, 1], round): in
        Pillow's C code (rows are filtered as one row of an image), or for a table with entries beyond
        ±:data:`PILLOW_TABLE_RANGE` (an inverse map's, far outside the cube), which Pillow's fixed
        point would cut before interpolating, by :func:`interpolate`."""
        if codes.dtype != np.uint8 or codes.shape[-1:] != (3,):
            raise ValueError("apply_codes takes uint8 RGB codes (..., 3)")
        if self._in_pillow_range and codes.size:
            image = np.ascontiguousarray(codes if codes.ndim == 3 else codes.reshape(1, -1, 3))
            return np.asarray(PILImage.fromarray(image, "RGB").filter(self._filter)).reshape(codes.shape)
        flat = codes.reshape(-1, 3)
        out = np.empty(flat.shape, np.uint8)
        for start in range(0, len(flat), BAKE_CHUNK):  # interpolate's float64 work arrays, a band at a time
            mapped = interpolate(self, flat[start:start + BAKE_CHUNK] / np.float32(255))
            out[start:start + BAKE_CHUNK] = np.rint(np.clip(mapped, 0.0, 1.0) * 255)
        return out.reshape(codes.shape)


def bake(fitted_map, size: int = DEFAULT_LUT_SIZE) -> Lut:
    """Evaluate ``fitted_map`` on the S³ grid: the table of a :class:`Lut`."""
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, numbers.Integral) or not 2 <= size <= 65:
        raise ConfigError(f"LUT size must be a whole number between 2 and 65, not {size!r}")
    size = int(size)
    import torch  # here, not at the top: the CLI starts without torch

    grid = torch.from_numpy(lut_grid(size))
    with torch.inference_mode():  # in chunks, so a wide map's activations stay small
        table = torch.cat([fitted_map(chunk).to("cpu", torch.float32) for chunk in grid.split(BAKE_CHUNK)])
    return Lut(size, table.numpy())


def lut_title(model_name: str, *, strength: float = 1.0, inverse: bool = False, controls=None,
              space: str | None = None) -> str:
    """A ``.cube`` TITLE naming the map and every setting baked into the table
    (``controls``: a :class:`colorot.controls.Controls` or None; ``space``: the colour space of the
    table's codes, named where it is not plain sRGB or was converted to it)."""
    words = [f"colorot {model_name}"]
    if strength != 1.0:
        words.append(f"strength {strength:g}")
    if inverse:
        words.append("inverse")
    words += controls_words(controls)
    if space:
        words.append(f"codes {space}")
    return " ".join(words)


def controls_words(controls) -> list[str]:
    """The colour controls that change the map (a :class:`colorot.controls.Controls` or None), as a
    .cube TITLE and ``export-lut``'s summary name them."""
    if controls is None:
        return []
    words = ["keep-luminance"] if controls.keep_luminance else []
    if controls.saturation != 1.0:
        words.append(f"saturation {controls.saturation:g}")
    if controls.neutral:
        words.append(f"neutral {controls.neutral:g}")
    return words


#: How consumers interpolate a .cube: trilinearly (Pillow, Resolve's default) or tetrahedrally
#: (ffmpeg's lut3d default, Resolve's and OCIO's option).
INTERPOLATIONS = ("trilinear", "tetrahedral")


def interpolate(lut: Lut, colours: np.ndarray, method: str = "trilinear") -> np.ndarray:
    """The table at ``colours`` (N, 3) in [0, 1]³: float64 (N, 3), unclipped.

    ``trilinear``: the 8 corners of the colour's cell weighted by proximity (Pillow, and ffmpeg's
    ``lut3d=interp=trilinear``).  ``tetrahedral``: with the cell fractions sorted f₁ ≥ f₂ ≥ f₃ along
    axes a₁, a₂, a₃, the corners c₀, c₀ + e_a₁, c₀ + e_a₁ + e_a₂, c₀ + (1, 1, 1) weighted
    1 − f₁, f₁ − f₂, f₂ − f₃, f₃ (ffmpeg's ``lut3d`` default).
    """
    if method not in INTERPOLATIONS:
        raise ValueError(f"method must be one of {INTERPOLATIONS}, not {method!r}")
    scaled = np.clip(np.asarray(colours, np.float64), 0, 1) * (lut.size - 1)
    low = np.minimum(np.floor(scaled).astype(np.int64), lut.size - 2)
    frac = scaled - low
    table = lut.table.astype(np.float64)

    def at(corner: np.ndarray) -> np.ndarray:
        r, g, b = corner.T
        return table[r + lut.size * (g + lut.size * b)]

    if method == "tetrahedral":
        order = np.argsort(-frac, axis=1, kind="stable")
        f = np.take_along_axis(frac, order, axis=1)
        steps = np.eye(3, dtype=np.int64)[order]  # (N, 3 steps, 3): the unit step along a₁, a₂, a₃
        first, second = low + steps[:, 0], low + steps[:, 0] + steps[:, 1]
        return ((1 - f[:, :1]) * at(low) + (f[:, :1] - f[:, 1:2]) * at(first)
                + (f[:, 1:2] - f[:, 2:]) * at(second) + f[:, 2:] * at(low + 1))
    out = np.zeros((len(scaled), 3))
    for corner in range(8):  # the cell's 8 corners (r, g, b offsets 0/1), weighted by proximity
        offset = np.array([corner & 1, (corner >> 1) & 1, corner >> 2])
        weight = np.prod(np.where(offset, frac, 1 - frac), axis=1)
        out += weight[:, None] * at(low + offset)
    return out


def interpolation_error(lut: Lut, fitted_map, samples: int = ERROR_SAMPLES, seed: int = 0) -> tuple[float, float]:
    """How far the table strays from the map it was baked from, in 8-bit code values: the 99th
    percentile and the maximum over ``samples`` seeded uniform colours of the cube of
    max over channels |table(x) − T(x)|, both clipped to [0, 1] as a consumer shows them; each the
    larger of the two :data:`INTERPOLATIONS`, since the consumer chooses."""
    import torch  # here, not at the top: the CLI starts without torch

    colours = np.random.default_rng(seed).random((samples, 3)).astype(np.float32)
    with torch.inference_mode():
        exact = torch.cat([fitted_map(chunk).to("cpu", torch.float64)
                           for chunk in torch.from_numpy(colours).split(BAKE_CHUNK)]).numpy()
    errors = [np.abs(np.clip(interpolate(lut, colours, method), 0, 1) - np.clip(exact, 0, 1)).max(axis=1) * 255
              for method in INTERPOLATIONS]
    return max(float(np.percentile(error, 99)) for error in errors), max(float(error.max()) for error in errors)
