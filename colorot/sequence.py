"""Frame sequences (``colorot match --sequence``): each frame written through a blend of its
neighbours' own maps, so that the grade does not jitter from frame to frame where the footage
does not change, and follows it where it does.

Every frame k gets its own ridge map T_k onto the reference (:class:`colorot.matching.Matcher`);
frame t is written through

    T̄_t = Σ_k c_tk T_k,   k = t − h … t + h,   h = min(⌊3σ⌋, t, n − 1 − t),
    c_tk ∝ exp(−(k − t)² / 2σ²) · exp(−d_tk² / 2τ²),   d_tk = max(D_t,k, D_t,2t−k),

a window centred on t that shrinks symmetrically at the clip's ends: a one-sided window there
would blend in maps of frames that all lie on one side, and lag the footage (bench/EXPERIMENTS.md,
E46).  D_t,k is how differently T_k and T_t grade frame t: the RMS of ‖T_k(x) − T_t(x)‖ over
:data:`SAMPLE_PIXELS` of frame t's pixels, in 8-bit code values.  The range factor (τ, as a
bilateral filter's) keeps a neighbour whose map would grade the frame differently (across a cut
D is ~100 code values, within a steady shot a few per frame) out of the blend; taking each
pair k, 2t − k at the larger of their two distances keeps the window symmetric there too, so a
frame beside a cut keeps its own map as the clip's ends do.  Weights under
:data:`WEIGHT_FLOOR` of the frame's own are dropped.  σ = 0 leaves every frame its own map,
τ = ∞ gives the purely temporal blend.  A frame whose fit failed counts as infinitely far:
it and its mirror image about t are left out of t's blend.

A convex combination of gradients of convex functions is the gradient of the same combination of
the functions, so T̄_t is again a monotone gradient map.  For ridge maps
T_k(x) = Σ_h a_h σ(w_h·x + c_h) w_h + (V_kᵀV_k + εI) x + b_k it is one ridge map: every unit kept
with its amplitude scaled by c_tk, V = (Σ_k c_tk V_kᵀV_k)^½ and b = Σ_k c_tk b_k
(:func:`blend_ridge_maps`), so it is saved, applied and exported like any other.

Frames are taken in the natural order of their paths (``frame9`` before ``frame10``).
"""

from __future__ import annotations

import itertools
import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from colorot import apply
from colorot.errors import ConfigError
from colorot.ridge_map import RidgeParameters, inverse_softplus, psd_sqrt, softplus
from colorot.ridge_profiles import RidgeProfiles
from colorot.sampling import representative_subsample
from colorot.sliced import SlicedSettings
from colorot.transfer import ColorTransfer, ImageLike, to_pixels

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

#: The blend's default σ in frames and range τ in code values (bench/EXPERIMENTS.md, E47): on
#: bench/match.py's 60-frame pan σ = 1, τ = 4 cut the flicker of frame-by-frame fits by 20 %, every
#: frame's SW2 to the reference within 3 % of its own map's; the purely temporal blend (τ = ∞) cut
#: it by 11 %, and across a cut raised one frame's SW2 24-fold, where τ = 4 left it alone.
DEFAULT_SIGMA = 1.0
DEFAULT_RANGE = 4.0
#: Units of one frame's ridge map: a step for each of the sliced dictionary's D directions × K knots.
FRAME_MAP_UNITS = SlicedSettings().directions * SlicedSettings().knots
#: Pixels of a frame on which its neighbours' maps are compared with its own (D_t,k).
SAMPLE_PIXELS = 4096
#: Blend weights under this fraction of the frame's own are dropped (the rest renormalised).
WEIGHT_FLOOR = 1e-3
#: Why a map cannot take part in a sequence's blend.
RIDGE_ONLY = ("--sequence blends ridge maps: use --model ridge (the default) with the kl or sliced solver (in "
              "Python: model='ridge' with solver 'auto', 'kl' or 'sliced')")
#: Frames fitted and written per round of a file sequence: the maps kept at once are at most this
#: many plus the window's 2h, whatever the sequence's length.
CHUNK = 64


def natural_key(path: Path | str) -> tuple:
    """Sort key comparing runs of digits as numbers and the rest regardless of case: ``frame9``
    before ``frame10``, ``a9`` before ``A10``; names equal but for case in code-point order."""
    parts = re.split(r"(\d+)", str(path))  # text, digits, text, …: digit runs at the odd places
    folded = tuple(int(part) if odd else part.casefold() for odd, part in zip(itertools.cycle((False, True)), parts))
    return folded, str(path)


def window(t: int, count: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The frames k of frame t's blend among ``count`` frames and their weights c_tk (summing to 1)."""
    if not 0 <= t < count:
        raise ValueError(f"frame {t} is not among {count} frames")
    check_sigma(sigma)
    half = min(reach(sigma), t, count - 1 - t)
    frames = np.arange(t - half, t + half + 1)
    weights = np.exp(-0.5 * ((frames - t) / sigma) ** 2) if sigma > 0 else np.ones(1)
    return frames, weights / weights.sum()


def reach(sigma: float) -> int:
    """How many frames on each side a blend of σ reaches at most: ⌊3σ⌋."""
    return math.floor(3 * sigma)


def largest_blend(count: int, sigma: float) -> int:
    """The most frames any blend among ``count`` frames holds (:func:`window`): 2·min(⌊3σ⌋, ⌊(count − 1)/2⌋) + 1."""
    return 2 * min(reach(sigma), (count - 1) // 2) + 1


def refuse_blends_too_large_to_save(count: int, sigma: float) -> None:
    """ConfigError where a blend among ``count`` frames may hold more units than a map file holds
    (:data:`colorot.checkpoint.MAX_MODEL_UNITS`), each frame's map :data:`FRAME_MAP_UNITS`: with
    ``--save-maps`` such a frame was written, then failed at its map, on every rerun too."""
    from colorot.checkpoint import MAX_MODEL_UNITS

    maps = largest_blend(count, sigma)
    if maps * FRAME_MAP_UNITS > MAX_MODEL_UNITS:
        largest_reach = (MAX_MODEL_UNITS // FRAME_MAP_UNITS - 1) // 2
        raise ConfigError(f"--save-maps keeps each frame's blend, which holds up to {maps} frames' maps here "
                          f"({maps * FRAME_MAP_UNITS} units), more than the {MAX_MODEL_UNITS} a map file holds: "
                          f"use --smooth below {(largest_reach + 1) / 3:g}, or leave out --save-maps")


def check_sigma(sigma: float) -> None:
    if not (math.isfinite(3 * sigma) and sigma >= 0):  # the window's reach ⌊3σ⌋ must be a number
        raise ConfigError(f"the sequence's σ (--smooth) must be ≥ 0 and below {sys.float_info.max / 3:.3g} "
                          f"(its window reaches 3σ frames), not {sigma}")


def check_range(tau: float) -> None:
    if not tau > 0:  # NaN fails too; ∞ is the purely temporal blend
        raise ConfigError(f"the sequence's range τ (--smooth-range) must be > 0 (inf: no range term), not {tau}")


@dataclass
class FrameFit:
    """A frame's own fitted estimator, and the pixels of the frame on which its neighbours' maps
    are compared with its own (:data:`SAMPLE_PIXELS`, float64 in [0, 1])."""

    estimator: ColorTransfer
    sample: np.ndarray
    _evaluate: Callable[[np.ndarray], np.ndarray] | None = field(default=None, init=False, repr=False)
    _graded_sample: np.ndarray | None = field(default=None, init=False, repr=False)

    @classmethod
    def of(cls, estimator: ColorTransfer, image: ImageLike, max_image_pixels: int | None = None) -> "FrameFit":
        """``estimator`` (fitted on ``image``) with its sample of ``image``'s pixels."""
        if estimator.ridge_parameters_ is None:
            raise ConfigError(RIDGE_ONLY)
        pixels = to_pixels(image, max_image_pixels=max_image_pixels)
        sample = representative_subsample(pixels, SAMPLE_PIXELS, np.random.default_rng(0))
        return cls(estimator, np.asarray(sample, np.float64))

    def grade(self, x: np.ndarray) -> np.ndarray:
        """This frame's map T at the colours ``x`` (N, 3): float64, unclipped."""
        if self._evaluate is None:  # tabulated once (exact within 10⁻⁷), as colorot apply evaluates it
            parameters = self.estimator.ridge_parameters_
            self._evaluate = RidgeProfiles.from_parameters(parameters.state, parameters.eps) or parameters.forward
        return self._evaluate(x)

    def distance(self, other: "FrameFit") -> float:
        """D: the RMS of ‖T_other(x) − T_self(x)‖ over this frame's sample, in 8-bit code values."""
        if self._graded_sample is None:  # compared with up to 2h neighbours: graded once
            self._graded_sample = self.grade(self.sample)
        difference = other.grade(self.sample) - self._graded_sample
        return float(np.sqrt(np.mean(np.sum(difference**2, axis=1)))) * 255


def blend_weights(fits: Mapping[int, FrameFit], t: int, count: int, sigma: float,
                  tau: float = DEFAULT_RANGE) -> tuple[np.ndarray, np.ndarray]:
    """The frames of frame t's blend and their weights c_tk (module docstring): the frames that
    were fitted and weigh at least :data:`WEIGHT_FLOOR` of frame t's own, weights summing to 1."""
    check_range(tau)
    frames, weights = window(t, count, sigma)
    if t not in fits:
        raise ValueError(f"frame {t} has no fit: its blend is centred on its own map")
    own = fits[t]
    far = np.asarray([math.inf if int(k) not in fits else 0.0 if k == t or math.isinf(tau) else own.distance(fits[int(k)])
                      for k in frames])
    far = np.maximum(far, far[::-1])  # each pair k, 2t − k at the larger distance: the window stays centred
    with np.errstate(invalid="ignore", over="ignore"):  # ∞/∞ (a failed frame at τ = ∞): left out below; a tiny τ: weight 0
        factor = np.where(np.isfinite(far), np.exp(-0.5 * (far / tau) ** 2), 0.0)
    weights = weights * factor
    kept = weights >= WEIGHT_FLOOR * weights[frames == t]
    return frames[kept], weights[kept] / weights[kept].sum()


def blend_ridge_maps(maps: Sequence[RidgeParameters], weights: Sequence[float] | np.ndarray) -> RidgeParameters:
    """The ridge map Σ_k c_k T_k of ridge maps T_k sharing their floor ε, for weights c_k ≥ 0
    summing to 1 (module docstring)."""
    weights = np.asarray(weights, np.float64)
    if len(maps) != len(weights) or not len(maps):
        raise ValueError("give one weight per map, and at least one map")
    if (weights < 0).any() or not math.isclose(weights.sum(), 1.0, rel_tol=1e-9):
        raise ValueError("the weights must be ≥ 0 and sum to 1")
    if len({m.eps for m in maps}) != 1:
        raise ValueError("ridge maps with different floors ε cannot be blended into one")
    states = [m.state for m in maps]
    amplitudes = [c * softplus(np.asarray(s["rho"], np.float64)) for c, s in zip(weights, states)]
    gram = sum(c * np.asarray(s["V"], np.float64).T @ np.asarray(s["V"], np.float64) for c, s in zip(weights, states))
    state = {
        "W": np.concatenate([np.asarray(s["W"], np.float64) for s in states]),
        "biases": np.concatenate([np.asarray(s["biases"], np.float64) for s in states]),
        "rho": inverse_softplus(np.concatenate(amplitudes)),
        "V": psd_sqrt(gram),
        "b": sum(c * np.asarray(s["b"], np.float64) for c, s in zip(weights, states)),
    }
    return RidgeParameters(state, maps[0].eps)


def blended(fits: Mapping[int, FrameFit], t: int, count: int, sigma: float, tau: float = DEFAULT_RANGE,
            names: Sequence[str] | None = None) -> ColorTransfer:
    """Frame t's estimator: a copy of its own fit whose map is the blend of its window's fitted
    frames (``fits``: frame index → :class:`FrameFit`; frames missing from it count as infinitely
    far), weighted by :func:`blend_weights`.  Its training summary gains ``"sequence"``: σ, τ
    (None for ∞), the frames blended (``names``, else their indices) and their weights; its ``kl_nats`` and
    ``final_loss`` (the own map's) are dropped."""
    frames, weights = blend_weights(fits, t, count, sigma, tau)
    mix = blend_ridge_maps([fits[int(k)].estimator.ridge_parameters_ for k in frames], weights)
    info = {"sigma": float(sigma), "range": float(tau) if math.isfinite(tau) else None,
            "frames": [names[k] if names else int(k) for k in frames], "weights": [round(float(c), 6) for c in weights]}
    return fits[t].estimator.with_ridge_map(mix, sequence=info, kl_nats=None, final_loss=None)  # the own map's


def match_sequence(fit: Callable[[apply.Job], FrameFit], write: Callable[[ColorTransfer, apply.Job], None],
                   plan: apply.Plan, *, sigma: float = DEFAULT_SIGMA, tau: float = DEFAULT_RANGE, jobs: int = 1,
                   on_file_done: Callable[[apply.Job, str | None], None] | None = None,
                   on_fit_done: Callable[[apply.Job, str | None], None] | None = None,
                   processes: "BaseContext | None" = None) -> apply.Report:
    """Match the frames of ``plan`` as one sequence: ``fit(job)`` each frame's own map and sample
    (:class:`FrameFit` of ``job.src``; the skipped frames too, where a frame to write needs them),
    then ``write(estimator, job)`` each frame of ``plan.jobs`` through its blend (:func:`blended`).
    Frames go in :data:`CHUNK`-frame rounds, each fitted and then written ``jobs`` at a time,
    keeping only the maps later frames need; given ``processes`` (:func:`colorot.workers.start_server`)
    the fits run in as many worker processes (``fit`` must pickle), the blends and writes here.
    A failed fit fails its own frame (if written) and is left out of its neighbours' blends;
    errors are handled as :func:`colorot.apply.run_each` handles them.  ``on_file_done(job,
    error)`` follows each frame of ``plan.jobs``, ``on_fit_done(job, error)`` each fit."""
    check_sigma(sigma)
    check_range(tau)
    start = time.perf_counter()
    # by absolute path: a list spelling some frames relative and others absolute is one clip in order
    frames = sorted([*plan.jobs, *plan.skipped], key=lambda job: natural_key(os.path.abspath(job.src)))
    index = {job: t for t, job in enumerate(frames)}
    to_write = set(plan.jobs)
    names = [str(job.src) for job in frames]
    count, farthest = len(frames), reach(sigma)
    fits: dict[int, FrameFit] = {}
    fit_failed: dict[int, str] = {}
    written: list[apply.Job] = []
    failed: list[tuple[apply.Job, str]] = []

    def write_frame(job: apply.Job) -> None:
        write(blended(fits, index[job], count, sigma, tau, names), job)

    for first in range(0, count, CHUNK):
        chunk = [t for t in range(first, min(count, first + CHUNK)) if frames[t] in to_write]
        needed = sorted({int(k) for t in chunk for k in window(t, count, sigma)[0]} - fits.keys() - fit_failed.keys())
        new: dict[apply.Job, FrameFit] = {}
        fitted = apply.run_each(apply.Plan([frames[k] for k in needed], []), fit, on_file_done=on_fit_done,
                                jobs=jobs, processes=processes, results=new)
        fits.update((index[job], frame_fit) for job, frame_fit in new.items())
        fit_failed.update((index[job], error) for job, error in fitted.failed)
        for t in chunk:
            if t in fit_failed:
                failed.append((frames[t], fit_failed[t]))
                if on_file_done is not None:
                    on_file_done(frames[t], fit_failed[t])
        report = apply.run_each(apply.Plan([frames[t] for t in chunk if t in fits], []), write_frame,
                                on_file_done=on_file_done, jobs=jobs)
        written += report.written
        failed += report.failed
        for k in [k for k in fits if k < first + CHUNK - farthest]:  # no later frame's window reaches back here
            del fits[k]
    failed.sort(key=lambda pair: index[pair[0]])
    return apply.Report(written, sorted(plan.skipped, key=index.__getitem__), failed, time.perf_counter() - start)
