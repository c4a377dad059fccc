"""The fast path: the map at every 8-bit colour, worked out once per colour.

A :class:`ColourTable` is a full 256³ lookup table with no interpolation: entry
``r | g << 8 | b << 16`` holds the mapped code values of the colour (r, g, b), after the
output rule (clip to [0, 1], round to the nearest code). Index and entry are RGBX words
(:func:`colorot.imageio.codes_of_words`), the layout 8-bit RGB images decode to, so an image
is mapped by gathers from the table without repacking, a band of pixels at a time; the
colours of a band that no image has brought before are first evaluated together, and
remembered. A 1920×1200 photograph holds ~10⁴–3·10⁵ distinct colours; a folder of similar
photographs adds fewer with each image.

The table is as faithful as its evaluator (:func:`colorot.apply.colour_evaluator`: a
ridge map's tabulated profiles, within 10⁻⁷ of the map, or the map itself); 16-bit
images, which a 256³ table cannot hold, go through that evaluator pixel by pixel
(:meth:`ColourTable.map_floats`). The table takes 64 MiB of address space, of which only
the pages holding met colours become resident. Threads may share one table: an entry is
written only with its one value, so a racing reader sees either 0 (unknown: it
evaluates the colour itself) or that value.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from colorot.imageio import as_floats, codes_of_words, quantize, words_of_codes

#: Marks an entry as known (an unknown entry is 0): the byte after r, g, b.
KNOWN = np.uint32(0xFF000000)
#: The r, g, b bytes of an RGBX word: its index in the table.
COLOUR_BITS = np.uint32(0x00FFFFFF)
#: Pixels gathered at a time: the band's working arrays stay in cache (measured fastest).
BAND_PIXELS = 1 << 17
Evaluator = Callable[[np.ndarray], np.ndarray]


class ColourTable:
    """8-bit RGB codes → mapped 8-bit codes, each distinct colour evaluated once.

    ``evaluate`` takes float colours (N, 3) in [0, 1] and returns the map's (unclipped) values.
    """

    def __init__(self, evaluate: Evaluator) -> None:
        self._evaluate = evaluate
        self._entries = np.zeros(1 << 24, dtype="<u4")  # calloc: pages become resident as colours come

    def apply_codes(self, codes: np.ndarray) -> np.ndarray:
        """Map uint8 RGB codes (..., 3) to uint8 codes (a view of RGBX words, see
        :func:`~colorot.imageio.codes_of_words`). Codes that are such a view already (as
        decoded 8-bit RGB images are) are gathered on directly; others are packed first."""
        if codes.dtype != np.uint8 or codes.shape[-1:] != (3,):
            raise ValueError("apply_codes takes uint8 RGB codes (..., 3)")
        words = words_of_codes(codes)
        if words is None:
            words = _pack(codes.reshape(-1, 3)).reshape(codes.shape[:-1])
        return codes_of_words(self.apply_words(words))

    def apply_words(self, words: np.ndarray) -> np.ndarray:
        """Map RGBX words (any shape; the 4th byte is ignored) to the words of the mapped codes,
        band by band; a band's new colours are evaluated together, then only their pixels
        gathered again."""
        flat = words.reshape(-1)
        out = np.empty(flat.shape, dtype="<u4")
        for start in range(0, len(flat), BAND_PIXELS):
            band = slice(start, start + BAND_PIXELS)
            index = flat[band] & COLOUR_BITS
            entries = out[band]
            self._entries.take(index, out=entries, mode="clip")  # every index < 2²⁴: no bounds check
            if entries.min() < KNOWN:
                unknown = entries < KNOWN
                missing = index[unknown]
                self._fill(np.unique(missing))
                entries[unknown] = self._entries.take(missing, mode="clip")
        return out.reshape(words.shape)

    def map_floats(self, rgb: np.ndarray) -> np.ndarray:
        """The evaluator on colours (..., 3), such as a 16-bit image's, a band at a time, without
        the table: float32, unclipped. ``rgb``: floats in [0, 1], or uint8 / uint16 codes, each band
        taken to [0, 1] as it comes (:func:`~colorot.imageio.as_floats`), so that no float copy of a
        whole image is held."""
        flat = rgb.reshape(-1, 3)
        out = np.empty(flat.shape, dtype=np.float32)
        for start in range(0, len(flat), BAND_PIXELS):
            out[start:start + BAND_PIXELS] = self._evaluate(as_floats(flat[start:start + BAND_PIXELS]))
        return out.reshape(rgb.shape)

    def _fill(self, index: np.ndarray) -> None:
        """Evaluate the colours ``index`` (packed) and store their output codes."""
        codes = np.stack([index & 255, (index >> 8) & 255, index >> 16], axis=-1)
        colours = codes.astype(np.float32) / np.float32(255)  # as Image.rgb: the exact path's input
        self._entries[index] = _pack(quantize(self._evaluate(colours), 8)) | KNOWN


def _pack(codes: np.ndarray) -> np.ndarray:
    """uint8 (N, 3) → uint32 r | g << 8 | b << 16 (little-endian: the bytes r, g, b, 0)."""
    index = codes[:, 2].astype("<u4")
    index <<= 8
    index |= codes[:, 1]
    index <<= 8
    index |= codes[:, 0]
    return index
