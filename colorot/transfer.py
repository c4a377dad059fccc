"""The ``ColorTransfer`` estimator: the Python API that the CLI sits on.

scikit-learn style: ``__init__`` only stores its arguments, ``fit(source,
target)`` sets the trailing-underscore attributes and returns ``self``:

* ``target_dist_``: the fitted target distribution (Gaussian or mixture);
* ``map_``: the fitted map, a frozen ``torch.nn.Module`` (N, 3) → (N, 3) (the KL and sliced
  solvers fit a ridge map as numpy arrays, without torch; its module is built on first use);
* ``history_``: the training loss per step and the wall time;
* ``train_info_``: the training summary stored in the checkpoint.

``source`` and ``target`` may each be one image or a list of images: the
pixels of a list are pooled (concatenated) before fitting. Optional masks
(one per image, same size; white = used) restrict fitting to regions.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import math
import numbers
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator, Sequence, Union

import numpy as np
import PIL.Image

from colorot import checkpoint
from colorot.apply import DEFAULT_CHUNK_PIXELS, at_strength, map_pixels
from colorot.controls import Controls, check_controls
from colorot.cube import write_cube
from colorot.defaults import (ADAM_SW_WEIGHT, DEFAULT_BATCH_SIZE, DEFAULT_EPS, DEFAULT_LR, DEFAULT_MAX_PIXELS,
                              DEFAULT_STEPS, DEFAULT_SW_DIRECTIONS, FLOAT_SLACK, MAX_EPS, NETWORK_KL_ITERATIONS)
from colorot.distributions import DEFAULT_RIDGE, TARGET_KINDS, EMProblem, GaussianMixture, fit_target, gaussian_moments
from colorot.em_process import BackgroundEM, discard_prestarted
from colorot.errors import ConfigError, ImageMetadataWarning, NotFittedError, TrainingError
from colorot.history import History
from colorot.imageio import grey16_codes, read_image, read_pixels, unit_values
from colorot.lut import DEFAULT_LUT_SIZE, Lut, bake
from colorot.profiles import (MAX_RECORDED_PROFILE, ColourSpace, apart, image_colour_space, in_source_space,
                              not_in_message, recorded_space, space_record)
from colorot import kl_solver
from colorot.metrics import kl_to_target
from colorot.ridge_map import RidgeParameters
from colorot.ridge_profiles import RidgeProfiles
from colorot.strength import check_flags, check_strength
from colorot.sliced import DEFAULT_ITERATIONS, NNLS_ITERATIONS, SlicedSettings, solve_sliced
from colorot.sampling import colour_order, representative_subsample, thinned
from colorot.thread_counts import one_blas_thread, one_library_thread

#: The network solvers (``mgn_solver``, ``train``), the models and ``transforms`` import torch: they
#: are imported where a fit or a transform needs them, so a default fit (the KL solver's ridge
#: map, numpy only) runs, and saves its checkpoint, without torch.

#: What ``fit`` and ``transform`` accept: a file path, a PIL image, or an array (or a torch
#: tensor) (H, W, 3) / (N, 3) of uint8, uint16 or floats in [0, 1]. torch.Tensor is named for
#: type checkers only (this module does not import torch), so run-time introspection
#: (``typing.get_type_hints``) sees the union without it.
if TYPE_CHECKING:
    import torch

    from colorot.transforms import ColorAugment

    ImageLike = Union[str, os.PathLike[str], np.ndarray, PIL.Image.Image, torch.Tensor]
else:
    ImageLike = Union[str, os.PathLike, np.ndarray, PIL.Image.Image]
#: Masks: one (or None, the whole image) per image.
MaskLike = Union[ImageLike, Sequence[Union[ImageLike, None]], None]

#: How a map can be fitted ("auto": see :meth:`ColorTransfer.resolved_solver`).
SOLVERS = ("auto", "kl", "sliced", "adam")

#: Default model sizes when ``hidden``/``layers``/``modules`` are not given.
MODEL_DEFAULTS = {
    "ridge": {"hidden": 64},
    "cmgn": {"hidden": 16, "layers": 3},
    "mmgn": {"hidden": 8, "modules": 3},
    "affine": {},
}

PREPROCESS = {"colour_space": "sRGB (encoded values, no linearisation)", "range": [0.0, 1.0]}

#: The ``colorot fit`` option of each parameter.  Errors name a parameter as ``name (--flag)``
#: and a value it needs as ``name='value' (--flag value)``, for readers of the API and the CLI alike.
FLAGS = {"model": "--model", "target": "--distribution", "solver": "--solver", "n_components": "--components",
         "loss": "--loss", "sw_weight": "--sw-weight", "sw_directions": "--sw-directions",
         "transport_weight": "--transport-weight", "steps": "--steps", "lr": "--lr", "batch_size": "--batch-size",
         "max_pixels": "--max-pixels", "ridge": "--ridge", "eps": "--eps", "hidden": "--hidden",
         "layers": "--layers", "modules": "--modules", "device": "--device", "random_state": "--seed",
         "max_image_pixels": "--max-image-pixels"}


def _named(parameter: str) -> str:
    """A parameter as errors name it: ``batch_size (--batch-size)``."""
    return f"{parameter} ({FLAGS[parameter]})" if parameter in FLAGS else parameter


@dataclass(frozen=True)
class FitKind:
    """What a fit does: its resolved solver, target kind and model, and μ of its SW₂ term."""

    solver: str
    target: str
    model: str
    sw_weight: float

    def describe(self) -> str:
        if self.solver == "closed-form":
            return "the affine model (closed form, gaussian target)"
        return f"the {self.solver} solver ({self.model} model, {self.target} target)"


def _adam(fit: FitKind, value: object) -> bool:
    return fit.solver == "adam"


_ADAM = "only solver='adam' (--solver adam)"

#: Where each parameter that only some fits use applies, and what it needs.  A value other than
#: the constructor's default is refused where it does not apply (``ColorTransfer.fit``, before any
#: image is read); the parameters not listed (max_pixels, eps, random_state, progress,
#: max_image_pixels) apply to every fit.
APPLICABILITY: dict[str, tuple[Callable[[FitKind, object], bool], str]] = {
    "solver": (lambda fit, value: fit.model != "affine", "the affine map is fitted in closed form"),
    "target": (lambda fit, value: fit.model != "affine" or value == "gaussian",
               "the affine map needs only the target's mean and covariance (a gaussian target)"),
    "n_components": (lambda fit, value: fit.target == "gmm",
                     "only target='gmm' (--distribution gmm) has components"),
    "loss": (_adam, f"{_ADAM} has a choice of loss"),
    "sw_weight": (lambda fit, value: fit.solver in ("kl", "adam"),
                  "only solver='kl' or 'adam' adds μ·SW₂²; the sliced solver minimises SW₂ alone"),
    "sw_directions": (lambda fit, value: fit.solver == "adam" and fit.sw_weight > 0,
                      f"{_ADAM} with sw_weight > 0 (--sw-weight) draws SW₂ directions"),
    "transport_weight": (_adam, f"{_ADAM} adds λ·E‖T(x) − x‖²"),
    "steps": (lambda fit, value: fit.solver != "closed-form", "the affine map is fitted in closed form"),
    "lr": (_adam, f"{_ADAM} has a learning rate"),
    "batch_size": (_adam, f"{_ADAM} trains in batches"),
    "ridge": (lambda fit, value: fit.target != "pixels",
              "it floors the covariances of a gmm or gaussian target (--distribution)"),
    "hidden": (lambda fit, value: fit.solver == "adam" or fit.model in ("cmgn", "mmgn"),
               "the kl and sliced solvers' ridge map has a fixed dictionary; a chosen size needs "
               "model='cmgn' or 'mmgn' (--model), or solver='adam' (--solver adam)"),
    "layers": (lambda fit, value: fit.model == "cmgn", "only model='cmgn' (--model cmgn) has layers"),
    "modules": (lambda fit, value: fit.model == "mmgn", "only model='mmgn' (--model mmgn) has modules"),
    "device": (lambda fit, value: fit.solver == "adam" or value == "cpu",
               f"{_ADAM} trains on a GPU; the other solvers run on the CPU"),
}


def to_pixels(image: ImageLike, *, max_image_pixels: int | None = None) -> np.ndarray:
    """Any accepted image form → float32 pixels (N, 3) in [0, 1].

    A path or a PIL image gives its pixels without the fully transparent ones, as colorot reads
    a file (16-bit greyscale at its full precision); an array gives all of its pixels: uint8,
    uint16, or floats in [0, 1] (other integer types are refused, as their range is unknown).
    ``max_image_pixels`` replaces the decompression-bomb limit for a file.
    """
    if isinstance(image, (str, os.PathLike)):
        return read_pixels(image, max_pixels=max_image_pixels)
    if _is_pil(image):
        pixels, alpha = _pil_pixels(image)
        if alpha is None:
            return pixels
        pixels = pixels[alpha != 0]
        if len(pixels) == 0:
            raise ConfigError("every pixel of the image is fully transparent")
        return pixels
    if hasattr(image, "read") or isinstance(image, (bytes, bytearray, memoryview)):
        raise ConfigError(f"an image is a path, a PIL image or an array, not {type(image).__name__}: for an open "
                          "file or bytes, give PIL.Image.open(file) (or PIL.Image.open(io.BytesIO(data)))")
    if _is_tensor(image):
        image = image.detach().cpu()
        if image.is_floating_point() and image.dtype.itemsize == 2:  # half floats widened: numpy has no bfloat16
            image = image.float()
        image = image.numpy()
    return _array_pixels(np.asarray(image))


def _is_tensor(image: object) -> bool:
    """Whether ``image`` is a torch tensor (torch already imported: else it cannot be one; while
    another thread imports it, ``torch`` is in ``sys.modules`` before its ``Tensor`` is)."""
    tensor = getattr(sys.modules.get("torch"), "Tensor", None)
    return isinstance(tensor, type) and isinstance(image, tensor)


def _is_pil(image: object) -> bool:
    return hasattr(image, "convert") and hasattr(image, "size")


def _pil_pixels(image) -> tuple[np.ndarray, np.ndarray | None]:
    """A PIL image's pixels (H·W, 3) and its alpha (H·W,), or None without transparency."""
    if image.mode in ("I", "F"):  # convert("RGB") would clip each value to 0–255, as a file they are refused
        raise ConfigError(f"unsupported pixel format (Pillow mode {image.mode}): give 8- or 16-bit images, "
                          "or an array of floats in [0, 1]")
    if image.mode.startswith("I;16"):  # convert("RGB") would clip it to 0–255
        codes = grey16_codes(image)
        codes = codes.reshape(-1, codes.shape[2])
        return codes[:, :3] / np.float32(65535), (codes[:, 3] if codes.shape[1] == 4 else None)
    if image.mode == "La":  # premultiplied grey + alpha, which Pillow converts to LA alone
        image = image.convert("LA")
    if image.has_transparency_data:
        rgba = np.asarray(image.convert("RGBA")).reshape(-1, 4)
        return rgba[:, :3] / np.float32(255), rgba[:, 3]
    return _array_pixels(np.asarray(image.convert("RGB"))), None


def _array_pixels(array: np.ndarray) -> np.ndarray:
    """An array (..., 3) of uint8 or uint16 codes or of floats in [0, 1] → float32 (N, 3)."""
    if array.ndim < 2 or array.shape[-1] != 3:
        channels_first = array.ndim >= 3 and array.shape[-3] == 3
        hint = ("; channels first? move them last (np.moveaxis(a, -3, -1))" if channels_first
                else "; RGBA? give its colours (a[..., :3]), or the image as a PIL image or a file, whose "
                     "fully transparent pixels are left out" if array.ndim >= 3 and array.shape[-1] == 4 else "")
        raise ConfigError(f"expected an RGB image or pixels (..., 3), got shape {array.shape}{hint}")
    values = unit_values(array)
    if values is None:
        raise ConfigError(f"pixels must be uint8, uint16 or floats in [0, 1], not {array.dtype}")
    return values.reshape(-1, 3).astype(np.float32)


def _as_list(images: MaskLike) -> list:
    if images is None:
        return []
    if isinstance(images, (list, tuple)):
        return list(images)
    return [images]


def _mask_of(mask: ImageLike, max_image_pixels: int | None) -> np.ndarray:
    """A mask image → bool (H, W) (a 1-D mask of pixels: (N,)): true where its mean code is at
    least half the maximum (8- and 16-bit codes: white; floats, bools and other integers, and a
    PIL image of mode F: ≥ 0.5, floats outside [0, 1] refused; mode I is refused) and, for a mask
    file or PIL image with transparency, where it is at least half opaque (editors export a mask
    painted on transparency with white under it: it selected every pixel)."""
    opaque = None
    if isinstance(mask, (str, os.PathLike)):
        image = read_image(mask, max_pixels=max_image_pixels)
        codes, top = image.codes, (65535 if image.bit_depth == 16 else 255)
        if image.alpha is not None:
            opaque = image.alpha >= np.iinfo(image.alpha.dtype).max / 2
    elif hasattr(mask, "convert"):
        if mask.mode == "I":
            raise ConfigError("unsupported mask format (Pillow mode I, 32-bit integers): give an 8- or 16-bit "
                              "image, or an array of booleans or floats in [0, 1]")
        if mask.mode == "F":  # floats, as an array of floats: selected from 0.5
            codes, top = np.asarray(mask), 1.0
        elif mask.mode.startswith("I;16"):  # convert("L") would clip its codes to 255: all but black white
            codes, top = grey16_codes(mask), 65535
            if codes.shape[2] == 4:  # a grey level named transparent
                codes, opaque = codes[..., 0], codes[..., 3] != 0
        else:  # the mean of R, G and B, as for a file (convert("L") would weigh them as luma: green is white)
            if mask.mode == "La":  # premultiplied grey + alpha, which Pillow converts to LA alone
                mask = mask.convert("LA")
            codes, top = np.asarray(mask.convert("RGBA" if mask.has_transparency_data else "RGB")), 255
            if codes.shape[2] == 4:
                codes, opaque = codes[..., :3], codes[..., 3] >= top / 2
    else:
        codes = np.asarray(mask.detach().cpu() if _is_tensor(mask) else mask)
        top = 65535 if codes.dtype == np.uint16 else 255 if codes.dtype == np.uint8 else 1.0
    if codes.dtype.kind == "f" and codes.size and not (np.nanmin(codes) >= 0 and np.nanmax(codes) <= 1):
        raise ConfigError(f"a mask of floats must lie in [0, 1], and this one runs from {np.nanmin(codes):g} to "
                          f"{np.nanmax(codes):g}: divide 8-bit values by 255 (16-bit ones by 65535)")
    if codes.ndim == 1:
        return codes >= top / 2
    codes = codes.reshape(codes.shape[0], codes.shape[1], -1)
    white = codes.mean(-1) >= top / 2
    return white if opaque is None else white & opaque


def _masked(image: ImageLike, mask: ImageLike, index: int, role: str, max_image_pixels: int | None) -> np.ndarray:
    """The pixels of ``image`` that its ``mask`` (the same width and height) selects, fully
    transparent ones left out as without a mask."""
    alpha = None
    if isinstance(image, (str, os.PathLike)):
        decoded = read_image(image, max_pixels=max_image_pixels)
        pixels, alpha, shape = to_pixels(decoded.rgb), decoded.alpha, decoded.codes.shape[:2]
    elif _is_pil(image):
        (pixels, alpha), shape = _pil_pixels(image), (image.height, image.width)
    else:
        pixels, dims = to_pixels(image), np.shape(image)  # a tensor's own shape: no copy, no detach
        shape = tuple(dims[:2]) if len(dims) == 3 else None  # (N, 3) pixels: only their count
    keep = _mask_of(mask, max_image_pixels)
    if shape is not None and keep.ndim == 2 and keep.shape != shape:
        raise ConfigError(f"mask {index + 1} is {keep.shape[1]}×{keep.shape[0]} pixels but its {role} is "
                          f"{shape[1]}×{shape[0]}; a mask must have its image's width and height")
    keep = keep.reshape(-1)
    if keep.shape[0] != pixels.shape[0]:
        raise ConfigError(f"mask {index + 1} does not have the size of its {role} ({keep.shape[0]} vs "
                          f"{pixels.shape[0]} pixels)")
    if alpha is not None:
        keep &= alpha.reshape(-1) != 0
    return pixels[keep]


def at_least_two_pixels(pixels: np.ndarray, image: ImageLike, role: str) -> np.ndarray:
    """``pixels`` unchanged, or ConfigError naming the image (a path, or a name such as ``<stdin>``)
    when it has fewer than 2."""
    if pixels.shape[0] < 2:
        name = f" {image}" if isinstance(image, (str, os.PathLike)) else ""
        raise ConfigError(
            f"the {role} image{name} has {pixels.shape[0]} usable pixel(s); fitting needs at least 2"
        )
    return pixels


def pooled_pixels(images: ImageLike | Sequence[ImageLike], masks: MaskLike = None,
                  role: str = "image", max_image_pixels: int | None = None) -> np.ndarray:
    """The pixels of one image or a list of images, concatenated (one image's: a read-only view, not
    a copy); with masks, only the selected ones.

    ConfigError when an unmasked image has fewer than 2 pixels, or when the masks leave fewer than 2
    in all (a masked image may give fewer on its own).
    """
    return pooled_in_space(images, masks, role, max_image_pixels, None)[0]


def pooled_in_space(images: ImageLike | Sequence[ImageLike], masks: MaskLike,
                    role: str, max_image_pixels: int | None,
                    into: tuple[str, ColourSpace | None] | None) -> tuple[np.ndarray, list[ColourSpace]]:
    """:func:`pooled_pixels`, each image's pixels taken from its own colour space into ``into`` (a
    name and colour space, :func:`named_space`; None: left as they are) where the two are apart
    (:func:`colorot.profiles.in_source_space`); and the spaces so converted, each once."""
    parts = _read_parts(images, masks, role, max_image_pixels)
    if into is None:
        return _pooled([part for part, _ in parts], role), []
    taken, converted = _each_into([part for part, _ in parts], [named_space(image) for _, image in parts], into)
    return _pooled(taken, role), converted


def _each_into(parts: list[np.ndarray], named: list[tuple[str, ColourSpace | None]],
               into: tuple[str, ColourSpace | None]) -> tuple[list[np.ndarray], list[ColourSpace]]:
    """Each image's pixels ``parts`` taken from its own name and colour space (``named``) into
    ``into`` where the two are apart (:func:`colorot.profiles.in_source_space`; a part left as it is
    is returned itself), and the spaces so converted, each once (the first of those that agree)."""
    taken, converted = [], {}
    for part, (name, space) in zip(parts, named):
        into_part = in_source_space(part, name, space, *into)
        if into_part is not part:
            converted.setdefault(space.srgb_codes, space)
        taken.append(into_part)
    return taken, list(converted.values())


def _read_parts(images: ImageLike | Sequence[ImageLike], masks: MaskLike,
                role: str, max_image_pixels: int | None) -> list[tuple[np.ndarray, ImageLike]]:
    """Each image's pixels (its mask's selection), with the image."""
    images, masks = _as_list(images), _as_list(masks)
    if not images:
        raise ConfigError(f"no {role} given")
    if masks and len(masks) != len(images):
        raise ConfigError(f"give one mask per {role}: {len(images)} {role}(s), {len(masks)} mask(s)")
    parts = []
    for index, image in enumerate(images):
        if not masks or masks[index] is None:  # None in a list of masks: that image unmasked
            parts.append((at_least_two_pixels(to_pixels(image, max_image_pixels=max_image_pixels), image, role), image))
        else:
            parts.append((_masked(image, masks[index], index, role, max_image_pixels), image))
    return parts


def _pooled(parts: list[np.ndarray], role: str) -> np.ndarray:
    """The images' pixels one after another; ConfigError for fewer than 2 in all."""
    if len(parts) == 1:  # not copied (12 bytes a pixel): a read-only view, as the caller's array may be given back
        pixels = parts[0].view()
        pixels.flags.writeable = False
    else:
        pixels = np.concatenate(parts)
    if len(pixels) < 2:
        raise ConfigError(f"the masks leave fewer than 2 {role} pixels")
    return checked_values(pixels, role)


def checked_values(pixels: np.ndarray, role: str, within: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """``pixels`` (N, 3) unchanged; ConfigError when one is NaN or infinite, or when they stray
    further than :data:`FLOAT_SLACK` outside ``within``, [0, 1] unless said (8-bit codes given as
    floats, most likely)."""
    if not np.isfinite(pixels).all():
        raise ConfigError(f"the {role} pixels contain NaN or infinite values")
    if len(pixels):
        low, high = float(pixels.min()), float(pixels.max())
        if low < within[0] - FLOAT_SLACK or high > within[1] + FLOAT_SLACK:
            over = "[0, 1]" if within == (0.0, 1.0) else f"[{within[0]:g}, {within[1]:g}] (the map's outputs)"
            raise ConfigError(f"the {role} pixels run from {low:g} to {high:g}, not over {over}: give uint8 or "
                              "uint16 codes, or floats divided by 255 (or 65535)")
    return pixels


#: The largest ridge (a variance of 1: a spread the width of the RGB cube) and weight of an added
#: term (eps: defaults.MAX_EPS): beyond them nothing is gained, and the fit's float arithmetic
#: overflowed (ridge = 1e300: a LinAlgError; sw_weight = 1e300: a NaN loss saved as the map's).
MAX_RIDGE, MAX_WEIGHT = 1.0, 1e12
#: The type each parameter must have (None stands for its default where it has one).
_PARAM_TYPES = {**dict.fromkeys(("n_components", "sw_directions", "steps", "batch_size", "max_pixels", "hidden",
                                 "layers", "modules", "random_state", "max_image_pixels"), numbers.Integral),
                **dict.fromkeys(("sw_weight", "transport_weight", "lr", "ridge", "eps"), numbers.Real),
                **dict.fromkeys(("model", "target", "solver", "loss", "device"), str)}


def _sha256(images: ImageLike | Sequence[ImageLike]) -> str | list | None:
    if isinstance(images, (list, tuple)):
        hashes = [_sha256(image) for image in images]
        return hashes[0] if len(hashes) == 1 else hashes
    if isinstance(images, (str, os.PathLike)):
        return hashlib.sha256(Path(images).read_bytes()).hexdigest()
    return None


def named_space(images: ImageLike | Sequence[ImageLike]) -> tuple[str, ColourSpace | None]:
    """An image's name and colour space (:mod:`colorot.profiles`; None for an array); of a list,
    its first image's."""
    image = images[0] if isinstance(images, (list, tuple)) and images else images
    return (str(image) if isinstance(image, (str, os.PathLike)) else "the image"), image_colour_space(image)


@dataclass(frozen=True)
class Reference:
    """A target read and its distribution fitted once, for many fits onto it (:mod:`colorot.matching`).

    Made by :meth:`ColorTransfer.fit_reference`; ``fit`` accepts it in place of the target
    images when its own target settings are those it was made with (``settings``), and its
    ``max_pixels`` is at most the one it was made with where the target was thinned.  Its pixels
    are what each fit's subsample of the target is drawn from: a large target's thinned once
    (:func:`colorot.sampling.thinned`, as each fit would thin them; its distribution fitted on them
    all, but in another colour space (:meth:`in_space`) on those kept), and their colour order found
    once (:meth:`colour_order`), not per fit.  Its caches are not pickled (a worker process builds
    its own).
    """

    pixels: np.ndarray            # the target's pixels (pooled, masked; thinned), float32 (N, 3)
    distribution: GaussianMixture
    settings: tuple               # (target kind, components, ridge, random_state)
    sha256: str | list | None
    space: tuple[str, ColourSpace | None] = ("the reference", None)  # its name and colour space (the first image's)
    thinned_for: int | None = None  # the max_pixels its pixels were thinned for (None: all of them kept)
    converted_from: tuple = ()    # the colour spaces its pixels were taken from (fit's target_converted)
    #: a pool of images in several colour spaces: the same rows as read (each in its own image's space),
    #: each row's image, and the images' names and spaces (:meth:`in_space` converts each from its own)
    read: tuple | None = field(default=None, compare=False, repr=False)
    _in_spaces: dict = field(default_factory=dict, compare=False, repr=False)  # in_space's conversions
    _order: list = field(default_factory=list, compare=False, repr=False)  # colour_order's result

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_in_spaces": {}, "_order": []}

    def colour_order(self, pixels: np.ndarray) -> np.ndarray:
        """:func:`colorot.sampling.colour_order` of ``pixels``, kept for this reference's own."""
        if pixels is not self.pixels:
            return colour_order(pixels)
        if not self._order:
            self._order.append(colour_order(pixels))
        return self._order[0]

    def in_space(self, space: tuple[str, ColourSpace | None], fit_density: Callable[[np.ndarray], object]) -> "Reference":
        """This reference as codes of ``space`` (a source's name and colour space): its pixels converted
        (:func:`colorot.profiles.in_source_space`) and their distribution fitted by ``fit_density``,
        once per space; itself when the two spaces agree or either is unknown.  A pool's images are
        each taken from their own space (:attr:`read`), not through the first's."""
        if not apart(space[1], self.space[1]):
            return self
        key = space[1].srgb_codes
        if key not in self._in_spaces:
            pixels, converted = self._taken_into(space)
            self._in_spaces[key] = self if pixels is self.pixels else Reference(
                pixels, fit_density(pixels), self.settings, self.sha256, (self.space[0], space[1]), self.thinned_for,
                converted)
        return self._in_spaces[key]

    def _taken_into(self, space: tuple[str, ColourSpace]) -> tuple[np.ndarray, tuple]:
        """Its pixels as codes of ``space``, and the spaces they were taken from."""
        if self.read is None:
            pixels = in_source_space(self.pixels, *self.space, *space)
            return pixels, (() if pixels is self.pixels else (self.space[1],))
        codes, image_of_rows, named = self.read
        rows = [image_of_rows == index for index in range(len(named))]
        taken, converted = _each_into([codes[each] for each in rows], list(named), space)
        pixels = codes.copy()
        for each, part in zip(rows, taken):
            pixels[each] = part
        return pixels, tuple(converted)


class ColorTransfer:
    """Fit a Brenier colour map from a source image to a target image and apply it.

    Parameters mirror the ``colorot fit`` options: ``model`` ("ridge", "cmgn",
    "mmgn" or "affine"), ``solver`` ("auto": "kl"; "kl": the exact KL to the fitted density plus
    μ·SW₂², by L-BFGS-B over the ridge map's dictionary from the sliced solution, or by L-BFGS over
    every weight of a C-MGN or M-MGN from a per-channel start (each axis's 1-D optimal map), seconds; "sliced": majorise–minimise
    on SW₂ alone, ridge map only; "adam": the KL loss by Adam, any network, minutes), ``target``
    ("auto", "pixels" (the target's own pixels, sliced solver only), "gmm" or "gaussian"; the affine map always uses the
    Gaussian, since it needs only the target's mean and covariance), ``n_components`` (an int,
    "auto": K chosen by BIC, or None: the solver's default, 10 for the KL solver, auto otherwise), ``loss`` ("kl": exact reverse KL; "moment":
    Gaussian moment-matching KL), ``sw_weight`` (μ of the mass-covering term
    μ·SW₂²(T#α, target pixels), over ``sw_directions`` random directions; None: the solver's
    default, 0: the KL alone), ``transport_weight`` (λ of λ·E‖T(x) − x‖²),
    ``steps`` (KL iterations, sliced iterations or Adam steps; default per solver), ``lr``, ``batch_size``, ``max_pixels`` (training subsample),
    ``ridge`` (covariance floor; None: 10⁻⁴ for the KL solver, 4·10⁻⁴ otherwise), ``eps`` (strong-convexity floor of the map),
    ``hidden``/``layers``/``modules`` (network size), ``device`` ("auto", "cpu",
    "cuda"), ``random_state``, ``progress`` (a tqdm bar while training) and
    ``max_image_pixels`` (raises the decompression-bomb limit for image files).

    A parameter set to other than its default where the fit would not use it (``batch_size``
    outside Adam, ``ridge`` with the pixels target, …: :data:`APPLICABILITY`) makes ``fit`` raise
    a ConfigError before any image is read.
    """

    #: FISTA iterations of each least-squares solve of the sliced solver (the KL solver's start
    #: too). Not a parameter: :class:`colorot.matching.Matcher`'s lighter schedule lowers it.
    sliced_solve_iterations: int = NNLS_ITERATIONS

    def __init__(self, model: str = "ridge", target: str = "auto", *, solver: str = "auto",
                 n_components: int | str | None = None,
                 loss: str = "kl", sw_weight: float | None = None,
                 sw_directions: int | None = None, transport_weight: float = 0.0,
                 steps: int | None = None, lr: float | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 max_pixels: int = DEFAULT_MAX_PIXELS, ridge: float | None = None,
                 eps: float = DEFAULT_EPS, hidden: int | None = None, layers: int | None = None,
                 modules: int | None = None, device: str = "auto", random_state: int = 0,
                 progress: bool = False, max_image_pixels: int | None = None) -> None:
        self.model = model
        self.target = target
        self.solver = solver
        self.n_components = n_components
        self.loss = loss
        self.sw_weight = sw_weight
        self.sw_directions = sw_directions
        self.transport_weight = transport_weight
        self.steps = steps
        self.lr = lr
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.ridge = ridge
        self.eps = eps
        self.hidden = hidden
        self.layers = layers
        self.modules = modules
        self.device = device
        self.random_state = random_state
        self.progress = progress
        self.max_image_pixels = max_image_pixels

    # ----------------------------------------------------------------- fitting
    def _model_config(self) -> dict:
        """The network's constructor arguments (sizes checked by :meth:`_check_applicable` first)."""
        config = dict(MODEL_DEFAULTS[self.model], eps=self.eps)
        config.update({key: getattr(self, key) for key in ("hidden", "layers", "modules")
                       if getattr(self, key) is not None})
        size_error = checkpoint.model_size_error(
            config, names=f"{_named('hidden')}, {_named('layers')} and {_named('modules')}")
        if size_error is not None:  # a larger model could not be saved and loaded
            raise ConfigError(size_error)
        return config

    def get_params(self, deep: bool = True) -> dict:
        """The constructor parameters (scikit-learn convention)."""
        return {name: getattr(self, name) for name in _PARAMS}

    def set_params(self, **params) -> "ColorTransfer":
        """Set constructor parameters; returns ``self`` (scikit-learn convention)."""
        for name, value in params.items():
            if name not in _PARAMS:
                raise ConfigError(f"unknown parameter {name!r}; choose from {', '.join(_PARAMS)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        return f"ColorTransfer({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    def _learning_rate(self) -> float:
        """``lr``, or the model's default (:data:`colorot.train.DEFAULT_LR`)."""
        return self.lr if self.lr is not None else DEFAULT_LR.get(self.model, DEFAULT_LR["ridge"])

    def _check_image_limit(self) -> None:
        """ConfigError for a ``max_image_pixels`` that is neither None nor an integer ≥ 1 (checked by
        :meth:`_check_numbers` for a fit, here for a transform: a loaded estimator may be changed)."""
        value = self.max_image_pixels
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
            raise ConfigError(f"{_named('max_image_pixels')} must be an integer of at least 1, not {value!r}")

    def _check_numbers(self) -> None:
        """ConfigError for a number that cannot give a usable fit (n_components, max_pixels, ridge, eps,
        random_state, lr, the weights, steps, batch_size, sw_directions), or of the wrong type."""
        for name, kind in _PARAM_TYPES.items():
            value = getattr(self, name)
            if (value is None and _DEFAULTS[name] is None) or (name == "n_components" and value == "auto"):
                continue
            if isinstance(value, bool) or not isinstance(value, kind):
                what = "an integer" if kind is numbers.Integral else "a number" if kind is numbers.Real else "a string"
                raise ConfigError(f"{_named(name)} must be {what}, not {value!r}")
        if self.n_components not in ("auto", None) and not self.n_components >= 1:
            raise ConfigError(f"{_named('n_components')} must be a positive integer or 'auto', "
                              f"not {self.n_components!r}")
        if self.max_pixels < 2:
            raise ConfigError(f"{_named('max_pixels')} must be at least 2, got {self.max_pixels}")
        if self.ridge is not None and not 0 <= self.ridge <= MAX_RIDGE:
            raise ConfigError(f"{_named('ridge')} must be a finite number ≥ 0 (at most {MAX_RIDGE:g}), got {self.ridge}")
        if not 0 < self.eps <= MAX_EPS:
            raise ConfigError(f"{_named('eps')} must be a finite number > 0 (at most {MAX_EPS:g}), got {self.eps}")
        if self.lr is not None and not 0 < self.lr < math.inf:
            raise ConfigError(f"{_named('lr')} must be a finite number > 0, got {self.lr}")
        for name in ("sw_weight", "transport_weight"):
            if getattr(self, name) is not None and not 0 <= getattr(self, name) <= MAX_WEIGHT:
                raise ConfigError(f"{_named(name)} must be a finite number ≥ 0 (at most {MAX_WEIGHT:g}), "
                                  f"got {getattr(self, name)}")
        for name, least in (("steps", 0), ("batch_size", 2), ("sw_directions", 1), ("max_image_pixels", 1)):
            if getattr(self, name) is not None and not getattr(self, name) >= least:
                raise ConfigError(f"{_named(name)} must be at least {least}, got {getattr(self, name)}")
        if self.steps == 0 and self.resolved_solver() == "sliced":
            raise ConfigError(f"{_named('steps')} must be at least 1 for the sliced solver (its iterations), got 0")
        if not 0 <= self.random_state < 2**32:
            raise ConfigError(f"{_named('random_state')} must be from 0 to {2**32 - 1}, got {self.random_state}")

    def _check_applicable(self) -> None:
        """ConfigError naming every parameter set (to other than its default) that this fit would not use
        (:data:`APPLICABILITY`), and what each needs."""
        fit = FitKind(self.resolved_solver(), self.resolved_target(), self.model, self.resolved_sw_weight())
        refused = {name: needs for name, (applies, needs) in APPLICABILITY.items()
                   if getattr(self, name) != _DEFAULTS[name] and not applies(fit, getattr(self, name))}
        if refused:
            names = [_named(name) for name in refused]
            subject = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
            raise ConfigError(f"{subject} {'does' if len(names) == 1 else 'do'} not apply to {fit.describe()}: "
                              f"{'; '.join(dict.fromkeys(refused.values()))}")  # each reason once

    def _check_options(self) -> None:
        """Every check of the parameters alone, before any image is read."""
        self._check_numbers()
        self._check_applicable()

    def resolved_solver(self) -> str:
        """How the map is fitted: "closed-form" (affine), "kl", "sliced" or "adam".

        ``solver="auto"`` picks the KL solver for every network (the ridge map, the C-MGN and
        the M-MGN).  The sliced solver needs a map that is linear in its parameters (the ridge map);
        the KL solver fits the ridge map over its dictionary (:mod:`colorot.kl_solver`) and a
        C-MGN or M-MGN over all its weights (:mod:`colorot.mgn_solver`).
        """
        if self.model not in MODEL_DEFAULTS:
            raise ConfigError(f"unknown {_named('model')} {self.model!r}; choose one of "
                              f"{', '.join(MODEL_DEFAULTS)}")
        if self.solver not in SOLVERS:
            raise ConfigError(f"unknown {_named('solver')} {self.solver!r}; choose one of {', '.join(SOLVERS)}")
        if self.model == "affine":
            return "closed-form"
        if self.solver == "auto":
            return "kl"
        if self.solver == "sliced" and self.model != "ridge":
            raise ConfigError(f"solver='sliced' (--solver sliced) fits the ridge map only; use "
                              f"solver='kl' or 'adam' (--solver kl, adam) for model='{self.model}'")
        return self.solver

    def resolved_target(self) -> str:
        """The target kind: ``target``, or for "auto" the solver's own (pixels for the
        sliced solver, a mixture for the KL and Adam solvers, the Gaussian for the closed form)."""
        solver = self.resolved_solver()
        if solver == "closed-form":  # the closed form needs only the target's mean and covariance
            return "gaussian"
        if self.target not in ("auto", *TARGET_KINDS):
            raise ConfigError(f"unknown {_named('target')} {self.target!r}; choose one of auto, "
                              f"{', '.join(TARGET_KINDS)}")
        if self.target == "auto":
            return "pixels" if solver == "sliced" else "gmm"
        if self.target == "pixels" and solver in ("kl", "adam"):
            raise ConfigError(f"target='pixels' (--distribution pixels) needs solver='sliced': the {solver} solver's "
                              "KL loss needs a density; use target='gmm' or 'gaussian'")
        return self.target

    def resolved_steps(self) -> int:
        """``steps``, or the solver's default (20 KL iterations for the ridge map, 40 for the C-MGN
        and M-MGN, 30 sliced iterations, 2000 Adam steps)."""
        if self.steps is not None:
            return self.steps
        solver = self.resolved_solver()
        if solver == "kl" and self.model != "ridge":
            return NETWORK_KL_ITERATIONS
        return {"kl": kl_solver.DEFAULT_ITERATIONS, "sliced": DEFAULT_ITERATIONS}.get(solver, DEFAULT_STEPS)

    def resolved_ridge(self) -> float:
        """``ridge``, or the solver's default (10⁻⁴ for the KL solver, 4·10⁻⁴ otherwise)."""
        if self.ridge is not None:
            return float(self.ridge)
        return kl_solver.DEFAULT_RIDGE if self.resolved_solver() == "kl" else DEFAULT_RIDGE

    def resolved_components(self) -> int | str:
        """``n_components``, or the solver's default (10 for the KL solver, "auto" otherwise)."""
        if self.n_components is not None:
            return self.n_components
        return kl_solver.DEFAULT_COMPONENTS if self.resolved_solver() == "kl" else "auto"

    def resolved_sw_weight(self) -> float:
        """``sw_weight``, or the solver's default (100 000 for the KL solver, 5000 for Adam)."""
        if self.sw_weight is not None:
            return float(self.sw_weight)
        return kl_solver.DEFAULT_SW_WEIGHT if self.resolved_solver() == "kl" else ADAM_SW_WEIGHT

    def resolved_sw_directions(self) -> int:
        """``sw_directions`` (Adam's SW₂ term), or its default, 64 a step."""
        return DEFAULT_SW_DIRECTIONS if self.sw_directions is None else int(self.sw_directions)

    def _reference_settings(self) -> tuple:
        return (self.resolved_target(), self.resolved_components(), self.resolved_ridge(), self.random_state)

    def fit_reference(self, target: ImageLike | Sequence[ImageLike],
                      target_mask: MaskLike = None) -> Reference:
        """Read the target and fit its distribution once, for several :meth:`fit` calls onto it."""
        self._check_options()
        parts = _read_parts(target, target_mask, "target", self.max_image_pixels)
        named = [named_space(image) for _, image in parts]
        read_parts = [part for part, _ in parts]
        taken, converted = _each_into(read_parts, named, named[0])  # into the first image's space
        pixels = _pooled(taken, "target")
        density = self._fit_density(pixels)

        def kept(rows: np.ndarray) -> np.ndarray:  # its own rows, the same for each array
            return thinned(rows, self.max_pixels, np.random.default_rng(self.random_state)).copy()

        read = None
        if converted:  # several colour spaces: each image's rows as read, for in_space
            image_of_rows = np.repeat(np.arange(len(parts), dtype=np.int32), [len(part) for part in read_parts])
            read = (kept(_pooled(read_parts, "target")), kept(image_of_rows), tuple(named))
        pixels_kept = kept(pixels)
        return Reference(pixels_kept, density, self._reference_settings(), _sha256(target), named[0],
                         self.max_pixels if len(pixels_kept) < len(pixels) else None, tuple(converted), read)

    def fit(self, source: ImageLike | Sequence[ImageLike], target: ImageLike | Sequence[ImageLike] | Reference,
            callback: Callable[[int, float], None] | None = None, *,
            source_mask: MaskLike = None,
            target_mask: MaskLike = None, measure_kl: bool = True) -> "ColorTransfer":
        """Fit the target, then the map: in closed form (affine), by the KL solver (the default), by
        the sliced solver, or by Adam on the KL loss (``solver``; the class docstring).

        ``source`` and ``target``: one image or a list (pixels pooled), or for the target a
        :class:`Reference` (already fitted: :meth:`fit_reference`);
        ``source_mask``/``target_mask``: one mask per image (the same width and height), selecting
        the pixels whose mean code is at least half the maximum (white; for bool masks, True);
        ``measure_kl``: estimate the fitted map's KL to the target density for ``train_info_["kl_nats"]``
        (20 000 fresh pixels, ≈ 0.3 s; False leaves it None, as ``colorot match`` does for maps it
        does not keep).  A fit that fails or is interrupted leaves the estimator as it was.
        """
        before = dict(self.__dict__)
        try:
            return self._fit(source, target, callback, source_mask, target_mask, measure_kl)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    def _fit(self, source, target, callback, source_mask, target_mask, measure_kl: bool,
             source_space: tuple[str, ColourSpace | None] | None = None) -> "ColorTransfer":
        """:meth:`fit`, which undoes what this did when it fails; ``source_space``: the source's name and
        colour space where it cannot tell its own (pixels decoded from a file, :mod:`colorot.matching`)."""
        start = time.perf_counter()
        self._check_options()
        solver, kind, steps = self.resolved_solver(), self.resolved_target(), self.resolved_steps()
        settings = self._adam_settings(steps) if solver == "adam" else None  # bad options fail before any image is read
        sliced = SlicedSettings(iterations=steps if solver == "sliced" else DEFAULT_ITERATIONS, eps=self.eps,
                                seed=self.random_state, solve_iterations=self.sliced_solve_iterations)
        kl_settings = kl_solver.KLSettings(iterations=steps, sw_weight=self.resolved_sw_weight(),
                                           seed=self.random_state)
        kl_settings.validate()
        if solver in ("kl", "sliced"):
            sliced.validate()
        config = self._model_config()  # checked before any image is read
        if isinstance(target, Reference):
            if target_mask is not None:
                raise ConfigError("give the target mask to fit_reference, not to fit with a Reference")
            if target.settings != self._reference_settings():
                raise ConfigError(f"this Reference was fitted with target settings {target.settings}; this "
                                  f"estimator needs {self._reference_settings()}")
            if target.thinned_for is not None and self.max_pixels > target.thinned_for:
                raise ConfigError(f"this Reference keeps its pixels thinned for max_pixels={target.thinned_for}; "
                                  f"make it with this estimator's max_pixels ({self.max_pixels}) to fit on as many")
        # The KL solver's mixture: EM in a second process, started now (it imports scikit-learn while
        # the images are read) and fitting beside the map's start.
        overlap = solver == "kl" and kind == "gmm" and not isinstance(target, Reference)
        if not overlap:  # the EM process the colorot command may have started for this fit is not needed
            discard_prestarted()
        source_space = source_space or named_space(source)  # the target's codes are taken into it (colorot.profiles)
        with BackgroundEM() if overlap else contextlib.nullcontext() as background:
            src, source_converted = pooled_in_space(source, source_mask, "source", self.max_image_pixels, source_space)
            if isinstance(target, Reference):
                converted = target.in_space(source_space, self._fit_density)
                converted_from = list(converted.converted_from)
                tgt, density, target_sha256 = converted.pixels, converted.distribution, converted.sha256
                target_order = converted.colour_order
            else:
                tgt, converted_from = pooled_in_space(target, target_mask, "target", self.max_image_pixels,
                                                      source_space)
                density = self._fit_density(tgt, background)
                target_sha256, target_order = _sha256(target), colour_order
            src, entropy = self._fit_map(src, (tgt, target_order), density, solver, kind, steps, config, settings,
                                         kl_settings, sliced, callback)
        if self.history_.final_loss is not None and not math.isfinite(self.history_.final_loss):
            raise TrainingError(f"the fit's final loss is {self.history_.final_loss} (overflow): its numbers are too "
                                "far from the defaults for float arithmetic (--ridge, --eps, --sw-weight, "
                                "--transport-weight); nothing was saved")
        fitted = self._ridge_parameters if self._ridge_parameters is not None else self.map_
        adam_only = {"loss": self.loss, "sw_weight": self.resolved_sw_weight(),
                     "transport_weight": float(self.transport_weight), "lr": float(self._learning_rate()),
                     "batch_size": int(self.batch_size)}
        kl_only = {"loss": "kl", "sw_weight": self.resolved_sw_weight()}
        self.train_info_ = {
            "model": self.model, "solver": solver, "target": self.target_dist_.kind,
            **(adam_only if solver == "adam" else kl_only if solver == "kl" else {}),
            "steps": len(self.history_.losses) - (solver == "sliced"),  # the sliced solver's first is its start's
            "training_pixels": int(min(src.shape[0], self._solver_pixels(solver, sliced, kl_settings))),
            "seed": int(self.random_state),
            "device": settings.device if solver == "adam" else "cpu",
            "final_loss": self.history_.final_loss, "train_seconds": round(self.history_.seconds, 3),
            "kl_nats": (None if kind == "pixels" or not measure_kl else
                        round(kl_to_target(fitted, src, self.target_dist_, entropy, seed=self.random_state), 4)),
            "fit_seconds": round(time.perf_counter() - start, 3),
            "source_sha256": _sha256(source), "target_sha256": target_sha256,
        }
        self.train_info_.update(space_record(source_space[1]))  # for apply's check of its images
        for role, converted in (("source", source_converted), ("target", converted_from)):
            if converted:  # codes taken into the source's colour space
                self.train_info_[f"{role}_converted"] = (f"{' + '.join(space.name for space in converted)} → "
                                                         f"{source_space[1].name}")
        return self

    def _solver_pixels(self, solver: str, sliced: SlicedSettings, kl_settings: kl_solver.KLSettings) -> float:
        """How many source pixels the solver's objective is averaged over (Adam: every training pixel)."""
        if solver == "sliced":
            return sliced.pixels
        if solver == "kl":
            if self.model == "ridge":
                return kl_settings.pixels
            from colorot import mgn_solver

            return mgn_solver.KL_PIXELS
        return math.inf

    def _fit_density(self, pixels: np.ndarray, background: BackgroundEM | None = None):
        """The target's distribution; or, given a started :class:`~colorot.em_process.BackgroundEM` (the KL
        solver's mixture), that process, sent the EM problem it then solves beside the map's start."""
        kind, components, ridge, seed = self._reference_settings()
        at_most = self.n_components is None  # the default K is lowered to the colours a target has
        if background is not None:
            background.send(EMProblem.prepare(pixels, components, ridge=ridge, random_state=seed, at_most=at_most))
            return background
        return fit_target(pixels, kind, components, ridge=ridge, random_state=seed, at_most=at_most)

    def _fit_map(self, src: np.ndarray, target_pixels: tuple[np.ndarray, Callable], density, solver: str, kind: str,
                 steps: int, config: dict, settings, kl_settings: kl_solver.KLSettings, sliced: SlicedSettings,
                 callback) -> tuple[np.ndarray, float | None]:
        """Fit the map from the source's pixels onto the target (its pixels with the function that
        gives their colour order, :func:`representative_subsample`'s ``order``, and ``density``, a
        distribution or a BackgroundEM); sets ``target_dist_``, the map and ``history_``.  Returns the
        source's training subsample and H(α) (None for the pixels target)."""
        entropy = None if kind == "pixels" else kl_solver.dequantised_entropy(src)  # H(α) of the KL in nats
        rng = np.random.default_rng(self.random_state)
        tgt, target_order = target_pixels
        src = representative_subsample(src, self.max_pixels, rng)  # (all of them, as given, when fewer)
        tgt = representative_subsample(tgt, self.max_pixels, rng, target_order)
        # a small image's pixels come as they were given, read-only (pooled_pixels): torch wants its own
        src, tgt = (pixels if pixels.flags.writeable else pixels.copy() for pixels in (src, tgt))
        # The KL solvers ask for the target (calling ``target``, a BackgroundEM's result) after their starts.
        target = density.result if isinstance(density, BackgroundEM) else density
        if solver == "kl" and self.model == "ridge":
            # The ridge map's solvers run on one BLAS thread: their products are too small for more to pay,
            # and EM may run beside them (a default fit of a 1920×1200 pair: 3.1 s instead of 4.5 s, E41).
            with one_library_thread():
                result = kl_solver.fit_kl(src, tgt, target, kl_settings, sliced, entropy=entropy,
                                          callback=self._with_progress(callback))
            self.target_dist_ = result.target
            self._set_ridge_map(result.solution.ridge_parameters())
            self.history_ = History(losses=result.losses, seconds=result.seconds)
            return src, entropy
        if solver == "kl":  # the C-MGN or M-MGN, on torch's threads: BLAS's beside them would spin (E68)
            with _seeded_torch(self.random_state, "cpu"), one_blas_thread():
                self.map_, result = self._fit_network_kl(src, tgt, target, config, steps, entropy, callback)
            self.target_dist_, self.history_ = result.target, result.history
            return src, entropy
        self.target_dist_ = density
        if solver == "sliced":
            # Onto the pixels themselves, or onto samples of the fitted distribution.
            goal = tgt if kind == "pixels" else self.target_dist_.sample(len(tgt), self.random_state)
            with one_library_thread():  # as the KL solver's, above
                solution = solve_sliced(src, goal, sliced, callback=self._with_progress(callback))
            self._set_ridge_map(solution.ridge_parameters())
            self.history_ = History(losses=solution.costs, seconds=solution.seconds)
        else:
            with _seeded_torch(self.random_state, settings.device if settings is not None else "cpu"):
                self.map_, self.history_ = self._fit_network(src, tgt, config, settings, callback)
        return src, entropy

    def _adam_settings(self, steps: int):
        """The Adam solver's :class:`colorot.train.TrainSettings`, validated (its device resolved)."""
        from colorot.train import TrainSettings, resolve_device

        settings = TrainSettings(steps=steps, lr=self._learning_rate(), batch_size=self.batch_size,
                                 loss=self.loss, sw_weight=self.resolved_sw_weight(),
                                 sw_directions=self.resolved_sw_directions(),
                                 sw_smoothing=math.sqrt(self.resolved_ridge()), transport_weight=self.transport_weight,
                                 seed=self.random_state, device=str(resolve_device(self.device)))
        settings.validate()
        return settings

    def _fit_network_kl(self, src: np.ndarray, tgt: np.ndarray, target, config: dict, steps: int, entropy: float,
                        callback):
        """The C-MGN's or M-MGN's map and its :class:`~colorot.mgn_solver.NetworkKLResult` (history,
        resolved target) by the KL solver (:mod:`colorot.mgn_solver`).  Its
        separable start sets every weight and needs only pixels, so the target's density (``target``, or
        a function waiting for the EM fitting it since before torch was imported) is asked for after it."""
        from colorot import mgn_solver
        from colorot.models import build_model

        model = build_model(self.model, config)
        settings = mgn_solver.NetworkKLSettings(iterations=steps, sw_weight=self.resolved_sw_weight(),
                                                seed=self.random_state, ridge=self.resolved_ridge())
        result = mgn_solver.fit_network_kl(model, src, tgt, target, settings, entropy,
                                           callback=self._with_progress(callback))
        return model.cpu().eval().requires_grad_(False), result

    def _fit_network(self, src: np.ndarray, tgt: np.ndarray, config: dict, settings, callback):
        """The map and history of a network fit by Adam, or the affine closed form: from the
        closed-form Gaussian map between the source's moments and the target's."""
        from colorot.models import AffineMap, build_model
        from colorot.train import train

        mean_s, cov_s = gaussian_moments(src, self.resolved_ridge())
        target = self.target_dist_
        if self.model == "affine":
            model = AffineMap.from_gaussians(mean_s, cov_s, target.mean, target.covariance, **config)
            return model.eval().requires_grad_(False), History()
        model = build_model(self.model, config)
        model.init_to_gaussian_map(mean_s, cov_s, target.mean, target.covariance, src[: min(len(src), 20_000)],
                                   seed=self.random_state)
        history = train(model, src, self.target_dist_, settings, callback=self._with_progress(callback),
                        target_pixels=tgt)
        return model.cpu().eval().requires_grad_(False), history

    # ------------------------------------------------------------- the fitted map
    _ridge_parameters: RidgeParameters | None = None
    _profiles: RidgeProfiles | bool | None = None  # its tabulated profiles (False: too sharp), made when first used

    def _set_ridge_map(self, parameters: RidgeParameters) -> None:
        """Keep a fitted ridge map as its parameters; ``map_`` builds its module when first asked."""
        self.__dict__.pop("_module", None)
        self._ridge_parameters, self._profiles = parameters, None

    def with_ridge_map(self, parameters: RidgeParameters, **train_info) -> "ColorTransfer":
        """A copy of this fitted estimator whose map is the ridge map ``parameters`` (e.g. a blend of
        fitted maps, :mod:`colorot.sequence`), its training summary updated with ``train_info``."""
        self._check_fitted()
        other = copy.copy(self)
        other._set_ridge_map(parameters)
        other.train_info_ = {**self.train_info_, **train_info}
        return other

    @property
    def ridge_parameters_(self) -> RidgeParameters | None:
        """The fitted ridge map as numpy arrays when the KL or sliced solver fitted it (else None):
        what :mod:`colorot.apply` evaluates without torch."""
        self._check_fitted()
        return self._ridge_parameters

    @property
    def map_(self) -> torch.nn.Module:
        """The fitted map, a frozen ``torch.nn.Module`` (N, 3) → (N, 3)."""
        if "_module" not in self.__dict__:
            if self._ridge_parameters is None:
                raise NotFittedError(f"{type(self).__name__!r} object has no attribute 'map_' (not fitted)")
            import torch

            from colorot.models import RidgeMGN

            with torch.random.fork_rng(devices=[]):  # its initial weights, replaced, leave the caller's random stream
                self._module = RidgeMGN.from_parameters(self._ridge_parameters).requires_grad_(False)
        return self._module

    @map_.setter
    def map_(self, model: torch.nn.Module) -> None:
        self._module, self._ridge_parameters = model, None

    def _with_progress(self, callback):
        if not self.progress:
            return callback
        from tqdm.auto import tqdm

        total = self.resolved_steps()
        bar = tqdm(total=total, desc="training", unit="step")

        def report(step: int, loss: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4g}")
            if step == total:
                bar.close()
            if callback is not None:
                callback(step, loss)

        return report

    # ----------------------------------------------------------- application
    def _check_fitted(self) -> None:
        if self._ridge_parameters is None and "_module" not in self.__dict__:
            raise NotFittedError("this ColorTransfer is not fitted yet: call fit() or colorot.load()")

    def transform(self, image: ImageLike, *, strength: float = 1.0, controls: Controls | None = None) -> np.ndarray:
        """Map an image or pixels; returns float32 of the input's shape ((N, 3) for a path).

        A path or a PIL image gives its pixels as rows (N, 3), fully transparent ones left out: a
        path's upright (its EXIF orientation applied, as ``colorot apply`` reads it), a PIL image's
        as Pillow gives them (a JPEG's as stored; Pillow turns a TIFF upright itself), so
        ``Image.open(path).size`` may not reshape the result of a path; for an image back, give an
        array (``np.asarray(ImageOps.exif_transpose(im))``).

        ``strength`` t gives ``(1 − t)·x + t·T(x)`` (0: identity, 1: the full map); ``controls``
        (:class:`colorot.controls.Controls`: keep luminance, saturation, neutral) act after it.
        Values are the map's raw output: they may leave [0, 1]; writing an image
        clips them (see the README's output rule).
        """
        self._check_fitted()
        check_controls(controls)
        evaluate = self._ridge_evaluator()
        if evaluate is not None:  # a ridge map: numpy, as colorot apply evaluates it
            evaluate = at_strength(evaluate, check_strength(strength))
            return self._map(image, evaluate if controls is None else controls.bind(evaluate))
        from colorot.transforms import prepare_map

        fitted = prepare_map(self._fitted(), strength=strength)
        return self._map(image, _torch_evaluator(fitted if controls is None else controls.bind(fitted, torch_map=True)))

    def inverse_transform(self, image: ImageLike, *, strength: float = 1.0) -> np.ndarray:
        """Undo :meth:`transform`: solve ``T_t(x) = y`` once per distinct colour (damped Newton).
        Takes what :meth:`transform` gives, unclipped: values up to :data:`FLOAT_SLACK` outside
        the range of ``T_t`` over the RGB cube (on a 9³ grid of it) or outside [0, 1]."""
        from colorot.transforms import prepare_map

        forward = prepare_map(self._fitted(), strength=strength)
        inverse = prepare_map(self._fitted(), strength=strength, inverse=True)
        outputs = _torch_evaluator(forward)(_CUBE_GRID)
        within = (min(0.0, float(outputs.min())), max(1.0, float(outputs.max())))
        return self._map(image, _torch_evaluator(inverse), per_colour=True, within=within)

    def export_lut(self, path: str | os.PathLike, *, size: int = DEFAULT_LUT_SIZE, strength: float = 1.0,
                   controls: Controls | None = None, inverse: bool = False, convert_space: bool = False,
                   overwrite: bool = True) -> Lut:
        """Write the map as a ``.cube`` 3-D LUT of ``size``³ entries, as ``colorot export-lut`` does:
        ``T_t`` (t = ``strength``) followed by ``controls``, or with ``inverse`` ``T_t⁻¹``, in the codes
        of the colour space the map was fitted in (another than sRGB: named in the TITLE, with a
        warning), or with ``convert_space`` baked for sRGB codes (:mod:`colorot.lut_export`); returns
        the table (:class:`colorot.lut.Lut`)."""
        from colorot.lut_export import table_map

        check_flags(inverse=inverse, convert_space=convert_space, overwrite=overwrite)  # "False" would be true
        table = table_map(self._fitted(), recorded_space(getattr(self, "train_info_", {})), "this map",
                          strength=strength, inverse=inverse, controls=controls, convert_space=convert_space)
        lut = bake(table.fitted, size)
        write_cube(path, lut, title=table.title, overwrite=overwrite)
        return lut

    def as_module(self, *, strength: float | tuple[float, float] = 1.0, p: float = 1.0) -> ColorAugment:
        """A :class:`colorot.transforms.ColorAugment` for image tensors (B, 3, H, W)."""
        from colorot.transforms import ColorAugment

        return ColorAugment(self._fitted(), strength=strength, p=p)

    def _fitted(self):
        self._check_fitted()
        return self.map_

    def _ridge_evaluator(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """The ridge map T as a numpy function of colours (N, 3): through its tabulated profiles
        on the RGB cube (within 10⁻⁷ of T, as ``colorot apply`` evaluates it; ~5× faster than the
        module), T itself in float64 numpy outside it (no torch); None for another map, or one too
        sharp to tabulate."""
        if self._ridge_parameters is None:
            return None
        if self._profiles is None:  # tabulated once per fitted map (~10 ms)
            parameters = self._ridge_parameters
            self._profiles = RidgeProfiles.from_parameters(parameters.state, parameters.eps) or False
        if self._profiles is False:
            return None
        profiles, parameters = self._profiles, self._ridge_parameters

        def evaluate(colours: np.ndarray) -> np.ndarray:
            inside = ((colours >= 0) & (colours <= 1)).all(axis=1)
            if inside.all():
                return profiles(colours)
            mapped = np.empty(colours.shape)
            mapped[inside] = profiles(colours[inside])
            mapped[~inside] = parameters.forward(colours[~inside])
            return mapped

        return evaluate

    def _map(self, image: ImageLike, evaluate: Callable[[np.ndarray], np.ndarray], *, per_colour: bool = False,
             within: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
        """``evaluate`` (colours (N, 3) → mapped colours) of every pixel of ``image``, as float32 of
        its shape, :data:`~colorot.apply.DEFAULT_CHUNK_PIXELS` at a time (``per_colour``: once per
        distinct colour, for a costly map; an 8-bit photograph has 10⁴–10⁵ of them); ``within``:
        the range the pixels may stray :data:`FLOAT_SLACK` outside (:func:`checked_values`)."""
        if isinstance(image, (list, tuple)):  # nested lists of pixels: an array of their shape
            if any(isinstance(item, (str, os.PathLike)) or _is_pil(item) or getattr(item, "ndim", 1) >= 2
                   for item in image):
                raise ConfigError("transform maps one image, not a list of images: call it on each "
                                  "(fit pools a list's pixels)")
            try:
                image = np.asarray(image)
            except ValueError:
                raise ConfigError("nested lists of pixels must be rectangular: (N, 3) or (H, W, 3)") from None
        if (isinstance(image, np.ndarray) or _is_tensor(image)) and image.ndim >= 2 and image.shape[-1] == 3:
            shape = tuple(image.shape)  # an array or tensor keeps its shape
        else:
            shape = (-1, 3)
        self._check_image_limit()
        pixels = checked_values(to_pixels(image, max_image_pixels=self.max_image_pixels), "image", within)
        self._warn_if_other_colours(image)
        index = None
        if per_colour:
            rows = np.ascontiguousarray(pixels).view(np.dtype((np.void, 12))).ravel()  # a float32 colour as 12 bytes
            distinct, index = np.unique(rows, return_inverse=True)
            pixels = distinct.view(np.float32).reshape(-1, 3)
        mapped = np.empty(pixels.shape, np.float32)
        for start in range(0, len(pixels), DEFAULT_CHUNK_PIXELS):
            mapped[start:start + DEFAULT_CHUNK_PIXELS] = evaluate(pixels[start:start + DEFAULT_CHUNK_PIXELS])
        return (mapped if index is None else mapped[index.ravel()]).reshape(shape)

    def _warn_if_other_colours(self, image: ImageLike) -> None:
        """The warning ``colorot apply`` gives a path or PIL image whose profile makes its codes other
        colours than those of the space the map was fitted in (:func:`colorot.profiles.apart`)."""
        if not isinstance(image, (str, os.PathLike)) and not _is_pil(image):
            return
        own, map_space = image_colour_space(image), recorded_space(getattr(self, "train_info_", {}))
        if apart(own, map_space):
            name = str(image) if isinstance(image, (str, os.PathLike)) else "the PIL image"
            warnings.warn(not_in_message(name, own, map_space, "convert it to that space first, or map the file "
                                         "with colorot apply --convert-space (colorot.distributed.apply_path("
                                         "..., convert_space=True))"), ImageMetadataWarning, stacklevel=4)

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike | BinaryIO, *, overwrite: bool = True) -> None:
        """Write the fitted map, target and training summary to one checkpoint file (atomically),
        or into a binary file object (an open file, ``io.BytesIO``)."""
        self._check_fitted()
        check_flags(overwrite=overwrite)
        if "colour_space_icc_bytes" in self.train_info_:  # a source's profile too large to keep (profiles.space_record)
            warnings.warn(f"{path}: the map's colour space ({self.train_info_.get('colour_space')}) has an ICC profile "
                          f"of {self.train_info_['colour_space_icc_bytes']} bytes, more than a checkpoint keeps "
                          f"({MAX_RECORDED_PROFILE}): --convert-space (convert_space) cannot take images of other "
                          "spaces into it later", ImageMetadataWarning, stacklevel=2)
        fitted = self._ridge_parameters if self._ridge_parameters is not None else self.map_
        checkpoint.save(path, fitted, self.target_dist_, PREPROCESS, self.train_info_, overwrite=overwrite)

    @classmethod
    def from_checkpoint(cls, ckpt: checkpoint.Checkpoint) -> "ColorTransfer":
        """A fitted estimator from a loaded checkpoint."""
        est = cls._from_record(ckpt.model.name, ckpt.target, ckpt.train)
        est.map_ = ckpt.model
        if ckpt.model.name == "ridge":  # its numpy parameters too: the colour table, blends (colorot.sequence)
            state = {key: value.detach().cpu().double().numpy() for key, value in ckpt.model.state_dict().items()}
            est._ridge_parameters = RidgeParameters(state, float(ckpt.model.eps))
        return est

    @classmethod
    def _from_record(cls, model: str, target: GaussianMixture, train: dict) -> "ColorTransfer":
        """An estimator of a checkpoint's ``model`` kind, ``target`` and ``train`` record, its map still
        to be set: the parameters that :func:`load` restores, the others at their defaults."""
        solver = train.get("solver", "auto")
        est = cls(model=model, target=target.kind, solver=solver if solver in SOLVERS else "auto",
                  loss=train.get("loss", "kl"), random_state=train.get("seed", 0))
        est.target_dist_, est.train_info_, est.history_ = target, dict(train), History()
        return est


@contextlib.contextmanager
def _seeded_torch(seed: int, device: str) -> Iterator[None]:
    """torch's global generator (and the CUDA device's, for a fit there) seeded with ``seed`` while a
    network is initialised and trained, and the caller's states restored afterwards: a fit neither
    depends on nor moves the random stream of the code around it (``ColorAugment``'s, say)."""
    import torch

    where = torch.device(device)
    cuda = [where.index if where.index is not None else torch.cuda.current_device()] if where.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


#: A 9³ grid of the RGB cube, where :meth:`ColorTransfer.inverse_transform` finds the range of the map's outputs.
_CUBE_GRID = np.stack(np.meshgrid(*[np.linspace(0, 1, 9, dtype=np.float32)] * 3, indexing="ij"), -1).reshape(-1, 3)


def _torch_evaluator(fitted_map) -> Callable[[np.ndarray], np.ndarray]:
    """A torch map (N, 3) → (N, 3) as a numpy function of colours, evaluated in float32 on the CPU."""
    return lambda colours: map_pixels(fitted_map, colours, device="cpu")


#: The constructor's parameter names, in order.
_PARAMS = ("model", "target", "solver", "n_components", "loss", "sw_weight", "sw_directions", "transport_weight", "steps", "lr", "batch_size",
           "max_pixels", "ridge", "eps", "hidden", "layers", "modules", "device", "random_state", "progress",
           "max_image_pixels")
#: The constructor's defaults: a parameter at its default is never refused as not applying.
_DEFAULTS = {name: parameter.default for name, parameter in inspect.signature(ColorTransfer).parameters.items()}


def load(path: checkpoint.CheckpointSource) -> ColorTransfer:
    """Load a checkpoint written by :meth:`ColorTransfer.save` (or ``colorot fit``): its path, its
    bytes, or a binary file object. The map is loaded on the CPU, whatever device it was fitted
    on (``transform`` runs there; :meth:`ColorTransfer.as_module` follows its images' device).
    A ridge map (the default fit's) is read without torch, as ``colorot apply`` reads it: ``map_``
    builds its module when first used."""
    data, source = checkpoint.read_bytes(path)
    ridge = checkpoint.ridge_checkpoint_from_bytes(data)
    if ridge is None:
        return ColorTransfer.from_checkpoint(checkpoint.from_bytes(data, source))
    parameters, target, train = ridge
    est = ColorTransfer._from_record("ridge", target, train)
    est._ridge_parameters = parameters
    return est
