"""The strength t of a partial map ``T_t(x) = (1 − t)·x + t·T(x)``: its one check, shared by
:mod:`colorot.transforms` (the torch maps) and :mod:`colorot.apply` (the colour tables); and the
check of the Python API's True/False options (``inverse``, ``overwrite``, …)."""

from __future__ import annotations

import numpy as np

from colorot.errors import ConfigError


def check_strength(t: float) -> float:
    """``t`` as a float, or ConfigError unless 0 ≤ t ≤ 1 (a string or a bool is refused, not read)."""
    if isinstance(t, (str, bytes, bool, np.bool_)):
        raise ConfigError(f"strength (--strength) must be a number between 0 and 1, not {t!r}")
    try:
        t = float(t)
    except (TypeError, ValueError):
        raise ConfigError(f"strength (--strength) must be a number between 0 and 1, not {t!r}") from None
    if not 0.0 <= t <= 1.0:
        raise ConfigError(f"strength (--strength) must be between 0 and 1, not {t}")
    return t


def check_flags(**flags: object) -> None:
    """ConfigError for an option that is not True or False: a string such as "False" is true."""
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise ConfigError(f"{name} must be True or False, not {value!r}")
