"""``ColorTransfer.transform`` of the default (ridge) map: its tabulated profiles against the torch module.

    python bench/transform.py [--runs 5]

Fits the default map samples/day.jpg → samples/sunset.jpg once, then times, in this process and
medians of ``--runs``, ``transform`` of samples/day.jpg (1280×800) given as float32 in [0, 1] and as
uint8 codes: as ``transform`` evaluates a ridge map (through its tabulated profiles on the RGB cube,
as ``colorot apply`` does; the module outside it), and through the torch module itself (what
``transform`` did before E51; what every other map takes). Prints the largest difference between
the two and how many pixels differ once rounded to 8 bits.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from colorot import ColorTransfer
from colorot.apply import map_pixels
from provenance import header  # bench/ is the script's folder, so on sys.path

ROOT = Path(__file__).resolve().parent.parent


def median_seconds(runs: int, work) -> tuple[float, object]:
    """The median wall time of ``runs`` calls of ``work``, and its last result."""
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    fitted = ColorTransfer(random_state=0).fit(ROOT / "samples" / "day.jpg", ROOT / "samples" / "sunset.jpg")
    codes = np.asarray(Image.open(ROOT / "samples" / "day.jpg").convert("RGB"))
    module = fitted.map_  # built here, outside the timings

    def through_module(image: np.ndarray) -> np.ndarray:
        pixels = (image / np.float32(255) if image.dtype == np.uint8 else image).reshape(-1, 3)
        return map_pixels(module, pixels.astype(np.float32), device="cpu").reshape(image.shape)

    print(header(f"{codes.shape[1]}×{codes.shape[0]} image; medians of {args.runs} runs in one process"))
    for label, image in (("float32", codes.astype(np.float32) / 255), ("uint8", codes)):
        profiles_s, profiles = median_seconds(args.runs, lambda: fitted.transform(image))
        module_s, by_module = median_seconds(args.runs, lambda: through_module(image))
        rounded = [np.round(np.clip(out, 0, 1) * 255) for out in (profiles, by_module)]
        differ = int((rounded[0] != rounded[1]).any(axis=-1).sum())
        print(f"  {label:8s} transform {profiles_s:.2f} s, torch module {module_s:.2f} s "
              f"({module_s / profiles_s:.1f}×); largest difference {np.abs(profiles - by_module).max():.1e}, "
              f"{differ} of {codes.shape[0] * codes.shape[1]} pixels a code apart once rounded")


if __name__ == "__main__":
    main()
