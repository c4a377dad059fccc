"""One-file checkpoints: a versioned dict of plain values and tensors.

Schema (``format_version`` 1)::

    {"format": "colorot", "format_version": 1, "colorot_version": str,
     "model": {"name": str, "config": dict, "state_dict": {str: Tensor}},
     "target": GaussianMixture.to_dict(),
     "preprocess": {"colour_space": "sRGB (encoded values)", "range": [0.0, 1.0]},
     "train": {...training summary: steps, loss, final_loss, seed, seconds, hashes...}}

Loading uses ``torch.load(weights_only=True)``, so no Python object is ever
unpickled, then validates every field before anything is built from it.

:func:`read_ridge_map` reads the same file without torch, for ``apply``'s fast path: the
zip archive ``torch.save`` writes, its ``data.pkl`` unpickled with a whitelist as narrow as
our schema (plain containers, tensors of the usual dtypes: never code), the tensors rebuilt
as numpy arrays, then the same checks. Both check every member's CRC-32 (torch.load itself
does not, and reads a damaged member without a word); the torch-free reader ignores zip
fields it does not use (disk numbers) that torch.load refuses.
Importing this module does not import torch.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from colorot.version import __version__
from colorot.atomic import write_atomic
from colorot.distributions import GaussianMixture, target_from_dict
from colorot.errors import CheckpointError, ColorotError, OutputExistsError

if TYPE_CHECKING:
    from colorot.models import MonotoneGradientMap

FORMAT = "colorot"
FORMAT_VERSION = 1

#: Largest model a checkpoint may hold and ``fit`` may train: each of
#: hidden/layers/modules, and their product (the defaults use 32 and 48 units).
#: Far above anything useful, low enough that a crafted config cannot make
#: loading allocate gigabytes.
MAX_MODEL_SIZE = 4096
MAX_MODEL_UNITS = 1 << 16
_SIZE_KEYS = ("hidden", "layers", "modules")


@dataclass
class Checkpoint:
    """A loaded checkpoint: the frozen map, its target and what produced them."""

    model: MonotoneGradientMap
    target: GaussianMixture
    preprocess: dict
    train: dict
    colorot_version: str


def to_bytes(model: MonotoneGradientMap, target: GaussianMixture, preprocess: dict, train: dict) -> bytes:
    """Serialise a checkpoint to bytes (see the module docstring for the schema)."""
    import torch  # here, not at the top: the CLI starts without torch

    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "colorot_version": __version__,
        "model": {
            "name": model.name,
            "config": dict(model.config),
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        },
        "target": target.to_dict(),
        "preprocess": dict(preprocess),
        "train": dict(train),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def save(path: str | Path, model: MonotoneGradientMap, target: GaussianMixture,
         preprocess: dict, train: dict, *, overwrite: bool = True) -> None:
    """Write a checkpoint atomically: a temporary file beside ``path``, then rename."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists (use --force to replace it)")
    write_atomic(path, to_bytes(model, target, preprocess, train), CheckpointError, "checkpoint")


def _require(condition: bool, path: object, what: str) -> None:
    if not condition:
        raise CheckpointError(f"{path} is not a valid colorot checkpoint: {what}")


def model_size_error(config: dict) -> str | None:
    """Why the sizes in a model config are out of range (see MAX_MODEL_SIZE), or None."""
    sizes = [config[key] for key in _SIZE_KEYS if config.get(key) is not None]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_MODEL_SIZE
               for v in sizes):
        return f"each of hidden, layers and modules must be from 1 to {MAX_MODEL_SIZE}"
    if math.prod(sizes) > MAX_MODEL_UNITS:
        return f"model size out of range: hidden × layers/modules must be at most {MAX_MODEL_UNITS}"
    return None


def _check_config(config: object, state: object, source: object) -> None:
    """Refuse a model section whose config or parameters are not dicts, or whose config is not
    3-D, has a non-finite or non-positive eps, or asks for more units than
    :data:`MAX_MODEL_SIZE` / :data:`MAX_MODEL_UNITS`."""
    _require(isinstance(config, dict) and isinstance(state, dict), source, "malformed model section")
    _require(all(isinstance(key, str) for key in config), source, "malformed model config")
    _require(config.get("dim", 3) == 3, source, "the model is not a map of 3 colour channels")
    eps = config.get("eps", 1.0)
    _require(isinstance(eps, (int, float)) and not isinstance(eps, bool)
             and math.isfinite(eps) and eps > 0, source, "eps must be a positive finite number")
    size_error = model_size_error(config)
    _require(size_error is None, source, f"model size out of range ({size_error})")


def _unpickle(data: bytes, source: object) -> object:
    """``torch.load(weights_only=True)``: tensors and plain values only, never code; first every
    archive member's CRC-32, which torch.load does not check (it would read a damaged member)."""
    import torch  # here, not at the top: the CLI starts without torch

    fault = _zip_fault(data)
    if fault is not None:
        raise CheckpointError(f"{source} is not a valid colorot checkpoint: it is truncated, damaged or not a "
                              f"checkpoint file ({fault})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on the pickle protocol
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{source} is not a valid colorot checkpoint: it is not a checkpoint file, or it holds "
            "Python objects other than tensors and plain values (refused: loading them could run code)"
        ) from exc
    except Exception as exc:  # any other reading failure: truncated, not a torch file...
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{source} is not a valid colorot checkpoint: it is truncated or not a checkpoint file "
            f"({first_line[:120]})"
        ) from exc


def _zip_fault(data: bytes) -> str | None:
    """What is wrong with a zip archive (``data`` that starts as one), such as ``torch.save``
    writes: unreadable, or a member that fails its CRC-32; None if nothing, or if ``data`` is
    no zip archive at all (torch.load then says what it is). torch.load's own zip reader checks
    no CRC and reads some damaged archives as garbage without a word."""
    if not data.startswith(b"PK\x03\x04"):
        return None
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception as exc:  # zipfile raises many types on what is no (readable) archive
        return f"not a readable zip archive: {str(exc)[:80] or type(exc).__name__}"
    try:
        with archive:
            bad = archive.testzip()
    except Exception as exc:  # a member that cannot be read back
        return f"unreadable member: {str(exc)[:80] or type(exc).__name__}"
    return None if bad is None else f"member {bad} fails its CRC check"


def from_bytes(data: bytes, source: object = "checkpoint") -> Checkpoint:
    """Parse and validate checkpoint bytes; ``source`` names it in error messages."""
    import torch  # here, not at the top: the CLI starts without torch

    from colorot.models import MODELS, build_model

    _require(len(data) > 0, source, "the file is empty")
    payload = _unpickle(data, source)
    name, config, state = _model_section(payload, source)
    _require(isinstance(name, str) and name in MODELS, source, f"unknown model kind {name!r}")
    _check_config(config, state, source)
    if name in ("cmgn", "mmgn") and "scale" not in config:
        config = {**config, "scale": 1.0}  # written before the activation scale existed (colorot ≤ 0.2.0)
    try:
        model = build_model(name, config)
    except ColorotError as exc:
        raise CheckpointError(f"{source}: {exc}") from exc
    expected = model.state_dict()
    _require(set(state) == set(expected), source, "model parameters do not match the model kind")
    for key, tensor in state.items():
        _require(isinstance(tensor, torch.Tensor) and tensor.shape == expected[key].shape
                 and tensor.dtype.is_floating_point, source, f"parameter {key!r} has the wrong shape or type")
        _require(bool(torch.isfinite(tensor).all()), source, f"parameter {key!r} holds NaN or infinite values")
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    return Checkpoint(model, *_target_and_metadata(payload, source))


def _model_section(payload: object, source: object) -> tuple[object, object, object]:
    """The model's name, config and parameters, once the format tag and version are checked."""
    _require(isinstance(payload, dict) and payload.get("format") == FORMAT, source, "wrong or missing format tag")
    version = payload.get("format_version")
    _require(isinstance(version, int) and not isinstance(version, bool), source, "missing format version")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{source} uses checkpoint format {version}, newer than this colorot supports "
            f"({FORMAT_VERSION}); upgrade colorot"
        )
    _require(version == FORMAT_VERSION, source, f"unsupported format version {version}")
    model_part = payload.get("model")
    _require(isinstance(model_part, dict), source, "missing model section")
    return model_part.get("name"), model_part.get("config"), model_part.get("state_dict")


def _target_and_metadata(payload: dict, source: object) -> tuple[GaussianMixture, dict, dict, str]:
    """The target, the preprocessing and training records and the writing colorot's version."""
    target_part = payload.get("target")
    _require(isinstance(target_part, dict), source, "missing target section")
    try:
        target = target_from_dict(target_part)
    except ColorotError as exc:
        raise CheckpointError(f"{source}: {exc}") from exc
    _require(target.means.shape[1] == 3, source, "the target is not a distribution of RGB colours")
    preprocess, train = payload.get("preprocess", {}), payload.get("train", {})
    _require(isinstance(preprocess, dict) and isinstance(train, dict), source, "malformed metadata")
    return target, preprocess, train, str(payload.get("colorot_version", "unknown"))


def load(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = getattr(exc, "strerror", None) or exc
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {reason}") from exc
    return from_bytes(data, source=path)


@dataclass(frozen=True)
class RidgeParameters:
    """A ridge map's parameters as float64 arrays (``W``, ``biases``, ``rho``, ``V``, ``b``, as in
    :class:`~colorot.models.RidgeMGN`'s state dict) and its floor ``eps``. An affine map is a
    ridge map with no units: ``W`` (0, 3), ``biases`` and ``rho`` (0,)."""

    state: dict[str, np.ndarray]
    eps: float


def read_ridge_map(path: str | os.PathLike[str]) -> RidgeParameters | None:
    """The ridge map (or affine map) of a checkpoint file, read without torch (see the module
    docstring).

    None when the file holds another kind of map, or fails any check :func:`load` makes, or
    cannot be read at all: :func:`load` then loads it, or says what is wrong with it.
    """
    try:
        data = Path(path).read_bytes()
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return None
    return ridge_map_from_bytes(data)


def ridge_map_from_bytes(data: bytes) -> RidgeParameters | None:
    """:func:`read_ridge_map` of checkpoint bytes (None: :func:`from_bytes` then loads them, or
    says what is wrong with them)."""
    source = "checkpoint"  # the checks' messages are not shown: a fault only means None
    try:
        payload = _read_payload(data)
        name, config, state = _model_section(payload, source)
        if not isinstance(config, dict) or (name, set(config)) not in (("ridge", {"dim", "eps", "hidden"}),
                                                                        ("affine", {"dim", "eps"})):
            return None
        _check_config(config, state, source)
        shapes = _ridge_shapes(config.get("hidden", 0))
        if name == "affine":
            shapes = {key: shapes[key] for key in ("V", "b")}
        _require(set(state) == set(shapes), source, "model parameters do not match the model kind")
        for key, array in state.items():
            _require(isinstance(array, np.ndarray) and array.shape == shapes[key] and array.dtype.kind == "f",
                     source, f"parameter {key!r} has the wrong shape or type")
            _require(bool(np.isfinite(array).all()), source, f"parameter {key!r} holds NaN or infinite values")
        _target_and_metadata(payload, source)
    except Exception:  # whatever the fault, load() reads the file again and names it
        return None
    arrays = {key: array.astype(np.float64) for key, array in state.items()}
    if name == "affine":  # a ridge map with no units
        arrays.update(W=np.zeros((0, 3)), biases=np.zeros(0), rho=np.zeros(0))
    return RidgeParameters(arrays, float(config["eps"]))


def _ridge_shapes(hidden: int) -> dict[str, tuple[int, ...]]:
    """The parameter shapes of a 3-D RidgeMGN of ``hidden`` units (an AffineMap's are V and b)."""
    return {"V": (3, 3), "b": (3,), "W": (hidden, 3), "biases": (hidden,), "rho": (hidden,)}


#: The typed storages ``torch.save`` names → numpy dtype codes (the byte order is the archive's).
_STORAGE_DTYPES = {"DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2", "LongStorage": "i8",
                   "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
                   "BoolStorage": "b1"}


def _read_payload(data: bytes) -> object:
    """The object ``torch.save`` wrote into ``data``, tensors as numpy arrays: the archive's
    ``data.pkl``, unpickled by :class:`_ArrayUnpickler`. Raises on anything else."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError("not a torch.save archive")
        prefix = pickles[0].removesuffix("data.pkl")
        byteorder = _entry(archive, prefix + "byteorder") if prefix + "byteorder" in archive.namelist() else b"little"
        if byteorder not in (b"little", b"big"):
            raise ValueError("unknown byte order")
        return _ArrayUnpickler(archive, prefix, "<" if byteorder == b"little" else ">").load()


def _entry(archive: zipfile.ZipFile, name: str) -> bytes:
    """An archive member, which ``torch.save`` stores uncompressed (so nothing can inflate)."""
    if archive.getinfo(name).compress_type != zipfile.ZIP_STORED:
        raise ValueError("compressed archive member")
    return archive.read(name)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl`` allowing only plain values, ``OrderedDict`` (as dict) and tensors
    (``torch._utils._rebuild_tensor_v2`` over typed storages), rebuilt as numpy arrays."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, byteorder: str) -> None:
        super().__init__(io.BytesIO(_entry(archive, prefix + "data.pkl")))
        self._archive, self._prefix, self._byteorder = archive, prefix, byteorder
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return self._byteorder + _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a checkpoint")

    def persistent_load(self, pid: object) -> np.ndarray:
        """A storage ``("storage", dtype, key, location, numel)``: the archive's ``data/<key>``."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], str)
                and isinstance(pid[2], str) and isinstance(pid[4], int) and pid[4] >= 0):
            raise pickle.UnpicklingError("unexpected persistent id")
        _, dtype, key, _, numel = pid
        if key not in self._storages:
            raw = _entry(self._archive, f"{self._prefix}data/{key}")
            self._storages[key] = np.frombuffer(raw, dtype=dtype, count=numel)
        return self._storages[key]


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_: object) -> np.ndarray:
    """The tensor ``size``/``stride`` at ``offset`` of ``storage`` (in elements), as a new array;
    ValueError if any of it lies outside the storage."""
    size, stride = tuple(size), tuple(stride)
    if not (isinstance(storage, np.ndarray) and len(size) == len(stride)
            and all(isinstance(n, int) and n >= 0 for n in (offset, *size, *stride))):
        raise ValueError("malformed tensor")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    if offset + sum((n - 1) * step for n, step in zip(size, stride)) >= len(storage):
        raise ValueError("tensor outside its storage")
    steps = [step * storage.itemsize for step in stride]
    return np.lib.stride_tricks.as_strided(storage[offset:], size, steps).copy()


def count_parameters(model: MonotoneGradientMap) -> int:
    """Number of scalar parameters of a model."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["Checkpoint", "RidgeParameters", "save", "load", "read_ridge_map", "ridge_map_from_bytes", "to_bytes",
           "from_bytes", "count_parameters", "FORMAT_VERSION"]
