"""Past one machine: a pure per-file function for any distributed engine, and a Dask recipe.

:func:`apply_path` is ``(model bytes or path, input path, output path) →
output path``: it depends on nothing but its arguments, writes exactly one
file (atomically) and gives the same bytes as ``colorot apply`` with the same
options, and the same warning for an image in another colour space than the
map's. Each worker process loads a model and starts its colour table once
(cached by the model's SHA-256 and the options; up to 4 models, each table 64 MiB
of address space at most), so shipping the model bytes with every task costs
only the transfer. As in ``colorot apply``, a ridge or affine map is read without
torch (a worker then never imports it).

:func:`apply_with_dask` runs a :class:`colorot.apply.Plan` on a
``dask.distributed.Client`` (``pip install "colorot[dask]"``): the model bytes
are scattered to every worker once and one task is submitted per file.
"""

from __future__ import annotations

import hashlib
import inspect
import numbers
import os
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Union

from colorot.apply import (Job, Plan, Report, make_folder, apply_to_file, map_space, prepare,
                           refuse_convert_space_with_inverse, warn_space_unknown)
from colorot.atomic import is_any_of
from colorot.colour_table import ColourTable
from colorot.controls import Controls, check_controls
from colorot.errors import ColorotError, ConfigError, OutputExistsError
from colorot.profiles import ColourSpace
from colorot.strength import check_flags, check_strength

if TYPE_CHECKING:
    import torch

_LOCK = threading.Lock()

#: A checkpoint: its bytes, or its file's path.
ModelSource = Union[bytes, bytearray, memoryview, str, os.PathLike[str]]


def model_bytes(model: ModelSource) -> bytes:
    """The checkpoint bytes of ``model`` (bytes are returned as they are)."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    try:
        return Path(model).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read checkpoint {model}: {exc.strerror or exc}") from exc


def prepared(data: bytes, *, strength: float = 1.0, inverse: bool = False, exact: bool = False,
             controls: Controls | None = None, name: str = "checkpoint"
             ) -> tuple[torch.nn.Module | None, ColourTable | None, ColourSpace | None]:
    """The map to apply, its colour table (None when ``exact``) and the colour space it was fitted
    in (None: not recorded, or ``inverse``), as ``colorot apply`` builds them: a ridge or affine map
    goes into the table read without torch, and the map is None (errors call the checkpoint ``name``)."""
    check_controls(controls)  # before the cache, whose keys a dict is no use as
    check_strength(strength)  # "0.5" and True were read as numbers, None raised a bare TypeError
    check_flags(inverse=inverse, exact=exact)  # "False" was read as true
    with _LOCK:
        return _prepared(hashlib.sha256(data).hexdigest(), data, float(strength), bool(inverse), bool(exact),
                         controls, name)


@lru_cache(maxsize=4)
def _prepared(digest: str, data: bytes, strength: float, inverse: bool, exact: bool, controls: Controls | None,
              name: str):
    space = None if inverse else map_space(data)  # the inverse's inputs are graded images: not checked, as in the CLI
    return (*prepare(data, strength=strength, inverse=inverse, exact=exact, controls=controls, name=name), space)


def apply_path(model: ModelSource, src: str | os.PathLike, dst: str | os.PathLike, *,
               strength: float = 1.0, inverse: bool = False, exact: bool = False,
               controls: Controls | None = None, quality: int = 95, max_pixels: int | None = None,
               replace: bool = True, convert_space: bool = False) -> str:
    """Map the image ``src`` to ``dst`` with the checkpoint ``model`` (bytes or path); returns ``dst``.

    The options are ``colorot apply``'s (``controls``: its colour controls, a
    :class:`colorot.controls.Controls`); unless ``replace``, a file at ``dst`` when the write lands
    is kept (OutputExistsError), as ``colorot apply`` keeps one without ``--overwrite``. An image in
    another colour space than the map was fitted in gets an ImageMetadataWarning, as there, or with
    ``convert_space`` is taken into it and back (``--convert-space``). A ``dst`` that is ``src`` or
    the checkpoint is refused, as ``colorot apply`` refuses it. Creates ``dst``'s folder; raises a
    ColorotError subclass on failure.
    """
    check_flags(replace=replace, convert_space=convert_space)
    refuse_convert_space_with_inverse(convert_space, inverse)
    _check_write_options(quality, max_pixels)
    if is_any_of(dst, [src] if isinstance(model, (bytes, bytearray, memoryview)) else [src, model]):
        raise ConfigError(f"output would overwrite an input: {dst}")  # as colorot apply refuses it
    fitted, table, space = prepared(model_bytes(model), strength=strength, inverse=inverse, exact=exact,
                                    controls=controls, name=_name(model))
    warn_space_unknown(space, convert_space, _name(model))
    dst = Path(dst)
    if not replace and os.path.lexists(dst):  # before any work; one that appears meanwhile is kept too
        raise OutputExistsError(f"{dst} exists and is left as it is (replace=True replaces it)")
    make_folder(dst.parent)
    apply_to_file(fitted, Path(src), dst, quality=quality, max_pixels=max_pixels, table=table, replace=replace,
                  space=space, convert_space=convert_space)
    return str(dst)


def _check_write_options(quality: object, max_pixels: object) -> None:
    """ConfigError for a ``quality`` or ``max_pixels`` that ``colorot apply`` refuses as ``--quality``
    (an integer from 1 to 100) or ``--max-image-pixels`` (a positive integer; None: Pillow's limit)."""
    if isinstance(quality, bool) or not isinstance(quality, numbers.Integral) or not 1 <= quality <= 100:
        raise ConfigError(f"quality (--quality) must be an integer from 1 to 100, not {quality!r}")
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, numbers.Integral)
                                   or max_pixels < 1):
        raise ConfigError(f"max_pixels (--max-image-pixels) must be a positive integer or None, not {max_pixels!r}")


def _task(model: bytes, src: str, dst: str, options: dict) -> str | None:
    """One Dask task: None on success, else the error message (the batch goes on)."""
    try:
        apply_path(model, src, dst, **options)
    except ColorotError as exc:
        return str(exc)
    return None


def _name(model: ModelSource) -> str:
    """How errors call the checkpoint ``model``: its file, as ``colorot apply`` names it."""
    return "checkpoint" if isinstance(model, (bytes, bytearray, memoryview)) else str(model)


def _check_options(data: bytes, options: dict, name: str) -> None:
    """ConfigError or CheckpointError for ``options`` that :func:`apply_path` would refuse for every
    file: a name it does not take, or what preparing the map refuses (strength, controls, the
    checkpoint ``data`` itself, called ``name``; the map is prepared once here, as a worker prepares it)."""
    taken = set(inspect.signature(apply_path).parameters) - {"model", "src", "dst"}
    unknown = sorted(set(options) - taken)
    if unknown:
        raise ConfigError(f"apply_with_dask got options apply_path does not take: {', '.join(unknown)} "
                          f"(it takes {', '.join(sorted(taken))})")
    check_flags(**{key: options[key] for key in ("replace", "convert_space") if key in options})
    refuse_convert_space_with_inverse(options.get("convert_space", False), options.get("inverse", False))
    _check_write_options(options.get("quality", 95), options.get("max_pixels"))
    space = prepared(data, name=name,
                     **{key: options[key] for key in ("strength", "inverse", "exact", "controls") if key in options})[2]
    warn_space_unknown(space, options.get("convert_space", False), name)  # here: a worker's goes to its log


def apply_with_dask(client, plan: Plan, model: ModelSource, *,
                    on_file_done: Callable[[Job, str | None], None] | None = None, **options) -> Report:
    """Run ``plan`` on the Dask cluster behind ``client``; ``options`` are :func:`apply_path`'s.

    Workers must see the input and output paths (a shared file system, or
    object-store paths mounted the same way everywhere). Options that every file would refuse (an
    unknown name, a value out of range, a checkpoint that is not one) are refused here, before any
    task is sent, as ``colorot apply`` refuses them before any file.
    """
    from dask.distributed import as_completed

    start = time.perf_counter()
    data = model_bytes(model)
    _check_options(data, options, _name(model))
    # A key of its own (not the bytes' hash): a second call with the same model would share the first's
    # key, which the first call's future releases when it goes, and its tasks would lose their model.
    data = client.scatter(data, broadcast=True, hash=False)
    futures = {client.submit(_task, data, str(job.src), str(job.dst), options, pure=False): job
               for job in plan.jobs}
    errors: dict[Job, str | None] = {}
    for future in as_completed(futures):
        job = futures[future]
        errors[job] = future.result()
        if on_file_done is not None:
            on_file_done(job, errors[job])
    written = [job for job in plan.jobs if errors[job] is None]
    failed = [(job, errors[job]) for job in plan.jobs if errors[job] is not None]
    return Report(written, list(plan.skipped), failed, time.perf_counter() - start)
