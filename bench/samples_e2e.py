"""Issue-2 acceptance on the bundled samples: fit + apply via the CLI, then SW2.

Runs ``colorot fit samples/day.jpg samples/sunset.jpg`` with the default
settings and with ``--model affine``, applies each to ``samples/``, and prints
wall times and the sliced Wasserstein-2 distance between the output's pixels
(8-bit, i.e. after the output rule) and the target's.

    python bench/samples_e2e.py
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from colorot.imageio import read_pixels
from colorot.metrics import sliced_w2
from provenance import header  # bench/ is the script's folder, so on sys.path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help; no options
    target = read_pixels(SAMPLES / "sunset.jpg")
    source = read_pixels(SAMPLES / "day.jpg")
    print(header())
    print(f"no transfer: SW2 {sliced_w2(source, target):.4f}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in (("default", []), ("affine", ["--model", "affine"])):
            model = Path(tmp) / f"{label}.pt"
            out = Path(tmp) / f"out-{label}"
            fit_s = timed(["colorot", "fit", str(SAMPLES / "day.jpg"), str(SAMPLES / "sunset.jpg"),
                           "-o", str(model), *extra])
            apply_s = timed(["colorot", "apply", str(model), str(SAMPLES), str(out)])
            sw2 = sliced_w2(read_pixels(out / "day.jpg"), target)
            print(f"{label:8s} fit {fit_s:6.1f} s  apply (3 images) {apply_s:5.1f} s  SW2 {sw2:.4f}")


if __name__ == "__main__":
    main()
