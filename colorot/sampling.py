"""Representative subsamples of pixels: systematic sampling along a colour order.

The solvers work on subsamples of an image's pixels (tens of thousands of its millions).  An
i.i.d. subsample of n pixels puts n·p ± √(n·p) of them in a colour region of share p, so each fit
carries a sampling error that differs from image to image, and from one frame of a clip to the
next even where the frames hardly differ.  Here the pixels are ordered by the Morton (Z-order)
key of their colours at :data:`KEY_BITS` bits per channel, and every (N/n)-th is taken from a
seeded random start: each of the 2^(3·KEY_BITS) colour cells, and each run of neighbouring cells
along the key, then gets its share of the n pixels to within one.  Within a cell the order is the
image's own (raster) order, so the sample is spread across the frame as well.  bench/EXPERIMENTS.md
(E43) measures it against i.i.d. subsamples.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

#: Bits of each channel in the sort key: 32 levels, a 15-bit key, which numpy sorts by radix.
#: 8 bits (a 24-bit key, sorted by comparison) took 8× the time for little gain (E43).
KEY_BITS = 5

#: The most pixels put in colour order, about: a larger image is first thinned to every k-th of its
#: pixels in its own order (from a seeded start).  A 24-megapixel image then takes 0.6 s and 110 MB
#: beyond itself, against 3.1 s and 550 MB ordered whole (E43).
ORDERED_PIXELS = 1 << 22


def _spread(bits: int) -> np.ndarray:
    """Table of 0 … 2^bits − 1 with each bit moved to every third position (for a Morton key)."""
    values = np.arange(1 << bits)
    return sum(((values >> b) & 1) << (3 * b) for b in range(bits)).astype(np.uint16)


_SPREAD = _spread(KEY_BITS)


def colour_order(pixels: np.ndarray) -> np.ndarray:
    """Indices that sort ``pixels`` (N, 3) floats in [0, 1] by the Morton key of their colours
    (ties in their own order)."""
    levels = 1 << KEY_BITS
    codes = np.clip(np.asarray(pixels, np.float32) * np.float32(levels), 0, levels - 1).astype(np.uint8)
    key = (_SPREAD[codes[:, 0]] << 2) | (_SPREAD[codes[:, 1]] << 1) | _SPREAD[codes[:, 2]]
    return np.argsort(key, kind="stable")


def thinned(pixels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Every k-th row of ``pixels`` (N, 3) from a start drawn from ``rng``, k = N // max(n,
    :data:`ORDERED_PIXELS`), so that at least that many remain; ``pixels`` itself (nothing drawn)
    when k ≤ 1."""
    stride = len(pixels) // max(n, ORDERED_PIXELS)
    return pixels[rng.integers(stride)::stride] if stride > 1 else pixels


def representative_subsample(pixels: np.ndarray, n: int, rng: np.random.Generator,
                             order: Callable[[np.ndarray], np.ndarray] = colour_order) -> np.ndarray:
    """``n`` rows of ``pixels`` (N, 3), every (N/n)-th along :func:`colour_order` from a start drawn
    from ``rng`` (after :func:`thinned` to at least max(n, :data:`ORDERED_PIXELS`) of them); all of
    ``pixels`` (not copied) when N ≤ n.  ``order``: :func:`colour_order`, or a caller's that returns
    one it keeps (:meth:`colorot.transfer.Reference.colour_order`)."""
    if len(pixels) <= n:
        return pixels
    pixels = thinned(pixels, n, rng)
    step = len(pixels) / n
    picks = (np.arange(n) * step + rng.uniform(0, step)).astype(np.int64)
    return pixels[order(pixels)[picks]]
