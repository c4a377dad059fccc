"""The default fit at several curvature caps on bench/quality.py's 12 pairs: SW2, detail gain, RMS/W2.

    python bench/cap.py [--caps 600,1800,6000] [--cache DIR]

For each pair and each cap C (``colorot.sliced.CURVATURE_CAP``, the bound θ ≤ C/s² on every step of
the ridge map), ``ColorTransfer()`` fitted in this process, the map applied exactly, and scored as
bench/quality.py scores it: SW2 to the target, ``colorot.metrics.detail_gain`` (grain) and RMS
displacement over the exact W2.  Prints a line per pair and the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import numpy as np

import quality  # bench/ is the script's folder, so on sys.path

import colorot.sliced as sliced
from colorot import ColorTransfer
from colorot.metrics import detail_gain, rms_displacement, sliced_w2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--caps", default="600,1800,6000")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("COLOROT_BENCH_CACHE",
                                                                          "~/.cache/colorot-bench")).expanduser())
    args = parser.parse_args()
    caps = [float(c) for c in args.caps.split(",")]
    names = list(dict.fromkeys(n for pair in quality.PAIRS for n in pair))
    images = quality.prepare_images(args.cache, names)
    rows: dict[float, list[tuple[float, float, float]]] = {cap: [] for cap in caps}
    for source_name, target_name in quality.PAIRS:
        src_u8, tgt_u8 = quality.decode(images[source_name]), quality.decode(images[target_name])
        src = (src_u8.reshape(-1, 3) / np.float32(255)).astype(np.float32)
        tgt = (tgt_u8.reshape(-1, 3) / np.float32(255)).astype(np.float32)
        w2 = quality.w2_exact(src, tgt)
        line = f"{source_name} → {target_name}"
        for cap in caps:
            sliced.CURVATURE_CAP = cap
            out = ColorTransfer().fit(src_u8, tgt_u8, measure_kl=False).transform(src_u8)
            row = (sliced_w2(np.clip(out.reshape(-1, 3), 0, 1), tgt), detail_gain(src_u8 / 255.0, out),
                   rms_displacement(src, out.reshape(-1, 3)) / w2 - 1)
            rows[cap].append(row)
            line += f" | C={cap:g}: SW2 {row[0]:.4f} gain {row[1]:.2f} RMS/W2 {100 * row[2]:+.1f} %"
        print(line, flush=True)
    for cap, values in rows.items():
        worst = max((v[2] for v in values), key=abs)
        print(f"C={cap:g}: median SW2 {statistics.median(v[0] for v in values):.4f}, median detail gain "
              f"{statistics.median(v[1] for v in values):.2f}, worst RMS/W2 {100 * worst:+.1f} %")


if __name__ == "__main__":
    main()
