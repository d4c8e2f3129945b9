"""``excess-loss``: DoReMi's domain-weight update (Xie et al. 2023, arXiv 2305.10429) at stage
granularity, on the student itself (DoReMi uses a small proxy model).

After each stage, with ``λ_i = max(L_i − L_ref_i, 0)`` the task's held-out loss above a
reference model's: ``w_i ← w_i exp(η λ_i)``, normalised, then ``(1 − c) w + c / K``.
The weights start at the first stage's shares.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from smolmix.core.errors import SmolmixError
from smolmix.loop.policies.base import Proposal, TaskState, register


@register("excess-loss")
@dataclass(frozen=True)
class ExcessLoss:
    step_size: float = 1.0  # η
    smoothing: float = 1e-3  # c
    name: str = "excess-loss"

    def propose(self, tasks: Sequence[TaskState], stage: int,
                state: dict) -> dict[str, Proposal]:
        weights = state.setdefault("weights", {t.name: t.share for t in tasks})
        excess = {}
        for t in tasks:
            if t.heldout_loss is None or t.reference_loss is None:
                raise SmolmixError(f"excess-loss needs each task's held-out loss and the "
                                   f"reference model's; {t.name!r} lacks one", "policy")
            excess[t.name] = max(t.heldout_loss - t.reference_loss, 0.0)
        top = max(self.step_size * e for e in excess.values())
        raw = {n: weights[n] * math.exp(self.step_size * excess[n] - top) for n in weights}
        total = sum(raw.values())
        k = len(raw)
        weights.update({n: (1 - self.smoothing) * w / total + self.smoothing / k
                        for n, w in raw.items()})
        return {t.name: Proposal(weights[t.name],
                                 f"held-out loss {t.heldout_loss:.3f} vs reference "
                                 f"{t.reference_loss:.3f}: excess {excess[t.name]:.3f}",
                                 {"heldout_loss": t.heldout_loss,
                                  "reference_loss": t.reference_loss,
                                  "excess": excess[t.name]})
                for t in tasks}
