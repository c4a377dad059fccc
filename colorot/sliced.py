"""The sliced solver: fit a ridge-sum monotone gradient map to target pixels in seconds.

The map (a :class:`colorot.models.RidgeMGN` with a fixed dictionary of units) is

    T(x) = Σ_{d,k} θ_dk u_d σ(s_d (u_dᵀx − c_dk)) + Σ_d λ_d u_d u_dᵀ x + εx + b,   θ, λ ≥ 0,

the gradient of the convex φ(x) = Σ θ_dk/s_d · S(s_d(u_dᵀx − c_dk)) + ½ Σ λ_d (u_dᵀx)² + ½ε‖x‖² + bᵀx
(S = softplus), so it is monotone with every Jacobian eigenvalue ≥ ε whatever θ, λ ≥ 0 are.
The directions u_d (the RGB axes, the source's principal axes, grey, then seeded random
ones), the centres c_dk (quantiles of the source along u_d) and the sharpness s_d are
fixed; T is then linear in (θ, λ, b).

Majorise–minimise on SW₂²: along an orthonormal frame Q the sorted pairing of
⟨q, T(x_i)⟩ with the target's ⟨q, y_j⟩ is the 1-D optimal one, so freezing it at the
current map gives the quadratic Σ_i ‖T(x_i) − y*_i‖², y*_i = T(x_i) + Σ_q q (y_(q, rank_i) −
⟨q, T(x_i)⟩), which is ≥ the frame's sliced cost and equal to it at the current map.
Its minimiser over θ, λ ≥ 0 (a non-negative least-squares problem whose Gram matrix
never changes) cannot raise the cost.  Each iteration averages a few random frames: the mean
of their quadratics is Σ_i ‖T(x_i) − ȳ*_i‖² (ȳ* the frames' goals averaged) plus a constant,
so the averaged goal has the same minimiser.

Each step's height is capped, θ_dk ≤ C / s_d², which bounds the map's curvature along
u_d: how much it can amplify fine detail and noise, and the error of a lookup table baked
from it (:data:`CURVATURE_CAP`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

from colorot.defaults import DEFAULT_EPS
from colorot.errors import ConfigError
from colorot.ridge_map import RidgeParameters, inverse_softplus, psd_sqrt
from colorot.sampling import representative_subsample

if TYPE_CHECKING:
    from colorot.models import RidgeMGN


#: Directions, steps per direction, and the steps' sharpness per knot spacing (s_d =
#: STEP_SHARPNESS · knots / the source's 0.5–99.5 % spread along u_d: larger is narrower):
#: chosen on development pairs outside the benchmark (bench/EXPERIMENTS.md, E29–E30).
DEFAULT_DIRECTIONS = 24
DEFAULT_KNOTS = 24
STEP_SHARPNESS = 4.0
#: Majorise–minimise iterations, and random orthonormal frames averaged in each.
DEFAULT_ITERATIONS = 30
FRAMES = 2
#: Fixed frames, and their seed, on which the sliced cost is reported (each fit's history, its final
#: loss): the same directions at every iteration, so the curve follows the map, not each
#: iteration's draw (on random frames the reported loss of the default moved by 1.4 nats between 18
#: and 19 iterations while its KL moved by 0.01).
REPORT_FRAMES = 2
REPORT_SEED = 20_261_205
#: Source and target pixels the solver works on (seeded representative subsamples).  10 000 since
#: the subsamples follow the colour order: on 8 development pairs the default's SW2 moved by −8 %
#: to +5 % (median 0.0098 either way) from 20 000, for 0.47 s less a fit (E43); with i.i.d.
#: subsamples 10 000 had cost up to +20 % (E38).
DEFAULT_PIXELS = 10_000
#: C in θ_dk ≤ C / s_d²: a step's second derivative along u_d is at most 0.0962 θ s², and
#: trilinear interpolation on a grid of spacing h errs by at most h²/8 times that.  A higher
#: cap fits the target closer but sharpens the map, which amplifies fine detail (grain) and
#: strays further from a baked .cube LUT.  On bench/quality.py's 12 pairs (``python bench/cap.py``,
#: bench/RESULTS.md) 3000 is the lowest of the caps measured (600, 1800, 3000, 6000) whose map
#: moves colours within 5 % of the exact W₂ on every pair (1800: −6.1 % on one): median SW2
#: 0.0082 → 0.0071, median fine-detail gain 3.73 → 3.88 (color-matcher hm-mkl-hm: 3.18).
#: (600 was set when `colorot apply` went through a 65³ LUT, which it no longer does: E31, E37;
#: 1800 on development pairs, E41.)
CURVATURE_CAP = 3000.0
#: Spread floor (RGB units) along a direction, so a flat source does not get infinitely sharp steps.
MIN_SPREAD = 1e-3
#: Ridge on the Gram matrix, relative to its mean diagonal: keeps the solve well posed
#: when two units are (almost) the same function on the source.
GRAM_RIDGE = 1e-4
#: The least step 1/L of the solves' gradient steps.  A single-colour source has no spread: its
#: centred features, G and h vanish (to rounding; exactly for black, where L = 0 gave NaN), and
#: the map can only move it to the target's mean.  Real photographs give L ≈ 10–20, a two-tone
#: image one code value apart 13.
LIPSCHITZ_FLOOR = 1e-6
#: Projected-gradient (FISTA) iterations per non-negative least-squares solve, warm-started.
NNLS_ITERATIONS = 200


@dataclass
class SlicedSettings:
    """The sliced solver's settings."""

    directions: int = DEFAULT_DIRECTIONS
    knots: int = DEFAULT_KNOTS
    iterations: int = DEFAULT_ITERATIONS
    pixels: int = DEFAULT_PIXELS
    eps: float = DEFAULT_EPS
    seed: int = 0
    solve_iterations: int = NNLS_ITERATIONS  #: FISTA iterations of each step's least-squares solve

    def validate(self) -> None:
        # No iteration would leave every step at height 0: the map εx + b, all colours at the mean.
        if (self.directions < 3 or self.knots < 1 or self.iterations < 1 or self.pixels < 2
                or self.solve_iterations < 1):
            raise ConfigError("the sliced solver needs ≥ 3 directions, ≥ 1 knot, ≥ 1 iteration (--steps), "
                              "≥ 2 pixels")


@dataclass
class Dictionary:
    """Fixed units: directions u (D, 3), centres c (D, K), sharpness s (D,)."""

    directions: np.ndarray
    centres: np.ndarray
    sharpness: np.ndarray

    def features(self, x: np.ndarray) -> np.ndarray:
        """(N, D·K + D) float32: the step σ(s_d(u_dᵀx − c_dk)) of every unit, then u_dᵀx.

        The transpose of a C-ordered (D·K + D, N) array: the solvers work along its rows (one
        feature over every pixel), where a step's D·K rows are a (D, K, N) block.
        """
        t = (x @ self.directions.T).astype(np.float32).T  # (D, N)
        (d, k), n = self.centres.shape, len(x)
        out = np.empty((d * k + d, n), np.float32)
        steps = out[: d * k].reshape(d, k, n)  # a view: filled in place, no temporaries
        np.subtract(t[:, None, :], self.centres[:, :, None], out=steps)
        steps *= (0.5 * self.sharpness)[:, None, None]
        np.tanh(steps, out=steps)  # σ(z) = ½ + ½ tanh(z/2): the logistic sigmoid, without overflow
        steps *= 0.5
        steps += 0.5
        out[d * k:] = t
        return out.T


def spread_directions(count: int) -> np.ndarray:
    """``count`` unit vectors spread evenly over a hemisphere (a Fibonacci spiral): (count, 3).
    A hemisphere suffices: a step along −u is a step along u, flipped, plus a constant."""
    i = np.arange(count) + 0.5
    height = 1 - i / count
    radius = np.sqrt(1 - height ** 2)
    angle = i * math.pi * (3 - math.sqrt(5))
    return np.stack([radius * np.cos(angle), radius * np.sin(angle), height], axis=1)


def build_dictionary(x: np.ndarray, settings: SlicedSettings) -> Dictionary:
    """The RGB axes, the source's principal axes, the grey axis, then directions spread evenly;
    centres at the source's quantiles (k + ½)/K along each; sharpness STEP_SHARPNESS·K / spread."""
    axes = [np.eye(3), np.linalg.eigh(np.cov(x.T))[1].T, np.full((1, 3), 1 / math.sqrt(3)),
            spread_directions(max(0, settings.directions - 7))]
    u = np.concatenate(axes)[: settings.directions]
    t = x @ u.T
    levels = (np.arange(settings.knots) + 0.5) / settings.knots
    centres = np.quantile(t, levels, axis=0).T
    low, high = np.quantile(t, [0.005, 0.995], axis=0)
    sharpness = STEP_SHARPNESS * settings.knots / np.maximum(high - low, MIN_SPREAD)
    return Dictionary(u.astype(np.float32), centres.astype(np.float32), sharpness.astype(np.float32))


def random_frame(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random orthonormal 3×3 frame (columns)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def sliced_targets(z: np.ndarray, y: np.ndarray, rng: np.random.Generator, frames: int = FRAMES) -> np.ndarray:
    """y*: each mapped point z_i moved to the target quantile of its rank along the axes of
    ``frames`` random frames (averaged).  The sliced cost there is :class:`FixedSlices`'.

    z and y must have the same number of rows.  The work runs along rows (3, N), one per axis.
    """
    n = len(z)
    along = np.arange(3)[:, None] * n  # each axis's row start in the flattened (3, N) arrays
    move = np.zeros((3, n), z.dtype)
    for _ in range(frames):
        frame = random_frame(rng).astype(z.dtype)
        pz, py = frame.T @ z.T, np.sort(frame.T @ y.T, axis=1)
        order = (np.argsort(pz, axis=1) + along).ravel()  # flat index of each axis's i-th smallest
        shift = np.empty(3 * n, z.dtype)
        shift[order] = py.ravel() - pz.ravel()[order]
        move += frame @ shift.reshape(3, n)
    move /= frames
    return z + move.T


class FixedSlices:
    """The sliced cost of points against ``y`` along :data:`REPORT_FRAMES` fixed frames (seeded by
    :data:`REPORT_SEED`, whatever the fit's seed), averaged over them: each frame's mean squared 1-D
    move summed over its three axes (3·SW₂² in expectation).  ``y``'s sorted projections are kept,
    so each cost sorts the points' alone."""

    def __init__(self, y: np.ndarray) -> None:
        rng = np.random.default_rng(REPORT_SEED)
        self.frames = [random_frame(rng).astype(y.dtype) for _ in range(REPORT_FRAMES)]
        self.sorted_y = [np.sort(frame.T @ y.T, axis=1) for frame in self.frames]

    def cost(self, z: np.ndarray) -> float:
        """The cost of the points ``z`` (as many rows as ``y``)."""
        z = z.astype(self.sorted_y[0].dtype, copy=False)
        moves = [np.sort(frame.T @ z.T, axis=1) - sorted_y for frame, sorted_y in zip(self.frames, self.sorted_y)]
        return sum(float(np.vdot(move, move)) for move in moves) / (len(z) * len(moves))


def nonnegative_least_squares(gram: np.ndarray, linear: np.ndarray, start: np.ndarray, upper: np.ndarray,
                              lipschitz: float, iterations: int = NNLS_ITERATIONS) -> np.ndarray:
    """argmin ½θᵀGθ − hᵀθ over 0 ≤ θ ≤ upper, by accelerated projected gradient (FISTA) from
    ``start``, with step 1/``lipschitz`` (≥ G's largest eigenvalue); in the arrays' dtype."""
    theta, momentum, t = start.copy(), start.copy(), 1.0
    step, work = np.empty_like(theta), np.empty_like(theta)  # buffers: no allocation per iteration
    for _ in range(iterations):
        np.matmul(gram, momentum, out=work)
        work -= linear
        work /= lipschitz
        np.subtract(momentum, work, out=step)
        np.minimum(np.maximum(step, 0.0, out=step), upper, out=step)  # the projection onto [0, upper]
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        np.subtract(step, theta, out=momentum)  # momentum = step + (t − 1)/t_next · (step − θ)
        momentum *= (t - 1) / t_next
        momentum += step
        theta, step, t = step, theta, t_next
    return theta


@dataclass
class SlicedSolution:
    """A fitted map in the dictionary's terms: T(x) = Σ_p θ_p u_{d(p)} f_p(x) + εx + b, where the
    first D·K entries of θ are the step heights θ_dk and the last D the linear weights λ_d."""

    dictionary: Dictionary
    theta: np.ndarray
    bias: np.ndarray
    eps: float
    costs: list[float]
    seconds: float

    def ridge_parameters(self) -> RidgeParameters:
        return ridge_parameters(self.dictionary, self.theta, self.bias, self.eps)

    def to_ridge_map(self) -> RidgeMGN:
        return to_ridge_map(self.dictionary, self.theta, self.bias, self.eps)


def step_caps(dictionary: Dictionary) -> np.ndarray:
    """The upper bound of each entry of θ: CURVATURE_CAP / s_d² for the steps, none for λ."""
    d, k = dictionary.centres.shape
    sharp = np.repeat(dictionary.sharpness.astype(np.float64), k)
    return np.concatenate([CURVATURE_CAP / sharp ** 2, np.full(d, np.inf)])


def solve_sliced(x: np.ndarray, y: np.ndarray, settings: SlicedSettings, callback=None) -> SlicedSolution:
    """Fit T to source pixels x (N, 3) and target pixels y (M, 3), floats in [0, 1]: the solution
    in the dictionary's terms (its ridge map: :meth:`SlicedSolution.to_ridge_map`), with the sliced
    cost (RGB units², averaged over its frames) of the start and of the map after each iteration,
    the last the returned map's, and the wall seconds. ``callback(iteration, cost)`` after each
    iteration, with the cost before it."""
    settings.validate()
    start = time.perf_counter()
    problem = SlicedProblem(x, y, settings)
    theta, offset, costs = problem.run(callback)
    costs.append(problem.cost(theta, offset))  # run's last cost is the map's before the last step
    return problem.solution(theta, offset, costs, time.perf_counter() - start)


class SlicedProblem:
    """The majorise–minimise pieces on seeded subsamples of x and y (module docstring).

    The map is kept as (θ, offset) with centred features: T(x) = F̃(x)·θ u + εx + offset,
    offset = b + mean(F)·θ u.  At the current map, :meth:`surrogate` gives the quadratic
    ½θᵀGθ − hᵀθ (½ mean ‖T(x) − y*‖² up to a constant, with the offset at its best).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, settings: SlicedSettings) -> None:
        self.settings, self.rng = settings, np.random.default_rng(settings.seed)
        n = min(settings.pixels, len(x), len(y))
        self.n = n
        self.x = np.asarray(representative_subsample(x, n, self.rng), np.float32)
        self.y = np.asarray(representative_subsample(y, n, self.rng), np.float32)
        self.dictionary = build_dictionary(self.x.astype(np.float64), settings)
        features = self.dictionary.features(self.x).T  # (P, N), C order
        self.mean_features = features.mean(1)
        features -= self.mean_features[:, None]
        d, k = settings.directions, settings.knots
        self.steps, self.projections = features[: d * k].reshape(d, k, n), features[d * k:]  # (D, K, N), (D, N)
        self.direction_of = np.concatenate([np.repeat(np.arange(d), k), np.arange(d)])
        u = self.dictionary.directions
        # Gram of the centred 3-vector columns u_{d(p)} f_p(x): (FᵀF ⊙ UUᵀ) / N, plus a small ridge.
        gram = (features @ features.T).astype(np.float64) * (u @ u.T)[self.direction_of][:, self.direction_of] / n
        gram += GRAM_RIDGE * np.trace(gram) / len(gram) * np.eye(len(gram))
        self.lipschitz = max(float(np.linalg.eigvalsh(gram)[-1]), LIPSCHITZ_FLOOR)
        self.gram = gram.astype(np.float32)  # the solves' matrix–vector products in float32: 4× faster
        self.upper = step_caps(self.dictionary).astype(np.float32)
        self.report = FixedSlices(self.y)

    def start(self) -> tuple[np.ndarray, np.ndarray]:
        """θ = 0 and the offset that matches the means: T(x) = εx + b."""
        return (np.zeros(len(self.gram), np.float32),
                self.y.mean(0) - self.settings.eps * self.x.mean(0))

    def run(self, callback=None) -> tuple[np.ndarray, np.ndarray, list[float]]:
        """``settings.iterations`` majorise–minimise steps from :meth:`start`: θ, the offset, and the
        sliced cost before each step.  ``callback(iteration, cost)`` after each."""
        theta, offset = self.start()
        costs = []
        for iteration in range(self.settings.iterations):
            linear, offset, cost = self.surrogate(theta, offset)
            costs.append(cost)
            theta = nonnegative_least_squares(self.gram, linear, theta, self.upper, self.lipschitz,
                                              self.settings.solve_iterations)
            if callback is not None:
                callback(iteration + 1, cost)
        return theta, offset, costs

    def columns(self, theta: np.ndarray) -> np.ndarray:
        """θ_p u_{d(p)}: (P, 3)."""
        return (theta[:, None] * self.dictionary.directions[self.direction_of]).astype(np.float32)

    def mapped(self, theta: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """The source pixels through the map (θ, offset): (N, 3) float32."""
        eps, u = self.settings.eps, self.dictionary.directions
        d, k = self.settings.directions, self.settings.knots
        theta = np.asarray(theta, np.float32)
        # Σ_p θ_p F_p(x) u_d(p), direction by direction: the profile along u_d is Σ_k θ_dk F_dk + λ_d F_d.
        profiles = np.matmul(theta[: d * k].reshape(d, 1, k), self.steps)[:, 0] + theta[d * k:, None] * self.projections
        return profiles.T @ u + eps * self.x + np.asarray(offset, np.float32)  # float32 throughout

    def cost(self, theta: np.ndarray, offset: np.ndarray) -> float:
        """The sliced cost of the map (θ, offset) on the fixed frames (:class:`FixedSlices`)."""
        return self.report.cost(self.mapped(theta, offset))

    def surrogate(self, theta: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """h of the quadratic at the current map (this iteration's random frames), the best offset,
        and the sliced cost there on the fixed frames (:class:`FixedSlices`)."""
        eps, u = self.settings.eps, self.dictionary.directions
        z = self.mapped(theta, offset)
        goal = sliced_targets(z, self.y, self.rng)
        cost = self.report.cost(z)
        goal -= eps * self.x
        offset = goal.mean(0)
        along = u @ (goal - offset).T  # (D, N): the goal's coordinate along each u_d
        steps = np.matmul(self.steps, along[:, :, None])[:, :, 0]  # F_pᵀ·along_d(p)
        linear = np.concatenate([steps.ravel(), np.einsum("dn,dn->d", self.projections, along)])
        linear /= np.float32(self.n)
        return linear, offset, cost

    def bias(self, theta: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """b from the offset: b = offset − mean(F)·θ u."""
        return (np.asarray(offset, np.float64) - self.mean_features.astype(np.float64) @ self.columns(theta))

    def solution(self, theta, offset, costs, seconds) -> SlicedSolution:
        return SlicedSolution(self.dictionary, np.asarray(theta, np.float64), self.bias(theta, offset),
                              self.settings.eps, costs, seconds)


def ridge_parameters(dictionary: Dictionary, theta: np.ndarray, bias: np.ndarray, eps: float) -> RidgeParameters:
    """The fitted T as a ridge map's parameters, rounded to float32 as :class:`~colorot.models.RidgeMGN`
    holds them: unit (d, k) has w = s_d u_d, bias −s_d c_dk and amplitude θ_dk / s_d (its step
    height along u_d is then θ_dk); VᵀV = Σ λ_d u_d u_dᵀ."""
    u = dictionary.directions.astype(np.float64)
    d, k = dictionary.centres.shape
    sharp = dictionary.sharpness.astype(np.float64)
    state = {"V": psd_sqrt((u.T * theta[d * k:]) @ u), "b": np.asarray(bias, np.float64),
             "W": np.repeat(sharp[:, None] * u, k, axis=0), "biases": -(sharp[:, None] * dictionary.centres).reshape(-1),
             "rho": inverse_softplus(theta[: d * k] / np.repeat(sharp, k))}
    return RidgeParameters({key: value.astype(np.float32).astype(np.float64) for key, value in state.items()}, eps)


def to_ridge_map(dictionary: Dictionary, theta: np.ndarray, bias: np.ndarray, eps: float) -> RidgeMGN:
    """:func:`ridge_parameters` as a :class:`~colorot.models.RidgeMGN` (imports torch)."""
    from colorot.models import RidgeMGN

    return RidgeMGN.from_parameters(ridge_parameters(dictionary, theta, bias, eps))
