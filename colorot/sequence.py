"""Frame sequences (``colorot match --sequence``): each frame written through a Gaussian blend of
its neighbours' own maps, so that the grade does not jitter from frame to frame.

Every frame k gets its own ridge map T_k onto the reference (:class:`colorot.matching.Matcher`);
frame t is written through

    T̄_t = Σ_k c_tk T_k,   k = t − h … t + h,   c_tk ∝ exp(−(k − t)² / 2σ²),   h = min(⌊3σ⌋, t, n − 1 − t),

a window centred on t that shrinks symmetrically at the clip's ends: a one-sided window there
would blend in maps of frames that all lie on one side, and lag the footage (bench/EXPERIMENTS.md,
E46).  σ = 0 leaves every frame its own map.  A frame whose fit failed is left out of its
neighbours' blends (the others' weights renormalised).

A convex combination of gradients of convex functions is the gradient of the same combination of
the functions, so T̄_t is again a monotone gradient map.  For ridge maps
T_k(x) = Σ_h a_h σ(w_h·x + c_h) w_h + (V_kᵀV_k + εI) x + b_k it is one ridge map: every unit kept
with its amplitude scaled by c_tk, V = (Σ_k c_tk V_kᵀV_k)^½ and b = Σ_k c_tk b_k
(:func:`blend_ridge_maps`), so it is saved, applied and exported like any other.

Frames are taken in the natural order of their paths (``frame9`` before ``frame10``).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from colorot import apply
from colorot.errors import ConfigError
from colorot.ridge_map import RidgeParameters, inverse_softplus, psd_sqrt, softplus
from colorot.transfer import ColorTransfer

#: The blend's default σ in frames: on bench/match.py's sequence (E46) σ = 1 cut the flicker by 11 %
#: (32 % before rounding to 8 bits) with every frame's SW2 to the reference within 4 % of its own
#: map's; σ = 2 cut it by 21 % but moved one frame's SW2 by 16 %.
DEFAULT_SIGMA = 1.0
#: Frames fitted and written per round of a file sequence: the maps kept at once are at most this
#: many plus the window's 2h, whatever the sequence's length.
CHUNK = 64


def natural_key(path: Path | str) -> tuple:
    """Sort key comparing runs of digits as numbers: ``frame9`` before ``frame10``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path)))


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


def check_sigma(sigma: float) -> None:
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ConfigError(f"the sequence's σ (--smooth) must be finite and ≥ 0, not {sigma}")


def blend_ridge_maps(maps: Sequence[RidgeParameters], weights: Sequence[float]) -> RidgeParameters:
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


def blended(fits: Mapping[int, ColorTransfer], t: int, count: int, sigma: float,
            names: Sequence[str] | None = None) -> ColorTransfer:
    """Frame t's estimator: a copy of its own fit whose map is the blend of the fitted frames of its
    window (``fits``: frame index → fitted estimator; frames missing from it are left out).  Its
    training summary gains ``"sequence"``: σ, the frames blended (``names``, else their indices)
    and their weights; its ``kl_nats`` (the own map's) is dropped."""
    frames, weights = window(t, count, sigma)
    kept = [(int(k), c) for k, c in zip(frames, weights) if int(k) in fits]
    total = sum(c for _, c in kept)
    maps = [fits[k].ridge_parameters_ for k, _ in kept]
    if any(m is None for m in maps):
        raise ConfigError("--sequence blends ridge maps: use --model ridge (the default) with the kl or sliced solver")
    mix = blend_ridge_maps(maps, [c / total for _, c in kept])
    info = {"sigma": float(sigma), "frames": [names[k] if names else k for k, _ in kept],
            "weights": [round(c / total, 6) for _, c in kept]}
    return fits[t].with_ridge_map(mix, sequence=info, kl_nats=None)  # the own map's KL is not the blend's


def match_sequence(fit: Callable[[Path], ColorTransfer], write: Callable[[ColorTransfer, apply.Job], None],
                   plan: apply.Plan, *, sigma: float = DEFAULT_SIGMA, jobs: int = 1,
                   on_file_done: Callable[[apply.Job, str | None], None] | None = None,
                   on_fit_done: Callable[[apply.Job, str | None], None] | None = None) -> apply.Report:
    """Match the frames of ``plan`` as one sequence: ``fit(src)`` each frame's own map (the skipped
    frames too, where a frame to write needs them), then ``write(estimator, job)`` each frame of
    ``plan.jobs`` through its blend (:func:`blended`).  Frames go in :data:`CHUNK`-frame rounds,
    each fitted and then written ``jobs`` at a time, keeping only the maps later frames need.
    A failed fit fails its own frame (if written) and is left out of its neighbours' blends;
    errors are handled as :func:`colorot.apply.run_each` handles them.  ``on_file_done(job,
    error)`` follows each frame of ``plan.jobs``, ``on_fit_done(job, error)`` each fit."""
    check_sigma(sigma)
    start = time.perf_counter()
    frames = sorted([*plan.jobs, *plan.skipped], key=lambda job: natural_key(job.src))
    index = {job: t for t, job in enumerate(frames)}
    to_write = set(plan.jobs)
    names = [str(job.src) for job in frames]
    count, farthest = len(frames), reach(sigma)
    fits: dict[int, ColorTransfer] = {}
    fit_failed: dict[int, str] = {}
    written: list[apply.Job] = []
    failed: list[tuple[apply.Job, str]] = []

    def fit_frame(job: apply.Job) -> None:
        fits[index[job]] = fit(job.src)

    def write_frame(job: apply.Job) -> None:
        write(blended(fits, index[job], count, sigma, names), job)

    for first in range(0, count, CHUNK):
        chunk = [t for t in range(first, min(count, first + CHUNK)) if frames[t] in to_write]
        needed = sorted({int(k) for t in chunk for k in window(t, count, sigma)[0]} - fits.keys() - fit_failed.keys())
        fitted = apply.run_each(apply.Plan([frames[k] for k in needed], []), fit_frame, on_file_done=on_fit_done,
                                jobs=jobs)
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
    return apply.Report(written, list(plan.skipped), failed, time.perf_counter() - start)
