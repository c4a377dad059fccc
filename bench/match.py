"""Per-image matching (``colorot match``) against color-matcher, and frame sequences without flicker.

    python bench/match.py [--files 30] [--frames 60] [--frame-size 480x300] [--repeats 3] [--cut]
                          [--cache DIR] [--skip-folder] [--skip-sequence]

1. **Folder** (``--files`` 1920×1200 JPEGs, crops and flips of real photographs: the bundled
   samples and, when ``--cache`` holds them, bench/quality.py's photographs; the reference is
   ``samples/sunset.jpg``): ``colorot match REF folder/ out/ --jobs 2`` as a fresh process
   against color-matcher's own command line (``color-matcher -s DIR -r REF -m hm-mkl-hm``)
   run as 2 processes on the two halves of the folder at once, ``--repeats`` times each,
   alternating.  Prints files/s of each (the median wall time, start-up included), the ratio of
   the medians and each run's ratio, the median SW2 of the outputs to the reference
   (``colorot.metrics.sliced_w2``, as bench/quality.py), and the peak memory of ``colorot match``
   and its worker processes on a third of the files and on all of them: their summed PSS, and the
   largest one's RSS (``/usr/bin/time -f %M``'s figure), sampled from /proc (Linux).
2. **Sequence** (``--frames`` frames of ``--frame-size`` cut from ``samples/day.jpg``: a slow pan and
   zoom, an exposure ramp of +0.5 stop and sensor-like noise, σ = 2 code values, seeded; with
   ``--cut`` the second half pans across ``samples/storm.jpg``; the reference is
   ``samples/sunset.jpg``).  Five runs: ``colorot match --sequence`` (each frame through the
   blend of its neighbours' maps, ``--jobs 2``), the same with ``--smooth-range inf`` (the
   purely temporal blend), ``colorot match`` (each frame its own fit), color-matcher per frame
   (``hm-mkl-hm``) and one map for the whole sequence (``colorot fit`` on frame 0, applied to
   every frame).  The default ``--sequence`` and the own fits are timed ``--repeats`` times
   each, alternating, and their median wall times printed with their ratio (the other runs
   once); flicker and SW2 are of the first repeat's frames.

   **Flicker**: for each output frame the 12 statistics mean and 5/50/95 % percentiles of R,
   G and B (code values).  What the input itself changes is removed by regressing each
   statistic over the frames on the same statistic of the input frames (least squares,
   a + b·s_in); flicker is the RMS frame-to-frame change of the residuals, over frames and
   statistics.  Also printed: each run's median SW2 to the reference, and for both ``--sequence``
   runs the median and largest ratio of a frame's SW2 to that of the same frame's own fit.
   **The measure's floor**: the flicker of one map applied to a still clip (``--frames`` frames of
   the first frame's view and exposure, each with fresh noise), a grade that does not move at all:
   what the frames' own noise alone scores, printed beside a fifth of the own fits' flicker.
   **Before rounding**: ``--sequence`` and the own fits run once more, untimed, with ``--save-maps``;
   each frame's map, evaluated exactly, gives the same flicker of unrounded outputs (and the still
   clip's map its floor), and the **grade change**: the RMS of s(T_t(x_t)) − s(T_t−1(x_t)) over the
   frames and the 12 statistics, each frame through its own map and through the previous frame's,
   which holds the input fixed (one map for the whole clip scores 0 on it).

color-matcher is bench-only (``pip install color-matcher``), never a dependency.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from provenance import header  # bench/ is the script's folder, so on sys.path
from speed import SIZE, make_folder

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
REFERENCE = SAMPLES / "sunset.jpg"
COLOROT = [sys.executable, "-m", "colorot"]


def photographs(cache: Path | None) -> list[Path]:
    """The real photographs to cut the folder from: the samples but the reference, then the cache's."""
    found = [p for p in sorted(SAMPLES.glob("*.jpg")) if p != REFERENCE]
    if cache is not None and (cache / "images").is_dir():
        found += sorted((cache / "images").glob("*.jpg"))
    else:  # the recorded runs cut the folder from the cache's photographs too: say that this one differs
        print(f"note: no photographs in {cache}/images (run bench/quality.py with this --cache to fetch "
              "them): the folder is cut from the two samples alone, not the recorded runs' folder", file=sys.stderr)
    return found


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), np.float32).reshape(-1, 3) / 255


def median_sw2(outputs: list[Path]) -> float:
    from colorot.metrics import sliced_w2

    reference = pixels(REFERENCE)
    return statistics.median(sliced_w2(pixels(p), reference) for p in outputs)


def timed(command: list[str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def peak_memory_mib(command: list[str]) -> tuple[float, float]:
    """The peak, over the run, of the memory of ``command`` and every process it starts (its worker
    processes and their fork server), sampled every 0.1 s from /proc (Linux): the summed PSS
    (shared pages divided among the processes that share them) and the largest single RSS (what
    ``/usr/bin/time -f %M`` reports), in MiB."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    total = largest = 0.0
    while process.poll() is None:
        tree = process_tree(process.pid)
        total = max(total, sum(_kib(pid, "smaps_rollup", "Pss:") for pid in tree) / 1024)
        largest = max(largest, max(_kib(pid, "status", "VmRSS:") for pid in tree) / 1024)
        time.sleep(0.1)
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, command)
    return total, largest


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # gone meanwhile
                continue
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def _kib(pid: int, name: str, key: str) -> float:
    """The ``key`` line of /proc/PID/NAME in kB (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(key):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def folder_bench(work: Path, count: int, cache: Path | None, repeats: int) -> None:
    files = make_folder(work / "in", count, photographs(cache))
    out = work / "colorot"
    halves = [work / "half0", work / "half1"]
    for index, half in enumerate(halves):
        half.mkdir()
        for path in files[index::2]:
            shutil.copy(path, half / path.name)
    ours_s, theirs_s = [], []
    for _ in range(repeats):  # alternating, each from an empty output folder; the last run's files are kept
        shutil.rmtree(out, ignore_errors=True)
        ours_s.append(timed([*COLOROT, "match", str(REFERENCE), str(work / "in"), str(out), "--jobs", "2"]))
        theirs_s.append(color_matcher_halves(halves))
    ours = sorted(out.glob("*.jpg"))
    theirs = sorted(p for half in halves for p in (half / "batch_proc_hm-mkl-hm").glob("*"))
    if len(ours) != count or len(theirs) != count:
        raise RuntimeError(f"colorot wrote {len(ours)} and color-matcher {len(theirs)} of {count} files")
    seconds, peer_seconds = statistics.median(ours_s), statistics.median(theirs_s)
    ratios = sorted(peer / mine for mine, peer in zip(ours_s, theirs_s))
    print(f"folder: {count} files of {SIZE[0]}×{SIZE[1]}, reference {REFERENCE.name}; medians of {repeats} "
          "runs each, alternating")
    print(f"  colorot match --jobs 2: {seconds:.1f} s, {count / seconds:.3f} files/s; "
          f"color-matcher hm-mkl-hm, 2 processes: {peer_seconds:.1f} s, {count / peer_seconds:.3f} files/s; "
          f"ratio {peer_seconds / seconds:.2f}× (each run's: {', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"  median SW2 to the reference: colorot {median_sw2(ours):.4f}, color-matcher {median_sw2(theirs):.4f}")
    third = work / "third"
    third.mkdir()
    for path in files[: max(1, count // 3)]:
        shutil.copy(path, third / path.name)
    small, small_largest = peak_memory_mib([*COLOROT, "match", str(REFERENCE), str(third), str(work / "m1"), "--jobs", "2"])
    large, large_largest = peak_memory_mib([*COLOROT, "match", str(REFERENCE), str(work / "in"), str(work / "m2"),
                                            "--jobs", "2"])
    print(f"  peak memory of colorot match, all its processes (PSS): {small:.0f} MiB for {max(1, count // 3)} files, "
          f"{large:.0f} MiB for {count}; the largest process (RSS): {small_largest:.0f} / {large_largest:.0f} MiB")


def color_matcher_halves(halves: list[Path]) -> float:
    """Wall seconds of color-matcher's command line run on each half of the folder at once (2 processes)."""
    for half in halves:
        shutil.rmtree(half / "batch_proc_hm-mkl-hm", ignore_errors=True)
    start = time.perf_counter()
    peers = [subprocess.Popen(["color-matcher", "-s", str(half), "-r", str(REFERENCE), "-m", "hm-mkl-hm"],
                              cwd=half, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for half in halves]
    for peer in peers:
        peer.wait()  # color-matcher 0.6.0 exits with status 1 even when every file was written
    return time.perf_counter() - start


def make_sequence(folder: Path, frames: int, size: tuple[int, int], cut: bool = False,
                  still: bool = False) -> list[Path]:
    """``frames`` PNG frames of ``size`` (width, height): a slow pan and zoom across samples/day.jpg,
    an exposure ramp, noise; with ``cut``, the second half pans across samples/storm.jpg; with
    ``still``, every frame is the first frame's view and exposure, each with its own noise."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    for name in ("day.jpg", "storm.jpg"):
        with Image.open(SAMPLES / name) as photo:
            photos.append(photo.convert("RGB"))
    rng = np.random.default_rng(0)
    paths = []
    for t in range(frames):
        photo = photos[cut and t >= frames // 2]
        w, h = photo.size
        s = 0.0 if still else t / max(1, frames - 1)
        scale = 0.7 - 0.15 * s  # the crop shrinks: a zoom in
        cw, ch = int(w * scale), min(h, int(w * scale * size[1] / size[0]))
        x, y = int((w - cw) * (0.2 + 0.5 * s)), int((h - ch) * 0.5)
        frame = np.asarray(photo.crop((x, y, x + cw, y + ch)).resize(size, Image.Resampling.BILINEAR),
                           np.float64)
        frame = frame * 2 ** (0.5 * s) + rng.normal(0, 2.0, frame.shape)  # +½ stop over the clip, sensor noise
        paths.append(folder / f"frame{t:04d}.png")
        Image.fromarray(np.clip(np.rint(frame), 0, 255).astype(np.uint8)).save(paths[-1])
    return paths


def frame_statistics(path: Path) -> np.ndarray:
    """Mean and 5/50/95 % percentiles of R, G, B in code values: (12,)."""
    return statistics_of(pixels(path))


def statistics_of(rgb: np.ndarray) -> np.ndarray:
    """:func:`frame_statistics` of pixels (N, 3) in [0, 1], unrounded."""
    p = rgb * 255
    return np.concatenate([p.mean(0), *np.percentile(p, [5, 50, 95], axis=0)])


def flicker(inputs: list[Path], outputs: list[Path]) -> float:
    """RMS frame-to-frame change of the output statistics not explained by the input's (module docstring)."""
    return residual_flicker(np.stack([frame_statistics(p) for p in inputs]),
                            np.stack([frame_statistics(p) for p in outputs]))


def residual_flicker(s_in: np.ndarray, s_out: np.ndarray) -> float:
    """:func:`flicker` of the statistics (frames, 12) of the inputs and of the outputs."""
    residuals = []
    for k in range(s_in.shape[1]):
        design = np.stack([np.ones(len(s_in)), s_in[:, k]], axis=1)
        coef, *_ = np.linalg.lstsq(design, s_out[:, k], rcond=None)
        residuals.append(s_out[:, k] - design @ coef)
    return float(np.sqrt(np.mean(np.diff(np.stack(residuals, axis=1), axis=0) ** 2)))


def without_rounding(frames: list[Path], maps: list[Path]) -> tuple[float, float]:
    """The flicker of ``frames`` written through their saved ``maps`` (``--save-maps``) before any
    rounding (each map evaluated exactly, ``ColorTransfer.transform``), and their **grade change**:
    the RMS over frames and the 12 statistics of s(T_t(x_t)) − s(T_t−1(x_t)), frame t through its
    own map and through the previous frame's, which holds the input fixed (one map for all: 0)."""
    import colorot

    loaded = {path: colorot.load(path) for path in set(maps)}  # the still clip's one map, once
    fitted = [loaded[path] for path in maps]
    inputs = [pixels(path) for path in frames]
    own = np.stack([statistics_of(fit.transform(x)) for fit, x in zip(fitted, inputs)])
    previous = np.stack([statistics_of(fit.transform(x)) for fit, x in zip(fitted, inputs[1:])])
    change = float(np.sqrt(np.mean((own[1:] - previous) ** 2)))
    return residual_flicker(np.stack([statistics_of(x) for x in inputs]), own), change


def frame_sw2(outputs: list[Path]) -> np.ndarray:
    from colorot.metrics import sliced_w2

    reference = pixels(REFERENCE)
    return np.asarray([sliced_w2(pixels(p), reference) for p in outputs])


def color_matcher_frames(frames: list[Path], out: Path) -> list[Path]:
    from color_matcher import ColorMatcher

    out.mkdir()
    with Image.open(REFERENCE) as image:
        reference = np.asarray(image.convert("RGB"))
    paths = []
    for frame in frames:
        with Image.open(frame) as image:
            source = np.asarray(image.convert("RGB"))
        result = ColorMatcher().transfer(src=source, ref=reference, method="hm-mkl-hm")
        paths.append(out / frame.name)
        Image.fromarray(np.clip(np.rint(result), 0, 255).astype(np.uint8)).save(paths[-1])
    return paths


def sequence_bench(work: Path, count: int, size: tuple[int, int], repeats: int, cut: bool) -> None:
    frames = make_sequence(work / "frames", count, size, cut)
    runs: dict[str, list[Path]] = {}
    seconds: dict[str, float] = {}
    ours = {"colorot match --sequence": ["--sequence"], "… --smooth-range inf": ["--sequence", "--smooth-range", "inf"],
            "colorot match (own fits)": []}
    times: dict[str, list[float]] = {name: [] for name in ours}
    for repeat in range(repeats):
        for name, options in ours.items():
            if repeat and name == "… --smooth-range inf":
                continue  # timed once: the range term's cost is in the default's time
            out = work / f"{len(options)}-{repeat}"
            times[name].append(timed([*COLOROT, "match", str(REFERENCE), str(work / "frames"), str(out),
                                      *options, "--jobs", "2"]))
            if repeat == 0:
                runs[name] = sorted(out.glob("*.png"))
            else:
                shutil.rmtree(out)
    seconds.update((name, statistics.median(values)) for name, values in times.items())
    start = time.perf_counter()
    runs["color-matcher per frame"] = color_matcher_frames(frames, work / "peer")
    seconds["color-matcher per frame"] = time.perf_counter() - start
    start = time.perf_counter()
    runs["one map for the sequence"] = one_map(frames, work / "one")
    seconds["one map for the sequence"] = time.perf_counter() - start
    still = make_sequence(work / "still", count, size, still=True)
    floor = flicker(still, one_map(still, work / "still-out"))
    sw2 = {name: frame_sw2(outputs) for name, outputs in runs.items()}
    flickers = {name: flicker(frames, outputs) for name, outputs in runs.items()}
    own = flickers["colorot match (own fits)"]
    print(f"sequence: {count} frames of {size[0]}×{size[1]} (pan, zoom, +0.5 stop ramp, noise σ 2"
          f"{', a cut after frame ' + str(count // 2 - 1) if cut else ''}), reference {REFERENCE.name}; "
          f"the default's and own fits' times the median of {repeats}")
    for name in runs:
        print(f"  {name:28s} flicker {flickers[name]:7.3f} code values   median SW2 "
              f"{np.median(sw2[name]):.4f}   {seconds[name]:6.1f} s")
    for name in ("colorot match --sequence", "… --smooth-range inf"):
        ratio = sw2[name] / sw2["colorot match (own fits)"]
        print(f"  {name} against own fits: flicker ÷ {own / flickers[name]:.2f}, "
              f"each frame's SW2 ratio median {np.median(ratio):.3f}, largest {ratio.max():.3f} "
              f"(frame {ratio.argmax()}), time × {seconds[name] / seconds['colorot match (own fits)']:.2f}")
    print(f"  the measure's floor: one map on a still clip (frame 0's view, fresh noise each frame) flickers "
          f"{floor:.3f}; a fifth of the own fits' flicker is {own / 5:.3f}")
    exact = {}
    for name in ("colorot match --sequence", "colorot match (own fits)"):  # again, untimed, keeping the maps
        options = ours[name]
        subprocess.run([*COLOROT, "match", str(REFERENCE), str(work / "frames"), str(work / f"kept-{len(options)}"),
                        *options, "--jobs", "2", "--save-maps", str(work / f"maps-{len(options)}")], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        exact[name] = without_rounding(frames, sorted((work / f"maps-{len(options)}").glob("*.pt")))
    (seq_flicker, seq_change), (own_flicker, own_change) = exact.values()
    print(f"  before rounding (each frame's saved map, evaluated exactly): flicker --sequence {seq_flicker:.3f}, "
          f"own fits {own_flicker:.3f} (÷ {own_flicker / seq_flicker:.2f}); grade change (frame t through its map "
          f"and the previous frame's) --sequence {seq_change:.3f}, own fits {own_change:.3f} "
          f"(÷ {own_change / seq_change:.2f})")
    still_flicker, _ = without_rounding(still, [work / "still-out.pt"] * len(still))
    print(f"  the floor before rounding: the still clip's one map flickers {still_flicker:.3f}; a fifth of the own "
          f"fits' is {own_flicker / 5:.3f}")


def one_map(frames: list[Path], out: Path) -> list[Path]:
    """Every frame (one folder's) through one map, ``colorot fit`` on the first frame: the outputs."""
    model = out.with_suffix(".pt")
    subprocess.run([*COLOROT, "fit", str(frames[0]), str(REFERENCE), "-o", str(model)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([*COLOROT, "apply", str(model), str(frames[0].parent), str(out)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return sorted(out.glob("*.png"))


def frame_size(text: str) -> tuple[int, int]:
    """``WxH`` → (W, H)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"give the frame size as WxH, not {text!r}") from None
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError("frames must be at least 16×16")
    return width, height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--frame-size", type=frame_size, default=(480, 300))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cut", action="store_true", help="the sequence's second half pans another photograph")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("COLOROT_BENCH_CACHE",
                                                                          Path.home() / ".cache/colorot-bench")))
    parser.add_argument("--skip-folder", action="store_true")
    parser.add_argument("--skip-sequence", action="store_true")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    print(header(f"--repeats {args.repeats}"))
    with tempfile.TemporaryDirectory(prefix="colorot-match-bench-") as tmp:
        if not args.skip_folder:
            folder_bench(Path(tmp) / "folder", args.files, args.cache, args.repeats)
        if not args.skip_sequence:
            sequence_bench(Path(tmp) / "sequence", args.frames, args.frame_size, args.repeats, args.cut)


if __name__ == "__main__":
    main()
