"""Fits onto a large reference (``colorot match``): each fit's time, and what a worker process holds.

    python bench/reference.py [--size 6000x4000] [--fits 9]

The reference is ``samples/sunset.jpg`` (1280×800) and the same photo resized to ``--size``
(bicubic, saved as a JPEG); the inputs are the three samples at 640×400.  For each reference a
:class:`colorot.matching.Matcher` is made once and fits the inputs in turn, ``--fits`` fits in all,
on one BLAS thread: the median CPU seconds of a fit (``time.process_time``, which others' load on a
shared machine disturbs less than wall time) and the ratio large / small, measured in the same run;
the median SW2 of the three inputs' outputs to the reference (``colorot.metrics.sliced_w2``); and the bytes of the pickled Matcher, which is what ``match --jobs N`` sends to each worker process.
The first fit onto each reference is not counted (its one-off work: the colour order of its pixels).
Last, ``colorot match LARGE inputs/ out/ --jobs 2`` over the three inputs twice (six files) as a
fresh process: its peak memory with its workers' (summed PSS and the largest RSS, sampled as
bench/match.py samples them; Linux).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy: one BLAS thread, as a match's worker fits

import argparse  # noqa: E402
import pickle  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from PIL import Image  # noqa: E402

from match import peak_memory_mib  # noqa: E402  (bench/ is the script's folder, so on sys.path)
from provenance import header  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def fit_seconds(reference: Path, inputs: list[Path], fits: int) -> tuple[float, int, int, float]:
    """Median CPU seconds of a fit onto ``reference`` after the first, its pixels kept, pickled bytes,
    and the median SW2 of the inputs' outputs to the reference (every 7th of its pixels)."""
    from colorot.imageio import read_pixels
    from colorot.matching import Matcher
    from colorot.metrics import sliced_w2

    matcher = Matcher(reference)
    matcher.fit(inputs[0], measure_kl=False)
    seconds, outputs = [], []
    for i in range(fits):
        start = time.process_time()
        fitted = matcher.fit(inputs[i % len(inputs)], measure_kl=False)
        seconds.append(time.process_time() - start)
        if i < len(inputs):
            outputs.append(fitted.transform(read_pixels(inputs[i])))
    target = read_pixels(reference)[::7]
    sw2 = statistics.median(sliced_w2(output, target) for output in outputs)
    return statistics.median(seconds), len(matcher.reference.pixels), len(pickle.dumps(matcher)), sw2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="6000x4000", help="the large reference's WxH")
    parser.add_argument("--fits", type=int, default=9)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(header(f"reference {width}×{height}, {args.fits} fits each"))
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        small = SAMPLES / "sunset.jpg"
        large = work / "large.jpg"
        with Image.open(small) as photo:
            photo.convert("RGB").resize((width, height), Image.Resampling.BICUBIC).save(large, quality=92)
        inputs = []
        (work / "in").mkdir()
        for name in ("day.jpg", "storm.jpg", "sunset.jpg"):
            with Image.open(SAMPLES / name) as photo:
                inputs.append(work / "in" / name)
                photo = photo.convert("RGB").resize((640, 400), Image.Resampling.BICUBIC)
                photo.save(inputs[-1], quality=92)
                photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(work / "in" / f"flipped_{name}", quality=92)
        rows = {}
        for label, reference in (("1280×800", small), (f"{width}×{height}", large)):
            rows[label] = fit_seconds(reference, inputs, args.fits)
            seconds, kept, pickled, sw2 = rows[label]
            print(f"  reference {label}: {seconds:.3f} s CPU a fit (median), {kept} pixels kept, "
                  f"{pickled / 1e6:.1f} MB pickled; median SW2 of the outputs to it {sw2:.5f}")
        (small_s, *_), (large_s, *_) = rows.values()
        print(f"  large / small: {large_s / small_s:.2f}× the CPU time a fit")
        if sys.platform.startswith("linux"):
            command = [sys.executable, "-m", "colorot", "match", str(large), str(work / "in"), str(work / "out"),
                       "--jobs", "2"]
            total, largest = peak_memory_mib(command)
            print(f"  colorot match {large.name} (6 files) --jobs 2: peak {total:.0f} MiB summed PSS, "
                  f"largest process {largest:.0f} MiB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
