"""Strategies that turn available counts into mixture shares.

The unit of allocation is a *bucket*: the examples of one source with one task and one set of
tags. Task-level strategies (``natural``, ``uniform``, ``temperature``, ``boost``, ``floor``) set
each task's share; bucket-level strategies (``mix_long``, ``mix_large``) set how a task's share
splits between tag values, by iterative proportional fitting so that several of them compose.
Within a task, buckets otherwise share in proportion to their counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from smolmix.core.errors import SmolmixError

IPF_ITERATIONS = 10_000
IPF_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Bucket:
    """Examples of one source that share a task and tags; ``count`` is how many are available."""

    source: str
    task: str
    tags: tuple[tuple[str, str], ...]
    count: int

    def tag(self, key: str) -> str | None:
        return dict(self.tags).get(key)


def task_counts(buckets: Sequence[Bucket]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for b in buckets:
        counts[b.task] = counts.get(b.task, 0) + b.count
    return counts


def _normalise(weights: Mapping[str, float], where: str) -> dict[str, float]:
    if any(w < 0 for w in weights.values()):
        raise SmolmixError("weights must not be negative", where)
    total = sum(weights.values())
    if total <= 0:
        raise SmolmixError("weights are all zero", where)
    return {k: w / total for k, w in weights.items()}


def temperature(counts: Mapping[str, int], alpha: float, where: str = "temperature") -> dict:
    """Share ∝ count**alpha: alpha=1 is ``natural``, alpha=0 is ``uniform``. Powers too large
    for a float (a large alpha) are taken relative to the largest count."""
    try:
        powers = {t: (float(c) ** alpha if c > 0 else 0.0) for t, c in counts.items()}
        if all(math.isfinite(v) for v in powers.values()):
            return _normalise(powers, where)
    except OverflowError:
        pass
    top = max(counts.values())
    return _normalise({t: (math.exp(alpha * (math.log(c) - math.log(top))) if c > 0 else 0.0)
                       for t, c in counts.items()}, where)


def weights(counts: Mapping[str, int], given: Mapping[str, float],
            where: str = "weights") -> dict[str, float]:
    """Shares ∝ the given task weights (tasks not named get none)."""
    unknown = sorted(set(given) - set(counts))
    if unknown:
        raise SmolmixError(f"weights name unknown task {unknown[0]!r}", where)
    return _normalise({t: given.get(t, 0.0) for t in counts}, where)


def boost(shares: Mapping[str, float], targets: Mapping[str, float],
          where: str = "boost") -> dict[str, float]:
    """Set each target task to its share; the other tasks keep their ratios and fill the rest."""
    for task, share in targets.items():
        if task not in shares:
            raise SmolmixError(f"boost task {task!r} is not in the mixture", where)
        if not 0.0 < share < 1.0:
            raise SmolmixError(f"boost share for {task!r} must be in (0, 1), got {share}", where)
    fixed = sum(targets.values())
    if fixed > 1.0 + 1e-12:
        raise SmolmixError(f"boost shares sum to {fixed:g}, above 1", where)
    rest = {t: s for t, s in shares.items() if t not in targets}
    rest_total = sum(rest.values())
    if rest and rest_total <= 0 and fixed < 1.0:
        raise SmolmixError("the tasks left after boosting have no weight", where)
    scale = (1.0 - fixed) / rest_total if rest_total > 0 else 0.0
    return {t: targets[t] if t in targets else s * scale for t, s in shares.items()}


def floor(shares: Mapping[str, float], minimum: float, where: str = "floor") -> dict[str, float]:
    """Raise every task to at least ``minimum``, taking the difference from the others pro rata."""
    if not 0.0 < minimum < 1.0:
        raise SmolmixError(f"floor share must be in (0, 1), got {minimum}", where)
    if minimum * len(shares) > 1.0 + 1e-12:
        raise SmolmixError(
            f"floor {minimum:g} for {len(shares)} tasks sums to {minimum * len(shares):g}, "
            "above 1", where)
    result = dict(shares)
    pinned: set[str] = set()
    while True:
        low = {t for t, s in result.items() if t not in pinned and s < minimum - 1e-15}
        if not low:
            return result
        pinned |= low
        free = {t: s for t, s in shares.items() if t not in pinned}
        free_total = sum(free.values())
        left = 1.0 - minimum * len(pinned)
        result = {t: minimum if t in pinned else
                  (s * left / free_total if free_total > 0 else left / len(free))
                  for t, s in shares.items()}


@dataclass(frozen=True)
class TagRatio:
    """Within ``tasks`` (None: every task that has both values), tag ``key`` splits
    ``share`` to ``value`` and the rest to ``other`` (e.g. cot: long 0.2 / short 0.8)."""

    key: str
    value: str
    other: str
    share: float
    tasks: tuple[str, ...] | None = None
    name: str = "mix"


MIX_LONG = ("cot", "long", "short")
MIX_LARGE = ("teacher", "large", "small")


def split_tasks(buckets: Sequence[Bucket], task_shares: Mapping[str, float],
                ratios: Sequence[TagRatio]) -> dict[Bucket, float]:
    """Bucket shares: each task's share split by counts, then fitted to every tag ratio."""
    by_task: dict[str, list[Bucket]] = {}
    for b in buckets:
        by_task.setdefault(b.task, []).append(b)
    constraints: dict[str, list[TagRatio]] = {t: [] for t in by_task}
    for ratio in ratios:
        if not 0.0 < ratio.share < 1.0:
            raise SmolmixError(f"{ratio.name} share must be in (0, 1), got {ratio.share}",
                               ratio.name)
        selected = ratio.tasks if ratio.tasks is not None else tuple(by_task)
        for task in selected:
            if task not in by_task:
                raise SmolmixError(f"{ratio.name} task {task!r} is not in the mixture",
                                   ratio.name)
            values = {b.tag(ratio.key) for b in by_task[task] if b.count > 0}
            for needed in (ratio.value, ratio.other):
                if needed not in values and ratio.tasks is not None:
                    raise SmolmixError(
                        f"{ratio.name}: task {task!r} has no examples with "
                        f"{ratio.key}={needed}", ratio.name)
            if {ratio.value, ratio.other} <= values:
                stray = [b for b in by_task[task]
                         if b.count > 0 and b.tag(ratio.key) not in (ratio.value, ratio.other)]
                if stray:
                    raise SmolmixError(
                        f"{ratio.name}: task {task!r} has examples without {ratio.key}="
                        f"{ratio.value}|{ratio.other} (source {stray[0].source!r})", ratio.name)
                constraints[task].append(ratio)
        if ratio.tasks is None and not any(constraints.values()):
            raise SmolmixError(
                f"{ratio.name}: no task has both {ratio.key}={ratio.value} and "
                f"{ratio.key}={ratio.other} examples", ratio.name)
    shares: dict[Bucket, float] = {}
    for task, members in by_task.items():
        within = _fit(members, constraints[task])
        for b in members:
            shares[b] = task_shares.get(task, 0.0) * within[b]
    return shares


def _fit(members: list[Bucket], ratios: list[TagRatio]) -> dict[Bucket, float]:
    """Iterative proportional fitting of bucket weights (start ∝ count) to tag ratios."""
    total = sum(b.count for b in members)
    weights = {b: (b.count / total if total else 1.0 / len(members)) for b in members}
    for _ in range(IPF_ITERATIONS if ratios else 0):
        worst = 0.0
        for ratio in ratios:
            for value, target in ((ratio.value, ratio.share), (ratio.other, 1.0 - ratio.share)):
                group = [b for b in members if b.tag(ratio.key) == value]
                mass = sum(weights[b] for b in group)
                worst = max(worst, abs(mass - target))
                for b in group:
                    weights[b] *= target / mass
        if worst < IPF_TOLERANCE:
            break
    norm = sum(weights.values())
    return {b: w / norm for b, w in weights.items()}
