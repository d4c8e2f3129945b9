"""``temperature``: shares ∝ natural share^(1/T) (T = 1 natural, T → ∞ uniform), as in
multilingual and multitask sampling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from smolmix.core.errors import SmolmixError
from smolmix.loop.policies.base import Proposal, TaskState, register


@register("temperature")
@dataclass(frozen=True)
class Temperature:
    temperature: float = 3.0
    name: str = "temperature"

    def __post_init__(self) -> None:
        if not self.temperature >= 1:
            raise SmolmixError(f"temperature must be at least 1, got {self.temperature}",
                               "policy.temperature")

    def propose(self, tasks: Sequence[TaskState], stage: int,
                state: dict) -> dict[str, Proposal]:
        power = 1 / self.temperature
        return {t.name: Proposal(t.natural ** power,
                                 f"natural share {t.natural:.2%} ^ (1/{self.temperature:g})",
                                 {"natural": t.natural, "temperature": self.temperature})
                for t in tasks}
