"""What a fit did: its losses and the wall time (every solver's record).

The KL solvers record KL + μ·SW₂² (nats) of the map after each iteration and the sliced solver the
sliced cost of its start and after each iteration, so the last is the saved map's. Adam records
each step's loss, of the minibatch before that step's update, as training loops do: the KL less
the source's entropy H(α), a constant it does not need (−E log q(T(x)) − E log det J_T), plus
μ·SW₂²."""

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
