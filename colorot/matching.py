"""Match images to one reference, each with its own map (``colorot match``).

The reference is read and its distribution fitted once (:meth:`ColorTransfer.fit_reference`);
each image then gets its own :class:`ColorTransfer` fit onto it, at the settings of ``colorot
fit``, except that the default (the KL solver's ridge map) runs a lighter schedule unless
``steps`` is given: :data:`MATCH_KL_ITERATIONS`, and :data:`MATCH_PIXELS` unless ``max_pixels`` is.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from colorot.controls import Controls, check_controls
from colorot.errors import ConfigError
from colorot.profiles import ColourSpace, colour_space
from colorot.strength import check_strength
from colorot.thread_counts import torch_threads_held
from colorot.transfer import ColorTransfer, ImageLike, at_least_two_pixels

if TYPE_CHECKING:
    from colorot.apply import Job, Plan
    from colorot.imageio import Image
    from colorot.sequence import FrameFit

#: Each input's pixels (the sliced start works on as many, the KL on half) and KL iterations when the
#: KL solver fits a ridge map for a match (``colorot fit``: 20 000 and 20 when this was measured; its
#: sliced start now takes 10 000 of its 100 000 pixels too, E43).  On 9 development photos
#: matched to samples/sunset.jpg (bench/EXPERIMENTS.md, E41): 20 → 5 KL iterations moved the
#: outputs' SW2 to the reference by −10 % to +5 %; 20 000 → 10 000 pixels by −13 % to +33 %
#: (median +5 %), for about 0.6× the solver's time; color-matcher's hm-mkl-hm stayed a median 1.5×
#: further from the reference.  A match of many photographs is bound by these fits.
MATCH_PIXELS = 10_000
MATCH_KL_ITERATIONS = 5
#: FISTA iterations of each least-squares solve of the sliced start on that schedule (``colorot
#: fit``: 200). On 30 crops of real photographs matched to samples/sunset.jpg (bench/EXPERIMENTS.md,
#: E53) 100 took 0.23 s (23 %) off each fit and moved the outputs' SW2 to the reference by a median
#: +1.4 % (−0.1 % to +4 %).
MATCH_SOLVE_ITERATIONS = 100


class Matcher:
    """Fit each image's own map onto one ``reference`` image (or list of images, pooled).

    ``params`` are :class:`ColorTransfer`'s (those of ``colorot fit``).  ``fit`` may be called
    from several threads at once.  A network map (any model but the ridge map, or Adam's) is fitted
    on one torch thread: the same map however many cores or worker processes a batch has, where a
    ``colorot fit`` runs on torch's threads (its L-BFGS follows the order its float sums ran in).
    """

    def __init__(self, reference: ImageLike | Sequence[ImageLike], *, reference_mask=None, **params) -> None:
        self.params = _match_schedule(params)
        self._light_schedule = self.params.get("steps") is not None and params.get("steps") is None  # the lighter schedule
        self.reference = ColorTransfer(**self.params).fit_reference(reference, reference_mask)

    def fit(self, image: ImageLike, *, measure_kl: bool = True) -> ColorTransfer:
        """A fitted :class:`ColorTransfer` from ``image`` onto the reference (``measure_kl``: as
        :meth:`ColorTransfer.fit`'s): the map ``colorot match`` fits, an animation's on all its
        frames' pixels (:meth:`_fit_file`; ``ColorTransfer.fit`` of a path reads its first frame)."""
        if isinstance(image, (str, os.PathLike)):
            return self._fit_file(Path(image), measure_kl=measure_kl, light=self._light_schedule)[0]
        return self._fit(image, measure_kl=measure_kl, light=self._light_schedule)

    def _fit(self, image: ImageLike, *, measure_kl: bool, light: bool,
             space: tuple[str, ColourSpace] | None = None) -> ColorTransfer:
        """:meth:`fit`, its sliced start on :data:`MATCH_SOLVE_ITERATIONS` if ``light``; ``space``: the
        name and colour space of an image given as pixels (a path or PIL image tells its own), into
        which the reference is taken (:meth:`colorot.transfer.Reference.in_space`). A fresh estimator:
        nothing to undo when it fails, so :meth:`ColorTransfer.fit`'s own work is called."""
        estimator = ColorTransfer(**self.params)
        if light:
            estimator.sliced_solve_iterations = MATCH_SOLVE_ITERATIONS
        numpy_alone = estimator.model == "ridge" and estimator.resolved_solver() != "adam"  # on one BLAS thread
        # a network: the same map whatever the cores or --jobs, torch's sums following its thread count
        with contextlib.nullcontext() if numpy_alone else torch_threads_held(1):
            return estimator._fit(image, self.reference, None, None, None, measure_kl, source_space=space)

    def fit_and_transform(self, image: ImageLike, *, strength: float = 1.0,
                          controls: Controls | None = None) -> np.ndarray:
        """``image`` through its own map (:meth:`fit`, then :meth:`ColorTransfer.transform`), as
        :func:`match` returns it.  A path is read and decoded once, its first frame as
        :meth:`ColorTransfer.transform` reads one (one warning for an animation or damaged
        metadata), fitted with its colour space, and its map's KL is not measured (the map is not kept)."""
        if not isinstance(image, (str, os.PathLike)):
            return self._fit(image, measure_kl=False, light=self._light_schedule).transform(
                image, strength=strength, controls=controls)
        estimator, _, pixels = self._fit_file(Path(image), measure_kl=False, light=self._light_schedule, frames=False)
        return estimator.transform(pixels, strength=strength, controls=controls)

    def fit_frame(self, image: ImageLike, *, written_as: str | None = None) -> "FrameFit":
        """``image``'s own map with its sample, for a sequence's blend (:class:`colorot.sequence.FrameFit`;
        its KL is not measured: the blend is what is kept).  A frame's sliced start keeps ``colorot
        fit``'s 200 FISTA iterations a solve: with 100, bench/match.py's pan flickered 0.296 under
        ``--sequence`` instead of 0.268 (E53).  An animated frame's path is fitted on every frame, or
        on its first alone where the output format ``written_as`` holds one picture (:meth:`_fit_file`)."""
        from colorot.sequence import FrameFit

        if isinstance(image, (str, os.PathLike)):
            estimator, _, pixels = self._fit_file(Path(image), measure_kl=False, light=False, written_as=written_as)
            return FrameFit.of(estimator, pixels)
        return FrameFit.of(self._fit(image, measure_kl=False, light=False), image, self.params.get("max_image_pixels"))

    def _fit_file(self, src: Path, *, measure_kl: bool, light: bool,
                  frames: bool = True, written_as: str | None = None) -> tuple[ColorTransfer, "Image", np.ndarray]:
        """:meth:`_fit` of the file ``src``, read and decoded once (at the fit's ``max_image_pixels``)
        for whatever else needs it (a write, a frame's sample): one decode, and one warning for
        damaged metadata.  An animation's every frame is fitted, or its first alone: with ``frames``
        False (with a warning, as :meth:`ColorTransfer.transform` reads a path), or where the output
        format ``written_as`` holds one picture (the writer warns; :func:`colorot.imageio.decode_image`).
        Returns the estimator (the file's SHA-256 recorded, as a fit from the path records it), the
        decoded image and its visible pixels."""
        from colorot.imageio import decode_image, read_file, visible_pixels

        data = read_file(src)
        image = decode_image(data, name=str(src), max_pixels=self.params.get("max_image_pixels"), frames=frames,
                             written_as=written_as)
        pixels = at_least_two_pixels(visible_pixels(image, str(src)), src, "source")  # named, as a path fit names it
        estimator = self._fit(pixels, measure_kl=measure_kl, light=light,
                              space=(str(src), colour_space(image.icc_profile)))
        estimator.train_info_["source_sha256"] = hashlib.sha256(data).hexdigest()
        return estimator, image, pixels

    def match_file(self, src: Path, dst: Path, *, save_map: Path | None = None, **write_options) -> None:
        """Fit ``src``'s own map and write ``src`` through it (:func:`write_matched`, which takes
        ``image=False`` to keep the map only), decoding it once (:meth:`_fit_file`: an animation's frames
        where ``dst``'s format holds them, else its first, the picture written); the map's KL is
        estimated only for a map that is kept (``save_map``)."""
        from colorot.imageio import written_format

        estimator, image = self._fit_file(src, measure_kl=save_map is not None, light=self._light_schedule,
                                          written_as=written_format(dst))[:2]  # the fit's pixels freed before the write
        write_matched(estimator, src, dst, save_map=save_map, decoded=image, **write_options)

    def match_bytes(self, data: bytes, *, format: str | None = None, strength: float = 1.0,
                    controls: Controls | None = None, exact: bool = False, quality: int = 95,
                    max_pixels: int | None = None, name: str = "<stdin>") -> tuple[bytes, str]:
        """An encoded image (e.g. stdin) matched to the reference: the encoded result and its format
        (``format``, or the input's); ``name``: the input's, in errors and warnings."""
        from colorot import apply
        from colorot.imageio import decode_to_write, encode_image, visible_pixels

        image, fmt = decode_to_write(data, format, name=name, max_pixels=max_pixels)
        # fitted as a file is: fully transparent pixels left out, fewer than 2 refused by name
        pixels = at_least_two_pixels(visible_pixels(image, name), name, "source")
        estimator = self._fit(pixels, measure_kl=False, light=self._light_schedule,
                              space=(name, colour_space(image.icc_profile)))
        fitted, table = _prepared(estimator, strength, exact, controls)
        mapped, *frames = (apply.map_image(fitted, picture, table=table) for picture in image.pictures)
        return encode_image(image, mapped, fmt, quality=quality, name="<stdout>", frames=frames), fmt


@dataclass(frozen=True)
class MatchWork:
    """What ``colorot match`` does with each job of its plan: fit the input's own map and write the
    image through it (``settings``: :func:`write_matched`'s), keeping the map under ``save_maps``
    (the output tree under ``output_root`` mirrored: :func:`map_destination`), and for the jobs of
    ``map_only`` keeping the map alone (:func:`plan_maps`).  It pickles whole, matcher and
    reference included, for worker processes (:mod:`colorot.workers`)."""

    matcher: Matcher
    settings: dict = field(default_factory=dict)
    save_maps: Path | None = None
    output_root: Path = Path(".")
    map_only: frozenset = frozenset()

    def map_path(self, job: "Job") -> Path | None:
        """Where ``job``'s map is kept (None without ``save_maps``)."""
        return None if self.save_maps is None else map_destination(self.save_maps, job.dst, self.output_root)

    def __call__(self, job: "Job") -> None:
        self.matcher.match_file(job.src, job.dst, save_map=self.map_path(job), image=job not in self.map_only,
                                **self.settings)

    def fit_frame(self, job: "Job") -> "FrameFit":
        """A ``--sequence`` frame's own fit (:meth:`Matcher.fit_frame`), on the pictures that its write keeps."""
        from colorot.imageio import written_format

        return self.matcher.fit_frame(job.src, written_as=written_format(job.dst))

    def write_frame(self, estimator: ColorTransfer, job: "Job") -> None:
        """A ``--sequence`` frame written through ``estimator`` (its blend), its map kept as for any job.
        The frame is decoded again, without the warning for damaged metadata that its fit gave."""
        from colorot.imageio import read_image, written_format

        image = job not in self.map_only
        decoded = (read_image(job.src, max_pixels=self.settings.get("max_pixels"), metadata_warning=False, frames=True,
                              written_as=written_format(job.dst)) if image else None)
        write_matched(estimator, job.src, job.dst, save_map=self.map_path(job), image=image, decoded=decoded,
                      **self.settings)


def _match_schedule(params: dict) -> dict:
    """``params`` with the match schedule of the KL solver's ridge map (:data:`MATCH_KL_ITERATIONS`,
    and :data:`MATCH_PIXELS` unless ``max_pixels`` is given) where ``steps`` is not given; given
    ``steps``, ``colorot fit``'s schedule (``colorot match --steps 20`` fits as ``colorot fit``)."""
    if (ColorTransfer(**params).resolved_solver() != "kl" or params.get("model", "ridge") != "ridge"
            or params.get("steps") is not None):
        return params
    return {**params, "steps": MATCH_KL_ITERATIONS, "max_pixels": params.get("max_pixels", MATCH_PIXELS)}


def write_matched(estimator: ColorTransfer, src: Path, dst: Path, *, strength: float = 1.0,
                  controls: Controls | None = None, exact: bool = False, quality: int = 95,
                  max_pixels: int | None = None, save_map: Path | None = None, image: bool = True,
                  decoded: "Image | None" = None, replace: bool = True) -> None:
    """Write ``src`` (``decoded``: read already) through ``estimator``'s map to ``dst`` as ``colorot
    apply`` does (the colour table unless ``exact``; ``strength`` then ``controls``), unless not
    ``image``; then keep the map at ``save_map``, if given (:func:`plan_maps` decides what may be
    replaced).  The image goes first, so a run killed in between leaves an image without its map,
    which a rerun fits again.  Unless ``replace``, a file that appeared at ``dst`` or ``save_map``
    meanwhile (another run's) is kept: OutputExistsError, and no map is kept after a refused image.
    A write the file system refuses, the image's or the map's, raises :class:`DestinationError`."""
    from colorot import apply
    from colorot.atomic import appeared

    if image:
        fitted, table = _prepared(estimator, strength, exact, controls)
        apply.apply_to_file(fitted, src, dst, table=table, quality=quality, max_pixels=max_pixels, image=decoded,
                            replace=replace)
    if save_map is not None:
        apply.make_folder(save_map.parent)
        if not replace and os.path.lexists(save_map):  # absent when planned (plan_maps): another run's since
            raise appeared(save_map)
        with apply.refusals_stop_the_batch():
            estimator.save(save_map, overwrite=replace)


def _prepared(estimator: ColorTransfer, strength: float, exact: bool, controls: Controls | None):
    """The map and colour table ``colorot apply`` would use for the estimator's map: for a ridge map
    the table of its parameters, without torch (the map is then None), unless ``exact``."""
    from colorot import apply

    table = None if exact else apply.ridge_table(estimator.ridge_parameters_, strength=strength, controls=controls)
    if table is not None:
        return None, table
    return apply.prepare_fitted(estimator.map_, strength=strength, exact=exact, controls=controls)


def match(reference: ImageLike | Sequence[ImageLike], images: Iterable[ImageLike], *, strength: float = 1.0,
          controls: Controls | None = None, smooth: float | None = None, smooth_range: float | None = None,
          **params) -> list[np.ndarray]:
    """Each of ``images`` matched to ``reference`` by its own fitted map: float32 pixels of each
    image's shape ((N, 3) for a path), like :meth:`ColorTransfer.transform`.

    ``params`` go to :class:`ColorTransfer`; ``strength`` and ``controls`` act as in
    ``colorot apply``.  ``smooth`` σ (frames; ``colorot match --sequence --smooth``): ``images``
    are the frames of one sequence, in the order given, each written through the blend of its
    neighbours' maps (:mod:`colorot.sequence`; ridge maps only), with the range τ
    ``smooth_range`` (code values; ``--smooth-range``, default
    :data:`colorot.sequence.DEFAULT_RANGE`).  For the fitted maps themselves (to save, or to
    export as LUTs) use :class:`Matcher`, :class:`colorot.sequence.FrameFit` and
    :func:`colorot.sequence.blended`.
    """
    if isinstance(images, (str, os.PathLike, np.ndarray)) or hasattr(images, "convert") or hasattr(images, "detach"):
        raise ConfigError("images must be a list of images (for one image: [image])")
    images = list(images)  # any iterable (a generator is read once)
    if smooth is None and smooth_range is not None:
        raise ConfigError("smooth_range sets the blend of a sequence; give smooth too")
    check_strength(strength)  # before any fit
    check_controls(controls)
    if smooth is None:
        matcher = Matcher(reference, **params)
        return [matcher.fit_and_transform(image, strength=strength, controls=controls) for image in images]
    from colorot.sequence import DEFAULT_RANGE, RIDGE_ONLY, blended, check_range, check_sigma

    tau = DEFAULT_RANGE if smooth_range is None else smooth_range
    check_sigma(smooth)
    check_range(tau)
    estimator = ColorTransfer(**{k: v for k, v in params.items() if k != "reference_mask"})  # Matcher's own
    if estimator.model != "ridge" or estimator.resolved_solver() == "adam":  # refused before the reference's fit
        raise ConfigError(RIDGE_ONLY)
    matcher = Matcher(reference, **params)
    fits = {t: matcher.fit_frame(image) for t, image in enumerate(images)}
    return [blended(fits, t, len(images), smooth, tau).transform(image, strength=strength, controls=controls)
            for t, image in enumerate(images)]


def map_destination(save_maps: Path, job_dst: Path, output_root: Path) -> Path:
    """Where ``--save-maps`` keeps an output's checkpoint: its path under the output folder,
    mirrored under ``save_maps``, with the suffix ``.pt``."""
    try:
        relative = job_dst.relative_to(output_root)
    except ValueError:
        relative = Path(job_dst.name)
    if relative == Path("."):  # one file written to a file name
        relative = Path(job_dst.name)
    return save_maps / relative.with_suffix(".pt")


def plan_maps(plan: "Plan", save_maps: Path, output_root: Path, overwrite: bool,
              reference: Path | None = None) -> tuple["Plan", frozenset]:
    """A batch's plan with ``--save-maps``: the plan to run and the jobs to run for their map only.

    A job is skipped only when its image and its map both exist; an image that exists without its
    map (a run killed between the two) is fitted again for its map alone.  Refused before any
    work: a ``save_maps`` that is (or lies under) a file, a map that would replace an input, an
    output or the ``reference`` (an image named
    ``x.pt``; even with ``overwrite``), two inputs that would keep their maps in one file, and,
    unless ``overwrite``, a map that exists for an image about to be written (an earlier run's,
    whose image is elsewhere or gone).
    """
    from colorot.apply import Plan
    from colorot.atomic import file_key

    blocker = next((path for path in (save_maps, *save_maps.parents) if path.exists() and not path.is_dir()), None)
    if blocker is not None:
        raise ConfigError(f"--save-maps {save_maps}: {blocker} is a file, not a folder")
    maps = {job: map_destination(save_maps, job.dst, output_root) for job in (*plan.jobs, *plan.skipped)}
    # A map ends in .pt and an output in an image suffix: only an input or the reference named .pt
    # can be where a map goes (each resolved, and the maps only if there is one).
    named_pt = [path for path in (*(job.src for job in maps), *([reference] if reference else []))
                if Path(path).suffix.lower() == ".pt"]
    images = {file_key(path) for path in named_pt}
    owner: dict[str, object] = {}
    for job, path in maps.items():
        key = file_key(path)  # X.jpg and x.png keep one map on macOS, whose file names ignore case
        if key in images:
            raise ConfigError(f"the map {path} would overwrite an input or output of this run; "
                              "choose another --save-maps folder")
        if key in owner:
            raise ConfigError(f"{owner[key].src} and {job.src} would both keep their map in {path}; "
                              "match them in separate runs, each with its own --save-maps folder")
        owner[key] = job
    if not overwrite:
        for job in plan.jobs:
            if os.path.lexists(maps[job]):
                raise ConfigError(f"{maps[job]} already exists (the map of an earlier run) but {job.dst} does not; "
                                  "pass --overwrite to replace it, or choose another --save-maps folder")
    map_only = frozenset(job for job in plan.skipped if not os.path.lexists(maps[job]))
    return Plan([*plan.jobs, *(job for job in plan.skipped if job in map_only)],
                [job for job in plan.skipped if job not in map_only]), map_only
