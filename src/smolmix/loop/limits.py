"""The limits every policy's proposal is held to: shares move at most by a factor per stage,
and no source is repeated beyond its epoch cap.

:func:`fit_shares` finds the shares closest in ratio to the proposal inside those bounds:
``share_i = clip(scale * proposal_i, lower_i, upper_i)`` with the one ``scale`` that makes
them sum to 1 (bisection; the map is monotone in ``scale``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from smolmix.core.errors import SmolmixError

TOLERANCE = 1e-12


@dataclass(frozen=True)
class Bounds:
    """Per task: the lowest and highest share the next stage may give it, and why each is what
    it is (upper: ``change``, ``cap`` or ``held``; lower: ``change`` or ``floor``)."""

    lower: dict[str, float]
    upper: dict[str, float]
    upper_reason: dict[str, str]
    lower_reason: dict[str, str] | None = None


def cap_share(available: int, used: int, max_epochs: float, budget: int) -> float:
    """The largest share of a ``budget``-example stage a source of ``available`` examples,
    ``used`` of them already trained on, may take without passing ``max_epochs`` epochs."""
    left = max(0.0, max_epochs * available - used)
    return min(1.0, left / budget) if budget > 0 else 0.0


def stage_bounds(old: Mapping[str, float], caps: Mapping[str, float], max_factor: float,
                 ceilings: Mapping[str, float] | None = None,
                 floors: Mapping[str, float] | None = None) -> Bounds:
    """Each task between ``old / max_factor`` and ``old * max_factor`` (a task at 0 may rise
    to ``1 / len(old) / max_factor``), never above its cap, nor above the ceiling a policy set
    for it (a task it holds: the budget others free goes elsewhere), nor below the floor it
    set (a task it protects: others' raises cannot push it lower)."""
    if max_factor < 1:
        raise SmolmixError(f"the per-stage change factor must be at least 1, got {max_factor:g}",
                           "max_change")
    floor_start = 1 / len(old) / max_factor
    lower, upper, why, low_why = {}, {}, {}, {}
    for task, share in old.items():
        high = share * max_factor if share > 0 else floor_start
        cap = caps.get(task, 1.0)
        upper[task], why[task] = (cap, "cap") if cap < high else (min(high, 1.0), "change")
        ceiling = (ceilings or {}).get(task)
        if ceiling is not None and ceiling < upper[task]:
            upper[task], why[task] = ceiling, "held"
        lower[task], low_why[task] = min(share / max_factor, upper[task]), "change"
        floor = (floors or {}).get(task)
        if floor is not None and floor > lower[task]:
            lower[task], low_why[task] = min(floor, upper[task]), "floor"
    return Bounds(lower, upper, why, low_why)


def check_feasible(bounds: Bounds, where: str = "stages") -> None:
    """The caps leave room for a whole stage; else a user error naming the tightest source."""
    room = sum(bounds.upper.values())
    if room < 1 - 1e-9:
        capped = sorted((t for t, r in bounds.upper_reason.items() if r == "cap"),
                        key=lambda t: bounds.upper[t])
        name = capped[0] if capped else next(iter(bounds.upper))
        raise SmolmixError(f"the stage budget cannot be met under the repetition cap: the "
                           f"sources can give {room:.0%} of it (source {name!r} is at its cap)",
                           where)


def fit_shares(proposal: Mapping[str, float], bounds: Bounds) -> dict[str, float]:
    """The shares inside ``bounds`` proportional to ``proposal`` where no bound binds."""
    check_feasible(bounds)
    if any(w < 0 for w in proposal.values()):
        raise ValueError("a proposal's weights must not be negative")
    weights = {t: max(proposal.get(t, 0.0), 0.0) for t in bounds.upper}

    def total(scale: float) -> float:
        return sum(min(max(scale * w, bounds.lower[t]), bounds.upper[t])
                   for t, w in weights.items())

    low, high = 0.0, 1.0
    while total(high) < 1 - TOLERANCE and high < 1e300:
        high *= 2
    if total(high) < 1 - TOLERANCE:  # the proposal's tasks are all at their upper bounds
        return _fill(bounds)
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if total(mid) < 1 else (low, mid)
    shares = {t: min(max(high * w, bounds.lower[t]), bounds.upper[t]) for t, w in weights.items()}
    norm = sum(shares.values())
    return {t: s / norm for t, s in shares.items()}


def _fill(bounds: Bounds) -> dict[str, float]:
    """Lower bounds, then the rest spread over the room left under each upper bound."""
    shares = dict(bounds.lower)
    rest = 1 - sum(shares.values())
    room = {t: bounds.upper[t] - shares[t] for t in shares}
    total_room = sum(room.values())
    return {t: shares[t] + rest * room[t] / total_room for t in shares}
