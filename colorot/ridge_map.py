"""The ridge map as numpy arrays: its parameters, its exact evaluation, and the numpy helpers
the models share.  No torch: the default fit and ``colorot apply`` of a ridge map run on these.

A :class:`~colorot.models.RidgeMGN` is

    T(x) = Σ_h a_h w_h σ(w_hᵀx + b_h) + (VᵀV + εI) x + b,   a_h = softplus(ρ_h) ≥ 0, σ = sigmoid,

with the symmetric Jacobian J_T(x) = Σ_h a_h σ′(w_hᵀx + b_h) w_h w_hᵀ + VᵀV + εI ⪰ εI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RidgeParameters:
    """A ridge map's parameters as float64 arrays (``W``, ``biases``, ``rho``, ``V``, ``b``, as in
    :class:`~colorot.models.RidgeMGN`'s state dict) and its floor ``eps``. An affine map is a
    ridge map with no units: ``W`` (0, 3), ``biases`` and ``rho`` (0,)."""

    state: dict[str, np.ndarray]
    eps: float

    @property
    def hidden(self) -> int:
        return int(self.state["W"].shape[0])

    def forward(self, x: np.ndarray) -> np.ndarray:
        """T(x) (N, 3) of each row of ``x``, in float64."""
        return self._forward(*self._steps(x))

    def forward_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """T(x) (N, 3) and J_T(x) (N, 3, 3) of each row of ``x``, in float64."""
        x, w, step, amplitude, linear = self._steps(x)
        slopes = step * (1 - step) * amplitude  # a_h σ′(z_h)
        outer = (w[:, :, None] * w[:, None, :]).reshape(len(w), 9)  # w_h w_hᵀ, flattened
        return self._forward(x, w, step, amplitude, linear), (slopes @ outer).reshape(-1, 3, 3) + linear

    def _steps(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """x, W, the units' steps σ(w_hᵀx + b_h) (N, H), the amplitudes a_h and VᵀV + εI, in float64."""
        w, biases, v = (np.asarray(self.state[key], np.float64) for key in ("W", "biases", "V"))
        amplitude = softplus(np.asarray(self.state["rho"], np.float64))
        x = np.asarray(x, np.float64)
        step = 0.5 + 0.5 * np.tanh(0.5 * (x @ w.T + biases))  # σ, without overflow: (N, H)
        return x, w, step, amplitude, v.T @ v + self.eps * np.eye(3)

    def _forward(self, x, w, step, amplitude, linear) -> np.ndarray:
        return (step * amplitude) @ w + x @ linear + np.asarray(self.state["b"], np.float64)


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + eˣ) as torch computes it (x itself above 20), so the amplitudes are the map's."""
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))


def inverse_softplus(a: np.ndarray) -> np.ndarray:
    """ρ with softplus(ρ) = a for a > 0 (a is floored at 10⁻³⁰, an amplitude of nothing)."""
    a = np.maximum(np.asarray(a, np.float64), 1e-30)
    return a + np.log(-np.expm1(-a))


def psd_sqrt(m: np.ndarray) -> np.ndarray:
    """Symmetric square root of the PSD part of a symmetric matrix."""
    w, q = np.linalg.eigh((m + m.T) / 2)
    return (q * np.sqrt(np.clip(w, 0.0, None))) @ q.T
