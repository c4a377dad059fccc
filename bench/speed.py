"""Speed and memory of colorot against the I/O floor and the fastest good peer.

    python bench/speed.py [--runs 5] [--images 50]
    python bench/speed.py --profile     # only: where apply's time goes (py-spy, per thread and step)
    python bench/speed.py --fit-only    # only: fit times (defaults, --model cmgn, --model mmgn) vs hm-mkl-hm

Prints, with the machine's CPU count, medians over ``--runs`` runs:

1. apply throughput: ``colorot apply`` (as a subprocess, start-up included) over a
   folder of 1920×1200 JPEGs, against a plain Pillow decode → encode loop over the
   same files with the same number of worker threads, format and quality;
   also that loop as a fresh process (what Python's start-up and Pillow's import cost any
   command), the seconds the run itself reports (start-up excluded), the files again in this
   process on the colour table the first pass filled (a long folder's pace), and the start-up
   alone (``colorot apply`` on one 8×8 image);
2. the fast path's (the colour table's) difference from the exact map (max code values,
   fraction of pixels that differ), before JPEG encoding; and for one 16-bit image, the
   fast path's time and difference against the exact map;
3. fit time for a 1920×1200 pair at default settings (``colorot fit`` as a subprocess:
   start-up, decoding and target fitting included) against color-matcher's ``hm-mkl-hm``
   (``pip install color-matcher``; skipped if absent; bench-only, never a package
   dependency), timed both in this process (imports excluded) and as a fresh process;
4. peak resident memory (``/usr/bin/time -f %M``) of ``colorot apply`` on one 50-megapixel image, and on
   folders of 5 and of ``--images`` images.

``--profile`` samples one ``colorot apply`` process over the folder with py-spy (``pip install
py-spy``; bench-only) and prints each thread's samples by step, all of them and those holding the GIL.

The test images are crops, flips and rescalings of the bundled sample photographs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from provenance import header  # bench/ is the script's folder, so on sys.path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
SIZE = (1920, 1200)


def make_folder(folder: Path, count: int, photos: list[Path] | None = None) -> list[Path]:
    """``count`` distinct 1920×1200 JPEGs, each a seeded crop (60–100 %) of one of ``photos`` in turn
    (default: the sample photographs), every other one flipped."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = sorted(SAMPLES.glob("*.jpg")) if photos is None else photos
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        with Image.open(photos[i % len(photos)]) as photo:
            photo = photo.convert("RGB")
        w, h = photo.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        image = photo.crop((x, y, x + cw, y + ch)).resize(SIZE, Image.Resampling.BICUBIC)
        if i % 2:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        paths.append(folder / f"img{i:03d}.jpg")
        image.save(paths[-1], quality=92)
    return paths


def make_pair(folder: Path) -> tuple[Path, Path]:
    """The fit benchmarks' pair: samples/day.jpg and samples/sunset.jpg resized to 1920×1200, as
    JPEGs in ``folder``."""
    pair = (folder / "src.jpg", folder / "tgt.jpg")
    for photo, path in zip((SAMPLES / "day.jpg", SAMPLES / "sunset.jpg"), pair):
        with Image.open(photo) as image:
            image.convert("RGB").resize(SIZE).save(path, quality=95)
    return pair


#: The I/O floor's loop: a plain Pillow decode → encode of FILES into the folder OUT, JOBS threads
#: (run in this process by :func:`io_floor`, and as a fresh process by :func:`io_floor_command`).
FLOOR_LOOP = """
from concurrent.futures import ThreadPoolExecutor
from PIL import Image
def one(path):
    with Image.open(path) as image:
        image.load()
        image.save(OUT / path.name, quality=95)
with ThreadPoolExecutor(JOBS) as pool:
    list(pool.map(one, FILES))
"""


def io_floor(files: list[Path], out: Path, jobs: int) -> float:
    """Seconds for the floor's loop over ``files`` in this process (Pillow already imported)."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    exec(FLOOR_LOOP, {"FILES": files, "OUT": out, "JOBS": jobs})
    return time.perf_counter() - start


def run_child(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (MiB) of a child process."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr}")
    peak_kib = int(proc.stderr.strip().splitlines()[-1])
    return seconds, peak_kib // 1024


def median_of(runs: int, fn) -> float:
    return statistics.median(fn() for _ in range(runs))


def io_floor_command(folder: Path, out: Path, jobs: int) -> float:
    """Seconds for the floor's loop run as a fresh Python process, as ``colorot apply`` is timed:
    Python's start-up and Pillow's import included."""
    out.mkdir(parents=True, exist_ok=True)
    setup = (f"from pathlib import Path\nFILES = sorted(Path({str(folder)!r}).glob('*.jpg'))\n"
             f"OUT = Path({str(out)!r})\nJOBS = {jobs}\n")
    return run_child([sys.executable, "-c", setup + FLOOR_LOOP])[0]


def filled_table_pace(model: Path, folder: Path, out: Path, jobs: int, runs: int) -> float:
    """Median seconds of ``colorot.apply.run`` over the folder in this process, ``jobs`` threads, on
    the colour table a first (untimed) pass filled: the pace of a folder long enough that its new
    colours no longer matter, start-up excluded."""
    from colorot import apply

    table = apply.checkpoint_table(model)
    plan = apply.plan([folder], out, overwrite=True)
    apply.run(plan, None, table=table, jobs=jobs)
    return median_of(runs, lambda: apply.run(plan, None, table=table, jobs=jobs).seconds)


def fast_path_difference(model: Path, files: list[Path]) -> tuple[int, float]:
    """Max code-value difference and fraction of differing pixels, fast path (the colour
    table ``colorot apply`` uses) vs the exact map, before encoding, over the first 5 files."""
    from colorot import checkpoint
    from colorot.apply import colour_table, map_pixels
    from colorot.imageio import quantize, read_image

    fitted = checkpoint.load(model).model
    table = colour_table(fitted)
    worst, differing, total = 0, 0, 0
    for path in files[:5]:
        image = read_image(path)
        exact = quantize(map_pixels(fitted, image.rgb), 8).astype(np.int16)
        diff = np.abs(table.apply_codes(image.codes).astype(np.int16) - exact).max(-1)
        worst, differing, total = max(worst, int(diff.max())), differing + int((diff > 0).sum()), total + diff.size
    return worst, differing / total


def sixteen_bit(model: Path, source: Path) -> tuple[float, float, int, float]:
    """One 1920×1200 16-bit image mapped in this process (one thread): seconds through the fast
    path (the map's evaluator: a ridge map's profiles) and the exact map, their largest
    difference in 16-bit code values and the fraction of differing values."""
    import torch

    from colorot import checkpoint
    from colorot.apply import colour_table, map_image
    from colorot.imageio import Image as Decoded
    from colorot.imageio import quantize, read_image

    torch.set_num_threads(1)
    fitted = checkpoint.load(model).model
    codes = read_image(source).codes.astype(np.uint16) * 257
    image = Decoded(codes=codes, alpha=None, bit_depth=16, mode="RGB", format="PNG")
    start = time.perf_counter()
    fast = map_image(fitted, image, table=colour_table(fitted))
    fast_s = time.perf_counter() - start
    start = time.perf_counter()
    exact = map_image(fitted, image)
    exact_s = time.perf_counter() - start
    diff = np.abs(quantize(fast, 16).astype(np.int32) - quantize(exact, 16).astype(np.int32))
    torch.set_num_threads(os.cpu_count() or 1)
    return fast_s, exact_s, int(diff.max()), float((diff > 0).mean())


def run_apply(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds of a ``colorot apply --json`` process, and the seconds its own run reports
    (the files alone: start-up, loading the checkpoint and planning excluded)."""
    start = time.perf_counter()
    proc = subprocess.run([*cmd, "--json"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr}")
    return seconds, json.loads(proc.stdout)["seconds"]


def fit_peer(source: Path, target: Path) -> float | None:
    """Seconds for color-matcher's hm-mkl-hm on one pair (read + fit + apply), or None."""
    try:
        from color_matcher import ColorMatcher
    except ImportError:
        return None
    start = time.perf_counter()
    src = np.asarray(Image.open(source).convert("RGB"))
    ref = np.asarray(Image.open(target).convert("RGB"))
    ColorMatcher().transfer(src=src, ref=ref, method="hm-mkl-hm")
    return time.perf_counter() - start


PEER_SCRIPT = """
import sys
import numpy as np
from PIL import Image
from color_matcher import ColorMatcher
src = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
ref = np.asarray(Image.open(sys.argv[2]).convert("RGB"))
ColorMatcher().transfer(src=src, ref=ref, method="hm-mkl-hm")
"""


def fit_peer_command(source: Path, target: Path) -> float | None:
    """Seconds for the same hm-mkl-hm run as a fresh Python process (imports included), as
    ``colorot fit`` is timed; None without color-matcher."""
    try:
        import color_matcher  # noqa: F401
    except ImportError:
        return None
    return run_child([sys.executable, "-c", PEER_SCRIPT, str(source), str(target)])[0]


#: Steps of ``colorot apply`` by the function a sample is inside (the first that matches wins).
PROFILE_STEPS = [
    ("colour table: new colours", "ColourTable._fill"),
    ("colour table: gathers", "ColourTable.apply_words"),
    ("JPEG decode", "ImageFile.load"),
    ("copy out of Pillow (tobytes)", "Image.tobytes"),
    ("write: encode, fsync, rename", "write_image"),
    ("imports", "_find_and_load"),
    ("waiting", "Condition.wait"),
]


def profile_apply(count: int) -> None:
    """py-spy samples of one ``colorot apply --jobs <cpus>`` process over the folder (a fresh
    process: the colour table starts empty), summarised per thread by step: all samples (--idle),
    then only those holding the GIL (--gil), in milliseconds of samples."""
    import collections
    import shutil

    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        make_folder(tmp / "in", count)
        model = tmp / "model.pt"
        run_child([sys.executable, "-m", "colorot", "fit", str(SAMPLES / "day.jpg"), str(SAMPLES / "sunset.jpg"),
                   "-o", str(model)])
        apply_cmd = [sys.executable, "-m", "colorot", "apply", str(model), str(tmp / "in"), str(tmp / "out"),
                     "--overwrite", "--jobs", str(cpus)]
        for flag, label in (("--idle", "all samples"), ("--gil", "samples holding the GIL")):
            raw = tmp / "samples.txt"
            subprocess.run([py_spy, "record", "--threads", flag, "--rate", "1000", "--format", "raw",
                            "--output", str(raw), "--", *apply_cmd], check=True, capture_output=True)
            per_thread: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
            for line in raw.read_text().splitlines():
                stack, samples = line.rsplit(" ", 1)
                thread, *frames = stack.split(";")
                names = {frame.split(" (")[0] for frame in frames}
                step = next((step for step, function in PROFILE_STEPS if function in names), "other")
                per_thread[thread][step] += int(samples)
            print(f"--- {label}, {count} files, --jobs {cpus}, 1 sample = 1 ms (py-spy slows the process)")
            for thread, steps in sorted(per_thread.items()):
                total = sum(steps.values())
                print(f"  {thread}: {total} samples")
                for step, _ in [*PROFILE_STEPS, ("other", "")]:
                    if steps[step]:
                        print(f"    {step:32s} {steps[step]:6d}  {100 * steps[step] / total:5.1f} %")


def report_fit(fit_s: float, peer_s: float | None, peer_cmd_s: float | None) -> None:
    print(f"fit, 1920×1200 pair, defaults: colorot {fit_s:.2f} s", end="")
    if peer_s is None:
        print("; color-matcher not installed, peer skipped")
    else:
        print(f"; hm-mkl-hm {peer_s:.2f} s in-process (ratio {fit_s / peer_s:.2f}×), "
              f"{peer_cmd_s:.2f} s as a fresh process like colorot's (ratio {fit_s / peer_cmd_s:.2f}×)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--fit-runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true",
                        help="only profile one colorot apply process over the folder (py-spy)")
    parser.add_argument("--fit-only", action="store_true",
                        help="only the fit times: defaults, --model cmgn and --model mmgn (--fit-runs runs "
                             "each), against hm-mkl-hm")
    args = parser.parse_args()
    if args.profile:
        return profile_apply(args.images)
    cpus = os.cpu_count() or 1
    colorot = [sys.executable, "-m", "colorot"]
    runs = f"fits medians of {args.fit_runs}" + ("" if args.fit_only else f", the rest of {args.runs}")
    print(header(f"{runs} runs"))

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = make_folder(tmp / "in", args.images)
        pair_src, pair_tgt = make_pair(tmp)

        # 3. fit (first: it also writes the model used below)
        model = tmp / "model.pt"
        fit_s = median_of(args.fit_runs, lambda: run_child(
            [*colorot, "fit", str(pair_src), str(pair_tgt), "-o", str(model), "--force"])[0])
        peer_times = [fit_peer(pair_src, pair_tgt) for _ in range(args.fit_runs)]
        peer_s = statistics.median(peer_times) if None not in peer_times else None
        peer_cmd = [fit_peer_command(pair_src, pair_tgt) for _ in range(args.fit_runs)]
        peer_cmd_s = statistics.median(peer_cmd) if None not in peer_cmd else None
        if args.fit_only:
            report_fit(fit_s, peer_s, peer_cmd_s)
            for name in ("cmgn", "mmgn"):
                times = [run_child([*colorot, "fit", str(pair_src), str(pair_tgt), "-o", str(tmp / f"{name}.pt"),
                                    "--model", name, "--force"])[0] for _ in range(args.fit_runs)]
                print(f"fit --model {name}, median of {len(times)}: {statistics.median(times):.2f} s "
                      f"(runs {', '.join(f'{t:.2f}' for t in times)})")
            return

        # 1. apply throughput against the I/O floor
        floor_s = median_of(args.runs, lambda: io_floor(files, tmp / "floor", cpus))
        floor_cmd_s = median_of(args.runs, lambda: io_floor_command(tmp / "in", tmp / "floor-cmd", cpus))
        apply_cmd = [*colorot, "apply", str(model), str(tmp / "in"), str(tmp / "out"), "--overwrite",
                     "--jobs", str(cpus)]
        apply_runs = [run_apply(apply_cmd) for _ in range(args.runs)]
        apply_s = statistics.median(wall for wall, _ in apply_runs)
        loop_s = statistics.median(loop for _, loop in apply_runs)
        pace_s = filled_table_pace(model, tmp / "in", tmp / "pace", cpus, args.runs)
        tiny = tmp / "tiny.png"
        Image.new("RGB", (8, 8)).save(tiny)
        start_s = median_of(args.runs, lambda: run_child(
            [*colorot, "apply", str(model), str(tiny), str(tmp / "tiny-out.png"), "--overwrite"])[0])
        exact_s = run_child([*colorot, "apply", str(model), str(tmp / "in"), str(tmp / "exact"),
                             "--overwrite", "--exact", "--jobs", str(cpus)])[0]
        n = len(files)
        print(f"apply, {n} JPEGs 1920×1200, {cpus} workers:")
        print(f"  I/O floor (Pillow decode→encode)  {floor_s:7.2f} s  {n / floor_s:6.1f} files/s")
        print(f"  the same loop as a fresh process  {floor_cmd_s:7.2f} s  {n / floor_cmd_s:6.1f} files/s"
              f"  ratio to floor {floor_s / floor_cmd_s:.2f}×  (Python start-up, Pillow import)")
        print(f"  colorot apply (colour table)      {apply_s:7.2f} s  {n / apply_s:6.1f} files/s"
              f"  ratio to floor {floor_s / apply_s:.2f}×")
        print(f"    of which the files themselves   {loop_s:7.2f} s  {n / loop_s:6.1f} files/s"
              f"  ratio to floor {floor_s / loop_s:.2f}×")
        print(f"    again, table filled (in-process) {pace_s:6.2f} s  {n / pace_s:6.1f} files/s"
              f"  ratio to floor {floor_s / pace_s:.2f}×  (a long folder's pace)")
        print(f"  colorot apply on one 8×8 image    {start_s:7.2f} s  (start-up: imports, checkpoint)")
        print(f"  colorot apply --exact (1 run)     {exact_s:7.2f} s  {n / exact_s:6.1f} files/s"
              f"  ratio to floor {floor_s / exact_s:.2f}×")

        # 2. fast-path accuracy
        worst, frac = fast_path_difference(model, files)
        print(f"fast path vs exact (5 images, before encoding): max {worst} code value(s), "
              f"{100 * frac:.4f} % of pixels differ")

        fast16, exact16, worst16, frac16 = sixteen_bit(model, files[0])
        print(f"16-bit 1920×1200 image, one thread: fast path {fast16:.2f} s, exact {exact16:.2f} s "
              f"({exact16 / fast16:.1f}×); max {worst16} 16-bit code value(s), {100 * frac16:.2f} % differ")

        report_fit(fit_s, peer_s, peer_cmd_s)

        # 4. memory
        big = tmp / "big" / "big.jpg"
        big.parent.mkdir()
        Image.open(SAMPLES / "day.jpg").resize((8660, 5774), Image.Resampling.BICUBIC).save(big, quality=92)
        _, rss_big = run_child([*colorot, "apply", str(model), str(big), str(tmp / "big-out.jpg"),
                                "--overwrite", "--jobs", "1"])
        _, rss_big_exact = run_child([*colorot, "apply", str(model), str(big), str(tmp / "big-exact.jpg"),
                                      "--overwrite", "--exact", "--jobs", "1"])
        few = tmp / "few"
        few.mkdir()
        for path in files[:5]:
            os.link(path, few / path.name)
        _, rss_few = run_child([*colorot, "apply", str(model), str(few), str(tmp / "few-out"),
                                "--jobs", str(cpus)])
        _, rss_many = run_child([*colorot, "apply", str(model), str(tmp / "in"), str(tmp / "many-out"),
                                 "--jobs", str(cpus)])
        print(f"peak RSS: 50 MP image {rss_big} MiB (colour table), {rss_big_exact} MiB (--exact); "
              f"folder of 5: {rss_few} MiB, of {n}: {rss_many} MiB")


if __name__ == "__main__":
    main()
