"""Apply a fitted map to arrays, image files and folders: plan → run → report.

:func:`plan` decides every source → destination pair and refuses unsafe or
ambiguous requests before anything is written; :func:`run` applies the map to
each pair, records per-file failures and carries on; the :class:`Report` says
what happened. Nothing here prints: progress goes through a callback.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from colorot.errors import ColorotError, ConfigError, ImageWriteError
from colorot.imageio import (
    IMAGE_SUFFIXES,
    list_images,
    read_image,
    remove_stale_temp_files,
    write_image,
)

DEFAULT_CHUNK_PIXELS = 1 << 18


def map_pixels(
    fitted_map: Callable[[torch.Tensor], torch.Tensor],
    rgb: np.ndarray,
    *,
    chunk_pixels: int = DEFAULT_CHUNK_PIXELS,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Evaluate ``fitted_map`` on every pixel of an (..., 3) array, ``chunk_pixels`` at a time.

    The map must already live on ``device``. Only one chunk is a tensor at a
    time, so memory beyond the float32 output stays bounded. Returns float32 of
    the same shape, unclipped: clipping is the writer's output rule.
    """
    if rgb.shape[-1:] != (3,):
        raise ValueError(f"expected an array of shape (..., 3), got {rgb.shape}")
    if chunk_pixels < 1:
        raise ValueError(f"chunk_pixels must be at least 1, got {chunk_pixels}")
    pixels = rgb.reshape(-1, 3)
    out = np.empty(pixels.shape, dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(pixels), chunk_pixels):
            stop = start + chunk_pixels
            chunk = torch.tensor(pixels[start:stop], dtype=torch.float32, device=device)
            out[start:stop] = fitted_map(chunk).to("cpu", torch.float32).numpy()
    return out.reshape(rgb.shape)


def apply_to_file(
    fitted_map: Callable[[torch.Tensor], torch.Tensor],
    src: Path,
    dst: Path,
    *,
    quality: int = 95,
    max_pixels: int | None = None,
    chunk_pixels: int = DEFAULT_CHUNK_PIXELS,
    device: str | torch.device = "cpu",
) -> None:
    """Read ``src``, map its pixels, write ``dst`` atomically in the source's depth and metadata."""
    image = read_image(src, max_pixels=max_pixels)
    rgb = map_pixels(fitted_map, image.rgb, chunk_pixels=chunk_pixels, device=device)
    write_image(dst, image, rgb, quality=quality)


@dataclass(frozen=True)
class Job:
    """One image to map: read ``src``, write ``dst``."""

    src: Path
    dst: Path


@dataclass
class Plan:
    """The jobs to run, and those skipped because their output already exists."""

    jobs: list[Job]
    skipped: list[Job]


@dataclass
class Report:
    """What a run did; ``failed`` pairs each failed job with its error message."""

    written: list[Job]
    skipped: list[Job]
    failed: list[tuple[Job, str]]
    seconds: float

    @property
    def exit_code(self) -> int:
        """0 when every job succeeded, 3 when some failed (the CLI's batch convention)."""
        return 3 if self.failed else 0


def plan(
    inputs: Sequence[Path | str],
    output: Path | str,
    *,
    recursive: bool = True,
    overwrite: bool = False,
    in_place: bool = False,
    suffix: str | None = None,
) -> Plan:
    """Decide where each input image goes, refusing unsafe requests with ConfigError.

    One input file goes to ``output`` itself when that has an image suffix (and
    is not an existing folder), else to ``output/<name>``. A folder input has
    its tree mirrored under ``output``; with several inputs each folder is
    mirrored under ``output/<folder name>`` and each file goes to
    ``output/<name>``. ``suffix`` (e.g. ".png") changes the output format.
    Refused: a missing input, a folder without images, an output that is an
    input, two inputs with one output, and an output inside an input folder
    unless ``in_place``. Existing outputs are skipped unless ``overwrite``.
    Nothing is created: destination folders are made when the jobs run.
    """
    if not inputs:
        raise ConfigError("no input given")
    inputs = [Path(src) for src in inputs]
    suffix = _checked_suffix(suffix)
    output_is_folder = str(output).endswith(("/", os.sep))
    output = Path(output)
    for src in inputs:
        if not src.exists():
            raise ConfigError(f"input not found: {src}")
    if len(inputs) == 1 and inputs[0].is_file():
        jobs = [
            Job(inputs[0], _single_file_destination(inputs[0], output, output_is_folder, suffix))
        ]
    else:
        if output.is_file():
            raise ConfigError(f"output must be a folder for a folder or several inputs: {output}")
        several = len(inputs) > 1
        jobs = [
            job for src in inputs for job in _jobs_for(src, output, several, in_place, recursive)
        ]
        if suffix is not None:
            jobs = [Job(job.src, job.dst.with_suffix(suffix)) for job in jobs]
    _refuse_unsafe(jobs, [src for src in inputs if src.is_dir()], in_place)
    result = Plan(jobs=[], skipped=[])
    for job in jobs:
        (result.jobs if overwrite or not job.dst.exists() else result.skipped).append(job)
    return result


def run(
    plan: Plan,
    fitted_map: Callable[[torch.Tensor], torch.Tensor],
    *,
    on_file_done: Callable[[Job, str | None], None] | None = None,
    **apply_kwargs: Any,
) -> Report:
    """Run every job of ``plan``; a ColorotError fails that file only and the batch goes on.

    Destination folders are created as needed. ``on_file_done(job, error)`` is
    called after each job, with the error message or None. ``apply_kwargs`` go
    to :func:`apply_to_file`.
    """
    start = time.perf_counter()
    written: list[Job] = []
    failed: list[tuple[Job, str]] = []
    for job in plan.jobs:
        error = _run_job(job, fitted_map, apply_kwargs)
        if error is None:
            written.append(job)
        else:
            failed.append((job, error))
        if on_file_done is not None:
            on_file_done(job, error)
    return Report(written, list(plan.skipped), failed, time.perf_counter() - start)


def _run_job(
    job: Job, fitted_map: Callable[[torch.Tensor], torch.Tensor], apply_kwargs: dict[str, Any]
) -> str | None:
    """Apply the map to one job; the error message if it failed, else None.

    Temp files that a killed earlier run left for this output are removed first.
    """
    try:
        _make_folder(job.dst.parent)
        remove_stale_temp_files(job.dst)
        apply_to_file(fitted_map, job.src, job.dst, **apply_kwargs)
    except ColorotError as exc:
        return str(exc)
    return None


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageWriteError(f"{folder}: cannot create folder ({exc.strerror or exc})") from exc


def _checked_suffix(suffix: str | None) -> str | None:
    """``suffix`` as a lower-case ".ext" that can be written, or None."""
    if suffix is None:
        return None
    suffix = suffix.lower() if suffix.startswith(".") else f".{suffix.lower()}"
    if suffix not in IMAGE_SUFFIXES:
        raise ConfigError(
            f"cannot write {suffix!r} images; choose one of {', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    return suffix


def _single_file_destination(
    src: Path, output: Path, output_is_folder: bool, suffix: str | None
) -> Path:
    if output_is_folder or output.is_dir() or output.suffix.lower() not in IMAGE_SUFFIXES:
        dst = output / src.name
        return dst if suffix is None else dst.with_suffix(suffix)
    if suffix is not None and output.suffix.lower() != suffix:
        raise ConfigError(f"output {output} does not have the requested suffix {suffix}")
    return output


def _jobs_for(src: Path, output: Path, several: bool, in_place: bool, recursive: bool) -> list[Job]:
    """The jobs for one input of several (or for one folder input)."""
    if src.is_file():
        return [Job(src, output / src.name)]
    root = output / src.resolve().name if several else output
    images = list_images(src, recursive=recursive)
    if in_place and _is_strictly_inside(output, src):  # earlier outputs are not inputs
        images = [image for image in images if not _is_inside(image, output)]
    if not images:
        raise ConfigError(
            f"no images in folder {src} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return [Job(image, root / image.relative_to(src)) for image in images]


def _refuse_unsafe(jobs: list[Job], input_folders: list[Path], in_place: bool) -> None:
    """Raise ConfigError for an output that is an input, is shared, cannot be encoded or
    lands inside an input folder (unless ``in_place``)."""
    sources = {job.src.resolve() for job in jobs}
    folders = [folder.resolve() for folder in input_folders]
    claimed: dict[Path, Path] = {}
    for job in jobs:
        dst = job.dst.resolve()
        if dst in sources:
            raise ConfigError(f"output would overwrite an input: {job.dst}")
        if dst in claimed:
            raise ConfigError(f"{claimed[dst]} and {job.src} would both be written to {job.dst}")
        claimed[dst] = job.src
        if job.dst.suffix.lower() not in IMAGE_SUFFIXES:
            raise ConfigError(f"cannot write {job.dst} in its format; choose one with --suffix")
        if not in_place and any(dst.is_relative_to(folder) for folder in folders):
            raise ConfigError(
                f"output {job.dst} is inside an input folder; "
                "choose another output or pass --in-place"
            )


def _is_inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _is_strictly_inside(path: Path, folder: Path) -> bool:
    return _is_inside(path, folder) and path.resolve() != folder.resolve()
