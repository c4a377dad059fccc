"""What a fit did: the loss after each step or iteration, and the wall time (every solver's record)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class History:
    """What training did: loss per step and the wall time."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None
