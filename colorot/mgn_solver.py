"""The KL solver for the C-MGN and M-MGN: full-batch L-BFGS inside majorise–minimise.

The objective is the default solver's (:mod:`colorot.kl_solver`), the exact reverse KL to
the fitted density q plus the same documented mass-covering addition:

    L(w) = KL(T_w#α ‖ q) + μ·SW₂²(T_w#α, β),
    KL(T#α ‖ q) = −E_α log q(T(x)) − E_α log det J_T(x) − H(α),

with the network's exact Jacobian (``forward_and_jacobian``) in the log-determinant, on a
fixed seeded subsample of the dequantised source pixels.  Each majorise–minimise
iteration freezes the sliced pairing at the current map (:func:`colorot.sliced.sliced_targets`,
two fresh random frames) and replaces SW₂² by its quadratic upper bound
(1/3)·mean ‖T(x) − y*‖² (a frame's cost sums three directions' W₂²); then
:data:`INNER_ITERATIONS` full-batch L-BFGS iterations (strong-Wolfe line search) minimise
KL + μ·bound over every weight of the network.  The map stays a monotone gradient
network throughout: only its weights move.

It is ``solver="auto"``'s choice for the C-MGN and M-MGN: with their activation scale α = 0.1
(:data:`colorot.models.DEFAULT_SCALE`) it reaches SW2 3–5× lower than Adam with α = 1 did, in
≈ 1/10 of the time (bench/EXPERIMENTS.md, E39–E40).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from colorot.defaults import DEQUANTISE
from colorot.distributions import GaussianMixture
from colorot.errors import ConfigError, TrainingError
from colorot.kl_solver import DEFAULT_PIXELS, DEFAULT_SW_WEIGHT
from colorot.losses import exact_kl
from colorot.models import MonotoneGradientMap
from colorot.sliced import sliced_targets
from colorot.history import History
from colorot.train import is_out_of_memory

#: Majorise–minimise iterations (the CLI's --steps for this solver) and L-BFGS iterations in each.
DEFAULT_ITERATIONS = 20
INNER_ITERATIONS = 10
#: Curvature pairs L-BFGS keeps.
HISTORY = 20
#: The weights and pixels are float32 while fitting: the same maps as float64 on development pairs
#: (SW2 within 1 %) in ≈ 70 % of the time (bench/EXPERIMENTS.md, E39).
DTYPE = torch.float32
#: Source and target pixels of the SW₂ term: 10 000 gives the maps of 20 000 (SW2 within 2 %)
#: in 70–100 % of the time (E39).
SW_PIXELS = 10_000


@dataclass
class NetworkKLSettings:
    """The network KL solver's settings (pixel counts as the ridge map's KL solver)."""

    iterations: int = DEFAULT_ITERATIONS
    pixels: int = DEFAULT_PIXELS
    sw_pixels: int = SW_PIXELS
    sw_weight: float = DEFAULT_SW_WEIGHT
    seed: int = 0

    def validate(self) -> None:
        if self.iterations < 0 or self.pixels < 2 or self.sw_pixels < 2:
            raise ConfigError("the KL solver needs ≥ 0 iterations (--steps) and ≥ 2 pixels")
        if not 0 <= self.sw_weight < math.inf:
            raise ConfigError("--sw-weight must be finite and ≥ 0")


def fit_network_kl(model: MonotoneGradientMap, source: np.ndarray, reference: np.ndarray,
                   target: GaussianMixture, settings: NetworkKLSettings, entropy: float,
                   callback: Callable[[int, float], None] | None = None) -> History:
    """Fit ``model`` (started by the caller, e.g. at the closed-form Gaussian map) in place.

    ``source``/``reference``: the source's and the target's pixels (N, 3) in [0, 1];
    ``entropy``: H(α) in nats (:func:`colorot.kl_solver.dequantised_entropy`).  The history's
    losses are KL + μ·SW₂² in nats after each iteration (SW₂² from that iteration's frames, at
    the map it started from).  An iteration that would leave the loss non-finite is undone and
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


def _fit(model, source, reference, target, settings, entropy, callback) -> History:
    began = time.perf_counter()
    history = History()
    if not settings.iterations:
        return history
    rng = np.random.default_rng(settings.seed)
    n_sw = min(settings.sw_pixels, len(source), len(reference))
    x_sw = np.asarray(source, np.float64)[rng.choice(len(source), n_sw, replace=False)]
    y_sw = np.asarray(reference, np.float64)[rng.choice(len(reference), n_sw, replace=False)]
    n_kl = min(settings.pixels, len(source))
    x_kl = np.asarray(source, np.float64)[rng.choice(len(source), n_kl, replace=False)]
    x_kl = x_kl + rng.uniform(-DEQUANTISE, DEQUANTISE, x_kl.shape)
    model.to(DTYPE).train()
    sw_points, kl_points = torch.as_tensor(x_sw, dtype=DTYPE), torch.as_tensor(x_kl, dtype=DTYPE)
    optimiser = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=INNER_ITERATIONS, history_size=HISTORY,
                                  line_search_fn="strong_wolfe")
    weight = settings.sw_weight / 3

    def kl_now() -> float:
        with torch.no_grad():
            return float(exact_kl(*model.forward_and_jacobian(kl_points), target))

    def sliced_cost() -> tuple[torch.Tensor, float]:
        with torch.no_grad():
            goal, cost = sliced_targets(model(sw_points).double().numpy(), y_sw, rng)
        return torch.as_tensor(goal, dtype=DTYPE), cost

    kl_value = kl_now()
    if not math.isfinite(kl_value):
        raise TrainingError("the loss is not finite at the start; try a larger --ridge")
    for iteration in range(settings.iterations + 1):
        goal, cost = sliced_cost()
        if iteration:  # the loss at the map this iteration starts from (the last one's result)
            history.losses.append(kl_value - entropy + settings.sw_weight * cost / 3)
            if callback is not None:
                callback(iteration, history.losses[-1])
        if iteration == settings.iterations:
            break

        def objective() -> torch.Tensor:
            optimiser.zero_grad()
            loss = exact_kl(*model.forward_and_jacobian(kl_points), target)
            if weight:
                loss = loss + weight * (model(sw_points) - goal).pow(2).sum(1).mean()
            loss.backward()
            return loss

        kept = [p.detach().clone() for p in model.parameters()]
        optimiser.step(objective)
        kl_value = kl_now()
        if not math.isfinite(kl_value) or not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            # A line search left the finite region (e.g. a module's output overflowing): keep the
            # last finite map, which is still a monotone gradient network, and stop there.
            with torch.no_grad():
                for p, value in zip(model.parameters(), kept):
                    p.copy_(value)
            break
    model.eval()
    history.seconds = time.perf_counter() - began
    return history
