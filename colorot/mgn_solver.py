"""The KL solver for the C-MGN and M-MGN: a separable start, then full-batch L-BFGS inside majorise–minimise.

The objective is the default solver's (:mod:`colorot.kl_solver`), the exact reverse KL to
the fitted density q plus the same documented mass-covering addition:

    L(w) = KL(T_w#α ‖ q) + μ·SW₂²(T_w#α, β),
    KL(T#α ‖ q) = −E_α log q(T(x)) − E_α log det J_T(x) − H(α),

with the network's exact Jacobian (``forward_and_jacobian``) in the log-determinant, on a
fixed seeded subsample of the dequantised source pixels.

Start (``start="separable"``, the default): the network's own fit of per-channel histogram
matching (:func:`colorot.mgn_start.separable_start`): every unit along one RGB axis, at full strength.
Where the closed-form Gaussian map (Adam's start) scores under :data:`GAUSSIAN_START_MARGIN` of the
separable start's loss, the fit starts from it instead: on images of few colours the separable
start can hold L-BFGS between the target's colours (bench/EXPERIMENTS.md, E66).
``start="given"`` keeps the caller's start (e.g. the closed-form Gaussian map).

Each majorise–minimise iteration freezes the sliced pairing at the current map
(:func:`colorot.sliced.sliced_targets`, :data:`FRAMES` fresh random frames averaged) and replaces
SW₂² by its quadratic upper bound (1/3)·mean ‖T(x) − y*‖² (a frame's cost sums three directions'
W₂²); then :data:`INNER_ITERATIONS` full-batch L-BFGS iterations (strong-Wolfe line search) minimise
KL + μ·bound over every weight of the network.  The map stays a monotone gradient network
throughout: only its weights move.

It is ``solver="auto"``'s choice for the C-MGN and M-MGN.  The separable start, 40 iterations on
2 500 KL and 5 000 SW₂ pixels and four frames an iteration were chosen on development pairs outside
the benchmark (bench/EXPERIMENTS.md, E41): median SW2 on six development pairs C-MGN 0.0232 → 0.0119,
M-MGN 0.0304 → 0.0116, against the Gaussian start with 20 iterations on 5 000 / 10 000 pixels and
two frames, in about the same time.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from colorot.defaults import DEQUANTISE, NETWORK_KL_ITERATIONS
from colorot.distributions import GaussianMixture
from colorot.errors import ConfigError, TrainingError
from colorot.kl_solver import DEFAULT_RIDGE, DEFAULT_SW_WEIGHT
from colorot.losses import exact_kl
from colorot.mgn_start import separable_start
from colorot.models import MonotoneGradientMap
from colorot.sliced import FixedSlices, sliced_targets
from colorot.history import History
from colorot.train import is_out_of_memory
from colorot.sampling import representative_subsample

#: L-BFGS iterations in each majorise–minimise iteration (their count: defaults.NETWORK_KL_ITERATIONS).
INNER_ITERATIONS = 10
#: Curvature pairs L-BFGS keeps.
HISTORY = 20
#: The weights and pixels are float32 while fitting: the same maps as float64 on development pairs
#: (SW2 within 1 %) in ≈ 70 % of the time (bench/EXPERIMENTS.md, E39).
DTYPE = torch.float32
#: Dequantised source pixels of the KL, and source and target pixels of the SW₂ term: half of E39's
#: 5 000 / 10 000, for twice the iterations in the same time (E41: median SW2 0.0155 → 0.0131 on
#: development pairs; a quarter of them was worse, 0.0199).
KL_PIXELS = 2_500
SW_PIXELS = 5_000
#: Random orthonormal frames averaged in each iteration's sliced pairing (E41: 4 against 2, median SW2
#: 0.0131 → 0.0123 on development pairs).
FRAMES = 4
#: How the fit starts: the network's separable fit of per-channel histogram matching, or as given.
STARTS = ("separable", "given")
#: The separable start gives way to the closed-form Gaussian map where that start's loss is under
#: this fraction of its own (bench/EXPERIMENTS.md, E66): on an image of two colours the separable
#: start held L-BFGS between the target's colours (its loss 2 700 times the Gaussian start's); on
#: the 36 photograph fits measured the ratio was 0.35 or more, and the separable start fitted better.
GAUSSIAN_START_MARGIN = 0.05


@dataclass
class NetworkKLSettings:
    """The network KL solver's settings."""

    iterations: int = NETWORK_KL_ITERATIONS
    pixels: int = KL_PIXELS
    sw_pixels: int = SW_PIXELS
    sw_weight: float = DEFAULT_SW_WEIGHT
    frames: int = FRAMES
    start: str = "separable"
    seed: int = 0
    ridge: float = DEFAULT_RIDGE  #: the source covariance's ridge in the Gaussian start it may take

    def validate(self) -> None:
        if self.iterations < 0 or self.pixels < 2 or self.sw_pixels < 2 or self.frames < 1:
            raise ConfigError("the KL solver needs ≥ 0 iterations (--steps), ≥ 2 pixels and ≥ 1 frame")
        if self.start not in STARTS:
            raise ConfigError(f"unknown start {self.start!r}; choose one of {', '.join(STARTS)}")
        if not 0 <= self.sw_weight < math.inf:
            raise ConfigError("--sw-weight must be finite and ≥ 0")


@dataclass
class NetworkKLResult:
    """What :func:`fit_network_kl` did (the loss per iteration, the wall time) and the density q it
    fitted to (``target`` resolved when it was given as a function)."""

    history: History
    target: GaussianMixture


def fit_network_kl(model: MonotoneGradientMap, source: np.ndarray, reference: np.ndarray,
                   target: GaussianMixture | Callable[[], GaussianMixture], settings: NetworkKLSettings, entropy: float,
                   callback: Callable[[int, float], None] | None = None) -> NetworkKLResult:
    """Fit ``model`` in place: from the separable start (``settings.start``; with 0 iterations, the
    start alone), or from the caller's (``start="given"``, e.g. the closed-form Gaussian map).

    ``source``/``reference``: the source's and the target's pixels (N, 3) in [0, 1];
    ``target``: the fitted density, or a function that returns it, called once after the start
    (e.g. :meth:`colorot.em_process.BackgroundEM.result`: EM runs while the start is fitted);
    ``entropy``: H(α) in nats (:func:`colorot.kl_solver.dequantised_entropy`).  Returns the
    history and q itself (:class:`NetworkKLResult`); the history's losses are KL + μ·SW₂² in nats
    after each iteration (SW₂² on fixed frames, :class:`colorot.sliced.FixedSlices`, at the map it
    started from).  An iteration that would leave the loss non-finite is undone and
    the fit stops there (the history then has fewer entries than ``settings.iterations``).
    Raises TrainingError when the loss is not finite at the start or memory runs out.
    """
    settings.validate()
    try:  # on torch's threads: two are 1.3–1.7× faster than one here (E40); `match --jobs` sets one per worker
        return _fit(model, source, reference, target, settings, entropy, callback)
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        raise TrainingError("out of memory while fitting; try a smaller --max-pixels") from exc
    finally:
        model.float()


def _fit(model, source, reference, target, settings, entropy, callback) -> NetworkKLResult:
    began = time.perf_counter()
    history = History()
    if settings.start == "separable":
        separable_start(model, source, reference, seed=settings.seed)
    if callable(target):
        target = target()
    if not settings.iterations:
        history.seconds = time.perf_counter() - began
        return NetworkKLResult(history, target)
    rng = np.random.default_rng(settings.seed)
    n_sw = min(settings.sw_pixels, len(source), len(reference))
    x_sw = np.asarray(representative_subsample(source, n_sw, rng), np.float64)
    y_sw = np.asarray(representative_subsample(reference, n_sw, rng), np.float64)
    n_kl = min(settings.pixels, len(source))
    x_kl = np.asarray(representative_subsample(source, n_kl, rng), np.float64)
    x_kl = x_kl + rng.uniform(-DEQUANTISE, DEQUANTISE, x_kl.shape)
    model.to(DTYPE).train()
    problem = _Problem(torch.as_tensor(x_sw, dtype=DTYPE), torch.as_tensor(x_kl, dtype=DTYPE), y_sw,
                       FixedSlices(y_sw), target, entropy, settings)
    if settings.start == "separable":
        _gaussian_start_where_far_lower(model, source, problem)
    descent = _Descent(model, problem, rng)
    for iteration in range(1, settings.iterations + 1):
        descent.step()
        if descent.stopped:
            break
        if callback is not None:
            callback(iteration, descent.losses[-1])
    model.eval()
    history.losses, history.seconds = descent.losses, time.perf_counter() - began
    return NetworkKLResult(history, target)


def _gaussian_start_where_far_lower(model: MonotoneGradientMap, source: np.ndarray, problem: "_Problem") -> None:
    """Put ``model`` (at its separable start) at the closed-form Gaussian map instead (Adam's start)
    where that start's loss is under :data:`GAUSSIAN_START_MARGIN` times the separable one's (or the
    separable one's is +∞); nothing where the Gaussian start cannot be made (a flat source with
    ``ridge`` 0).  Neither touches the fit's generator."""
    from colorot.distributions import gaussian_moments

    rival = copy.deepcopy(model)
    points = source[::max(1, len(source) // 20_000)][:20_000]  # spread over the source (its rows may be in colour order)
    try:
        mean_s, cov_s = gaussian_moments(source, problem.settings.ridge)
        rival.init_to_gaussian_map(mean_s, cov_s, problem.target.mean, problem.target.covariance, points,
                                   seed=problem.settings.seed)
    except ConfigError:
        return
    rival.to(DTYPE)
    if not problem.loss_at(rival) < GAUSSIAN_START_MARGIN * problem.loss_at(model):  # NaN: not lower
        return
    with torch.no_grad():
        for mine, theirs in zip(model.parameters(), rival.parameters()):
            mine.copy_(theirs)


@dataclass
class _Problem:
    """What a fit's choice of start and its descent share: the SW₂ and KL pixels, the target's SW₂
    pixels and the fixed frames the reported cost is measured on, the density q, H(α), the settings."""

    sw_points: torch.Tensor
    kl_points: torch.Tensor
    y_sw: np.ndarray
    report: FixedSlices
    target: GaussianMixture
    entropy: float
    settings: NetworkKLSettings

    def kl(self, model: MonotoneGradientMap) -> float:
        """KL(T#α ‖ q) + H(α) of ``model`` on the KL pixels (the exact KL without −H(α))."""
        with torch.no_grad():
            return float(exact_kl(*model.forward_and_jacobian(self.kl_points), self.target))

    def loss(self, kl_value: float, cost: float) -> float:
        """The reported loss, KL + μ·SW₂² in nats, from :meth:`kl` and a fixed-frames ``cost`` (3·SW₂²)."""
        return kl_value - self.entropy + self.settings.sw_weight * cost / 3

    def loss_at(self, model: MonotoneGradientMap) -> float:
        """The reported loss of ``model``."""
        with torch.no_grad():
            mapped = model(self.sw_points).double().numpy()
        return self.loss(self.kl(model), self.report.cost(mapped))


class _Descent:
    """Majorise–minimise by full-batch L-BFGS of a network from its start (module docstring), an
    iteration at a time: ``losses`` after each (KL + μ·SW₂², nats, SW₂² on the fixed frames).  An
    iteration that would leave the loss or a weight non-finite is undone and the descent stops
    there (``stopped``).  TrainingError when the loss is not finite at the start."""

    def __init__(self, model: MonotoneGradientMap, problem: _Problem, rng: np.random.Generator) -> None:
        self.model, self.problem, self.rng = model, problem, rng
        self.optimiser = LBFGS(model.parameters(), max_iter=INNER_ITERATIONS, history_size=HISTORY)
        self.losses: list[float] = []
        self.stopped = False
        if not math.isfinite(problem.kl(model)):
            raise TrainingError("the loss is not finite at the start; try a larger --ridge")
        self.goal, _ = self._sliced()  # the first iteration's goal (its random frames)

    def _sliced(self) -> tuple[torch.Tensor, float]:
        """The next iteration's goal (fresh random frames) and the reported cost (the fixed frames)."""
        with torch.no_grad():
            mapped = self.model(self.problem.sw_points).double().numpy()
        goal = sliced_targets(mapped, self.problem.y_sw, self.rng, frames=self.problem.settings.frames)
        return torch.as_tensor(goal, dtype=DTYPE), self.problem.report.cost(mapped)

    def step(self) -> None:
        """One iteration: INNER_ITERATIONS L-BFGS iterations on KL + μ·bound at the current goal."""
        model, problem, goal = self.model, self.problem, self.goal
        weight = problem.settings.sw_weight / 3

        def objective() -> torch.Tensor:
            self.optimiser.zero_grad()
            loss = exact_kl(*model.forward_and_jacobian(problem.kl_points), problem.target)
            if weight:
                loss = loss + weight * (model(problem.sw_points) - goal).pow(2).sum(1).mean()
            loss.backward()
            return loss

        kept = [p.detach().clone() for p in model.parameters()]
        self.optimiser.step(objective)
        kl_value = problem.kl(model)
        if not math.isfinite(kl_value) or not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            # A line search left the finite region (e.g. a module's output overflowing): keep the
            # last finite map, which is still a monotone gradient network, and stop there.
            with torch.no_grad():
                for p, value in zip(model.parameters(), kept):
                    p.copy_(value)
            self.stopped = True
            return
        self.goal, cost = self._sliced()
        self.losses.append(problem.loss(kl_value, cost))


#: L-BFGS's tolerances (torch.optim.LBFGS's defaults).
_TOLERANCE_GRAD = 1e-7
_TOLERANCE_CHANGE = 1e-9


def _cubic_minimum(x1, f1, g1, x2, f2, g2, bounds=None):
    """The minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), clipped to ``bounds``
    (default: between x1 and x2); their midpoint when the cubic has none."""
    low, high = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    if not all(map(math.isfinite, (x1, f1, g1, x2, f2, g2))):  # an end where the loss was not finite: bisect
        return (low + high) / 2.0
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 * d1 - g1 * g2
    if d2_square < 0:
        return (low + high) / 2.0
    d2 = math.sqrt(d2_square)
    if x1 <= x2:
        at = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        at = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(at, low), high)


def _strong_wolfe(evaluate, t, d, f, g, gtd, max_evaluations, c1=1e-4, c2=0.9):
    """A step t along d meeting the strong Wolfe conditions (bracketing, then cubic zoom): the
    algorithm of torch.optim.LBFGS.  ``evaluate(t)`` → (loss, flat gradient) at x + t·d; a step
    whose loss is not finite comes back as (inf, 0), fails the sufficient-decrease test and is
    bisected away from (torch's would carry the NaN into the weights).
    Returns (loss, gradient, t, evaluations)."""
    d_norm = float(d.abs().max())
    f_new, g_new = evaluate(t)
    evaluations, gtd_new = 1, float(g_new.dot(d))
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done, iteration = False, 0
    while iteration < max_evaluations:
        if f_new > f + c1 * t * gtd or (iteration > 1 and f_new >= f_prev):
            bracket, bracket_f, bracket_g, bracket_gtd = [t_prev, t], [f_prev, f_new], [g_prev, g_new], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g, done = [t], [f_new], [g_new], True
            break
        if gtd_new >= 0:
            bracket, bracket_f, bracket_g, bracket_gtd = [t_prev, t], [f_prev, f_new], [g_prev, g_new], [gtd_prev, gtd_new]
            break
        step = _cubic_minimum(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(t + 0.01 * (t - t_prev), t * 10))
        t_prev, f_prev, g_prev, gtd_prev = t, f_new, g_new, gtd_new
        t = step
        f_new, g_new = evaluate(t)
        evaluations, gtd_new, iteration = evaluations + 1, float(g_new.dot(d)), iteration + 1
    if iteration == max_evaluations:
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]
    insufficient = False
    low, high = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and iteration < max_evaluations:
        if abs(bracket[1] - bracket[0]) * d_norm < _TOLERANCE_CHANGE:
            break
        t = _cubic_minimum(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        margin = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < margin:  # too close to an end: move inside
            if insufficient or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - margin if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + margin
                insufficient = False
            else:
                insufficient = True
        else:
            insufficient = False
        f_new, g_new = evaluate(t)
        evaluations, gtd_new, iteration = evaluations + 1, float(g_new.dot(d)), iteration + 1
        if f_new > f + c1 * t * gtd or f_new >= bracket_f[low]:
            bracket[high], bracket_f[high], bracket_g[high], bracket_gtd[high] = t, f_new, g_new, gtd_new
            low, high = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:
                bracket[high], bracket_f[high], bracket_g[high], bracket_gtd[high] = (
                    bracket[low], bracket_f[low], bracket_g[low], bracket_gtd[low])
            bracket[low], bracket_f[low], bracket_g[low], bracket_gtd[low] = t, f_new, g_new, gtd_new
    return bracket_f[low], bracket_g[low], bracket[low], evaluations


class LBFGS:
    """Full-batch L-BFGS with a strong-Wolfe line search over a module's parameters as one flat vector.

    The algorithm of ``torch.optim.LBFGS(lr=1, line_search_fn="strong_wolfe")`` (its curvature pairs
    kept across :meth:`step` calls), written out because constructing any ``torch.optim`` optimiser
    imports torch's compiler stack: ≈ 2 s of a 10 s fit in a fresh process (bench/EXPERIMENTS.md, E41).
    One difference: a line-search step to a non-finite loss is treated as an infinite loss and
    stepped back from (:func:`_strong_wolfe`), where torch's would take it.
    """

    def __init__(self, params, max_iter: int, history_size: int) -> None:
        self.params = list(params)
        self.max_iter, self.max_eval, self.history_size = max_iter, max_iter * 5 // 4, history_size
        self.dirs: list[torch.Tensor] = []
        self.steps: list[torch.Tensor] = []
        self.rho: list[float] = []
        self.h_diag = 1.0
        self.d = None
        self.t = 0.0
        self.prev_grad = None
        self.iterations = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _flat_grad(self) -> torch.Tensor:
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in self.params])

    def _add(self, t: float, d: torch.Tensor) -> None:
        offset = 0
        for p in self.params:
            p.add_(d[offset:offset + p.numel()].view_as(p), alpha=t)
            offset += p.numel()

    @torch.no_grad()
    def step(self, closure) -> float:
        """Up to ``max_iter`` iterations on ``closure`` (zeroes the gradients, returns the loss after backward)."""
        closure = torch.enable_grad()(closure)
        loss = float(closure())
        evaluations, grad = 1, self._flat_grad()
        if not math.isfinite(loss) or not bool(torch.isfinite(grad).all()) or float(grad.abs().max()) <= _TOLERANCE_GRAD:
            return loss  # nowhere to go from a non-finite loss (the caller checks it), or already stationary
        for n in range(1, self.max_iter + 1):
            self.iterations += 1
            if self.iterations == 1:
                d = -grad
            else:
                y, s = grad - self.prev_grad, self.d * self.t
                ys = float(y.dot(s))
                if ys > 1e-10:
                    if len(self.dirs) == self.history_size:
                        self.dirs.pop(0), self.steps.pop(0), self.rho.pop(0)
                    self.dirs.append(y), self.steps.append(s), self.rho.append(1.0 / ys)
                    self.h_diag = ys / float(y.dot(y))
                q, alphas = -grad, [0.0] * len(self.dirs)
                for i in range(len(self.dirs) - 1, -1, -1):
                    alphas[i] = float(self.steps[i].dot(q)) * self.rho[i]
                    q.add_(self.dirs[i], alpha=-alphas[i])
                d = q * self.h_diag
                for i in range(len(self.dirs)):
                    beta = float(self.dirs[i].dot(d)) * self.rho[i]
                    d.add_(self.steps[i], alpha=alphas[i] - beta)
            self.prev_grad = grad.clone()
            previous = loss
            t = min(1.0, 1.0 / float(grad.abs().sum())) if self.iterations == 1 else 1.0
            self.d, self.t = d, t
            gtd = float(grad.dot(d))
            if gtd > -_TOLERANCE_CHANGE:
                break
            start = [p.clone() for p in self.params]

            def evaluate(step: float):
                self._add(step, d)
                value = float(closure())
                flat = self._flat_grad()
                if not (math.isfinite(value) and bool(torch.isfinite(flat).all())):
                    value, flat = math.inf, torch.zeros_like(flat)
                for p, x in zip(self.params, start):
                    p.copy_(x)
                return value, flat

            loss, grad, t, used = _strong_wolfe(evaluate, t, d, loss, grad, gtd, self.max_eval - evaluations)
            self._add(t, d)
            self.t = t
            evaluations += used
            if (n == self.max_iter or evaluations >= self.max_eval or float(grad.abs().max()) <= _TOLERANCE_GRAD
                    or float((d * t).abs().max()) <= _TOLERANCE_CHANGE or abs(loss - previous) < _TOLERANCE_CHANGE):
                break
        return loss
