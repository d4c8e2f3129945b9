"""``uniform``: every task the same share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from smolmix.loop.policies.base import Proposal, TaskState, register


@register("uniform")
@dataclass(frozen=True)
class Uniform:
    name: str = "uniform"

    def propose(self, tasks: Sequence[TaskState], stage: int,
                state: dict) -> dict[str, Proposal]:
        share = 1 / len(tasks)
        return {t.name: Proposal(share, f"uniform: 1/{len(tasks)} of the stage", {})
                for t in tasks}
