"""The default fit at several curvature caps on bench/quality.py's 12 pairs: SW2, detail gain, RMS/W2.

    python bench/cap.py [--caps 600,1800,3000,6000] [--cache DIR]

For each pair and each cap C (``colorot.sliced.CURVATURE_CAP``, the bound θ ≤ C/s² on every step of
the ridge map), ``ColorTransfer()`` fitted in this process, the map applied by ``transform`` (within
10⁻⁷), and scored as bench/quality.py scores it: SW2 to the target, ``colorot.metrics.detail_gain``
(grain) and RMS displacement over the exact W2.  Prints a line per pair and the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import quality  # bench/ is the script's folder, so on sys.path

import colorot.sliced as sliced
from colorot import ColorTransfer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--caps", default="600,1800,3000,6000")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("COLOROT_BENCH_CACHE",
                                                                          "~/.cache/colorot-bench")).expanduser())
    args = parser.parse_args()
    caps = [float(c) for c in args.caps.split(",")]
    names = list(dict.fromkeys(n for pair in quality.PAIRS for n in pair))
    images = quality.prepare_images(args.cache, names)
    rows: dict[float, list[dict]] = {cap: [] for cap in caps}
    for source_name, target_name in quality.PAIRS:
        src_u8, tgt_u8 = quality.decode(images[source_name]), quality.decode(images[target_name])
        src, tgt = quality.pixels01(src_u8), quality.pixels01(tgt_u8)
        w2 = quality.w2_exact(src, tgt)
        line = f"{source_name} → {target_name}"
        for cap in caps:
            sliced.CURVATURE_CAP = cap
            out = ColorTransfer().fit(src_u8, tgt_u8, measure_kl=False).transform(src_u8)
            row = quality.output_scores(src_u8, src, tgt, w2, out)
            rows[cap].append(row)
            line += (f" | C={cap:g}: SW2 {row['sw2']:.4f} gain {row['detail_gain']:.2f} "
                     f"RMS/W2 {100 * row['rms_w2']:+.1f} %")
        print(line, flush=True)
    for cap, values in rows.items():
        worst = max((v["rms_w2"] for v in values), key=abs)
        print(f"C={cap:g}: median SW2 {statistics.median(v['sw2'] for v in values):.4f}, median detail gain "
              f"{statistics.median(v['detail_gain'] for v in values):.2f}, worst RMS/W2 {100 * worst:+.1f} %")


if __name__ == "__main__":
    main()
