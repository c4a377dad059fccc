"""One-file checkpoints: a versioned dict of plain values and tensors.

Schema (``format_version`` 1)::

    {"format": "colorot", "format_version": 1, "colorot_version": str,
     "model": {"name": str, "config": dict, "state_dict": {str: Tensor}},
     "target": GaussianMixture.to_dict(),
     "preprocess": {"colour_space": "sRGB (encoded values)", "range": [0.0, 1.0]},
     "train": {...training summary: steps, loss, final_loss, seed, seconds, hashes...}}

Loading uses ``torch.load(weights_only=True)``, so no Python object is ever
unpickled, then validates every field before anything is built from it.
"""

from __future__ import annotations

import io
import math
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from colorot import __version__
from colorot.atomic import write_atomic
from colorot.distributions import GaussianMixture, target_from_dict
from colorot.errors import CheckpointError, ColorotError, OutputExistsError
from colorot.models import MODELS, MonotoneGradientMap, build_model

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


def _check_config(config: dict, source: object) -> None:
    """Refuse a model config that is not 3-D, has a non-finite or non-positive eps,
    or asks for more units than :data:`MAX_MODEL_SIZE` / :data:`MAX_MODEL_UNITS`."""
    _require(all(isinstance(key, str) for key in config), source, "malformed model config")
    _require(config.get("dim", 3) == 3, source, "the model is not a map of 3 colour channels")
    eps = config.get("eps", 1.0)
    _require(isinstance(eps, (int, float)) and not isinstance(eps, bool)
             and math.isfinite(eps) and eps > 0, source, "eps must be a positive finite number")
    size_error = model_size_error(config)
    _require(size_error is None, source, f"model size out of range ({size_error})")


def _unpickle(data: bytes, source: object) -> object:
    """``torch.load(weights_only=True)``: tensors and plain values only, never code."""
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


def from_bytes(data: bytes, source: object = "checkpoint") -> Checkpoint:
    """Parse and validate checkpoint bytes; ``source`` names it in error messages."""
    _require(len(data) > 0, source, "the file is empty")
    payload = _unpickle(data, source)
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
    name, config, state = model_part.get("name"), model_part.get("config"), model_part.get("state_dict")
    _require(isinstance(name, str) and name in MODELS, source, f"unknown model kind {name!r}")
    _require(isinstance(config, dict) and isinstance(state, dict), source, "malformed model section")
    _check_config(config, source)
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
    target_part = payload.get("target")
    _require(isinstance(target_part, dict), source, "missing target section")
    try:
        target = target_from_dict(target_part)
    except ColorotError as exc:
        raise CheckpointError(f"{source}: {exc}") from exc
    _require(target.means.shape[1] == 3, source, "the target is not a distribution of RGB colours")
    preprocess, train = payload.get("preprocess", {}), payload.get("train", {})
    _require(isinstance(preprocess, dict) and isinstance(train, dict), source, "malformed metadata")
    return Checkpoint(model, target, preprocess, train, str(payload.get("colorot_version", "unknown")))


def load(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = getattr(exc, "strerror", None) or exc
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {reason}") from exc
    return from_bytes(data, source=path)


def count_parameters(model: MonotoneGradientMap) -> int:
    """Number of scalar parameters of a model."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["Checkpoint", "save", "load", "to_bytes", "from_bytes", "count_parameters",
           "FORMAT_VERSION"]
