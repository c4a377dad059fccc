"""The defaults the CLI's options show, in a module without torch, so that the CLI starts
without importing it (``colorot apply`` on a ridge map never needs it). ``models``, ``train``
and ``transfer`` take them from here."""

import os

#: Strong-convexity floor ε: every Jacobian eigenvalue is at least this.  It is
#: the largest compression of colour space the map may apply (1000:1).
DEFAULT_EPS = 1e-3
#: The largest ε a fit takes and a checkpoint may hold: beyond it nothing is gained, and the fit's
#: float arithmetic overflowed (ε = 10³⁹: a LinAlgError; 10³⁰: an infinite loss).
MAX_EPS = 100.0
#: Half an 8-bit code value: training pixels are spread uniformly over their quantisation
#: cell (dequantisation), so the source has a density and the log-det term of the exact KL
#: is meaningful.
DEQUANTISE = 0.5 / 255
#: Pixels per Adam step.
DEFAULT_BATCH_SIZE = 4096
#: μ of Adam's mass-covering term μ·SW₂² (RGB units²): with SW₂ ≈ 0.03 the term is
#: ≈ 4.5 nats, above the KL's scale, so it dominates as soon as mass is lost
#: (measured in bench/EXPERIMENTS.md: 1000 → 5000 kept the median SW₂).
ADAM_SW_WEIGHT = 5000.0
#: Random directions of the SW₂ term per step.
DEFAULT_SW_DIRECTIONS = 64
#: Source (and target) pixels sampled, seeded, for training.
DEFAULT_MAX_PIXELS = 100_000
#: The Adam solver's recipe, shared by the Python API and the CLI.
#: 2000 steps: on development pairs outside the benchmark, 1000 → 2000 lowered SW2 by
#: 11–17 % (bench/EXPERIMENTS.md, E28), and a step costs 11–17 ms on one CPU core (E60).
DEFAULT_STEPS = 2000
#: Adam's learning rate per model: the C-MGN shares one W between its input and
#: output, so the same step moves it further and it needs a smaller one.
DEFAULT_LR = {"ridge": 5e-2, "mmgn": 3e-2, "cmgn": 1e-2}
#: Majorise–minimise iterations of the C-MGN/M-MGN KL solver (:mod:`colorot.mgn_solver`), here so
#: that resolving a fit's steps does not import torch before the target's EM has started beside it.
NETWORK_KL_ITERATIONS = 40
#: How far float pixels given to a fit, a transform or ColorAugment may stray outside [0, 1] (a
#: processed image's overshoot); 8-bit codes given as floats (0–255, a missing / 255) are refused.
FLOAT_SLACK = 0.5


def usable_cpus() -> int:
    """The CPUs this process may run on (a ``taskset``'s, a cgroup's or a batch scheduler's set), not
    the machine's: ``--jobs``' default (a 64-core node granting 4 started 64 match workers, each
    holding the reference), and whether the EM process has a core of its own."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1
