"""The training loop: fit a monotone gradient map to a target with a KL loss.

Adam with a cosine learning-rate schedule on seeded minibatches of the source
pixels; deterministic on CPU for a given seed.  Progress goes to an optional
callback; this module never prints.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from colorot.distributions import GaussianMixture
from colorot.errors import ConfigError, TrainingError
from colorot.losses import (LOSSES, exact_kl, moment_kl, random_directions, sliced_w2_squared,
                            transport_cost)
from colorot.models import MonotoneGradientMap

#: Half an 8-bit code value: training pixels are spread uniformly over their
#: quantisation bin (dequantisation), so the source has a density and the
#: log-det term of the exact KL is meaningful.
DEQUANTISE = 0.5 / 255


#: The default training recipe, shared by the Python API and the CLI.
DEFAULT_STEPS = 1000
DEFAULT_LR = 3e-2
DEFAULT_BATCH_SIZE = 4096
#: μ of the mass-covering term μ·SW₂² (RGB units²): with SW₂ ≈ 0.03 the term is
#: ≈ 1 nat, the scale of the KL term, and it dominates as soon as mass is lost.
DEFAULT_SW_WEIGHT = 1000.0
DEFAULT_SW_DIRECTIONS = 64


@dataclass
class TrainSettings:
    """Optimisation settings."""

    steps: int = DEFAULT_STEPS
    lr: float = DEFAULT_LR
    batch_size: int = DEFAULT_BATCH_SIZE
    loss: str = "kl"
    sw_weight: float = 0.0
    sw_directions: int = DEFAULT_SW_DIRECTIONS
    transport_weight: float = 0.0
    seed: int = 0
    device: str = "cpu"

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.steps < 0 or self.batch_size < 2 or self.lr <= 0:
            raise ConfigError("steps ≥ 0, batch size ≥ 2 and lr > 0 are required")
        if self.transport_weight < 0 or self.sw_weight < 0 or self.sw_directions < 1:
            raise ConfigError("the transport and sliced-Wasserstein weights must be ≥ 0, directions ≥ 1")


@dataclass
class History:
    """What training did: loss per step and the wall time."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None


def resolve_device(device: str) -> torch.device:
    """'auto' → CUDA when available, else CPU; 'cuda' without CUDA is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available")
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


def batch_loss(model: MonotoneGradientMap, x: torch.Tensor, target: GaussianMixture,
               settings: TrainSettings, target_batch: torch.Tensor | None = None,
               directions: torch.Tensor | None = None) -> torch.Tensor:
    """The training objective on one batch of source pixels x:

    KL term (exact or moment-matching) + sw_weight · SW₂²(T(x), y) + transport_weight · E‖T(x) − x‖²,
    with y a batch of target pixels and SW₂² over ``directions``.
    """
    if settings.loss == "kl":
        mapped, jac = model.forward_and_jacobian(x)
        loss = exact_kl(mapped, jac, target)
    else:
        mapped = model(x)
        loss = moment_kl(mapped, target)
    if settings.sw_weight:
        loss = loss + settings.sw_weight * sliced_w2_squared(mapped, target_batch, directions)
    if settings.transport_weight:
        loss = loss + settings.transport_weight * transport_cost(x, mapped)
    return loss


def train(
    model: MonotoneGradientMap,
    pixels: np.ndarray,
    target: GaussianMixture,
    settings: TrainSettings,
    callback: Callable[[int, float], None] | None = None,
    target_pixels: np.ndarray | None = None,
) -> History:
    """Train ``model`` in place on source ``pixels`` (N, 3) towards ``target``.

    ``target_pixels`` (M, d) are needed when ``settings.sw_weight`` > 0: each
    step compares the mapped batch with as many target pixels, drawn afresh,
    along ``settings.sw_directions`` fresh random directions.
    ``callback(step, loss)`` is called after every step.  Raises
    :class:`TrainingError` when the loss becomes NaN or infinite.
    """
    settings.validate()
    if settings.sw_weight and target_pixels is None:
        raise ConfigError("the sliced-Wasserstein term needs the target pixels")
    device = resolve_device(settings.device)
    history = History()
    if settings.steps == 0 or not any(p.requires_grad for p in model.parameters()):
        return history
    start = time.perf_counter()
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    data = torch.as_tensor(np.asarray(pixels, dtype=np.float32), device=device)
    reference = None if target_pixels is None else torch.as_tensor(
        np.asarray(target_pixels, dtype=np.float32), device=device)
    model.to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / settings.steps))
    )
    batch = min(settings.batch_size, data.shape[0])
    for step in range(settings.steps):
        idx = torch.randint(data.shape[0], (batch,), generator=generator).to(device)
        noise = (torch.rand(batch, data.shape[1], generator=generator) * 2 - 1).to(device) * DEQUANTISE
        target_batch = directions = None
        if settings.sw_weight:
            target_batch = reference[torch.randint(reference.shape[0], (batch,), generator=generator).to(device)]
            directions = random_directions(settings.sw_directions, data.shape[1], generator).to(device)
        loss = batch_loss(model, data[idx] + noise, target, settings, target_batch, directions)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingError(
                f"the loss became non-finite at step {step + 1}; try a lower --lr or a larger --ridge"
            )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        history.losses.append(value)
        if callback is not None:
            callback(step + 1, value)
    model.eval()
    history.seconds = time.perf_counter() - start
    return history
