"""The map a ``.cube`` table bakes, one rule for ``colorot export-lut`` and ``ColorTransfer.export_lut``.

A table takes the codes of the colour space its map was fitted in (the checkpoint's
``colour_space``).  For a map fitted in another space than sRGB (Adobe RGB, Display P3) that is a
table of that space's codes: named in its TITLE (``codes Adobe RGB (1998)``) and warned of, unless
``convert_space`` bakes it for sRGB codes, each grid colour taken into the map's space, mapped and
taken back (:func:`colorot.profiles.for_srgb_codes`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from colorot import apply
from colorot.errors import ConfigError, ImageMetadataWarning
from colorot.lut import lut_title
from colorot.profiles import UNTAGGED, ColourSpace, apart, conversion_refusal, for_srgb_codes
from colorot.transforms import lut_map


@dataclass(frozen=True)
class TableMap:
    """What a table bakes: ``fitted``, colours (N, 3) → the table's entries; ``space``, the colour
    space of its codes ("sRGB" when baked for it; None where the map records none);
    ``converted_from``, the map's own space when baked for sRGB; ``title``, its TITLE."""

    fitted: Callable[[torch.Tensor], torch.Tensor]
    space: str | None
    converted_from: str | None
    title: str


def refuse_convert_space_with_inverse(convert_space: bool, inverse: bool) -> None:
    """ConfigError for ``convert_space`` with ``inverse`` (before anything is read)."""
    apply.refuse_convert_space_with_inverse(convert_space, inverse, "bakes the forward map's table for sRGB codes")


def table_map(model: torch.nn.Module, space: ColourSpace | None, name: str, *, strength: float = 1.0,
              inverse: bool = False, controls=None, convert_space: bool = False) -> TableMap:
    """The map of ``model`` (fitted in ``space``; ``name`` says which in messages) that a table bakes:
    ``T_t`` (t = ``strength``) then ``controls``, or ``T_t⁻¹``; for sRGB codes with ``convert_space``
    (ConfigError with ``inverse``, or where the map's profile is not a matrix/TRC one kept in its
    checkpoint); an :class:`ImageMetadataWarning` where the table takes another space's codes, or
    where ``convert_space`` finds no space recorded."""
    refuse_convert_space_with_inverse(convert_space, inverse)
    fitted = lut_map(model, strength=strength, inverse=inverse, controls=controls)
    apply.warn_space_unknown(space, convert_space, name,
                             "has no space to bake the table from, which takes the map's codes as they are",
                             stacklevel=4)  # the caller of ColorTransfer.export_lut
    foreign = apart(space, UNTAGGED)
    if foreign and convert_space:
        refusal = conversion_refusal(UNTAGGED, 16, space)
        if refusal:
            raise ConfigError(f"--convert-space (convert_space) cannot bake {name} for sRGB: {refusal}")
        fitted = for_srgb_codes(fitted, space)
    elif foreign:
        warnings.warn(f"{name} was fitted in {space.name}: the table takes and gives that space's codes, not "
                      "sRGB's; pass --convert-space (convert_space=True) to bake it for sRGB codes",
                      ImageMetadataWarning, stacklevel=3)
    table_space = "sRGB" if foreign and convert_space else None if space is None else space.name
    title = lut_title(model.name, strength=strength, inverse=inverse, controls=controls,
                      space=table_space if foreign else None)
    return TableMap(fitted, table_space, space.name if foreign and convert_space else None, title)
