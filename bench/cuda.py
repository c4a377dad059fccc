"""The Adam path on a CUDA GPU against the CPU, and the tests marked ``cuda``.

    python bench/cuda.py [--models ridge,cmgn,mmgn] [--devices cuda,cpu] [--runs 3] [--eager-runs 1]
                         [--cpu-runs 1] [--cpu-jobs 1] [--cpu-from REPORT.json] [--steps N] [--json PATH]

1. The machine: CPUs, Python, torch and the CUDA card's name.
2. With ``cuda`` among ``--devices``: ``python -m pytest -m cuda`` over the test files that hold
   such tests (the others are not collected, so a missing optional package there cannot stop
   them), its summary line.
3. For each model, ``ColorTransfer(model=M, solver="adam", device=D, random_state=0).fit(SOURCE,
   TARGET)`` on the 1920×1200 pair of bench/speed.py (samples/day.jpg → samples/sunset.jpg), every
   setting but the device at its default: on the GPU one cold fit (it pays for CUDA's start) and
   ``--runs`` timed ones, ``--eager-runs`` more with every step launched eagerly rather than replayed
   as a CUDA graph (``colorot.train_step.GRAPH_WARMUP_STEPS`` past the last step: what the graph
   gains), then ``--cpu-runs`` fits on the CPU (one training thread, as colorot
   trains there; ``--cpu-jobs`` models at a time, each in its own process, for a machine with
   cores to spare).  Prints the median wall time of the whole fit (reading, EM and the start
   included), of its Adam loop alone (``history_.seconds``), and each device's SW2 of the output
   to the target (``colorot.metrics.sliced_w2``, as bench/quality.py), so that a fast fit is also
   shown to be as good a one.  The CPU/GPU ratios are printed against this machine's CPU and
   against the CPU rows of ``--cpu-from``, an earlier ``--json`` report of another machine (the
   2-CPU machine the project's speed goals are set on, say).
4. With a GPU, ``ColorAugment`` of the default fit's map on a 64×3×224² batch there: the map
   itself in chunks (what ColorAugment does on a GPU) and its tabulated profiles (what it does on
   the CPU, bench/augment.py), median ms of 10 runs after a warm-up, their largest difference, and
   the peak GPU memory of each.

A fit that raises is reported with its traceback and the run goes on.  The ``--json`` report is
rewritten after every part, so a run stopped early keeps what it measured.  Without a CUDA device
it runs the CPU fits alone and exits 1 (0 with ``--devices cpu``).  Each CPU fit takes 25–45 s (2 CPUs,
2026-12-04), so the CPU's part needs about 2 minutes.  On an H200 the GPU's part with the defaults (the
tests, 12 graphed fits of ≈ 3 s, 3 eager ones of ≈ 13 s, ColorAugment) took 2.5 minutes (2026-12-04).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from provenance import describe  # bench/ is the script's folder, so on sys.path
from speed import make_pair

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    card = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    return describe(f"torch {torch.__version__}, CUDA {torch.version.cuda or 'n/a'}: {card}")


def cuda_tests() -> str:
    """The summary line of ``pytest -m cuda`` over the test files with tests marked ``cuda``."""
    files = [str(path) for path in sorted((ROOT / "tests").glob("test_*.py")) if "mark.cuda" in path.read_text()]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", *files],
                          capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode not in (0, 5):  # 5: nothing collected
        print(proc.stdout[-6000:], proc.stderr[-2000:], sep="\n")
    return f"rc {proc.returncode}: {lines[-1] if lines else proc.stderr.strip()[-200:]}"


def fit_once(model: str, device: str, pair: tuple[Path, Path], steps: int | None) -> dict:
    """One Adam fit: wall seconds of the fit and of its Adam loop, and the output's SW2 to the target.
    ``device`` "cuda eager": on the GPU, every step launched eagerly (no CUDA graph)."""
    from colorot import train_step
    from colorot.metrics import sliced_w2
    from colorot.transfer import ColorTransfer, to_pixels

    warmup = train_step.GRAPH_WARMUP_STEPS
    if device == "cuda eager":
        device, train_step.GRAPH_WARMUP_STEPS = "cuda", 10**9
    try:
        start = time.perf_counter()
        fitted = ColorTransfer(model=model, solver="adam", device=device, steps=steps, random_state=0).fit(*pair)
        seconds = time.perf_counter() - start
    finally:
        train_step.GRAPH_WARMUP_STEPS = warmup
    output = np.clip(fitted.transform(pair[0]), 0, 1)
    return {"fit_s": seconds, "adam_s": fitted.history_.seconds, "steps": len(fitted.history_.losses),
            "device": fitted.train_info_["device"], "sw2": sliced_w2(output, to_pixels(pair[1]))}


def timed(model: str, device: str, pair: tuple[Path, Path], steps: int | None, runs: int) -> dict:
    """``runs`` fits and their medians, or the traceback of the one that raised."""
    try:
        fits = [fit_once(model, device, pair, steps) for _ in range(runs)]
    except Exception:  # noqa: BLE001 - reported, and the other fits go on
        error = traceback.format_exc()
        print(f"{model} on {device} raised:\n{error}", flush=True)
        return {"error": error}
    return {"runs": fits, **{key: statistics.median(f[key] for f in fits) for key in ("fit_s", "adam_s", "sw2")}}


def augment_on_gpu(pair: tuple[Path, Path]) -> dict:
    """Part 4: ColorAugment's two evaluations of the default map on the GPU."""
    from colorot.transfer import ColorTransfer
    from colorot.transforms import AUGMENT_DEVICE_CHUNK, ColorAugment

    augment = ColorAugment(ColorTransfer().fit(*pair).map_, clamp=False).to("cuda")
    images = torch.rand(64, 3, 224, 224, generator=torch.Generator().manual_seed(0)).cuda()
    pixels = images.permute(0, 2, 3, 1).reshape(-1, 3)

    def tables() -> torch.Tensor:
        return torch.cat([augment.tabulated(part) for part in pixels.split(AUGMENT_DEVICE_CHUNK)])

    def module() -> torch.Tensor:
        return augment(images).permute(0, 2, 3, 1).reshape(-1, 3)

    row: dict = {}
    for name, run in (("module, chunked", module), ("tables", tables)):
        out = run()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(10):
            start = time.perf_counter()
            run()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        row[name] = {"ms": 1000 * statistics.median(times), "peak_mib": torch.cuda.max_memory_allocated() / 2**20,
                     "out": out}
    row["max_difference"] = float((row["tables"].pop("out") - row["module, chunked"].pop("out")).abs().max())
    return row


def print_row(model: str, device: str, row: dict) -> None:
    if "error" in row:
        print(f"| {model} | {device} | raised | | | |", flush=True)
        return
    print(f"| {model} | {device} | {row['fit_s']:.2f} | {row['adam_s']:.2f} | {row['sw2']:.4f} | "
          f"{len(row['runs'])} ({row['runs'][0]['steps']} steps) |", flush=True)


def ratios(cpu: dict, gpu: dict) -> dict | None:
    if "error" in cpu or "error" in gpu:
        return None
    return {"fit": cpu["fit_s"] / gpu["fit_s"], "adam": cpu["adam_s"] / gpu["adam_s"]}


def cpu_fits(models: list[str], pair: tuple[Path, Path], steps: int | None, runs: int, jobs: int) -> dict:
    """Each model's CPU fits, ``jobs`` models at a time in their own processes (1: in this one)."""
    if jobs <= 1:
        return {model: timed(model, "cpu", pair, steps, runs) for model in models}
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:  # no fork of a CUDA process
        futures = {model: pool.submit(timed, model, "cpu", pair, steps, runs) for model in models}
        return {model: future.result() for model, future in futures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="ridge,cmgn,mmgn")
    parser.add_argument("--devices", default="cuda,cpu", help="cuda, cpu or both")
    parser.add_argument("--runs", type=int, default=3, help="timed GPU fits per model, after a cold one")
    parser.add_argument("--eager-runs", type=int, default=1, help="GPU fits per model without the CUDA graph")
    parser.add_argument("--cpu-runs", type=int, default=1)
    parser.add_argument("--cpu-jobs", type=int, default=1, help="models fitted on the CPU at a time")
    parser.add_argument("--cpu-from", type=Path, default=None, help="an earlier --json report whose CPU rows "
                        "the GPU's are also compared with")
    parser.add_argument("--steps", type=int, default=None, help="Adam steps (default: colorot's)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = parser.parse_args()
    models, devices = args.models.split(","), args.devices.split(",")
    gpu = torch.cuda.is_available() and "cuda" in devices
    report: dict = {"machine": machine(), "models": {model: {} for model in models}}

    def save() -> None:
        if args.json:
            args.json.write_text(json.dumps(report, indent=1))

    print(f"machine: {report['machine']}", flush=True)
    if gpu:
        report["tests"] = cuda_tests()
        print(f"pytest -m cuda: {report['tests']}", flush=True)
        save()
    with tempfile.TemporaryDirectory() as tmp_name:
        pair = make_pair(Path(tmp_name))
        print("| model | device | fit s (median) | Adam loop s | SW2 | runs |\n| --- | --- | --- | --- | --- | --- |")
        if gpu:
            for model in models:
                for device, runs in (("cuda cold", 1), ("cuda", args.runs), ("cuda eager", args.eager_runs)):
                    if not runs:
                        continue
                    row = timed(model, "cuda" if device == "cuda cold" else device, pair, args.steps, runs)
                    report["models"][model][device] = row
                    print_row(model, device, report["models"][model][device])
                    save()
            try:
                report["augment"] = augment_on_gpu(pair)
            except Exception:  # noqa: BLE001
                print(f"ColorAugment on the GPU raised:\n{traceback.format_exc()}", flush=True)
            save()
        if "cpu" in devices and args.cpu_runs:
            for model, row in cpu_fits(models, pair, args.steps, args.cpu_runs, args.cpu_jobs).items():
                report["models"][model]["cpu"] = row
                print_row(model, "cpu" + (f" ({args.cpu_jobs} models at a time)" if args.cpu_jobs > 1 else ""), row)
            save()
    earlier = json.loads(args.cpu_from.read_text()) if args.cpu_from else None
    if earlier:
        report["cpu_from"] = {"path": str(args.cpu_from), "machine": earlier["machine"]}
    for model, rows in report["models"].items():
        if "cuda" not in rows:
            continue
        graph_gain = rows.get("cuda eager") and ratios(rows["cuda eager"], rows["cuda"])
        if graph_gain:
            rows["graph_gain"] = graph_gain
            print(f"{model}: eager steps/CUDA graph {graph_gain['fit']:.1f}× for the whole fit, "
                  f"{graph_gain['adam']:.1f}× for the Adam loop")
        for name, cpu in (("this machine's CPU", rows.get("cpu")),
                          (f"{args.cpu_from}'s CPU", earlier and earlier["models"].get(model, {}).get("cpu"))):
            ratio = cpu and ratios(cpu, rows["cuda"])
            if ratio:
                rows.setdefault("ratios", {})[name] = ratio
                print(f"{model}: {name}/GPU {ratio['fit']:.1f}× for the whole fit, {ratio['adam']:.1f}× for the "
                      f"Adam loop (CPU {cpu['fit_s']:.1f} s, {cpu['adam_s']:.1f} s)")
    if "augment" in report:
        row = report["augment"]
        print("ColorAugment, 64×3×224² on the GPU: " + ", ".join(
            f"{name} {row[name]['ms']:.1f} ms (peak {row[name]['peak_mib']:.0f} MiB)" for name in ("module, chunked", "tables"))
            + f"; largest difference {row['max_difference']:.1e}")
    save()
    if "cuda" in devices and not gpu:
        print("no CUDA device: the GPU fits and the ratios are not measured")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
