"""``static``: every stage at the natural shares (by example counts); the baseline a loop
must beat."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from smolmix.loop.policies.base import Proposal, TaskState, register


@register("static")
@dataclass(frozen=True)
class Static:
    name: str = "static"

    def propose(self, tasks: Sequence[TaskState], stage: int,
                state: dict) -> dict[str, Proposal]:
        return {t.name: Proposal(t.natural, f"natural share {t.natural:.2%}",
                                 {"natural": t.natural}) for t in tasks}
