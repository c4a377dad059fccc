"""Colour controls after the map: Photoshop's *Match Color* Neutralize, Color Intensity, Luminance.

Y(c) = wᵀc is the luma of encoded values with Rec. 709 weights w = (0.2126, 0.7152, 0.0722): of
the codes of the colour space the map was fitted in, sRGB's for untagged photos (of another space's,
such as Adobe RGB or Display P3, only an approximation of its luminance); 1 = (1, 1, 1) (so Y(1) = 1).  For a source colour x and its mapped colour y = T_t(x)
(``--strength`` t acts on the map first: T_t = (1 − t)·x + t·T(x)), in this order:

1. **neutral** n ∈ [0, 1]: y ← y − n·k, with k = T_t(g) − Y(T_t(g))·1 the cast the map gives
   mid-grey g = (½, ½, ½).  A constant shift: T_t − n·k is the gradient of φ − n·kᵀx, so the
   result **is still a monotone gradient map** (same symmetric positive-definite Jacobian).
2. **saturation** S ≥ 0: y ← Y(y)·1 + S·(y − Y(y)·1) = M_S·y, M_S = S·I + (1 − S)·1wᵀ, whose
   eigenvalues are S, S and 1.  For S > 0 the result stays **one-to-one** (det = S²·det J_T > 0:
   no two colours merge) but its Jacobian M_S·J_T is not symmetric: in general it is **no longer
   the gradient of a convex function**.  S = 0 leaves the luma only (grey).
3. **keep_luminance**: y ← y + (Y(x) − Y(y))·1: the output's luma is the source's, exactly, and
   its chroma y − Y(y)·1 the map's.  Jacobian (I − 1wᵀ)·J_T + 1wᵀ: **neither symmetric nor
   monotone in general** (tests/test_controls.py shows a map it makes non-monotone).

Every control is a function of x and T_t(x) alone, so a colour table and a ``.cube`` LUT
carry it exactly like the map.  The arithmetic is written per channel, so the same code runs
on numpy arrays and torch tensors.
"""

from __future__ import annotations

import decimal
import math
import numbers
from dataclasses import dataclass
from typing import Callable, TypeVar

import numpy as np

from colorot.errors import ConfigError

#: Rec. 709 luma weights of encoded R, G, B.
LUMA = (0.2126, 0.7152, 0.0722)
#: The largest saturation: float32's largest number (a larger S is infinite where the map's
#: colours are float32, and ∞·0 made a grey pixel NaN, written black).
MAX_SATURATION = float(np.finfo(np.float32).max)
#: The grey whose cast ``neutral`` removes.
MID_GREY = (0.5, 0.5, 0.5)

Array = TypeVar("Array")  # numpy.ndarray or torch.Tensor, (..., 3)


def luma(c):
    """Y(c) = wᵀc over the last axis, keeping it: (..., 1)."""
    return LUMA[0] * c[..., 0:1] + LUMA[1] * c[..., 1:2] + LUMA[2] * c[..., 2:3]


@dataclass(frozen=True)
class Controls:
    """The colour controls (module docstring); the defaults change nothing."""

    keep_luminance: bool = False
    saturation: float = 1.0
    neutral: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.keep_luminance, (bool, np.bool_)):  # "no" would be true
            raise ConfigError(f"keep_luminance must be True or False, not {self.keep_luminance!r}")
        for name in ("saturation", "neutral"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, decimal.Decimal)):
                raise ConfigError(f"{name} (--{name}) must be a number, not {value!r}")
            try:
                object.__setattr__(self, name, float(value))  # a Fraction or Decimal multiplies no tensor
            except OverflowError:  # an integer beyond float's range (10**400)
                object.__setattr__(self, name, math.inf)
            except ValueError:  # Decimal("sNaN")
                raise ConfigError(f"{name} (--{name}) must be a number, not {value!r}") from None
        if not 0 <= self.saturation <= MAX_SATURATION:
            raise ConfigError(f"saturation (--saturation) must be a finite number ≥ 0 (at most {MAX_SATURATION:.3g}, "
                              f"float32's largest), not {self.saturation}")
        if not 0.0 <= self.neutral <= 1.0:
            raise ConfigError(f"neutral (--neutral) must be between 0 and 1, not {self.neutral}")

    @property
    def is_identity(self) -> bool:
        return not self.keep_luminance and self.saturation == 1.0 and self.neutral == 0.0

    @property
    def monotone(self) -> bool:
        """Whether the result is still a monotone gradient map (only ``neutral`` keeps that)."""
        return not self.keep_luminance and self.saturation == 1.0

    def describe(self) -> dict:
        return {"keep_luminance": self.keep_luminance, "saturation": self.saturation, "neutral": self.neutral}

    def bind(self, evaluate: Callable[[Array], Array], *, torch_map: bool = False) -> Callable[[Array], Array]:
        """``evaluate`` (colours (N, 3) → mapped colours; torch tensors with ``torch_map``, numpy
        arrays otherwise) followed by these controls; ``evaluate`` itself when they change
        nothing.  The cast for ``neutral`` is measured once, here."""
        if self.is_identity:
            return evaluate
        cast = None
        if self.neutral:
            grey = np.asarray([MID_GREY], np.float32)
            if torch_map:
                import torch

                parameters = list(evaluate.parameters()) if hasattr(evaluate, "parameters") else []
                probe = torch.from_numpy(grey)  # on the map's own device, in its own precision
                probe = probe.to(parameters[0].device, parameters[0].dtype) if parameters else probe
                with torch.inference_mode():
                    grey = evaluate(probe).to("cpu", torch.float64).numpy()
            else:
                grey = np.asarray(evaluate(grey), np.float64)
            cast = [float(v) for v in (grey - luma(grey))[0]]
        return lambda colours: self.apply(colours, evaluate(colours), cast)

    def apply(self, x: Array, y: Array, cast: list[float] | None = None) -> Array:
        """The controlled output for source colours ``x`` and mapped colours ``y`` (both (..., 3));
        ``cast``: k of ``neutral`` (needed when neutral > 0; see :meth:`bind`)."""
        if self.neutral:
            if cast is None:
                raise ConfigError("neutral needs the map's cast at mid-grey (use Controls.bind)")
            shift = [c * self.neutral for c in cast]
            y = y - (y.new_tensor(shift) if hasattr(y, "new_tensor") else np.asarray(shift, y.dtype))
        if self.saturation != 1.0:
            grey = luma(y)
            y = grey + self.saturation * (y - grey)
        if self.keep_luminance:
            y = y + (luma(x) - luma(y))
        return y


def check_controls(controls: object) -> Controls | None:
    """``controls`` itself if it is a :class:`Controls` or None, else a ConfigError naming what it is."""
    if controls is not None and not isinstance(controls, Controls):
        what = f"the class {controls.__name__}" if isinstance(controls, type) else f"a {type(controls).__name__}"
        raise ConfigError("controls must be a colorot.controls.Controls, e.g. Controls(saturation=0.5), or None, "
                          f"not {what}")
    return controls


def refuse_with_inverse(inverse: bool, controls: Controls | None) -> None:
    """ConfigError for colour controls asked of the inverse map, which takes none."""
    if inverse and controls is not None and not controls.is_identity:
        raise ConfigError("the colour controls (--keep-luminance, --saturation, --neutral) do not apply to --inverse")
