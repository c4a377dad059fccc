"""Quality measures for a colour transfer, defined so anyone can recompute them.

* :func:`sliced_w2`: sliced Wasserstein-2 distance between two pixel sets,
  SW2 = ( mean over θ of W2²(⟨θ, X⟩, ⟨θ, Y⟩) )^½ over random unit directions θ,
  each 1-D W2² computed exactly from sorted projections of equally many pixels.
* :func:`rms_displacement`: ( mean ‖T(x) − x‖² )^½ over corresponding pixels.
"""

from __future__ import annotations

import numpy as np

#: Defaults of the published figures: 256 directions, 60 000 pixels per image.
SW2_DIRECTIONS = 256
SW2_PIXELS = 60_000


def subsample(pixels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n rows of ``pixels`` drawn without replacement (all of them if fewer)."""
    pixels = np.asarray(pixels).reshape(-1, 3)
    if pixels.shape[0] <= n:
        return pixels
    return pixels[rng.choice(pixels.shape[0], n, replace=False)]


def sliced_w2(a: np.ndarray, b: np.ndarray, *, directions: int = SW2_DIRECTIONS,
              pixels: int = SW2_PIXELS, seed: int = 0) -> float:
    """Sliced Wasserstein-2 distance between pixel sets a and b, each (N, 3)."""
    rng = np.random.default_rng(seed)
    n = min(pixels, np.asarray(a).reshape(-1, 3).shape[0], np.asarray(b).reshape(-1, 3).shape[0])
    xa = subsample(a, n, rng).astype(np.float64)
    xb = subsample(b, n, rng).astype(np.float64)
    theta = rng.normal(size=(3, directions))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    pa = np.sort(xa @ theta, axis=0)
    pb = np.sort(xb @ theta, axis=0)
    return float(np.sqrt(np.mean((pa - pb) ** 2)))


def rms_displacement(source: np.ndarray, mapped: np.ndarray) -> float:
    """Root-mean-square colour displacement between corresponding pixels."""
    d = np.asarray(mapped, np.float64).reshape(-1, 3) - np.asarray(source, np.float64).reshape(-1, 3)
    return float(np.sqrt(np.mean(np.sum(d * d, axis=1))))
