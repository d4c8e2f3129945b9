"""``verdict``: smolmix's own policy, from why each task is or is not learned.

- never learned, or learned then overwritten: raise toward its measured min-share (a boost
  curve or a probe), else by ``raise_factor`` (the rule of thumb of
  :func:`smolmix.diagnose.verdicts.share_remedy`), unless it already has ``large_share`` of
  the mixture (then more of it is unlikely to help: kept, as that remedy says);
- not expressible at this size: left at its share, since more data will not teach it;
- learned and stable (at or above the threshold after each of the last ``stable_stages``
  stages): lowered by ``lower_factor``, freeing budget for the others;
- learned for the first time: kept;
- a learned task never falls below its share ÷ ``lower_factor`` in one stage, and a kept
  task never below its share, however much the others are raised (floors): what the model
  has learned keeps its data, and "kept" means kept;
- while no task is learned at all, nothing moves: then the model's size or training time,
  not one task's share, is what holds every task back.

The loop's limits bound every change per stage and cap repetition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from smolmix.core.errors import SmolmixError
from smolmix.diagnose.verdicts import (
    LARGE_SHARE,
    LEARN_THRESHOLD,
    LEARNED,
    NEVER,
    NOT_EXPRESSIBLE,
    OVERWRITTEN,
)
from smolmix.loop.policies.base import Proposal, TaskState, register


@register("verdict")
@dataclass(frozen=True)
class Verdict:
    raise_factor: float = 10.0
    lower_factor: float = 2.0
    stable_stages: int = 2
    large_share: float = LARGE_SHARE
    threshold: float = LEARN_THRESHOLD
    name: str = "verdict"

    def __post_init__(self) -> None:
        if self.raise_factor < 1 or self.lower_factor < 1 or self.stable_stages < 1:
            raise SmolmixError("raise_factor and lower_factor must be at least 1, "
                               "stable_stages at least 1", "policy")

    def propose(self, tasks: Sequence[TaskState], stage: int,
                state: dict) -> dict[str, Proposal]:
        best = max((t.accuracy[-1] for t in tasks if t.accuracy), default=None)
        if best is None or best < self.threshold:
            shown = "no score" if best is None else f"best accuracy {best:.2f}"
            return {t.name: Proposal(t.share, f"no task learned yet ({shown}, threshold "
                                     f"{self.threshold:.2f}): kept at {t.share:.2%}, since no "
                                     "one task's share is what holds them all back",
                                     {"best_accuracy": best, "threshold": self.threshold})
                    for t in tasks}
        return {t.name: self._one(t) for t in tasks}

    def _one(self, t: TaskState) -> Proposal:
        numbers = {"verdict": t.verdict, "accuracy": list(t.accuracy), "share": t.share,
                   "min_share": t.min_share, "threshold": self.threshold}
        final = t.accuracy[-1] if t.accuracy else None
        scores = f"accuracy {final:.2f} (threshold {self.threshold:.2f})" \
            if final is not None else "no score"
        if t.verdict in (NEVER, OVERWRITTEN):
            if t.min_share is not None and t.min_share > t.share:
                return Proposal(t.min_share, f"{t.verdict}, {scores}, at {t.share:.2%}: raised "
                                f"toward its measured min-share {t.min_share:.2%}", numbers)
            if t.min_share is not None:
                return Proposal(t.share, f"{t.verdict}, {scores}, although its share "
                                f"{t.share:.2%} is at or above its measured min-share "
                                f"{t.min_share:.2%}: kept", numbers, floor=t.share)
            if t.share >= self.large_share:
                return Proposal(t.share, f"{t.verdict}, {scores}, already at {t.share:.2%} "
                                f"(≥ {self.large_share:.0%}): kept, a larger share is unlikely "
                                "to help", numbers, floor=t.share)
            return Proposal(t.share * self.raise_factor,
                            f"{t.verdict}, {scores}, at {t.share:.2%}: raised (no min-share "
                            f"measured; rule of thumb ×{self.raise_factor:g})", numbers)
        if t.verdict == NOT_EXPRESSIBLE:
            return Proposal(t.share, f"{t.verdict}, {scores}: held at {t.share:.2%}, a larger "
                            "share would not teach it at this size", numbers, ceiling=t.share)
        if t.verdict == LEARNED:
            floor = t.share / self.lower_factor
            recent = t.accuracy[-self.stable_stages:]
            if len(recent) == self.stable_stages and min(recent) >= self.threshold:
                return Proposal(floor,
                                f"learned and stable ({', '.join(f'{a:.2f}' for a in recent)}"
                                f"): lowered from {t.share:.2%} to free budget", numbers,
                                floor=floor)
            return Proposal(t.share, f"learned ({scores}), not yet stable over "
                            f"{self.stable_stages} stages: kept", numbers, floor=floor)
        return Proposal(t.share, f"no verdict: kept at {t.share:.2%}", numbers)
