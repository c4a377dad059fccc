"""colorot's own matrix/TRC profile reader against LittleCMS, on real ICC profiles.

    python bench/icc_profiles.py [--cache DIR]

The RGB profiles of Debian's ``icc-profiles-free`` and ``colord-data`` packages (fetched with
``apt-get download`` into the cache folder, default ``~/.cache/colorot-bench``): for each, whether
:func:`colorot.icc_matrix.matrix_profile` reads it, and for those it reads, 50 000 seeded random 8-bit
codes converted into sRGB (LittleCMS's own profile, what untagged images are) both by LittleCMS
(``colorot.profiles.convert_codes``, 8-bit) and by :func:`colorot.icc_matrix.convert_floats`
rounded to 8 bits: the largest difference in code values and the share of codes more than 1 apart;
then the same back from sRGB into the profile's space, where two codes on a flat piece of the
profile's tone curve (a log curve's knees: many codes for one colour) count as equal, and the same
without that (*codes as written*). The other profiles are listed with their class and colour space (abstract,
named-colour, grey, Lab: not RGB images' profiles).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing it
    sys.path.insert(0, str(ROOT))

from apt_data import deb_of, unpacked  # noqa: E402  (bench/apt_data.py)
from colorot.icc_matrix import convert_floats, matrix_profile  # noqa: E402
from colorot.profiles import UNTAGGED, _matrix_form, colour_space, convert_codes  # noqa: E402

PACKAGES = ("icc-profiles-free", "colord-data")


def largest_and_share(lcms: np.ndarray, ours: np.ndarray, same=None) -> tuple[int, float]:
    """The largest difference between two conversions' codes (N, 3), and the share of pixels more than 1
    apart; ``same`` (N, 3): where two codes count as equal whatever their difference."""
    difference = np.abs(lcms.astype(int) - ours.astype(int))
    if same is not None:
        difference[same] = 0
    difference = difference.max(axis=1)
    return int(difference.max()), float(np.mean(difference > 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "colorot-bench")
    args = parser.parse_args()
    root = unpacked(args.cache, PACKAGES, folder="icc-root")
    versions = ", ".join(deb_of(args.cache, p).name.removesuffix("_all.deb") for p in PACKAGES)
    srgb = _matrix_form(None)
    codes = np.random.default_rng(0).integers(0, 256, (1, 50_000, 3), dtype=np.uint8)
    print(f"profiles of {versions}; 50 000 random codes each way")
    print(f"{'profile':<34}{'read':>6}{'curves':>8}{'→ sRGB: max, >1':>18}{'sRGB →: max, >1':>18}"
          f"{'codes as written':>18}")
    others = []
    for path in sorted(root.rglob("*"), key=lambda p: p.name.lower()):
        if path.suffix.lower() not in (".icc", ".icm"):
            continue
        icc = path.read_bytes()
        space = colour_space(icc)
        if icc[16:20] != b"RGB " or space.srgb_codes is None:
            others.append(f"{path.name} ({icc[12:16].decode('latin-1')}, {icc[16:20].decode('latin-1').strip()})")
            continue
        profile = matrix_profile(icc)
        if profile is None:
            print(f"{path.name:<34}{'no':>6}")
            continue
        there = largest_and_share(convert_codes(codes, space, UNTAGGED)[0],
                                  np.rint(convert_floats(codes[0] / 255, profile, srgb) * 255))
        lcms_back = convert_codes(codes, UNTAGGED, space)[0]
        ours_back = np.rint(convert_floats(codes[0] / 255, srgb, profile) * 255)
        flat = profile.to_linear(lcms_back.T / 255) == profile.to_linear(ours_back.T / 255)
        back, written = largest_and_share(lcms_back, ours_back, flat.T), largest_and_share(lcms_back, ours_back)
        print(f"{path.name:<34}{'yes':>6}{profile.curves[0][0]:>8}{f'{there[0]}, {there[1]:.4f}':>18}"
              f"{f'{back[0]}, {back[1]:.4f}':>18}{f'{written[0]}, {written[1]:.4f}':>18}")
    print("not RGB image profiles:", "; ".join(others))


if __name__ == "__main__":
    main()
