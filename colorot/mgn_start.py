"""The separable start of the C-MGN and M-MGN: each RGB axis's 1-D optimal map, fitted by the network.

Along an axis u_j the optimal transport map between the source's and the target's projections
is their quantile map g_j = F_{t,j}⁻¹ ∘ F_{s,j} (monotone), and T₀(x) = Σ_j u_j g_j(u_jᵀx) is
per-channel histogram matching: the gradient of the separable convex Σ_j ∫g_j, so a monotone
gradient map.  The start gives the network that form, with every weight at full strength:

* C-MGN: the hidden units are split among the three axes; a unit h of axis j has w_h = m_h u_j, so its
  whole cascade depends on x only through u_jᵀx and the axis's block Σ_h w_h σ(z_{L−1,h}) is
  u_j f_j(u_jᵀx), f_j(t) = Σ_h m_h σ(z_{L−1,h}(t)) with z₀ = m_h t + b₀, z_l = m_h t + σ(z_{l−1}) + b_l;
* M-MGN: module j (j < 3) has every row of W_j along u_j (W_j = a u_jᵀ), so its output is
  u_j f_j(u_jᵀx), f_j(t) = s(z) Σ_h a_h σ(z_h), z = a t + b_j; modules beyond the third start at
  (almost) zero output (weights 10⁻³ along grey).

f_j is then exactly a 1-D network of the same kind (the model class with ``dim=1``), and f_j plus a
slope c_j ≥ ε and an offset d_j is fitted to g_j by least squares on :data:`GRID` source quantiles
(each 1/GRID of the source's mass, so the error is the separable map's RMS over the source).  A
C-MGN's fit starts from a staircase: unit i of k centred where g_j crosses the (i + ½)/k level of
its rise R_j, each carrying R_j/k of it (|w| = R_j/(k·span·α) with ``span`` the activation's
range, 2 for tanh); an M-MGN's from units centred at the source's (i + ½)/k quantiles along u_j,
each of weight a = 1/(α·k) (the module's slope (α Σ a)² is then about 1).  The linear part becomes VᵀV + εI = Σ_j c_j u_j u_jᵀ and b = Σ_j d_j u_j, so the whole
network is T₀'s fitted approximation: T(x) = Σ_j u_j (f_j(u_jᵀx) + c_j u_jᵀx + d_j).

This replaces the closed-form Gaussian start for the KL solver (:mod:`colorot.mgn_solver`): from it
the same majorise–minimise iterations reach a median SW2 about a third lower on six development
pairs outside the benchmark (C-MGN, 20 iterations: 0.0232 → 0.0155; M-MGN, 40: 0.0219 → 0.0149;
bench/EXPERIMENTS.md, E41).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from colorot.errors import ConfigError
from colorot.models import CMGN, MMGN, MonotoneGradientMap
from colorot.sampling import representative_subsample

#: Source quantiles (and target quantiles at the same levels) each axis's 1-D fit runs on.
GRID = 256
#: Pixels of the source and of the target the quantiles are taken from (seeded subsamples).
PIXELS = 20_000
#: Function evaluations of each axis's least-squares fit (scipy's trust-region reflective).
MAX_EVALUATIONS = 60
#: The RGB axes: the frame of the separable start.
AXES = np.eye(3)
#: Output range of each activation / potential derivative at scale 1 (softplus: unbounded; 2 as for tanh).
_SPAN = {"tanh": 2.0, "sigmoid": 1.0, "softplus": 2.0, "logcosh": 2.0}


def axis_profiles(source: np.ndarray, target: np.ndarray, *, grid: int = GRID, pixels: int = PIXELS,
                  seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(t, g) per RGB axis: the source's and the target's quantiles at levels (i + ½)/grid."""
    rng = np.random.default_rng(seed)
    xs = np.asarray(source, np.float64)
    ys = np.asarray(target, np.float64)
    xs = representative_subsample(xs, pixels, rng)
    ys = representative_subsample(ys, pixels, rng)
    levels = (np.arange(grid) + 0.5) / grid
    return [(np.quantile(xs @ u, levels), np.quantile(ys @ u, levels)) for u in AXES]


def _staircase(t: np.ndarray, g: np.ndarray, units: int, alpha: float, span: float) -> tuple[np.ndarray, np.ndarray]:
    """Centres where g crosses the (i + ½)/units levels of its rise, and each unit's |w| = rise/(units·span·α)."""
    rise = float(g[-1] - g[0])
    levels = g[0] + rise * (np.arange(units) + 0.5) / units
    centres = np.interp(levels, g, t) if rise > 0 else np.quantile(t, (np.arange(units) + 0.5) / units)
    sharpness = np.full(units, max(rise, 1e-3) / (units * span * alpha))
    return centres, sharpness


def _fit_block(block: MonotoneGradientMap, t: np.ndarray, g: np.ndarray, eps: float,
               max_evaluations: int) -> tuple[float, float, float]:
    """Least squares of block(t) + c·t + d on g over the block's weights, c ≥ ε and d (in place).

    Returns (c, d, RMS error).  A fit that fails or ends non-finite keeps the staircase."""
    from scipy.optimize import least_squares

    params = list(block.parameters())
    sizes = [p.numel() for p in params]
    tt = torch.as_tensor(t[:, None], dtype=torch.float64)

    def profile(vector: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            offset = 0
            for p, size in zip(params, sizes):
                p.copy_(torch.as_tensor(vector[offset:offset + size]).reshape(p.shape))
                offset += size
            out, _ = block._nonlinear(tt, with_jacobian=False)
        return out[:, 0].numpy()

    start = np.concatenate([p.detach().numpy().ravel() for p in params])
    residual0 = g - profile(start) - eps * t
    x0 = np.concatenate([start, [eps, float(residual0.mean())]])

    def residuals(x: np.ndarray) -> np.ndarray:
        return profile(x[:-2]) + x[-2] * t + x[-1] - g

    lower = np.full(len(x0), -np.inf)
    lower[-2] = eps
    best = x0
    try:
        result = least_squares(residuals, x0, bounds=(lower, np.inf), max_nfev=max_evaluations, x_scale="jac")
        if np.isfinite(result.x).all() and np.isfinite(result.fun).all():
            best = result.x
    except (ValueError, np.linalg.LinAlgError, FloatingPointError):
        pass
    error = residuals(best)
    profile(best[:-2])  # leave the block at the kept weights
    return float(best[-2]), float(best[-1]), float(np.sqrt(np.mean(error ** 2)))


@torch.no_grad()
def separable_start(model: MonotoneGradientMap, source: np.ndarray, target: np.ndarray, *, seed: int = 0,
                    grid: int = GRID, max_evaluations: int = MAX_EVALUATIONS) -> list[float]:
    """Set ``model`` (a C-MGN or M-MGN) to its fit of per-channel histogram matching (module docstring).

    ``source``/``target``: pixels (N, 3) in [0, 1].  Returns each axis's RMS fit error (RGB units;
    an axis with no units of its own is fitted by its slope and offset alone).
    """
    if not isinstance(model, (CMGN, MMGN)):
        raise ConfigError(f"the separable start is for the C-MGN and M-MGN, not {type(model).__name__}")
    dtype = model.V.dtype
    profiles = axis_profiles(source, target, grid=grid, seed=seed)
    alpha, span = model.scale, _SPAN[model.activation]
    slopes, offsets, errors = np.zeros(3), np.zeros(3), []
    if isinstance(model, CMGN):
        counts = [model.hidden // 3 + (1 if j < model.hidden % 3 else 0) for j in range(3)]
        weights, biases, first = np.zeros((model.hidden, 3)), np.zeros((model.layers, model.hidden)), 0
    else:
        counts = [model.hidden if j < model.modules_count else 0 for j in range(3)]
        weights = np.zeros((model.modules_count, model.hidden, 3))
        weights[3:] = 1e-3 / math.sqrt(3)  # extra modules: (almost) no output, along grey
        biases = np.zeros((model.modules_count, model.hidden))
    for j, ((t, g), units) in enumerate(zip(profiles, counts)):
        u = AXES[j]
        if units == 0:  # no units on this axis: its slope (≥ ε) and offset alone, by least squares
            slope = max(float(np.polyfit(t, g, 1)[0]) if np.ptp(t) > 0 else 0.0, model.eps)
            slopes[j], offsets[j] = slope, float(np.mean(g - slope * t))
            errors.append(float(np.sqrt(np.mean((slope * t + offsets[j] - g) ** 2))))
            continue
        if isinstance(model, CMGN):
            block = CMGN(dim=1, hidden=units, layers=model.layers, activation=model.activation, eps=model.eps,
                         scale=alpha).double()
            centres, sharpness = _staircase(t, g, units, alpha, span)
            block.W.copy_(torch.as_tensor(sharpness[:, None]))
            block.biases.copy_(torch.as_tensor(-sharpness * centres).expand(model.layers, -1))
        else:
            block = MMGN(dim=1, hidden=units, modules=1, activation=model.activation, eps=model.eps,
                         scale=alpha).double()
            # s(z)·Σ a σ(z) has slope ≈ (α Σ a)² away from its kinks: Σ a = 1/α gives slope ≈ 1.
            centres = np.quantile(t, (np.arange(units) + 0.5) / units)
            a = np.full(units, 1.0 / (alpha * units))
            block.W.copy_(torch.as_tensor(a[None, :, None]))
            block.biases.copy_(torch.as_tensor(-a * centres)[None])
        slopes[j], offsets[j], error = _fit_block(block, t, g, model.eps, max_evaluations)
        errors.append(error)
        if isinstance(model, CMGN):
            weights[first:first + units] = block.W.numpy()[:, :1] * u[None]
            biases[:, first:first + units] = block.biases.numpy()
            first += units
        else:
            weights[j] = block.W.numpy()[0] * u[None]
            biases[j] = block.biases.numpy()[0]
    model.W.copy_(torch.as_tensor(weights, dtype=dtype))
    model.biases.copy_(torch.as_tensor(biases, dtype=dtype))
    # VᵀV + εI = Σ_j c_j u_j u_jᵀ (c_j ≥ ε): V = diag(√(c_j − ε)) in the axes' frame.
    model.V.copy_(torch.as_tensor(np.diag(np.sqrt(np.maximum(slopes - model.eps, 0.0))) @ AXES, dtype=dtype))
    model.b.copy_(torch.as_tensor(AXES.T @ offsets, dtype=dtype))
    return errors
