"""Adobe/Resolve ``.cube`` 3-D LUT files: write and read.

Layout (the Adobe Cube LUT Specification 1.0)::

    TITLE "..."
    LUT_3D_SIZE S
    DOMAIN_MIN 0.0 0.0 0.0
    DOMAIN_MAX 1.0 1.0 1.0
    R G B          # S³ lines: the output at input (i, j, k)/(S − 1), red fastest

The domain is the RGB cube [0, 1]³ of encoded (non-linear) values in the colour space
the map was fitted in (sRGB for untagged images; ``export-lut --convert-space`` bakes
any map for sRGB: :func:`colorot.profiles.for_srgb_codes`); table values are the map's
outputs, unclipped (consumers clip after interpolating, as colorot's own LUT path does).
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import numpy as np

from colorot.atomic import write_atomic
from colorot.errors import ConfigError, ImageWriteError, OutputExistsError
from colorot.lut import Lut


def _one_line(title: str) -> str:
    """``title`` as a TITLE holds it: in ASCII, as the format is (accents dropped, ``É`` → ``E``, any
    other character as ``?``), its double quotes as single ones, line breaks and other control
    characters as spaces (a colour space's name comes from a file, and a newline in it would start
    a line of the header)."""
    decomposed = "".join(c for c in unicodedata.normalize("NFKD", title) if not unicodedata.combining(c))
    spaced = "".join(" " if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029" else c
                     for c in decomposed.replace('"', "'"))
    return spaced.encode("ascii", "replace").decode("ascii")


def cube_text(lut: Lut, title: str = "colorot") -> str:
    """The ``.cube`` text of ``lut`` (values with 6 decimals: 10⁻⁶ ≪ one 16-bit code)."""
    header = [
        f'TITLE "{_one_line(title)}"',
        f"LUT_3D_SIZE {lut.size}",
        "DOMAIN_MIN 0.0 0.0 0.0",
        "DOMAIN_MAX 1.0 1.0 1.0",
    ]
    rows = "\n".join(f"{r:.6f} {g:.6f} {b:.6f}" for r, g, b in np.asarray(lut.table, dtype=np.float64))
    return "\n".join(header) + "\n" + rows + "\n"


def write_cube(path: str | os.PathLike, lut: Lut, *, title: str = "colorot", overwrite: bool = False) -> None:
    """Write ``lut`` as a ``.cube`` file atomically (:func:`colorot.atomic.write_atomic`)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists (overwrite=True replaces it; --force on the command line)")
    write_atomic(path, cube_text(lut, title).encode("ascii"), ImageWriteError, "the LUT", replace=overwrite)


def read_cube(path: str | os.PathLike) -> Lut:
    """Read a 3-D ``.cube`` file with domain [0, 1]³ into a :class:`Lut`."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    size, rows = None, []
    for number, line in enumerate(lines, 1):
        fields = line.split("#")[0].split()
        if not fields or fields[0] == "TITLE":
            continue
        try:
            if fields[0] == "LUT_3D_SIZE":
                (size,) = (int(value) for value in fields[1:])
            elif fields[0] in ("DOMAIN_MIN", "DOMAIN_MAX"):
                if [float(v) for v in fields[1:]] != ([0.0] * 3 if fields[0] == "DOMAIN_MIN" else [1.0] * 3):
                    raise ConfigError(f"{path}: only the domain [0, 1]³ is supported")
            elif fields[0][0].isalpha():
                raise ConfigError(f"{path}: unsupported keyword {fields[0]}")
            elif len(fields) != 3:
                raise ValueError(f"{len(fields)} values")
            else:
                rows.append([float(v) for v in fields])
        except ValueError as exc:
            raise ConfigError(f"{path}, line {number}: not a .cube line ({exc}): {line.strip()[:60]!r}") from exc
    if size is None or len(rows) != size**3:
        raise ConfigError(f"{path}: not a 3-D .cube LUT (size {size}, {len(rows)} rows)")
    return Lut(size, np.asarray(rows, dtype=np.float32))
