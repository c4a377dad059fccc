"""Match images to one reference, each with its own map (``colorot match``).

The reference is read and its distribution fitted once (:meth:`ColorTransfer.fit_reference`);
each image then gets its own :class:`ColorTransfer` fit onto it, at the same settings as
``colorot fit``.  With ``sequence=True`` (numbered frames, in order) each frame's fit starts from
the previous frame's map and adds ρ·mean ‖T_t(x) − T_{t−1}(x)‖² over the frame's colours
(:class:`colorot.kl_solver.WarmStart`), so the grade changes only as far as the footage does.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from colorot.controls import Controls
from colorot.defaults import DEFAULT_TEMPORAL_WEIGHT
from colorot.errors import ConfigError, DestinationError
from colorot.transfer import ColorTransfer, ImageLike



class Matcher:
    """Fit each image's own map onto one ``reference`` image (or list of images, pooled).

    ``params`` are :class:`ColorTransfer`'s (those of ``colorot fit``).  ``sequence``: fit the
    images as frames, in the order given, each warm-started from the last and smoothed over
    time by ``temporal_weight`` (KL solver only).  ``fit`` may be called from several threads
    unless ``sequence`` (whose frames depend on each other).
    """

    def __init__(self, reference: ImageLike | Sequence[ImageLike], *, reference_mask=None,
                 sequence: bool = False, temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT, **params) -> None:
        self.params, self.sequence, self.temporal_weight = params, sequence, float(temporal_weight)
        estimator = ColorTransfer(**params)
        if sequence and estimator.resolved_solver() != "kl":
            raise ConfigError("--sequence needs the kl solver (the default ridge map)")
        if not (0 <= self.temporal_weight < float("inf")):
            raise ConfigError(f"--temporal-weight must be finite and ≥ 0, got {temporal_weight}")
        self.reference = estimator.fit_reference(reference, reference_mask)
        self._previous: ColorTransfer | None = None
        self._lock = threading.Lock()

    def fit(self, image: ImageLike) -> ColorTransfer:
        """A fitted :class:`ColorTransfer` from ``image`` onto the reference (the next frame's,
        with ``sequence``)."""
        estimator = ColorTransfer(**self.params)
        if not self.sequence:
            return estimator.fit(image, self.reference)
        with self._lock:  # frames in order: each starts from the one before
            previous = self._previous
            estimator.fit(image, self.reference, previous=previous,
                          temporal_weight=self.temporal_weight if previous is not None else 0.0)
            self._previous = estimator
        return estimator


    def match_file(self, src: Path, dst: Path, *, strength: float = 1.0, controls: Controls | None = None,
                   exact: bool = False, quality: int = 95, max_pixels: int | None = None,
                   save_map: Path | None = None) -> None:
        """Fit ``src``'s own map, keep it at ``save_map`` (if given; replaced, since it belongs to
        the image about to be written), and write ``src`` through it to ``dst`` as ``colorot apply``
        does (the colour table unless ``exact``; ``strength`` then ``controls``)."""
        from colorot import apply

        estimator = self.fit(src)
        if save_map is not None:
            try:
                save_map.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DestinationError(f"{save_map.parent}: cannot create folder ({exc.strerror or exc})") from exc
            estimator.save(save_map, overwrite=True)
        fitted, table = apply.prepare_fitted(estimator.map_, strength=strength, exact=exact, controls=controls)
        apply.apply_to_file(fitted, src, dst, table=table, quality=quality, max_pixels=max_pixels)

    def match_bytes(self, data: bytes, *, format: str | None = None, strength: float = 1.0,
                    controls: Controls | None = None, exact: bool = False, quality: int = 95,
                    max_pixels: int | None = None) -> tuple[bytes, str]:
        """An encoded image (e.g. stdin) matched to the reference: the encoded result and its format
        (``format``, or the input's)."""
        from colorot import apply
        from colorot.imageio import decode_image, encode_image, format_for_suffix

        image = decode_image(data, name="<stdin>", max_pixels=max_pixels)
        estimator = self.fit(image.rgb)
        fitted, table = apply.prepare_fitted(estimator.map_, strength=strength, exact=exact, controls=controls)
        fmt = format_for_suffix(format) if format else image.format
        return encode_image(image, apply.map_image(fitted, image, table=table), fmt, quality=quality), fmt


def natural_order(paths: Sequence[Path]) -> list[Path]:
    """``paths`` sorted with their digit runs compared as numbers (frame2 before frame10)."""
    def key(path: Path) -> list:
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]

    return sorted(paths, key=key)


def match(reference: ImageLike | Sequence[ImageLike], images: Sequence[ImageLike], *, strength: float = 1.0,
          controls: Controls | None = None, sequence: bool = False,
          temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT, **params) -> list[np.ndarray]:
    """Each of ``images`` matched to ``reference`` by its own fitted map: float32 pixels of each
    image's shape ((N, 3) for a path), like :meth:`ColorTransfer.transform`.

    ``params`` go to :class:`ColorTransfer`; ``strength`` and ``controls`` act as in
    ``colorot apply``; ``sequence``: the images are frames, in order (:class:`Matcher`).
    For the fitted maps themselves (to save, or to export as LUTs) use :class:`Matcher`.
    """
    matcher = Matcher(reference, sequence=sequence, temporal_weight=temporal_weight, **params)
    return [matcher.fit(image).transform(image, strength=strength, controls=controls) for image in images]


def map_destination(save_maps: Path, job_dst: Path, output_root: Path) -> Path:
    """Where ``--save-maps`` keeps an output's checkpoint: its path under the output folder,
    mirrored under ``save_maps``, with the suffix ``.pt``."""
    try:
        relative = job_dst.relative_to(output_root)
    except ValueError:  # one file written to a file name
        relative = Path(job_dst.name)
    return save_maps / relative.with_suffix(".pt")
