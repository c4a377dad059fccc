"""The training loop: fit a monotone gradient map to a target with a KL loss.

Adam with a warmed-up cosine learning-rate schedule on seeded minibatches of the source
pixels; deterministic on CPU for a given seed.  On a CUDA device each step after a short
warm-up is one replay of a captured CUDA graph (:mod:`colorot.train_step`).  Progress goes to
an optional callback; this module never prints.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from colorot.defaults import DEFAULT_BATCH_SIZE, DEFAULT_LR, DEFAULT_STEPS, DEFAULT_SW_DIRECTIONS, DEQUANTISE
from colorot.distributions import GaussianMixture
from colorot.errors import ConfigError, TrainingError
from colorot.history import History
from colorot.losses import (LOSSES, exact_kl, moment_kl, quantiles_at_levels, random_directions,
                            sliced_w2_squared, sorted_projections, transport_cost)
from colorot.models import MonotoneGradientMap
from colorot.thread_counts import torch_threads_held
from colorot.train_step import TrainingStep


#: Divergence rule: training stops with a TrainingError when the mean loss of
#: the last ``DIVERGENCE_WINDOW`` steps exceeds the starting loss by more than
#: ``DIVERGENCE_MARGIN`` + |starting loss|.  The starting loss is the loss of
#: the initial (closed-form Gaussian) map on the first ``REFERENCE_PIXELS``
#: training pixels, computed once before the first step.  A healthy run's loss
#: falls from there, after at most a brief rise in Adam's first steps (seen up
#: to +11 with a start of 15 on real photographs); a diverging one climbs by
#: orders of magnitude (10⁶ with --lr 10).  The |start| part scales the margin
#: with the objective, whose SW₂ term alone can start at tens.
DIVERGENCE_WINDOW = 20
DIVERGENCE_MARGIN = 10.0
REFERENCE_PIXELS = 4096


#: The learning rate warms up linearly over WARMUP_STEPS steps, or the first
#: WARMUP_SHARE of a shorter run (a 40-step fit onto a greyscale target tripped the
#: divergence rule with a 2-step warm-up; with 10 it does not).
WARMUP_STEPS = 50
WARMUP_SHARE = 0.25
#: CPU threads while training (restored afterwards).  A step's tensors are small
#: (4096 pixels), so more threads barely help, and when the cores are busy their
#: spin-waits slow a step ~10× (measured on 2 cores: 363 vs 32 ms; a default fit
#: 234 s vs 50 s beside one other busy process).
TRAIN_THREADS = 1

#: Directions in the fixed bank each step draws from, and reference draws whose
#: sorted projections give the target quantiles.
SW_BANK = 256
SW_REFERENCE_PIXELS = 50_000

#: The losses are read back every LOSSES_READ_EVERY steps (and after the last), not after each step,
#: so that the host does not wait for every step of a GPU (colorot.train_step); the non-finite guard,
#: the divergence rule and the callback then see each block's losses in order.
LOSSES_READ_EVERY = 50


@dataclass
class TrainSettings:
    """Optimisation settings."""

    steps: int = DEFAULT_STEPS
    lr: float = DEFAULT_LR["mmgn"]
    batch_size: int = DEFAULT_BATCH_SIZE
    loss: str = "kl"
    sw_weight: float = 0.0
    sw_directions: int = DEFAULT_SW_DIRECTIONS
    sw_smoothing: float = 0.0
    transport_weight: float = 0.0
    seed: int = 0
    device: str = "cpu"

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss (--loss) {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if not (self.steps >= 0 and self.batch_size >= 2 and 0 < self.lr < math.inf):
            raise ConfigError("steps ≥ 0, batch size ≥ 2 and a finite lr > 0 are required")
        if not (0 <= self.transport_weight < math.inf and 0 <= self.sw_weight < math.inf
                and self.sw_directions >= 1):
            raise ConfigError("the transport and sliced-Wasserstein weights must be finite and ≥ 0, "
                              "with at least one direction")


def resolve_device(device: str) -> torch.device:
    """'auto' → CUDA when available, else CPU; 'cuda' without CUDA is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available")
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"unknown device (--device) {device!r}; use auto, cpu or cuda")
    return torch.device(device)


def learning_rate_factor(step: int, steps: int) -> float:
    """lr multiplier at ``step``: a linear warm-up over min(WARMUP_STEPS, WARMUP_SHARE ·
    steps) steps, then a cosine decay to 5 %.  The warm-up keeps Adam's first, full-size
    steps from overshooting (measured: at lr 0.05 the ridge map's loss rose from
    8 to 40 in its first 20 steps on the bundled samples without it)."""
    warmup = max(1, min(WARMUP_STEPS, round(WARMUP_SHARE * steps)))
    if step < warmup:
        return (step + 1) / warmup
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def set_learning_rate(optimiser: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate: in place where it is a tensor (a captured graph's)."""
    for group in optimiser.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def batch_loss(model: MonotoneGradientMap, x: torch.Tensor, target: GaussianMixture,
               settings: TrainSettings, directions: torch.Tensor | None = None,
               target_quantiles: torch.Tensor | None = None) -> torch.Tensor:
    """The training objective on one batch of source pixels x:

    KL term (exact or moment-matching) + sw_weight · SW₂²(T(x), target) + transport_weight · E‖T(x) − x‖²,
    with SW₂² along ``directions`` against the target's quantiles at the batch's levels,
    ``target_quantiles`` (:func:`colorot.losses.quantiles_at_levels`).
    """
    if settings.loss == "kl":
        mapped, jac = model.forward_and_jacobian(x)
        loss = exact_kl(mapped, jac, target)
    else:
        mapped = model(x)
        loss = moment_kl(mapped, target)
    if settings.sw_weight:
        loss = loss + settings.sw_weight * sliced_w2_squared(mapped, directions, target_quantiles)
    if settings.transport_weight:
        loss = loss + settings.transport_weight * transport_cost(x, mapped)
    return loss


def check_divergence(losses: list[float], start: float) -> None:
    """Raise TrainingError if ``losses`` meet the divergence rule against the ``start`` loss.

    See :data:`DIVERGENCE_MARGIN`; a non-finite ``start`` disables the check.
    """
    window = DIVERGENCE_WINDOW
    if len(losses) < window or not math.isfinite(start):
        return
    recent = sum(losses[-window:]) / window
    if recent > start + DIVERGENCE_MARGIN + abs(start):
        raise TrainingError(
            f"training diverged: by step {len(losses)} the mean loss rose from {start:.3g} at the "
            f"start to {recent:.3g}; try a lower --lr"
        )


def starting_loss(model: MonotoneGradientMap, data: torch.Tensor, target: GaussianMixture,
                  settings: TrainSettings, bank: tuple[torch.Tensor, torch.Tensor] | None) -> float:
    """The loss of the untrained map on the first REFERENCE_PIXELS pixels.

    Draws nothing from the run's generator (the SW₂ term, if any, uses the first
    directions of the bank), so measuring it does not change the run.
    """
    x = data[:REFERENCE_PIXELS]
    directions = quantiles = None
    if bank is not None:
        directions = bank[0][:, :settings.sw_directions]
        quantiles = quantiles_at_levels(bank[1][:, :settings.sw_directions], x.shape[0])
    with torch.no_grad():
        return float(batch_loss(model, x, target, settings, directions, quantiles))


def direction_bank(target_pixels: np.ndarray, settings: TrainSettings, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, seeded bank of SW_BANK directions and the target's sorted projections on them.

    The reference is SW_REFERENCE_PIXELS draws from the target pixels smoothed
    by N(0, s²I), s = ``settings.sw_smoothing``: with s² the mixture's ridge,
    both loss terms aim at the same distribution (a greyscale target is then a
    thin slab, not a line no strictly monotone map can reach).  Each step draws
    ``settings.sw_directions`` directions; sorting once here makes every step
    compare against the reference's quantiles.
    """
    generator = torch.Generator().manual_seed(settings.seed + 1)
    directions = random_directions(max(SW_BANK, settings.sw_directions), target_pixels.shape[1], generator)
    pixels = torch.as_tensor(np.asarray(target_pixels, dtype=np.float32))
    picks = torch.randint(pixels.shape[0], (SW_REFERENCE_PIXELS,), generator=generator)
    noise = torch.randn(SW_REFERENCE_PIXELS, pixels.shape[1], generator=generator, dtype=torch.float32)
    reference = pixels[picks] + settings.sw_smoothing * noise
    directions = directions.to(device)  # then projected and sorted there: 0.9 s on 2 CPU cores
    return directions, sorted_projections(reference.to(device), directions)


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
    step compares the mapped batch with the target's quantiles along
    ``settings.sw_directions`` directions drawn from a fixed bank (:func:`direction_bank`).
    ``callback(step, loss)`` is called for every step, in order, in blocks of
    :data:`LOSSES_READ_EVERY` steps.  Raises
    :class:`TrainingError` when the loss becomes NaN or infinite, when the run
    diverges (:func:`check_divergence`) or when memory runs out, on the CPU or the GPU
    (:func:`is_out_of_memory`); the model is then left part-trained and must not be saved.
    """
    settings.validate()
    if settings.sw_weight and target_pixels is None:
        raise ConfigError("the sliced-Wasserstein term needs the target pixels")
    device = resolve_device(settings.device)
    with torch_threads_held(TRAIN_THREADS) if device.type == "cpu" else contextlib.nullcontext():
        try:
            return _train(model, pixels, target, settings, device, callback, target_pixels)
        except (MemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc):
                raise
            raise _out_of_memory(exc, device) from exc


#: How torch's allocators word a failed allocation in a RuntimeError (CPU on Linux and
#: Windows; CUDA and MPS).
OUT_OF_MEMORY_MESSAGES = ("can't allocate memory", "not enough memory", "out of memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True when ``exc`` is a failed allocation: MemoryError, torch.OutOfMemoryError (CUDA), or the
    RuntimeError of torch's CPU allocator ("DefaultCPUAllocator: can't allocate memory")."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in OUT_OF_MEMORY_MESSAGES)


def _out_of_memory(exc: BaseException, device: torch.device) -> TrainingError:
    """The one-line error for the allocation failure ``exc`` (the CUDA cache emptied first)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if device.type == "cuda" or isinstance(exc, torch.OutOfMemoryError):
        return TrainingError("out of GPU memory while training; try a smaller --batch-size or --max-pixels, "
                             "or --device cpu")
    return TrainingError("out of memory while training; try a smaller --batch-size or --max-pixels")


def _train(
    model: MonotoneGradientMap,
    pixels: np.ndarray,
    target: GaussianMixture,
    settings: TrainSettings,
    device: torch.device,
    callback: Callable[[int, float], None] | None,
    target_pixels: np.ndarray | None,
) -> History:
    """The loop itself; see :func:`train`."""
    history = History()
    if settings.steps == 0 or not any(p.requires_grad for p in model.parameters()):
        return history
    start = time.perf_counter()
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    data = torch.as_tensor(np.asarray(pixels, dtype=np.float32), device=device)
    bank = direction_bank(target_pixels, settings, device) if settings.sw_weight else None
    model.to(device).train()
    graphed = device.type == "cuda" and settings.loss == "kl"  # see colorot.train_step
    # A graph replays the learning rate it was captured with unless it is a tensor updated in place.
    lr = torch.tensor(settings.lr, device=device) if graphed else settings.lr
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, capturable=graphed)
    batch = min(settings.batch_size, data.shape[0])
    start_loss = starting_loss(model, data, target, settings, bank)
    bank_directions = quantiles = None
    if bank is not None:
        # The bank read at the batch's levels once (batch × SW_BANK float32: 4 MB at the default batch);
        # each step takes its directions' columns of this rather than of the whole reference (E60),
        # which is let go here (SW_REFERENCE_PIXELS × SW_BANK float32: 51 MB).
        bank_directions, quantiles = bank[0], quantiles_at_levels(bank[1], batch)
        del bank

    def compute_loss(x: torch.Tensor, columns: torch.Tensor | None) -> torch.Tensor:
        if columns is None:
            return batch_loss(model, x, target, settings)
        return batch_loss(model, x, target, settings, bank_directions[:, columns], quantiles[:, columns])

    def record(step: int, value: float) -> None:
        if not math.isfinite(value):
            raise TrainingError(
                f"the loss became non-finite at step {step + 1}; try a lower --lr or a larger --ridge"
            )
        history.losses.append(value)
        check_divergence(history.losses, start_loss)
        if callback is not None:
            callback(step + 1, value)

    runner = TrainingStep(optimiser, data, batch, None if bank_directions is None else settings.sw_directions,
                          compute_loss, graphed)
    losses = torch.empty(settings.steps, device=device)
    try:
        for step in range(settings.steps):
            set_learning_rate(optimiser, settings.lr * learning_rate_factor(step, settings.steps))
            # a batch of every pixel (as many as a batch, or fewer) takes each once: drawn with replacement,
            # its duplicates raised the SW₂ term over the start's, each pixel once, and tripped the divergence rule
            idx = (torch.randperm(batch, generator=generator) if batch == data.shape[0]
                   else torch.randint(data.shape[0], (batch,), generator=generator))
            noise = (torch.rand(batch, data.shape[1], generator=generator, dtype=torch.float32) * 2 - 1) * DEQUANTISE
            columns = None
            if bank_directions is not None:
                columns = torch.randperm(bank_directions.shape[1], generator=generator)[:settings.sw_directions]
            runner.load(idx, noise, columns)
            losses[step].copy_(runner.run())
            if (step + 1) % LOSSES_READ_EVERY == 0 or step + 1 == settings.steps:
                first = step - step % LOSSES_READ_EVERY
                for offset, value in enumerate(losses[first:step + 1].tolist()):
                    record(first + offset, value)
    finally:
        runner.release()
    model.eval()
    history.seconds = time.perf_counter() - start
    return history
