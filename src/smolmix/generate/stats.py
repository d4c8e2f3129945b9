"""What a generate output's manifest says about its traces: acceptance and lengths, per
teacher and style."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def length_stats(tokens: Sequence[int], chars: Sequence[int]) -> dict:
    """Token and character lengths: mean, median, 10th/90th percentile, min, max."""
    if not tokens:
        return {"count": 0}
    return {"count": len(tokens), "tokens_mean": round(statistics.fmean(tokens), 1),
            "tokens_median": statistics.median(tokens), "tokens_p10": _quantile(tokens, 0.1),
            "tokens_p90": _quantile(tokens, 0.9), "tokens_min": min(tokens),
            "tokens_max": max(tokens), "chars_mean": round(statistics.fmean(chars), 1)}


def reason_kind(reason: str) -> str:
    """A rejection reason without its details: ``wrong answer (number)`` -> ``wrong answer``."""
    return reason.split(" (", 1)[0].split(":", 1)[0]


def group_stats(entries: Iterable[dict]) -> dict:
    """Acceptance and length statistics of journal entries (``accepted``, ``reason``,
    ``tokens``, ``text``, ``problem``)."""
    entries = list(entries)
    kept = [e for e in entries if e["accepted"]]
    problems = {e["problem"] for e in entries}
    solved = {e["problem"] for e in kept}
    return {
        "samples": len(entries),
        "accepted": len(kept),
        "acceptance_rate": round(len(kept) / len(entries), 4) if entries else None,
        "problems": len(problems),
        "problems_with_a_kept_trace": len(solved),
        "rejected_by_reason": dict(sorted(Counter(reason_kind(e["reason"]) for e in entries
                                                  if not e["accepted"]).items())),
        "kept_lengths": length_stats([e["tokens"] for e in kept], [len(e["text"]) for e in kept]),
    }
