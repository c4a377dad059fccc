"""The defaults the CLI's options show, in a module without torch, so that the CLI starts
without importing it (``colorot apply`` on a ridge map never needs it). ``models``, ``train``
and ``transfer`` take them from here (and still export them under the same names)."""

#: Strong-convexity floor ε: every Jacobian eigenvalue is at least this.  It is
#: the largest compression of colour space the map may apply (1000:1).
DEFAULT_EPS = 1e-3
#: Half an 8-bit code value: training pixels are spread uniformly over their quantisation
#: cell (dequantisation), so the source has a density and the log-det term of the exact KL
#: is meaningful.
DEQUANTISE = 0.5 / 255
#: Pixels per Adam step.
DEFAULT_BATCH_SIZE = 4096
#: μ of the mass-covering term μ·SW₂² (RGB units²): with SW₂ ≈ 0.03 the term is
#: ≈ 4.5 nats, above the KL's scale, so it dominates as soon as mass is lost
#: (measured in bench/EXPERIMENTS.md: 1000 → 5000 kept the median SW₂).
DEFAULT_SW_WEIGHT = 5000.0
#: Random directions of the SW₂ term per step.
DEFAULT_SW_DIRECTIONS = 64
#: Source (and target) pixels sampled, seeded, for training.
DEFAULT_MAX_PIXELS = 100_000
