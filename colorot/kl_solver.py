"""The KL solver (the default): the ridge map fitted to the target density by the exact KL.

The map is the sliced solver's (:mod:`colorot.sliced`): a fixed dictionary of steps along
directions u_d, T(x) = Σ_p θ_p u_{d(p)} f_p(x) + εx + b with θ ≥ 0 (each step's height capped),
so that its Jacobian J_T(x) = Σ_p θ_p g_p(x) u_{d(p)} u_{d(p)}ᵀ + εI (g_p = f_p′ along u, 1 for
the linear units) is symmetric positive definite for every θ.  Both are linear in θ, and
the features f_p, g_p of the training pixels are computed once.

The objective is the exact reverse KL from the pushed-forward source to the fitted
density q (change of variables), plus a documented mass-covering addition:

    L(θ, b) = KL(T#α ‖ q) + μ·SW₂²(T#α, β),
    KL(T#α ‖ q) = −E_α log q(T(x)) − E_α log det J_T(x) − H(α).

α is the source's pixels spread uniformly over their 8-bit cells (dequantisation), so
it has a density and, for 8-bit pixels, H(α) = H(codes) − 3 log 255 exactly
(:func:`dequantised_entropy`); the expectations are means over seeded training pixels.
The gradient is analytic: ∂/∂θ_p of −log q(T(x)) is −f_p(x) u_pᵀ∇log q(T(x)), and of
−log det J_T(x) it is −g_p(x) u_pᵀ J_T(x)⁻¹ u_p (−log det J_T is convex in θ; −log q is not).

Solver: the sliced solution onto the target's pixels β is the start.  Then each
majorise–minimise iteration replaces SW₂² by the sliced solver's quadratic upper bound at
the current map (fresh random frames each time) and takes a few L-BFGS-B steps on
KL + μ·bound within the bounds θ ∈ [0, cap], λ ≥ 0.

Why the SW₂ term: the reverse KL alone is mode-seeking.  On real photographs it prefers,
by up to several nats, maps that pour the source into the dense components of q and
leave others empty (bench/EXPERIMENTS.md, E36; bench/RESULTS.md per pair); μ·SW₂²
charges for every region of the target left uncovered.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from colorot.defaults import DEQUANTISE
from colorot.distributions import GaussianMixture
from colorot.errors import ConfigError
from colorot.sliced import Dictionary, SlicedProblem, SlicedSettings, SlicedSolution
from colorot.sampling import representative_subsample

#: The target density's defaults for this solver: K = 10 components, covariance ridge 10⁻⁴ (a
#: standard-deviation floor of 2.6 code values).  On development pairs the mixture's own samples
#: are then 0.003–0.005 in SW2 from the target (4·10⁻⁴: 0.006–0.007), and the fitted map is
#: closer to the target (bench/EXPERIMENTS.md, E36).
DEFAULT_COMPONENTS = 10
DEFAULT_RIDGE = 1e-4
#: Majorise–minimise iterations after the sliced start (the CLI's --steps for this solver).
DEFAULT_ITERATIONS = 20
#: L-BFGS-B steps per majorise–minimise iteration.
INNER_ITERATIONS = 5
#: Source pixels the KL is averaged over (seeded subsample, dequantised once).  5 000 gives the
#: same maps as 10 000 on development pairs (KL within 0.01 nats, SW2 equal) at half the cost
#: per evaluation (bench/EXPERIMENTS.md, E38).
DEFAULT_PIXELS = 5_000
#: μ of μ·SW₂² (SW₂² the mean over directions of the 1-D W₂², RGB units²).  Chosen on
#: development pairs outside the benchmark (bench/EXPERIMENTS.md, E36): 10⁵ keeps the sliced
#: start's SW2 (within 4 %) while the KL falls by 0.3–0.8 nats; 3·10⁴ lowers the KL further
#: but raises SW2 by up to 12 %.
DEFAULT_SW_WEIGHT = 100_000.0


@dataclass
class KLSettings:
    """The KL solver's settings."""

    iterations: int = DEFAULT_ITERATIONS
    pixels: int = DEFAULT_PIXELS
    sw_weight: float = DEFAULT_SW_WEIGHT
    seed: int = 0

    def validate(self) -> None:
        if self.iterations < 0 or self.pixels < 2:
            raise ConfigError("the KL solver needs ≥ 0 iterations (--steps) and ≥ 2 pixels")
        if not 0 <= self.sw_weight < math.inf:
            raise ConfigError("--sw-weight must be finite and ≥ 0")


@dataclass
class KLTerms:
    """The KL's parts at a map, in nats: KL(T#α ‖ q) = cross_entropy − log_det − H(α)."""

    cross_entropy: float  # −E log q(T(x))
    log_det: float        # E log det J_T(x)


@dataclass
class KLResult:
    """The fitted map, the density q it was fitted to, the KL's parts at the sliced start and at the
    end, the loss after each iteration (KL + μ·SW₂², nats) and the wall seconds, sliced start included."""

    solution: SlicedSolution
    target: GaussianMixture
    start: KLTerms
    final: KLTerms
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def dequantised_entropy(pixels: np.ndarray) -> float:
    """H(α) in nats for the pixels (N, 3) spread uniformly over their 8-bit cells:
    H(cell counts) − 3·log 255 (exact for 8-bit pixels; cells of side 1/255). Each pixel's cell
    is found :data:`_CELL_CHUNK` pixels at a time, so a whole photograph costs 4 bytes a pixel here."""
    pixels = np.asarray(pixels, np.float32)
    cells = np.empty(len(pixels), np.uint32)
    for start in range(0, len(pixels), _CELL_CHUNK):
        codes = np.clip(np.rint(pixels[start:start + _CELL_CHUNK] * np.float32(255)), 0, 255).astype(np.uint32)
        cells[start:start + _CELL_CHUNK] = (codes[:, 0] << 16) | (codes[:, 1] << 8) | codes[:, 2]
    cells.sort()
    starts = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1]])
    p = np.diff(np.r_[starts, len(cells)]) / len(cells)  # each occupied cell's share
    return float(-(p * np.log(p)).sum() - 3 * math.log(255))


#: Pixels whose cells :func:`dequantised_entropy` finds at a time.
_CELL_CHUNK = 1 << 20


class Objective:
    """−E log q(T(x)) − E log det J_T(x) and its gradient in (θ, b) over a fixed dictionary.

    The parameter vector is (θ, b): the D·K step heights, the D linear weights λ, then b.  ``target``
    is q, or a function giving it: the features are computed before q is needed.
    J_T is symmetric: its upper triangle is carried, (6, N).  The last evaluation is kept,
    since each L-BFGS-B run starts where the previous one ended.
    """

    def __init__(self, dictionary: Dictionary, eps: float, x: np.ndarray,
                 target: GaussianMixture | Callable[[], GaussianMixture]) -> None:
        self._target, self.eps, self.n = target, eps, len(x)
        self.u = dictionary.directions.astype(np.float64)
        self.d, self.k = dictionary.centres.shape
        self.t = self.u @ x.T  # (D, N): coordinates along each direction
        self.shift = eps * x.T  # εx, (3, N)
        # f_p and g_p of every unit at every pixel, (D, K, N) in C order (the batched products need it)
        z = np.empty((self.d, self.k, self.n), np.float32)
        np.subtract(self.t.astype(np.float32)[:, None, :], dictionary.centres[:, :, None], out=z)
        z *= (0.5 * dictionary.sharpness)[:, None, None]
        self.f_t = np.tanh(z, out=z)
        self.f_t *= 0.5
        self.f_t += 0.5  # the logistic sigmoid σ(s(t − c)) = ½ + ½ tanh(s(t − c)/2), without overflow
        self.g_t = self.f_t * (1 - self.f_t) * dictionary.sharpness[:, None, None]
        upper = np.triu_indices(3)
        self.outer = self.u[:, upper[0]] * self.u[:, upper[1]]  # u_d u_dᵀ's upper triangle (xx xy xz yy yz zz)
        self.quadratic = self.outer * [1, 2, 2, 1, 2, 1]  # u_dᵀ S u_d = quadratic_d · (S's upper triangle)
        self._last: tuple[np.ndarray, float, np.ndarray] | None = None  # params, value, gradient

    @property
    def target(self) -> GaussianMixture:
        """q (a function given for it is called when q is first needed, once)."""
        if callable(self._target):
            self._target = self._target()
        return self._target

    def _map(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """T(x) (3, N) and the upper triangle of the symmetric J_T(x) (6, N)."""
        dk = self.d * self.k
        heights = params[:dk].reshape(self.d, 1, self.k).astype(np.float32)
        linear, bias = params[dk:dk + self.d, None], params[dk + self.d:, None]
        mapped = self.u.T @ (np.matmul(heights, self.f_t)[:, 0] + linear * self.t) + self.shift + bias
        jac = self.outer.T @ (np.matmul(heights, self.g_t)[:, 0] + linear)
        jac[[0, 3, 5]] += self.eps  # the diagonal
        return mapped, jac

    def terms(self, params: np.ndarray) -> KLTerms:
        mapped, jac = self._map(params)
        log_q, _ = self.target.log_prob_and_gradient(mapped.T)
        return KLTerms(float(-log_q.mean()), float(np.log(_det_and_cofactors(jac)[0]).mean()))

    def __call__(self, params: np.ndarray) -> tuple[float, np.ndarray]:
        if self._last is not None and np.array_equal(params, self._last[0]):
            return self._last[1], self._last[2].copy()
        n = self.n
        mapped, jac = self._map(params)
        log_q, grad_log_q = self.target.log_prob_and_gradient(mapped.T)
        det, cofactors = _det_and_cofactors(jac)
        value = float(-log_q.mean() - np.log(det).mean())
        d_mapped = -grad_log_q / n  # ∂/∂T(x_i), (N, 3)
        d_along = self.u @ d_mapped.T  # (D, N)
        d_slopes = (self.quadratic @ (cofactors / det)) / n  # u_dᵀ J⁻¹ u_d / N, (D, N)
        grad_heights = (self.f_t @ d_along.astype(np.float32)[:, :, None]
                        - self.g_t @ d_slopes.astype(np.float32)[:, :, None])
        grad = np.concatenate([grad_heights.ravel(), (d_along * self.t).sum(1) - d_slopes.sum(1), d_mapped.sum(0)])
        self._last = (params.copy(), value, grad)
        return value, grad.copy()


def _det_and_cofactors(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Determinants (N,) and cofactors (6, N) of symmetric 3×3 matrices given by their upper
    triangles (6, N) (xx xy xz yy yz zz); the inverse is cofactors / determinant."""
    a, b, c, e, f, i = m
    co = np.stack([e * i - f * f, c * f - b * i, b * f - c * e, a * i - c * c, b * c - a * f, a * e - b * b])
    return a * co[0] + b * co[1] + c * co[2], co


def fit_kl(source: np.ndarray, reference: np.ndarray, target: GaussianMixture | Callable[[], GaussianMixture],
           settings: KLSettings, sliced: SlicedSettings, entropy: float | None = None, callback=None) -> KLResult:
    """Fit the ridge map from ``source`` pixels to ``target`` (q) by the KL + μ·SW₂².

    ``reference``: the target's pixels (the SW₂ term's); ``target``: q, or a function giving it,
    called once the sliced start, which does not need q, is done (so EM can run meanwhile:
    :mod:`colorot.em_process`).  The sliced solution (``sliced``) is the start; each of ``settings.iterations`` majorise–minimise iterations then
    replaces SW₂² by its quadratic upper bound at the current map (:mod:`colorot.sliced`)
    and takes INNER_ITERATIONS L-BFGS-B steps on KL + μ·bound.  ``callback(iteration,
    value)`` after each, with the value KL + μ·SW₂² at the map the iteration started from (SW₂²
    on fixed frames, :class:`colorot.sliced.FixedSlices`; H(α) is ``entropy``, or
    :func:`dequantised_entropy` of ``source``).
    """
    from scipy.optimize import minimize

    settings.validate()
    began = time.perf_counter()
    if entropy is None:
        entropy = dequantised_entropy(source)
    problem = SlicedProblem(source, reference, sliced)
    theta, offset, costs = problem.run()
    rng = np.random.default_rng(settings.seed)
    n = min(settings.pixels, len(source))
    x = np.asarray(representative_subsample(source, n, rng), np.float64)
    x = x + rng.uniform(-DEQUANTISE, DEQUANTISE, x.shape)
    kl = Objective(problem.dictionary, sliced.eps, x, target)
    units = len(problem.gram)
    shift = problem.mean_features.astype(np.float64)[:, None] * problem.dictionary.directions[problem.direction_of]
    # μ·SW₂² ≈ (μ/3)·mean ‖T(x) − y*‖²: a frame's cost sums three directions' W₂².
    weight = settings.sw_weight / 3
    gram = problem.gram.astype(np.float64)

    def bound(params: np.ndarray, linear: np.ndarray, best_offset: np.ndarray) -> float:
        """μ/3 · (θᵀGθ − 2hᵀθ + ‖offset − offset*‖²): the SW₂ term's quadratic bound, up to a constant."""
        theta_, offset_ = params[:units], params[units:]
        return weight * (theta_ @ (gram @ theta_) - 2 * linear @ theta_ + np.sum((offset_ - best_offset) ** 2))

    def objective(params: np.ndarray, linear: np.ndarray, best_offset: np.ndarray) -> tuple[float, np.ndarray]:
        theta_, offset_ = params[:units], params[units:]
        value, grad = kl(np.concatenate([theta_, offset_ - theta_ @ shift]))
        grad_theta = grad[:units] - shift @ grad[units:] + weight * 2 * (gram @ theta_ - linear)
        return (value + bound(params, linear, best_offset),
                np.concatenate([grad_theta, grad[units:] + weight * 2 * (offset_ - best_offset)]))

    bounds = [(0.0, None if math.isinf(c) else float(c)) for c in problem.upper] + [(None, None)] * 3
    params = np.concatenate([theta, offset]).astype(np.float64)
    start_terms = kl.terms(np.concatenate([params[:units], params[units:] - params[:units] @ shift]))
    losses: list[float] = []
    kl_value = math.nan  # the KL (without −H(α)) at the current map, once an iteration has run
    for iteration in range(settings.iterations):
        linear, best_offset, cost = problem.surrogate(params[:units].astype(np.float32), params[units:])
        costs.append(cost)
        if iteration:  # the KL at this map was evaluated as the last iteration's L-BFGS-B result
            losses.append(kl_value - entropy + settings.sw_weight * cost / 3)
            if callback is not None:
                callback(iteration, losses[-1])
        linear = linear.astype(np.float64)
        result = minimize(objective, params, args=(linear, best_offset), jac=True, method="L-BFGS-B",
                          bounds=bounds, options={"maxiter": INNER_ITERATIONS})
        params = result.x
        kl_value = float(result.fun - bound(params, linear, best_offset))  # the KL there, not evaluated again
    theta, offset = params[:units], params[units:]
    if settings.iterations:
        costs.append(problem.cost(theta.astype(np.float32), offset))
        losses.append(kl_value - entropy + settings.sw_weight * costs[-1] / 3)
        if callback is not None:
            callback(settings.iterations, losses[-1])
    solution = problem.solution(theta, offset, costs, time.perf_counter() - began)
    final = kl.terms(np.concatenate([theta, solution.bias]))
    return KLResult(solution, kl.target, start_terms, final, losses, time.perf_counter() - began)
