"""``odm``: Online Data Mixing (Albalak et al. 2023, arXiv 2312.02406) at stage granularity.

EXP3 with each task an arm and its training loss the reward. After each stage, for every
task trained in it: ``R_i ← α R_i + (1 − α) L_i / π_i``, where ``L_i`` is its training loss
in that stage and ``π_i`` the share it had (the paper's importance weight). The next stage's
shares: ``π_i = (1 − K ε) softmax(ε_prev R)_i + ε`` with ``ε = min(1/K, sqrt(ln K / (K t)))``
at round ``t`` and ``ε_prev`` the previous round's (``ε_0 = 1/K``).

In the paper a round is one optimizer step (the exploration rate decays with training), and
the reward is updated after every batch for the one domain it held; here the reward is updated
once per stage, for every task, and ``t`` counts the training steps so far (``rounds: steps``,
the default) or the stages (``rounds: stages``). Counted in stages, ε stays at 1/K for the
first K ln K stages, where the shares are exactly uniform.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from smolmix.core.errors import SmolmixError
from smolmix.loop.policies.base import Proposal, TaskState, register


def exploration(k: int, round_: int) -> float:
    """ε for round ``round_`` (``ε_0 = 1/K``)."""
    if round_ <= 0:
        return 1 / k
    return min(1 / k, math.sqrt(math.log(k) / (k * round_)))


def exp3_shares(rewards: dict[str, float], round_: int) -> dict[str, float]:
    """The shares of round ``round_`` from the smoothed reward estimates."""
    k = len(rewards)
    eps, eps_prev = exploration(k, round_), exploration(k, round_ - 1)
    top = max(rewards.values())
    exps = {t: math.exp(eps_prev * (r - top)) for t, r in rewards.items()}
    total = sum(exps.values())
    return {t: (1 - k * eps) * e / total + eps for t, e in exps.items()}


@register("odm")
@dataclass(frozen=True)
class OnlineDataMixing:
    smoothing: float = 0.9  # the paper's α
    rounds: str = "steps"
    name: str = "odm"

    def __post_init__(self) -> None:
        if not 0 <= self.smoothing < 1:
            raise SmolmixError(f"smoothing must be in [0, 1), got {self.smoothing}",
                               "policy.smoothing")
        if self.rounds not in ("steps", "stages"):
            raise SmolmixError(f"rounds must be steps or stages, got {self.rounds!r}",
                               "policy.rounds")

    def propose(self, tasks: Sequence[TaskState], stage: int,
                state: dict) -> dict[str, Proposal]:
        rewards = state.setdefault("rewards", {t.name: 0.0 for t in tasks})
        for t in tasks:  # an arm not played this stage (no examples) keeps its estimate
            if t.share > 0 and t.train_loss is not None:
                rewards[t.name] = (self.smoothing * rewards[t.name]
                                   + (1 - self.smoothing) * t.train_loss / t.share)
        steps = tasks[0].steps if tasks else None
        round_ = steps if self.rounds == "steps" and steps is not None else stage
        state["round"] = round_ + 1
        shares = exp3_shares(rewards, round_ + 1)
        return {t.name: Proposal(shares[t.name],
                                 (f"EXP3: training loss {t.train_loss:.3f} at share "
                                  f"{t.share:.2%}" if t.train_loss is not None else
                                  "EXP3: not trained this stage")
                                 + f" → reward estimate {rewards[t.name]:.3f}",
                                 {"train_loss": t.train_loss, "reward": rewards[t.name],
                                  "round": round_ + 1,
                                  "epsilon": exploration(len(tasks), round_ + 1)})
                for t in tasks}
