"""A ridge map evaluated on the RGB cube through tabulated 1-D profiles: the same map, ~16× faster.

A :class:`~colorot.models.RidgeMGN` is ``T(x) = Σ_h a_h w_h σ(w_hᵀx + b_h) + A x + b``. Units
that share a weight row ``w`` form one ridge ``w f(wᵀx)`` with the profile
``f(t) = Σ_h a_h σ(t + b_h)``; the sliced solver's 576 units are 24 such ridges of 24 steps.
Over the cube x ∈ [0, 1]³, ``t = wᵀx`` lies in ``[Σ_i min(w_i, 0), Σ_i max(w_i, 0)]``;
there ``f`` and ``f′ = Σ_h a_h σ′(t + b_h)`` are tabulated at equally spaced knots (spacing
``δ``) and ``f`` is interpolated by cubic Hermite, whose error is at most
``δ⁴/384 · max|f⁗| ≤ δ⁴/384 · 0.128 · Σ_h a_h`` (``max|σ⁗| = 0.1277``). The knots are
spaced so that the ridges' errors, each scaled by ``|w|``, sum to at most :data:`TOLERANCE`
in the Euclidean norm of T: far below float32's own rounding of the exact map (~4·10⁻⁷ on the
sliced solver's maps) and below 1/4000 of an 8-bit code value. Evaluation is in float64.
Only numpy is needed: the profiles are built from the map's parameters as arrays
(:meth:`RidgeProfiles.from_parameters`), such as a checkpoint read without torch gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from colorot.ridge_map import softplus

if TYPE_CHECKING:
    from colorot.models import AffineMap, RidgeMGN

#: Bound on |T̃(x) − T(x)| (Euclidean, RGB in [0, 1]) over the cube.
TOLERANCE = 1e-7
#: Most knots one ridge may take; a map that would need more is left to the exact path.
MAX_KNOTS = 1 << 16
#: max |σ⁗| of the logistic sigmoid (0.12768…), rounded up.
SIGMOID_FOURTH_DERIVATIVE_MAX = 0.128
#: Colours evaluated at a time: the (colours × ridges) work arrays stay in cache.
CHUNK = 4096


class RidgeProfiles:
    """``T`` of a RidgeMGN on [0, 1]³ from per-ridge cubic Hermite tables (float64 in and out).

    Build with :meth:`from_model` or :meth:`from_parameters`, which return None when some
    ridge is too sharp for :data:`MAX_KNOTS` knots at :data:`TOLERANCE`.
    """

    def __init__(self, rows: np.ndarray, starts: np.ndarray, inverse_spacing: np.ndarray,
                 knots: np.ndarray, coefficients: np.ndarray, matrix: np.ndarray, bias: np.ndarray,
                 error_bound: float) -> None:
        self.rows = rows                      # (G, 3) the ridges' weight rows w_g
        self.starts = starts                  # (G,) first knot t_g,0 of each ridge
        self.inverse_spacing = inverse_spacing  # (G,) 1/δ_g
        self.last_cell = knots - 2            # (G,) index of each ridge's last cell
        self.offsets = np.concatenate([[0], np.cumsum(knots - 1)])[:-1]  # (G,) first cell in the flat table
        self.coefficients = coefficients      # (4, cells) cubic per cell in s ∈ [0, 1]: c0 + c1 s + c2 s² + c3 s³
        self.matrix, self.bias = matrix, bias  # the linear part A (3, 3) and b (3,)
        self.error_bound = error_bound        # the proven bound on |T̃ − T|, ≤ TOLERANCE

    @classmethod
    def from_model(cls, model: RidgeMGN | AffineMap, margin: float = 0.0) -> "RidgeProfiles | None":
        """Tabulate ``model``'s ridges (units grouped by identical weight rows); an AffineMap is a
        ridge map with no units. ``margin``: as :meth:`from_parameters`'s."""
        state = {"W": np.zeros((0, 3)), "biases": np.zeros(0), "rho": np.zeros(0)}
        state.update({key: value.detach().cpu().double().numpy() for key, value in model.state_dict().items()})
        return cls.from_parameters(state, model.eps, margin)

    @classmethod
    def from_parameters(cls, state: Mapping[str, np.ndarray], eps: float,
                        margin: float = 0.0) -> "RidgeProfiles | None":
        """Tabulate the ridge map with RidgeMGN parameters ``state`` (``W``, ``biases``, ``rho``,
        ``V``, ``b``) and floor ``eps`` (units grouped by identical weight rows). With no units
        (``W`` of shape (0, 3)) it is the affine map (VᵀV + εI)x + b. The tables cover the cube
        widened by ``margin`` on every side, [−m, 1 + m]³: over it t = wᵀx runs ‖w‖₁·m further each
        way than over the cube."""
        weights, offsets, v, bias = (np.asarray(state[key], np.float64) for key in ("W", "biases", "V", "b"))
        amplitudes = softplus(np.asarray(state["rho"], np.float64))
        matrix = v.T @ v + eps * np.eye(3)  # VᵀV + εI, in float64 like the rest
        rows, ridge_of_unit = np.unique(weights, axis=0, return_inverse=True)
        ridge_of_unit = ridge_of_unit.reshape(-1)
        reach = margin * np.abs(rows).sum(1)
        starts, ends = np.minimum(rows, 0).sum(1) - reach, np.maximum(rows, 0).sum(1) + reach
        widths = np.maximum(ends - starts, 1e-12)
        mass = np.bincount(ridge_of_unit, weights=amplitudes, minlength=len(rows))
        # Each ridge may contribute TOLERANCE / G: |w| δ⁴/384 · 0.128 · Σa ≤ TOLERANCE / G.
        scale = np.linalg.norm(rows, axis=1) * SIGMOID_FOURTH_DERIVATIVE_MAX * mass / 384
        with np.errstate(divide="ignore", over="ignore"):
            spacing = (TOLERANCE / max(len(rows), 1) / scale) ** 0.25  # inf for a ridge of (next to) zero mass
        cells = np.ceil(widths / spacing)
        if not np.isfinite(cells).all() or cells.max(initial=0) + 1 > MAX_KNOTS:
            return None
        knots = np.maximum(cells, 1).astype(np.int64) + 1
        spacings = widths / (knots - 1)
        error_bound = float((scale * spacings**4).sum())
        coefficients = [
            _ridge_cells(starts[g], spacings[g], knots[g], offsets[ridge_of_unit == g], amplitudes[ridge_of_unit == g])
            for g in range(len(rows))
        ]
        return cls(rows, starts, 1 / spacings, knots, np.concatenate([np.zeros((4, 0)), *coefficients], axis=1),
                   matrix, bias, error_bound)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """T̃ of each row of ``rgb`` (N, 3) in [0, 1]: float64 (N, 3), unclipped."""
        out = np.empty((len(rgb), 3))
        for start in range(0, len(rgb), CHUNK):
            x = np.asarray(rgb[start:start + CHUNK], dtype=np.float64)
            position = x @ self.rows.T
            position -= self.starts
            position *= self.inverse_spacing            # (n, G): knot coordinates
            cell = position.astype(np.int64)            # ≥ 0 on the cube, up to rounding
            np.clip(cell, 0, self.last_cell, out=cell)
            s = position - cell
            cell += self.offsets
            c0, c1, c2, c3 = self.coefficients
            profile = c3.take(cell)
            profile *= s
            profile += c2.take(cell)
            profile *= s
            profile += c1.take(cell)
            profile *= s
            profile += c0.take(cell)
            out[start:start + CHUNK] = profile @ self.rows + x @ self.matrix + self.bias
        return out


def _ridge_cells(start: float, spacing: float, knots: int, offsets: np.ndarray,
                 amplitudes: np.ndarray) -> np.ndarray:
    """Cubic Hermite coefficients (4, knots − 1) of f(t) = Σ a σ(t + o), per cell, in s = (t − t_i)/δ."""
    t = start + spacing * np.arange(knots)
    step = np.empty((knots, len(offsets)))
    for lo in range(0, knots, 1024):  # (knots × units) in pieces
        step[lo:lo + 1024] = 0.5 + 0.5 * np.tanh(0.5 * (t[lo:lo + 1024, None] + offsets))  # σ, overflow-free
    value = step @ amplitudes
    slope = (step * (1 - step)) @ amplitudes * spacing  # f′ in s units
    f0, f1, d0, d1 = value[:-1], value[1:], slope[:-1], slope[1:]
    return np.stack([f0, d0, 3 * (f1 - f0) - 2 * d0 - d1, 2 * (f0 - f1) + d0 + d1])
