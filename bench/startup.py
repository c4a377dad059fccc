"""What ``colorot apply``'s start-up costs, with torch in the process and without it.

    python bench/startup.py [--runs 5]

Fits the bundled samples once (the default ridge map), then prints medians over ``--runs`` fresh
processes of:

1. ``python -c pass``: the interpreter alone;
2. ``python -c 'import numpy, PIL.Image'``: the least any command built on numpy and Pillow pays;
3. ``colorot apply`` on one 8×8 image: the fast path, which reads the ridge map without torch
   (``colorot.checkpoint.read_ridge_map``) and never imports it;
4. ``colorot apply --exact`` on the same image: the map loaded by ``torch.load`` and evaluated
   by torch (the path every other map, ``--exact`` and ``--inverse`` take);
5. ``import torch`` alone;
6. ``colorot.load(model).transform(pixels)`` in Python: the ridge map read without torch, as ``apply``
   reads it;
7. the same through ``colorot.checkpoint.load``: torch's read, which every other map takes.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from provenance import header  # bench/ is the script's folder, so on sys.path

ROOT = Path(__file__).resolve().parent.parent


#: A Python process that loads the map and maps a few pixels, by ``{load}`` of the checkpoint ``{model}``.
_PYTHON_LOAD = ("import numpy as np, colorot\n"
                "from colorot import ColorTransfer, checkpoint\n"
                "model = {model!r}\n"
                "{load}.transform(np.full((8, 8, 3), 0.5, np.float32))\n")


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model, tiny = tmp / "model.pt", tmp / "tiny.png"
        subprocess.run([sys.executable, "-m", "colorot", "fit", str(ROOT / "samples" / "day.jpg"),
                        str(ROOT / "samples" / "sunset.jpg"), "-o", str(model)], check=True, capture_output=True)
        Image.new("RGB", (8, 8), (120, 90, 60)).save(tiny)
        apply = [sys.executable, "-m", "colorot", "apply", str(model), str(tiny), str(tmp / "out") + "/", "--overwrite"]
        rows = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import numpy, PIL.Image'": [sys.executable, "-c", "import numpy, PIL.Image"],
            "colorot apply, one 8x8 image (no torch)": apply,
            "colorot apply --exact, one 8x8 image (torch)": [*apply, "--exact"],
            "python -c 'import torch'": [sys.executable, "-c", "import torch"],
            "colorot.load(m).transform(x) (no torch)": [sys.executable, "-c", _PYTHON_LOAD.format(
                model=str(model), load="colorot.load(model)")],
            "the same through torch's read": [sys.executable, "-c", _PYTHON_LOAD.format(
                model=str(model), load="ColorTransfer.from_checkpoint(checkpoint.load(model))")],
        }
        print(header(f"medians of {args.runs} fresh processes"))
        for label, cmd in rows.items():
            print(f"  {label:46s} {statistics.median(wall(cmd) for _ in range(args.runs)):.2f} s")


if __name__ == "__main__":
    main()
