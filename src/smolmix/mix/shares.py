"""Task shares: Zipf shares by rank, exact integer counts from shares (largest remainder), and
the achieved shares in a mixture manifest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from smolmix.core.errors import SmolmixError


def zipf_shares(tasks: Sequence[str], exponent: float) -> dict[str, float]:
    """Share of the task at rank k (1-based, in the given order) ∝ 1 / k**exponent."""
    weights = [1.0 / (k + 1) ** exponent for k in range(len(tasks))]
    total = sum(weights)
    return {t: w / total for t, w in zip(tasks, weights)}


def counts_from_shares(shares: Mapping[str, float], total: int) -> dict[str, int]:
    """Integer counts summing to ``total`` closest to ``share * total`` (largest remainder)."""
    weight = sum(shares.values())
    if weight <= 0 or any(v < 0 for v in shares.values()):
        raise SmolmixError("shares must be non-negative and not all zero", "shares")
    exact = {t: total * v / weight for t, v in shares.items()}
    counts = {t: int(x) for t, x in exact.items()}
    by_remainder = sorted(exact, key=lambda t: (counts[t] - exact[t], t))
    for t in by_remainder[: total - sum(counts.values())]:
        counts[t] += 1
    return counts


def mixture_shares(manifest: Mapping) -> dict[str, float]:
    """Each task's achieved share over all stages of a mixture manifest."""
    counts: dict[str, int] = {}
    for per_task in manifest.get("by_task", {}).values():
        for task, stats in per_task.items():
            counts[task] = counts.get(task, 0) + int(stats.get("selected", 0))
    total = sum(counts.values())
    return {task: n / total for task, n in counts.items()} if total else {}
