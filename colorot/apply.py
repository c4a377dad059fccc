"""Apply a fitted map to arrays, image files and folders: plan → run → report.

:func:`plan` decides every source → destination pair and refuses unsafe or
ambiguous requests before anything is written; :func:`run` applies the map to
each pair, records per-file failures and carries on, but stops at the first
destination the file system refuses; the :class:`Report` says what happened.
Nothing here prints: progress goes through a callback.

torch is imported only where a map is evaluated as a network: a ridge or affine map read by
:func:`checkpoint_table` is applied with numpy alone, so ``colorot apply`` starts without torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import re
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image as PILImage

from colorot import checkpoint
from colorot.atomic import file_key, is_within, spelling_key
from colorot.errors import (CheckpointError, ColorotError, ConfigError, DestinationError, ImageMetadataWarning,
                            ImageWriteError)
from colorot.imageio import (IMAGE_SUFFIXES, Image, as_floats, decode_image, decode_to_write, encode_image, format_for_suffix,
                             has_avif, has_heif, list_images, quantize, read_image, write_image, written_format)
from colorot.colour_table import ColourTable, Evaluator
from colorot.controls import Controls, refuse_with_inverse
from colorot.profiles import (ColourSpace, apart, colour_space, conversion_refusal, convert_codes, convert_deep,
                              recorded_space, warn_not_in)
from colorot.ridge_profiles import RidgeProfiles
from colorot.strength import check_strength

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

    import torch

    from colorot.ridge_map import RidgeParameters

    from colorot.models import MonotoneGradientMap

#: Pixels per tensor: small enough that a 576-unit ridge map's (chunk × units) activations
#: stay near 75 MB (the sliced solver's map), large enough that per-chunk overhead is noise.
DEFAULT_CHUNK_PIXELS = 1 << 15


def map_pixels(
    fitted_map: Callable[[torch.Tensor], torch.Tensor],
    rgb: np.ndarray,
    *,
    chunk_pixels: int = DEFAULT_CHUNK_PIXELS,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Evaluate ``fitted_map`` on every pixel of an (..., 3) array, ``chunk_pixels`` at a time.

    ``rgb``: floats, or uint8 / uint16 codes, each chunk taken to [0, 1] as it comes
    (:func:`~colorot.imageio.as_floats`, the values of :attr:`Image.rgb`), so no float copy
    of a whole image is held. The map must already live on ``device``. Only one chunk is a
    tensor at a time, so memory beyond the float32 output stays bounded. Returns float32 of
    the same shape, unclipped: clipping is the writer's output rule.
    """
    if rgb.shape[-1:] != (3,):
        raise ValueError(f"expected an array of shape (..., 3), got {rgb.shape}")
    if chunk_pixels < 1:
        raise ValueError(f"chunk_pixels must be at least 1, got {chunk_pixels}")
    import torch  # here, not at the top: the CLI starts without torch

    pixels = rgb.reshape(-1, 3)
    out = np.empty(pixels.shape, dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(pixels), chunk_pixels):
            stop = start + chunk_pixels
            chunk = torch.tensor(as_floats(pixels[start:stop]), dtype=torch.float32, device=device)
            out[start:stop] = fitted_map(chunk).to("cpu", torch.float32).numpy()
    return out.reshape(rgb.shape)


def colour_evaluator(fitted_map: Callable[[torch.Tensor], torch.Tensor]) -> Evaluator:
    """The fastest faithful evaluator of ``fitted_map`` on colours (N, 3) in [0, 1]³.

    A ridge map or an affine map (or a partial strength of one) goes through its tabulated profiles
    (:class:`~colorot.ridge_profiles.RidgeProfiles`, within 10⁻⁷ of the map, ~16× faster);
    every other map, and a ridge map too sharp to tabulate, is evaluated itself in float32.
    """
    from colorot.models import AffineMap, RidgeMGN
    from colorot.transforms import Interpolated

    inner, strength = fitted_map, 1.0
    if isinstance(fitted_map, Interpolated):
        inner, strength = fitted_map.map, fitted_map.strength
    profiles = RidgeProfiles.from_model(inner) if isinstance(inner, (RidgeMGN, AffineMap)) else None
    if profiles is None:
        return lambda colours: map_pixels(fitted_map, colours)
    return at_strength(profiles, strength)


def colour_table(fitted_map: Callable[[torch.Tensor], torch.Tensor]) -> ColourTable:
    """An empty :class:`ColourTable` for ``fitted_map``: the fast path (``--exact`` is without one)."""
    return ColourTable(colour_evaluator(fitted_map))


def checkpoint_table(model: str | os.PathLike[str] | bytes, *, strength: float = 1.0,
                     controls: Controls | None = None) -> ColourTable | None:
    """The fast path's :class:`ColourTable` for the map of a checkpoint (a file, or its bytes) at
    ``strength``, then ``controls``, read without torch: for a ridge map (the default) or an affine map that every
    check of :func:`colorot.checkpoint.read_ridge_map` passes and whose profiles can be tabulated;
    None otherwise (load such a checkpoint with :func:`colorot.checkpoint.load`, which also names
    its faults). The table gives what :func:`colour_table` of the loaded map gives."""
    ridge = checkpoint.ridge_map_from_bytes(bytes(model)) if _is_bytes(model) else checkpoint.read_ridge_map(model)
    return ridge_table(ridge, strength=strength, controls=controls)


def ridge_table(ridge: RidgeParameters | None, *, strength: float = 1.0,
                controls: Controls | None = None) -> ColourTable | None:
    """The fast path's :class:`ColourTable` for a ridge (or affine) map's parameters at ``strength``,
    then ``controls``, without torch (what :func:`colour_table` of its module gives); None for no
    parameters, or profiles too sharp to tabulate."""
    profiles = None if ridge is None else RidgeProfiles.from_parameters(ridge.state, ridge.eps)
    if profiles is None:
        return None
    return ColourTable(_controlled(at_strength(profiles, check_strength(strength)), controls))


def map_space(model: str | os.PathLike[str] | bytes) -> ColourSpace | None:
    """The colour space the checkpoint's map was fitted in, as its ``train`` record keeps it
    (:func:`colorot.profiles.space_record`; read without torch), or None (not recorded)."""
    return recorded_space(checkpoint.train_record(model))


def prepare(model: str | os.PathLike[str] | bytes, *, strength: float = 1.0, inverse: bool = False,
            exact: bool = False, controls: Controls | None = None, name: str = "checkpoint"
            ) -> tuple[Callable[[torch.Tensor], torch.Tensor] | None, ColourTable | None]:
    """The map to apply and its colour table, as ``colorot apply`` builds them from a checkpoint
    (a file, or its bytes, which errors call ``name``). A ridge or affine map goes into the table
    read without torch, and the map is None; any other map, and ``inverse`` or ``exact``, is loaded
    (torch) and the table, if not ``exact``, evaluates it. ``controls`` act after the map at ``strength``."""
    refuse_with_inverse(inverse, controls)
    table = None if inverse or exact else checkpoint_table(model, strength=strength, controls=controls)
    if table is not None:
        return None, table
    loaded = checkpoint.from_bytes(bytes(model), source=name) if _is_bytes(model) else checkpoint.load(model)
    return prepare_fitted(loaded.model, strength=strength, inverse=inverse, exact=exact, controls=controls)


def prepare_fitted(model: MonotoneGradientMap, *, strength: float = 1.0, inverse: bool = False,
                   exact: bool = False, controls: Controls | None = None
                   ) -> tuple[Callable[[torch.Tensor], torch.Tensor], ColourTable | None]:
    """:func:`prepare` for a fitted map in memory (``ColorTransfer.map_``): the map at
    ``strength`` (or its inverse), then ``controls``, and its colour table unless ``exact``."""
    from colorot.transforms import prepare_map  # here: torch only for the maps that need it

    refuse_with_inverse(inverse, controls)
    fitted = prepare_map(model, strength=strength, inverse=inverse)
    table = None if exact else ColourTable(_controlled(colour_evaluator(fitted), controls))
    return (fitted if controls is None else controls.bind(fitted, torch_map=True)), table


def _controlled(evaluate: Evaluator, controls: Controls | None) -> Evaluator:
    return evaluate if controls is None else controls.bind(evaluate)


def _is_bytes(model: object) -> bool:
    return isinstance(model, (bytes, bytearray, memoryview))


def at_strength(evaluate: Evaluator, strength: float) -> Evaluator:
    """``T_t(x) = (1 − t)·x + t·T(x)`` for T = ``evaluate`` (T itself at t = 1)."""
    if strength == 1.0:
        return evaluate
    return lambda colours: (1.0 - strength) * colours + strength * evaluate(colours)


def apply_to_file(
    fitted_map: Callable[[torch.Tensor], torch.Tensor],
    src: Path,
    dst: Path,
    *,
    quality: int = 95,
    max_pixels: int | None = None,
    chunk_pixels: int = DEFAULT_CHUNK_PIXELS,
    table: ColourTable | None = None,
    image: Image | None = None,
    replace: bool = True,
    space: ColourSpace | None = None,
    convert_space: bool = False,
) -> None:
    """Read ``src`` (unless ``image`` is given: ``src`` decoded already, with its frames), map its pixels
    (an animation's or multi-page file's every frame, where ``dst``'s format holds them; else the
    first alone, the others not decoded), write
    ``dst`` atomically in the source's depth and metadata (unless ``replace``, never over a file
    that appeared at ``dst`` meanwhile: OutputExistsError). ``space``: the colour space the map was
    fitted in (:func:`map_space`), if known: an image in another one gets a warning, or with
    ``convert_space`` is taken into it and back (:func:`map_in_space`).

    With a ``table`` (:func:`colour_table`), 8-bit images go through it and 16-bit ones
    through its evaluator; without one, every image takes the exact map in float32.
    A write the file system refuses raises :class:`DestinationError`.
    """
    if image is None:
        image = read_image(src, max_pixels=max_pixels, frames=True, written_as=written_format(dst))
    mapped, *frames = map_in_space(fitted_map, image, str(src), space, convert_space, table=table,
                                   chunk_pixels=chunk_pixels)
    with refusals_stop_the_batch():
        write_image(dst, image, mapped, quality=quality, replace=replace, frames=frames)


@contextlib.contextmanager
def refusals_stop_the_batch() -> Iterator[None]:
    """A write's error caused by the file system's refusal (an OSError: full, read-only), not by the
    encoder or the data, raised as :class:`DestinationError`, which stops a batch: every later file
    would meet it. A name too long for the file system is that file's alone: it fails, and the
    batch goes on."""
    try:
        yield
    except (ImageWriteError, CheckpointError) as exc:
        cause = exc.__cause__
        if isinstance(cause, OSError) and cause.errno != errno.ENAMETOOLONG and not isinstance(exc, DestinationError):
            raise DestinationError(str(exc)) from cause
        raise


def warn_space_unknown(space: ColourSpace | None, convert_space: bool, name: str,
                       unchanged: str = "has none to take images into, and each is mapped as it is",
                       stacklevel: int = 3) -> None:
    """The :class:`ImageMetadataWarning` for ``convert_space`` asked of a map whose checkpoint (called
    ``name``) records no colour space (``space`` None: fitted on pixel arrays, or by colorot 0.2.0 or
    earlier): there is no space to convert to, and what ``unchanged`` says is done instead
    (``stacklevel``: as ``warnings.warn``'s, from the caller's caller)."""
    if convert_space and space is None:
        warnings.warn(f"{name} records no colour space (a map fitted on pixel arrays, or by colorot 0.2.0 or "
                      f"earlier): --convert-space (convert_space) {unchanged}; refit from the image files to record "
                      "it", ImageMetadataWarning, stacklevel=stacklevel)


def refuse_convert_space_with_inverse(convert_space: bool, inverse: bool,
                                      does: str = "takes images into the colour space of the forward map") -> None:
    """ConfigError for ``convert_space`` with ``inverse`` (the CLI's and distributed's one rule;
    ``does``: what ``convert_space`` does there)."""
    if convert_space and inverse:
        raise ConfigError(f"--convert-space (convert_space) {does}; it is not made for --inverse (inverse)")


def map_in_space(
    fitted_map: Callable[[torch.Tensor], torch.Tensor],
    image: Image,
    name: str,
    space: ColourSpace | None,
    convert_space: bool,
    **mapping,
) -> list[np.ndarray]:
    """:func:`map_image` (``mapping``: its keyword arguments) of an image named ``name`` and of its
    later frames (``image.frames``), in order, checked once
    against ``space``, the colour space its map was fitted in (None: unknown, no check). An image
    in another space is mapped as it is, with a warning; with ``convert_space``, it is taken into the
    map's space (relative colorimetric: colours outside that space's gamut are clipped to it), mapped
    there, and taken back into its own, so that its output shows the colours the map gives: an 8-bit
    one by LittleCMS (uint8 codes; each way rounds to 8 bits), a 16-bit one in floating point through
    the profiles' matrices and curves (float32; matrix/TRC profiles only, else a warning)."""
    def as_it_is(picture: Image) -> np.ndarray:
        return map_image(fitted_map, picture, **mapping)

    def converted(picture: Image) -> np.ndarray:
        if picture.bit_depth == 16:
            mapped = as_it_is(dataclasses.replace(picture, codes=quantize(convert_deep(picture.rgb, own, space), 16)))
            return convert_deep(mapped, space, own)
        mapped = as_it_is(dataclasses.replace(picture, codes=convert_codes(picture.codes, own, space)))
        return convert_codes(mapped if mapped.dtype == np.uint8 else quantize(mapped, 8), space, own)

    own = colour_space(image.icc_profile) if space is not None else None
    one = as_it_is
    if apart(own, space):
        refusal = conversion_refusal(own, image.bit_depth, space) if convert_space else None
        if convert_space and refusal is None:
            one = converted
        else:
            warn_not_in(name, own, space, refusal or "")
    return [one(picture) for picture in image.pictures]


def map_image(
    fitted_map: Callable[[torch.Tensor], torch.Tensor],
    image: Image,
    *,
    table: ColourTable | None = None,
    chunk_pixels: int = DEFAULT_CHUNK_PIXELS,
) -> np.ndarray:
    """The mapped pixels of a decoded image: with a ``table``, 8-bit codes through it (uint8) and
    16-bit images through its evaluator (float32); without one, the map itself (float32).
    With a table, ``fitted_map`` is not used and may be None (as in every function here that
    passes a ``table`` on: :func:`checkpoint_table` gives one without a map)."""
    if table is not None:
        return table.apply_codes(image.codes) if image.bit_depth == 8 else table.map_floats(image.codes)
    return map_pixels(fitted_map, image.codes, chunk_pixels=chunk_pixels)


def apply_to_bytes(
    fitted_map: Callable[[torch.Tensor], torch.Tensor],
    data: bytes,
    *,
    format: str | None = None,
    quality: int = 95,
    max_pixels: int | None = None,
    table: ColourTable | None = None,
    space: ColourSpace | None = None,
    convert_space: bool = False,
    name: str = "<stdin>",
) -> bytes:
    """Encoded image bytes in → mapped, encoded bytes out (for stdin/stdout pipelines).

    ``format``: an output format name or suffix ("png", ".jpg", "JPEG"); default the input's;
    ``space`` and ``convert_space``: as :func:`apply_to_file`'s; ``name``: the input's, in errors
    and warnings.
    """
    image, fmt = decode_to_write(data, format, name=name, max_pixels=max_pixels)
    mapped, *frames = map_in_space(fitted_map, image, name, space, convert_space, table=table)
    return encode_image(image, mapped, fmt, quality=quality, name="<stdout>", frames=frames)


@dataclass(frozen=True)
class Job:
    """One image to map: read ``src``, write ``dst``."""

    src: Path
    dst: Path


@dataclass
class Plan:
    """The jobs to run, those skipped because their output already exists, and the images an
    ``in_place`` run leaves out though they are no output of it: under its output folder, inside an
    input folder (:func:`plan`)."""

    jobs: list[Job]
    skipped: list[Job]
    left_out: list[Path] = field(default_factory=list)


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
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
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
    An input given twice (in any spelling) is done once.
    Refused: a missing input, a folder without images, an output that is an
    input, two inputs with one output, an output named like an image file
    for a folder or several inputs (unless it is an existing folder or ends
    in '/'), and an output inside an input folder unless ``in_place``.
    Existing outputs are skipped unless ``overwrite``.
    Nothing is created: destination folders are made when the jobs run.
    """
    if not inputs:
        raise ConfigError("no input given")
    _refuse_unusable_paths([*inputs, output])
    inputs = _once_each(inputs)
    suffix = _checked_suffix(suffix)
    output_is_folder = str(output).endswith(("/", os.sep))
    output = Path(output)
    for src in inputs:
        if not src.exists():
            raise ConfigError(f"input not found: {src}")
        if not (src.is_file() or src.is_dir()):
            raise ConfigError(f"input {src} is a pipe or a device, neither a file nor a folder: save it to a file, "
                              "or pipe one image to stdin as '-'")
    under_output: list[Path] = []
    if len(inputs) == 1 and inputs[0].is_file():
        jobs = [
            Job(inputs[0], _single_file_destination(inputs[0], output, output_is_folder, suffix))
        ]
    else:
        _refuse_file_output(output, output_is_folder, "a folder or several inputs")
        several = len(inputs) > 1
        jobs = []
        for src in inputs:
            jobs += _jobs_for(src, output, several, in_place, recursive, under_output)
        if suffix is not None:
            jobs = [Job(job.src, job.dst.with_suffix(suffix)) for job in jobs]
    _refuse_unsafe(jobs, [src for src in inputs if src.is_dir()], in_place)
    result = Plan(jobs=[], skipped=[])
    if in_place and under_output:
        outputs = {file_key(job.dst) for job in jobs}
        result.left_out = [image for image in under_output if file_key(image) not in outputs]
    for job in jobs:
        (result.jobs if overwrite or not os.path.lexists(job.dst) else result.skipped).append(job)
    return result


def apply_bytes_to_file(
    fitted_map: Callable[[torch.Tensor], torch.Tensor],
    data: bytes,
    dst: Path | str,
    *,
    quality: int = 95,
    max_pixels: int | None = None,
    table: ColourTable | None = None,
    replace: bool = True,
    space: ColourSpace | None = None,
    convert_space: bool = False,
) -> None:
    """Encoded image bytes (e.g. stdin) → mapped image written atomically to ``dst`` (format from its
    suffix; ``replace``, ``space`` and ``convert_space``: as :func:`apply_to_file`'s)."""
    image = decode_image(data, name="<stdin>", max_pixels=max_pixels, frames=True, written_as=written_format(dst))
    mapped, *frames = map_in_space(fitted_map, image, "<stdin>", space, convert_space, table=table)
    write_image(dst, image, mapped, quality=quality, replace=replace, frames=frames)


def _once_each(paths: Sequence[Path | str]) -> list[Path]:
    """``paths`` with a path given twice kept once (relative or absolute, ``./``, a trailing '/'): the
    first spelling.  Names are compared as they are, not case-folded: on a case-sensitive volume
    ``A.jpg`` and ``a.jpg`` are two files (two that land on one output are refused later)."""
    spellings: dict[str, Path] = {}
    for name in paths:
        spellings.setdefault(spelling_key(name), Path(name))
    return list(spellings.values())


def plan_listed(
    files: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    suffix: str | None = None,
) -> Plan:
    """Plan a list of image files (e.g. paths read from stdin) into the folder ``output``.

    A relative path without ``..`` keeps its path under ``output``
    (``photos/a/x.jpg`` → ``output/photos/a/x.jpg``); any other path goes to
    ``output/<name>``. Blank entries are ignored, a path repeated (in any spelling of it: relative,
    absolute) is done once, as first spelt; the checks of :func:`plan` apply.
    """
    files = [f for f in files if str(f).strip()]
    _refuse_unusable_paths([*files, output])
    files = _once_each(files)
    if not files:
        raise ConfigError("no input paths given")
    suffix = _checked_suffix(suffix)
    output_is_folder = str(output).endswith(("/", os.sep))
    output = Path(output)
    _refuse_file_output(output, output_is_folder, "listed inputs")
    jobs = []
    for src in files:
        if not src.is_file():
            raise ConfigError(f"input not found (or not a file): {src}")
        relative = src if not src.anchor and ".." not in src.parts else Path(src.name)  # Windows: \x or C:x too
        dst = output / relative
        jobs.append(Job(src, dst if suffix is None else dst.with_suffix(suffix)))
    _refuse_unsafe(jobs, [], in_place=True)
    result = Plan(jobs=[], skipped=[])
    for job in jobs:
        (result.jobs if overwrite or not os.path.lexists(job.dst) else result.skipped).append(job)
    return result


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` → (i, N), 0 ≤ i < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard takes i/N (e.g. 0/4), not {text!r}") from None
    if not 0 <= index < count:
        raise ConfigError(f"--shard {text}: need 0 ≤ i < N")
    return index, count


def shard(plan: Plan, index: int, count: int, output: Path | str) -> Plan:
    """The part of ``plan`` that shard ``index`` of ``count`` does.

    A job belongs to shard ``sha256(destination relative to output) mod count``:
    deterministic on every machine, independent of listing order, and each
    file is in exactly one shard.
    """
    root = Path(output)

    def owner(job: Job) -> int:
        try:
            key = job.dst.relative_to(root).as_posix()
        except ValueError:
            key = job.dst.name
        return int.from_bytes(hashlib.sha256(os.fsencode(key)).digest()[:8], "big") % count

    return Plan(jobs=[j for j in plan.jobs if owner(j) == index],
                skipped=[j for j in plan.skipped if owner(j) == index])


def run(
    plan: Plan,
    fitted_map: Callable[[torch.Tensor], torch.Tensor],
    *,
    on_file_done: Callable[[Job, str | None], None] | None = None,
    jobs: int = 1,
    **apply_kwargs: Any,
) -> Report:
    """Apply ``fitted_map`` to every job of ``plan`` (:func:`run_each` of :func:`apply_to_file`,
    with ``apply_kwargs``); the map and its colour table are shared by the workers."""
    return run_each(plan, lambda job: apply_to_file(fitted_map, job.src, job.dst, **apply_kwargs),
                    on_file_done=on_file_done, jobs=jobs)


def run_each(
    plan: Plan,
    work: Callable[[Job], Any],
    *,
    on_file_done: Callable[[Job, str | None], None] | None = None,
    jobs: int = 1,
    processes: BaseContext | None = None,
    torch_threads: bool = False,
    results: dict[Job, Any] | None = None,
) -> Report:
    """Run ``work(job)`` for every job of ``plan``; a ColorotError fails that file only and the
    batch goes on, except a :class:`DestinationError` (an output the file system refuses): it
    stops the batch (files in flight finish atomically) and is raised.

    ``jobs`` files are processed at once by a thread pool (decoding, numpy, encoding
    and torch all release the GIL), or, given ``processes`` (:func:`colorot.workers.start_server`),
    by as many worker processes, each sent ``work`` once (it must pickle), with one torch thread
    if ``torch_threads``. Destination folders are created as needed.
    ``on_file_done(job, error)`` is called in the calling thread after each job, with the
    error message or None. ``results``, if given, receives what ``work`` returned for each job
    that did not fail (from a worker process: pickled back).
    """
    start = time.perf_counter()
    errors: dict[Job, str | None] = {}
    results = {} if results is None else results
    jobs = min(jobs, len(plan.jobs))
    try:
        if jobs <= 1:
            _run_serially(plan.jobs, work, errors, results, on_file_done)
        elif processes is not None:
            from colorot.workers import WorkerPool

            pool = WorkerPool(processes, jobs, work, torch_threads=torch_threads)  # each worker holds ``work``
            _run_in_pool(plan.jobs, errors, results, on_file_done, pool, lambda job: pool.submit(run_job, job))
        else:
            pool = ThreadPoolExecutor(max_workers=jobs)
            _run_in_pool(plan.jobs, errors, results, on_file_done, pool,
                         lambda job: pool.submit(run_job, job, work))
    except DestinationError as exc:
        raise DestinationError(f"{exc}; the batch stopped") from exc
    return _report(plan, errors, start)


def _report(plan: Plan, errors: dict[Job, str | None], start: float) -> Report:
    """The Report of a run, in plan order."""
    written = [job for job in plan.jobs if errors[job] is None]
    failed = [(job, errors[job]) for job in plan.jobs if errors[job] is not None]
    return Report(written, list(plan.skipped), failed, time.perf_counter() - start)


def _run_serially(jobs: list[Job], work: Callable[[Job], Any], errors: dict[Job, str | None],
                  results: dict[Job, Any], on_file_done: Callable[[Job, str | None], None] | None) -> None:
    """Run ``jobs`` in this thread (an interrupt stops the batch at once), filling ``errors`` and
    ``results``."""
    for job in jobs:
        _record(job, run_job(job, work), errors, results)
        if on_file_done is not None:
            on_file_done(job, errors[job])


def _run_in_pool(jobs: list[Job], errors: dict[Job, str | None], results: dict[Job, Any],
                 on_file_done: Callable[[Job, str | None], None] | None, pool,
                 submit: Callable[[Job], Future]) -> None:
    """Run ``jobs`` on ``pool`` (threads, or a :class:`colorot.workers.WorkerPool`), each by
    ``submit(job)`` (a future of :func:`run_job`'s result), filling ``errors`` and ``results`` as
    they finish."""
    try:
        pending = {submit(job): job for job in jobs}
        for future in as_completed(pending):
            job = pending[future]
            _record(job, future.result(), errors, results)
            if on_file_done is not None:
                on_file_done(job, errors[job])
    except BaseException:  # a refused destination, Ctrl-C or a bug: drop the queued files;
        pool.shutdown(wait=True, cancel_futures=True)  # those in flight finish atomically
        raise
    pool.shutdown()


def run_job(job: Job, work: Callable[[Job], Any]) -> tuple[str | None, Any]:
    """``work(job)``: (the error message, None) if it failed (a ColorotError, or memory running out
    on this file), else (None, what it returned).

    A :class:`DestinationError` is raised, not returned: it stops the batch.
    """
    try:
        make_folder(job.dst.parent)
        return None, work(job)
    except DestinationError:
        raise
    except ColorotError as exc:  # named by its input where it names neither file (a fit's error, in a match)
        message = str(exc)
        return (message if _names(message, job.src) or _names(message, job.dst) else f"{job.src}: {message}"), None
    except MemoryError:  # this file's: the others may fit
        return (f"{job.src}: out of memory: images are held whole (refuse huge ones with --max-image-pixels, or "
                "downscale them); or run fewer --jobs"), None


def _names(message: str, path: Path) -> bool:
    """Whether ``message`` names the file ``path``: its name as a word of its own (after a space, a
    quote or a folder; before a colon, a space or the end)."""
    return re.search(rf"(^|[\s'\"(/\\]){re.escape(path.name)}($|[\s:'\"),])", message) is not None


def _record(job: Job, outcome: tuple[str | None, Any], errors: dict[Job, str | None], results: dict[Job, Any]) -> None:
    """A job's :func:`run_job` outcome into ``errors`` (every job) and ``results`` (those that did not fail)."""
    errors[job], value = outcome
    if errors[job] is None:
        results[job] = value


def make_folder(folder: Path) -> None:
    """``folder`` and its parents, or DestinationError when the file system refuses."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:  # a file, or a link to nothing, stands where a folder goes
        dangling = next((path for path in (folder, *folder.parents) if path.is_symlink() and not path.exists()), None)
        if dangling is not None:
            raise DestinationError(f"{folder}: cannot create folder ({dangling} is a link to {os.readlink(dangling)}, "
                                   "which does not exist)") from exc
        blocker = next((path for path in (folder, *folder.parents) if path.exists() and not path.is_dir()), folder)
        raise DestinationError(f"{folder}: cannot create folder ({blocker} is a file)") from exc
    except OSError as exc:
        raise DestinationError(f"{folder}: cannot create folder ({exc.strerror or exc})") from exc


def _refuse_unusable_paths(paths: Sequence[Path | str]) -> None:
    """ConfigError for a path holding a NUL byte (no file system accepts one), or an empty one
    (an unset shell variable: it would stand for the current folder)."""
    for path in paths:
        if "\x00" in str(path):
            raise ConfigError(f"a path contains a NUL byte: {str(path)!r}")
        if isinstance(path, str) and not path.strip():
            raise ConfigError("an empty path was given (an unset variable?)")


def _refuse_file_output(output: Path, output_is_folder: bool, inputs: str) -> None:
    """ConfigError when ``output`` is a file, or named like an image file, where ``inputs`` need a folder
    (an existing folder, or a name ending in '/', is taken as one)."""
    if output.is_file():
        raise ConfigError(f"output must be a folder for {inputs}: {output}")
    if not (output_is_folder or output.is_dir()) and output.suffix.lower() in IMAGE_SUFFIXES:
        raise ConfigError(f"output {output} is named like an image file, but {inputs} need an output folder "
                          f"(name a folder, or end the name in '/' to make one named {output.name})")


def _checked_suffix(suffix: str | None) -> str | None:
    """``suffix`` as a ".ext" that can be written, in the case given (``.JPG`` stays), or None."""
    if suffix is None:
        return None
    suffix = suffix if suffix.startswith(".") else f".{suffix}"
    if suffix.lower() not in IMAGE_SUFFIXES:
        raise ConfigError(
            f"cannot write {suffix!r} images; choose one of {', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    if suffix.lower() == ".avif" and not has_avif():
        raise ConfigError("cannot write '.avif' images: this Pillow has no AVIF support; a recent Pillow has "
                          "(pip install -U pillow), or choose another --suffix")
    if format_for_suffix(suffix) == "HEIF" and not has_heif():
        raise ConfigError(f"cannot write {suffix!r} images: they need pillow-heif (pip install pillow-heif), or "
                          "choose another --suffix")
    return suffix


def _single_file_destination(
    src: Path, output: Path, output_is_folder: bool, suffix: str | None
) -> Path:
    named_folder, writable = output_is_folder or output.is_dir(), output.suffix.lower() in IMAGE_SUFFIXES
    if not (named_folder or writable) and output.suffix.lower() in PILImage.registered_extensions():
        _checked_suffix(output.suffix)  # raises: out.gif names an image colorot cannot write, not a folder
    if named_folder or not writable:
        dst = output / src.name
        return dst if suffix is None else dst.with_suffix(suffix)
    if suffix is not None and output.suffix.lower() != suffix.lower():
        raise ConfigError(f"output {output} does not have the requested suffix {suffix}")
    return output


def _jobs_for(src: Path, output: Path, several: bool, in_place: bool, recursive: bool,
              under_output: list[Path]) -> list[Job]:
    """The jobs for one input of several (or for one folder input); the images of an ``in_place``
    folder input that lie under ``output`` (earlier outputs, or not) are added to ``under_output``."""
    if src.is_file():
        return [Job(src, output / src.name)]
    own = src.name if src.name not in ("", ".", "..") else src.resolve().name  # a link keeps its own name
    root = output / own if several else output
    walked: list[Path] = []
    images = list_images(src, recursive=recursive, folders=walked)
    if not in_place:  # through a link inside it: a rerun would take the outputs for inputs
        linked = next((folder for folder in walked[1:] if not is_within(folder, src) and is_within(output, folder)), None)
        if linked is not None:
            raise ConfigError(f"output {output} is inside the input folder {src}, as {linked} (through a link); "
                              "choose another output or pass --in-place")
    if in_place and _is_strictly_inside(output, src):  # earlier outputs are not inputs
        under_output += [image for image in images if is_within(image, output)]
        images = [image for image in images if not is_within(image, output)]
    if not images:
        raise ConfigError(
            f"no images in folder {src} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return [Job(image, root / image.relative_to(src)) for image in images]


def _refuse_unsafe(jobs: list[Job], input_folders: list[Path], in_place: bool) -> None:
    """Raise ConfigError for an output that is an input, is shared, cannot be encoded, is an
    existing folder or lands inside an input folder (unless ``in_place``)."""
    sources = {file_key(job.src) for job in jobs}
    claimed: dict[str, Job] = {}
    for job in jobs:
        dst = file_key(job.dst)
        if dst in sources:
            raise ConfigError(f"output would overwrite an input: {job.dst}" + (
                " (an earlier --in-place run's output, if one wrote into its input folder: such a run cannot be "
                "resumed or rerun there; give it an output folder of its own)" if in_place else ""))
        if dst in claimed:
            raise ConfigError(f"{claimed[dst].src} and {job.src} would both be written to {job.dst}")
        claimed[dst] = job
        if job.dst.suffix.lower() not in IMAGE_SUFFIXES:
            raise ConfigError(f"cannot write {job.dst} in its format; choose one with --suffix")
        if job.dst.is_dir():  # not an output that exists: no image can be written there
            raise ConfigError(f"output {job.dst} is a folder; move it or choose another output")
        if not in_place and any(is_within(job.dst, folder) for folder in input_folders):
            raise ConfigError(
                f"output {job.dst} is inside an input folder; "
                "choose another output or pass --in-place"
            )
    _refuse_file_where_a_folder_goes(claimed)


def _refuse_file_where_a_folder_goes(by_key: dict[str, Job]) -> None:
    """ConfigError for an output named as a folder another output goes in (``by_key``: each job by its
    output's :func:`file_key`): ``x/a.jpg`` and ``y/a.jpg/inner.jpg`` given together wrote one, then
    failed the other or stopped the batch."""
    folders: dict[str, Job] = {}
    for key, job in by_key.items():
        folder = os.path.dirname(key)
        while folder not in folders and os.path.dirname(folder) != folder:
            folders[folder] = job
            folder = os.path.dirname(folder)
    for key, job in by_key.items():
        if key in folders:
            other = folders[key]
            raise ConfigError(f"{job.src} would be written to {job.dst}, a folder that {other.src} is written in "
                              f"({other.dst}); give them separate runs or outputs")


def _is_strictly_inside(path: Path, folder: Path) -> bool:
    return is_within(path, folder) and file_key(path) != file_key(folder)
