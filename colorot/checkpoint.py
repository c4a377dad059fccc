"""One-file checkpoints: a versioned dict of plain values and tensors.

Schema (``format_version`` 1)::

    {"format": "colorot", "format_version": 1, "colorot_version": str,
     "model": {"name": str, "config": dict, "state_dict": {str: Tensor}},
     "target": GaussianMixture.to_dict(),
     "preprocess": {"colour_space": "sRGB (encoded values, no linearisation)", "range": [0.0, 1.0]},
     "train": {...training summary: steps, loss, final_loss, seed, seconds, hashes...}}

The file is what ``torch.save`` would write, written without torch (:mod:`colorot.torch_archive`),
parameters in float32 as the models hold them.  Loading uses ``torch.load(weights_only=True)``,
so no Python object is ever unpickled, then validates every field before anything is built from it.

:func:`read_ridge_map` reads the same file without torch, for ``apply``'s fast path
(:func:`colorot.torch_archive.read`: a whitelist as narrow as our schema, plain containers and
tensors of the usual dtypes, never code), then makes the same checks. Both check every member's
CRC-32 (torch.load itself does not, and reads a damaged member without a word); the torch-free
reader ignores zip fields it does not use (disk numbers) that torch.load refuses.
Importing this module does not import torch, and neither does saving a :class:`RidgeParameters`.
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
from typing import TYPE_CHECKING, BinaryIO, Union

import numpy as np

from colorot import torch_archive
from colorot.caught_warnings import caught_warnings
from colorot.version import __version__
from colorot.atomic import write_atomic
from colorot.defaults import MAX_EPS
from colorot.distributions import GaussianMixture, target_from_dict
from colorot.errors import CheckpointError, ColorotError, OutputExistsError
from colorot.ridge_map import RidgeParameters

if TYPE_CHECKING:
    from colorot.models import MonotoneGradientMap

FORMAT = "colorot"
FORMAT_VERSION = 1

#: What a checkpoint is read from: a file's path, its bytes, or a binary file object.
CheckpointSource = Union[str, os.PathLike[str], bytes, bytearray, memoryview, BinaryIO]

#: Largest model ``fit`` may train: each of hidden/layers/modules (the defaults: the C-MGN 16 × 3
#: layers, the M-MGN 8 × 3 modules, the ridge map 64 under Adam, 576 from the KL solver); a checkpoint may hold up to MAX_MODEL_UNITS in each and in their
#: product, since a sequence frame's blended ridge map holds the units of every frame it blends
#: (7 × 576 at σ = 1, 13 × 576 at σ = 2).  Far above anything useful, low enough that a crafted
#: config cannot make loading allocate gigabytes.
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


def to_bytes(model: MonotoneGradientMap | RidgeParameters, target: GaussianMixture, preprocess: dict,
             train: dict) -> bytes:
    """Serialise a checkpoint to bytes (see the module docstring for the schema).  ``model``: a
    fitted map, or a ridge map's parameters (then torch is not imported)."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "colorot_version": __version__,
        "model": _model_payload(model),
        "target": target.to_dict(),
        "preprocess": dict(preprocess),
        "train": dict(train),
    }
    return torch_archive.write(payload)


def _model_payload(model: MonotoneGradientMap | RidgeParameters) -> dict:
    """The model section: name, config and parameters as float32 arrays (a RidgeMGN's state dict order)."""
    if isinstance(model, RidgeParameters):
        return {"name": "ridge", "config": _model_config(model),
                "state_dict": {key: np.asarray(model.state[key], np.float32) for key in _ridge_shapes(0)}}
    return {"name": model.name, "config": _model_config(model),
            "state_dict": {key: value.detach().cpu().numpy() for key, value in model.state_dict().items()}}


def _model_config(model: MonotoneGradientMap | RidgeParameters) -> dict:
    """The model's constructor arguments, as the checkpoint keeps them."""
    if isinstance(model, RidgeParameters):
        return {"dim": 3, "eps": model.eps, "hidden": model.hidden}
    return dict(model.config)


def save(path: str | os.PathLike[str] | BinaryIO, model: MonotoneGradientMap | RidgeParameters,
         target: GaussianMixture, preprocess: dict, train: dict, *, overwrite: bool = True) -> None:
    """Write a checkpoint atomically: a temporary file beside ``path``, then rename; or into a
    binary file object (anything with ``write``: an open file, ``io.BytesIO``), written as it
    stands. CheckpointError for a model larger than a checkpoint may hold (it could not be loaded)."""
    file = path if hasattr(path, "write") else None
    name = getattr(file, "name", "the file object") if file is not None else Path(path)
    if file is None and name.exists() and not overwrite:
        raise OutputExistsError(f"{name} already exists (overwrite=True replaces it; --force on the command line)")
    size_error = model_size_error(_model_config(model), MAX_MODEL_UNITS)
    if size_error is not None:
        raise CheckpointError(f"cannot save {name}: {size_error} (a sequence's blend: use a smaller --smooth)")
    data = to_bytes(model, target, preprocess, train)
    if file is None:
        write_atomic(name, data, CheckpointError, "checkpoint", replace=overwrite)
        return
    try:
        file.write(data)
    except (OSError, TypeError, ValueError) as exc:  # TypeError: a text file; ValueError: a closed one
        raise CheckpointError(f"cannot write checkpoint to {name}: {exc}") from exc


def _require(condition: bool, path: object, what: str) -> None:
    if not condition:
        raise CheckpointError(f"{path} is not a valid colorot checkpoint: {what}")


def model_size_error(config: dict, largest: int = MAX_MODEL_SIZE,
                     names: str = "hidden, layers and modules") -> str | None:
    """Why the sizes in a model config are out of range (each at most ``largest``: MAX_MODEL_SIZE
    to fit, MAX_MODEL_UNITS in a checkpoint; their product at most MAX_MODEL_UNITS), or None;
    ``names``: how the message names the three sizes."""
    sizes = [config[key] for key in _SIZE_KEYS if config.get(key) is not None]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= largest
               for v in sizes):
        return f"each of {names} must be from 1 to {largest}"
    if math.prod(sizes) > MAX_MODEL_UNITS:
        return f"model size out of range: hidden × layers/modules must be at most {MAX_MODEL_UNITS}"
    return None


def _check_config(config: object, state: object, source: object) -> None:
    """Refuse a model section whose config or parameters are not dicts, or whose config is not
    3-D, has an eps outside (0, MAX_EPS], or asks for more units than
    :data:`MAX_MODEL_SIZE` / :data:`MAX_MODEL_UNITS`."""
    _require(isinstance(config, dict) and isinstance(state, dict), source, "malformed model section")
    _require(all(isinstance(key, str) for key in config), source, "malformed model config")
    dim = config.get("dim", 3)  # an int (a tensor or array here has no one truth value)
    _require(isinstance(dim, int) and dim == 3, source, "the model is not a map of 3 colour channels")
    eps = config.get("eps", 1.0)
    _require(isinstance(eps, (int, float)) and not isinstance(eps, bool) and 0 < eps <= MAX_EPS, source,
             f"eps must be a positive finite number, at most {MAX_EPS:g}")
    size_error = model_size_error(config, MAX_MODEL_UNITS)
    _require(size_error is None, source, f"model size out of range ({size_error})")


def _unpickle(data: bytes, source: object) -> object:
    """``torch.load(weights_only=True)``: tensors and plain values only, never code; first every
    archive member's CRC-32, which torch.load does not check (it would read a damaged member)."""
    import torch  # here, not at the top: the CLI starts without torch

    if not data.startswith(b"PK\x03\x04"):  # what torch.load makes of it is no help ("pop from empty list", "101")
        raise CheckpointError(f"{source} is not a valid colorot checkpoint: it is not a zip archive, as every "
                              "checkpoint is (the file is something else)")
    fault = _zip_fault(data)
    if fault is not None:
        raise CheckpointError(f"{source} is not a valid colorot checkpoint: it is truncated, damaged or not a "
                              f"checkpoint file ({fault})")
    try:
        with caught_warnings():
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
    """What is wrong with a zip archive (``data``, which starts as one), such as ``torch.save``
    writes: unreadable, a member unlike those torch.save writes (:func:`torch_archive.member_fault`:
    one that could inflate, or one marked a folder), or a member that fails its CRC-32; None if nothing. torch.load's own zip
    reader checks no CRC and reads some damaged archives as garbage without a word."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception as exc:  # zipfile raises many types on what is no (readable) archive
        return f"not a readable zip archive: {str(exc)[:80] or type(exc).__name__}"
    with archive:
        fault = torch_archive.member_fault(archive, len(data))
        if fault is not None:
            return fault
        try:
            bad = archive.testzip()
        except Exception as exc:  # a member that cannot be read back
            return f"unreadable member: {str(exc)[:80] or type(exc).__name__}"
    return None if bad is None else f"member {bad} fails its CRC check"


#: The first bytes of the image formats colorot reads, and their names.
_IMAGE_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"II*\x00", "TIFF"),
                     (b"MM\x00*", "TIFF"), (b"GIF8", "GIF"))


def _image_kind(data: bytes) -> str | None:
    """The image format ``data`` starts as (a file given as a checkpoint by mistake), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    from colorot.imageio import isobmff_kind  # Pillow, imported only for a file that is no checkpoint

    kind = isobmff_kind(data)
    if kind is not None:
        return kind
    if data[:2] == b"BM" and data[6:10] == bytes(4):  # and its reserved bytes: "BM" alone starts text too
        return "BMP"
    return next((kind for signature, kind in _IMAGE_SIGNATURES if data.startswith(signature)), None)


def from_bytes(data: bytes, source: object = "checkpoint") -> Checkpoint:
    """Parse and validate checkpoint bytes; ``source`` names it in error messages."""
    import torch  # here, not at the top: the CLI starts without torch

    from colorot.models import MODELS, build_model

    _require(len(data) > 0, source, "the file is empty")
    kind = _image_kind(data)
    _require(kind is None, source, f"it is a {kind} image, not a map that colorot fit saved (colorot fit writes "
                                   "one with -o, e.g. model.pt; colorot apply takes it before the images: colorot "
                                   "apply MODEL INPUT... OUTPUT)")
    payload = _unpickle(data, source)
    name, config, state = _model_section(payload, source)
    _require(isinstance(name, str) and name in MODELS, source, f"unknown model kind {name!r}")
    _check_config(config, state, source)
    if name in ("cmgn", "mmgn") and "scale" not in config:
        config = {**config, "scale": 1.0}  # written before the activation scale existed (colorot ≤ 0.2.0)
    try:
        with torch.random.fork_rng(devices=[]):  # its initial weights, replaced below, draw on no caller's random stream
            model = build_model(name, config)
    except ColorotError as exc:
        raise CheckpointError(f"{source} is not a valid colorot checkpoint: its model: {exc}") from exc
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


#: How deep a checkpoint's records may nest (``train["sequence"]["frames"]``: 2), how many values they
#: may hold in all, and how long a text in them may be (an ICC profile in base64: 350 000
#: characters): a crafted pickle can put one list twice under the next, 40 times, small in the file
#: and 2⁴⁰ values long once printed.
MAX_RECORD_DEPTH = 4
MAX_RECORD_VALUES = 100_000
MAX_RECORD_TEXT = 1 << 20


def _record_fault(record: dict) -> str | None:
    """What is wrong, if anything, with a checkpoint's ``train`` or ``preprocess`` record: it must be
    text keys over plain values (text, numbers, booleans, None) and lists or records of them,
    within :data:`MAX_RECORD_DEPTH`, :data:`MAX_RECORD_VALUES` and :data:`MAX_RECORD_TEXT`."""
    pending, seen = [(record, 0)], 0
    while pending:
        value, depth = pending.pop()
        seen += 1
        if seen > MAX_RECORD_VALUES:
            return f"more than {MAX_RECORD_VALUES} values"
        if isinstance(value, (dict, list, tuple)):
            if depth >= MAX_RECORD_DEPTH:
                return f"nested more than {MAX_RECORD_DEPTH} deep"
            if isinstance(value, dict) and not all(isinstance(key, str) for key in value):
                return "a key that is not text"
            pending.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
        elif isinstance(value, str):
            if len(value) > MAX_RECORD_TEXT:
                return f"a text of {len(value)} characters"
        elif isinstance(value, int) and not isinstance(value, bool):
            if abs(value) >= 1 << 64:
                return "an integer beyond 64 bits"
        elif not (value is None or isinstance(value, (bool, float))):
            return f"a value of type {type(value).__name__}"
    return None


def _target_and_metadata(payload: dict, source: object) -> tuple[GaussianMixture, dict, dict, str]:
    """The target, the preprocessing and training records and the writing colorot's version."""
    target_part = payload.get("target")
    _require(isinstance(target_part, dict), source, "missing target section")
    try:
        target = target_from_dict(target_part)
    except ColorotError as exc:
        raise CheckpointError(f"{source} is not a valid colorot checkpoint: its target: {exc}") from exc
    _require(target.means.shape[1] == 3, source, "the target is not a distribution of RGB colours")
    preprocess, train = payload.get("preprocess", {}), payload.get("train", {})
    _require(isinstance(preprocess, dict) and isinstance(train, dict), source, "malformed metadata")
    for name, record in (("preprocess", preprocess), ("train", train)):
        fault = _record_fault(record)
        _require(fault is None, source, f"malformed metadata (its {name} record holds {fault})")
    version = payload.get("colorot_version", "unknown")
    _require(isinstance(version, str), source, "malformed metadata (colorot_version is not text)")
    return target, preprocess, train, version


def load(path: CheckpointSource) -> Checkpoint:
    """Read and validate a checkpoint: a file's path, its bytes, or a binary file object (anything
    with ``read``: an open file, ``io.BytesIO``), read from where it stands to its end."""
    return from_bytes(*read_bytes(path))


def read_bytes(path: CheckpointSource) -> tuple[bytes, object]:
    """A checkpoint's bytes (:func:`load`'s ``path``) and how errors name it, or CheckpointError."""
    if isinstance(path, (bytes, bytearray, memoryview)):
        return bytes(path), "checkpoint"
    if hasattr(path, "read"):
        source = getattr(path, "name", "checkpoint")
        try:
            data = path.read()
        except (OSError, ValueError) as exc:  # ValueError: a closed file
            raise CheckpointError(f"cannot read checkpoint {source!r}: {exc}") from exc
        if not isinstance(data, (bytes, bytearray)):
            raise CheckpointError(f"cannot read checkpoint {source!r}: a checkpoint is binary; open the file "
                                  "with mode 'rb'")
        return bytes(data), source
    path = Path(path)
    try:
        return path.read_bytes(), path
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = getattr(exc, "strerror", None) or exc
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {reason}") from exc


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
    parts = _ridge_parts(data)
    return None if parts is None else parts[1]


def ridge_checkpoint_from_bytes(data: bytes) -> tuple[RidgeParameters, GaussianMixture, dict] | None:
    """A ridge map's checkpoint (not an affine map's) read without torch: the map's parameters, the
    target and the training record; None as for :func:`ridge_map_from_bytes`."""
    parts = _ridge_parts(data)
    return None if parts is None or parts[0] != "ridge" else parts[1:]


def _ridge_parts(data: bytes) -> tuple[str, RidgeParameters, GaussianMixture, dict] | None:
    """The map's kind (ridge or affine), its parameters, the target and the training record of
    checkpoint bytes, read without torch; None for any other map or any fault."""
    source = "checkpoint"  # the checks' messages are not shown: a fault only means None
    try:
        payload = torch_archive.read(data)
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
        target, _, train, _ = _target_and_metadata(payload, source)
    except Exception:  # whatever the fault, load() reads the file again and names it
        return None
    arrays = {key: array.astype(np.float64) for key, array in state.items()}
    if name == "affine":  # a ridge map with no units
        arrays.update(W=np.zeros((0, 3)), biases=np.zeros(0), rho=np.zeros(0))
    return name, RidgeParameters(arrays, float(config["eps"])), target, train


def train_record(model: str | os.PathLike[str] | bytes) -> dict:
    """A checkpoint's ``train`` record (a file, or its bytes), read without torch; empty when it
    cannot be read so (:func:`load` then says what is wrong with the file)."""
    try:
        data = bytes(model) if isinstance(model, (bytes, bytearray, memoryview)) else Path(model).read_bytes()
        payload = torch_archive.read(data)
    except Exception:  # any fault: the map's own read names it
        return {}
    train = payload.get("train") if isinstance(payload, dict) else None
    return train if isinstance(train, dict) else {}


def _ridge_shapes(hidden: int) -> dict[str, tuple[int, ...]]:
    """The parameter shapes of a 3-D RidgeMGN of ``hidden`` units (an AffineMap's are V and b)."""
    return {"V": (3, 3), "b": (3,), "W": (hidden, 3), "biases": (hidden,), "rho": (hidden,)}


def count_parameters(model: MonotoneGradientMap) -> int:
    """Number of scalar parameters of a model."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["Checkpoint", "RidgeParameters", "save", "load", "read_bytes", "read_ridge_map", "ridge_map_from_bytes",
           "ridge_checkpoint_from_bytes", "to_bytes", "from_bytes", "count_parameters", "FORMAT_VERSION"]
