"""``ColorAugment`` on the CPU: time and peak memory of one batch, by the path that maps it.

    python bench/augment.py [--runs 5] [--batch 16] [--size 224] [--threads N]

Fits the bundled samples once (samples/day.jpg → samples/sunset.jpg, the default ridge map),
then maps one ``--batch``×3×``--size``² batch of random floats in [0, 1] at strength 1 with:

1. ``tables``: ``ColorAugment`` as it is: on the CPU a ridge map goes through its tabulated
   profiles (``colorot.transforms.TabulatedRidges``), in chunks of ``AUGMENT_CPU_CHUNK`` pixels;
2. ``module, chunked``: the same chunks through the map itself (``augment.tabulated = None``:
   the path of other maps, of gradients, and of a GPU);
3. ``module, whole batch``: the map itself on every pixel at once, as ``ColorAugment`` ran before
   it was chunked (the baseline);
4. with gradients, forward and backward of the batch's sum: ``ColorAugment`` as it is (each pixel's
   Jacobian kept for backward), against autograd through the map's chunks (what it ran before).

``--threads N`` sets torch's CPU threads for the timed runs (default: torch's own, one per core).
Prints each path's median wall time over ``--runs`` (after one warm-up) and its ratio to the
baseline, its largest difference from the map evaluated in float64, and the peak RSS of a
fresh process that loads the map and maps the batch once by that path (measured first: Linux
starts a child's peak from its parent's).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from provenance import header  # bench/ is the script's folder, so on sys.path

ROOT = Path(__file__).resolve().parent.parent
PATHS = ("tables", "module, chunked", "module, whole batch")
#: With gradients (forward and backward): ColorAugment as it is (each pixel's Jacobian kept), and
#: autograd through the map's chunks (what it ran before; the baseline of these two).
GRADIENT_PATHS = ("gradients, Jacobians kept", "gradients, autograd through the map")


def mapper(model: Path, path: str):
    """A function of an image batch: ColorAugment by ``path``."""
    from colorot.transforms import ColorAugment

    augment = ColorAugment.from_checkpoint(model, clamp=False)
    if path in GRADIENT_PATHS:
        return with_gradients(augment, path)
    if path == "tables":
        assert augment.tabulated is not None, "the default map should be tabulated"
        return augment
    augment.tabulated = None
    if path == "module, chunked":
        return augment

    def whole(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            pixels = images.permute(0, 2, 3, 1).reshape(-1, 3)
            return augment.map(pixels).reshape(images.shape[0], *images.shape[2:], 3).permute(0, 3, 1, 2)

    return whole


def with_gradients(augment, path: str):
    """A function of an image batch that maps it with gradients, then back-propagates its sum."""
    from colorot.transforms import AUGMENT_CPU_CHUNK

    def through_the_map(images: torch.Tensor) -> torch.Tensor:
        pixels = images.permute(0, 2, 3, 1).reshape(-1, 3)
        mapped = torch.cat([augment.map(part) for part in pixels.split(AUGMENT_CPU_CHUNK)])
        return mapped.reshape(images.shape[0], *images.shape[2:], 3).permute(0, 3, 1, 2)

    run = augment if path == GRADIENT_PATHS[0] else through_the_map

    def forward_and_backward(images: torch.Tensor) -> torch.Tensor:
        wanted = images.clone().requires_grad_()
        out = run(wanted)
        out.sum().backward()
        return out.detach()

    return forward_and_backward


def batch(args: argparse.Namespace) -> torch.Tensor:
    return torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))


def peak_rss(model: Path, path: str, args: argparse.Namespace) -> float:
    """MiB of the peak RSS of a fresh process that maps the batch once by ``path``."""
    code = ("import sys, resource; sys.path.insert(0, sys.argv[1]); import augment, argparse; "
            "a = argparse.Namespace(batch=int(sys.argv[4]), size=int(sys.argv[5])); "
            "augment.mapper(sys.argv[2], sys.argv[3])(augment.batch(a)); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(model), path,
                          str(args.batch), str(args.size)], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp_name:
        model = Path(tmp_name) / "model.pt"
        subprocess.run([sys.executable, "-m", "colorot", "fit", str(ROOT / "samples" / "day.jpg"),
                        str(ROOT / "samples" / "sunset.jpg"), "-o", str(model)], check=True, capture_output=True)
        rss = {path: peak_rss(model, path, args) for path in PATHS + GRADIENT_PATHS}  # first: a child starts from this peak
        images = batch(args)
        pixels = images.permute(0, 2, 3, 1).reshape(-1, 3).double()
        from colorot.transforms import ColorAugment

        exact = copy.deepcopy(ColorAugment.from_checkpoint(model).map).double()
        with torch.no_grad():
            truth = torch.cat([exact(part) for part in pixels.split(1 << 14)])
        print(header(f"torch {torch.__version__} ({torch.get_num_threads()} threads); batch "
                     f"{args.batch}×3×{args.size}², medians of {args.runs} runs"))
        timings = {}
        for path in PATHS + GRADIENT_PATHS:
            run = mapper(model, path)
            out = run(images)
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                run(images)
                times.append(time.perf_counter() - start)
            timings[path] = statistics.median(times)
            error = (out.permute(0, 2, 3, 1).reshape(-1, 3).double() - truth).abs().max().item()
            print(f"  {path:36s} {timings[path]:7.3f} s   max |error| {error:.1e}   peak RSS {rss[path]:6.0f} MiB")
        baseline = timings[PATHS[-1]]
        for path in PATHS[:-1]:
            print(f"  {path}: {baseline / timings[path]:.1f}× the speed of the module on the whole batch")
        kept, autograd = GRADIENT_PATHS
        print(f"  {kept}: {timings[autograd] / timings[kept]:.1f}× the speed and {rss[kept] / rss[autograd]:.2f}× "
              "the peak RSS of autograd through the map")


if __name__ == "__main__":
    main()
