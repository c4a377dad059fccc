"""Maps shared by tests/test_ridge_profiles.py and tests/test_colour_table.py (imported, not collected)."""

from __future__ import annotations

import numpy as np
import torch

from colorot.models import RidgeMGN


def ridge_map(seed: int, ridges: int, steps: int, sharpness: float, height: float) -> RidgeMGN:
    """A sliced-solver-like map: ``ridges`` directions of ``steps`` steps each, step heights ≤ ``height``."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(ridges, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    model = RidgeMGN(hidden=ridges * steps)
    with torch.no_grad():
        model.W.copy_(torch.as_tensor(np.repeat(sharpness * u, steps, axis=0)))
        centres = rng.uniform(-0.5, 1.5, ridges * steps)
        model.biases.copy_(torch.as_tensor(-sharpness * centres))
        amplitude = rng.uniform(0, height, ridges * steps) / sharpness  # step height a·|w|
        with np.errstate(divide="ignore"):  # a zero height is ρ = −∞
            model.rho.copy_(torch.as_tensor(np.log(np.expm1(amplitude))))
        model.V.copy_(torch.as_tensor(rng.normal(size=(3, 3)) * 0.3))
        model.b.copy_(torch.as_tensor(rng.normal(size=3) * 0.1))
    return model.eval().requires_grad_(False)
