"""One stage's decision: the policy's proposal, held to the limits, as one log row per task
that says in plain words what changed and which numbers triggered it (``decisions.jsonl``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from smolmix.core.output import write_whole
from smolmix.loop.limits import fit_shares, stage_bounds
from smolmix.loop.policies.base import Policy, TaskState

DECISIONS_FILE = "decisions.jsonl"
BINDING = 1e-9  # a share this close to a bound is held by it
LIMIT_WORDS = {"cap": "its repetition cap", "change": "the per-stage change bound",
               "held": "the policy's hold", "floor": "the policy's floor"}


def _limited_by(share: float, task: str, bounds) -> str | None:
    if share >= bounds.upper[task] - BINDING:
        return bounds.upper_reason[task]
    if share <= bounds.lower[task] + BINDING:
        return (bounds.lower_reason or {}).get(task, "change")
    return None


def decide(policy: Policy, tasks: Sequence[TaskState], stage: int, state: dict,
           caps: Mapping[str, float], max_factor: float) -> list[dict]:
    """The next stage's share of every task, with the reason for each (``state``: the
    policy's, updated in place)."""
    proposal = policy.propose(tasks, stage, state)
    old = {t.name: t.share for t in tasks}
    ceilings = {n: p.ceiling for n, p in proposal.items() if p.ceiling is not None}
    floors = {n: p.floor for n, p in proposal.items() if p.floor is not None}
    bounds = stage_bounds(old, caps, max_factor, ceilings, floors)
    shares = fit_shares({n: p.weight for n, p in proposal.items()}, bounds)
    total = sum(p.weight for p in proposal.values())
    rows = []
    for t in tasks:
        p, new = proposal[t.name], shares[t.name]
        limit = _limited_by(new, t.name, bounds)
        arrow = "raised" if new > t.share + BINDING else "lowered" if new < t.share - BINDING \
            else "kept"
        text = f"stage {stage}: {t.name} {arrow} {t.share:.2%} → {new:.2%}: {p.reason}"
        proposed = p.weight / total if total > 0 else 0.0
        if limit is not None and abs(proposed - new) > 1e-6:
            text += f" (proposed {proposed:.2%}; held by {LIMIT_WORDS[limit]})"
        rows.append({"stage": stage, "task": t.name, "policy": policy.name,
                     "verdict": t.verdict, "accuracy": list(t.accuracy),
                     "old_share": t.share, "proposed_share": proposed, "new_share": new,
                     "limited_by": limit, "reason": p.reason, "numbers": p.numbers,
                     "text": text})
    return rows


def write_decisions(path: Path, rows: Sequence[dict]) -> None:
    """The whole log, every finished stage's rows in order, written whole or not at all."""
    write_whole(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
