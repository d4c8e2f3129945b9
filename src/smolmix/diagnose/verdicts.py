"""Per-task verdicts from a run's curves and controls, each with its evidence and a remedy.

- ``learned``: the final accuracy reaches the threshold;
- ``learned then overwritten``: the curve reached the threshold earlier, the final does not;
- ``not expressible at this size``: never learned, and the isolation control (the task
  trained alone, from the lab or supplied by the user) fails too;
- ``never learned``: never reached the threshold although the task is expressible (or no
  control says otherwise).

The remedy for the last two verdicts that are about the mixture is a share: the smallest share
at which this size learned the task in a boost sweep (the lab's measured min-share curve),
else a rule of thumb that says it is one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

LEARN_THRESHOLD = 0.9
LARGE_SHARE = 0.2  # a task with this share of the mixture is not short of data
LEARNED = "learned"
OVERWRITTEN = "learned then overwritten"
NOT_EXPRESSIBLE = "not expressible at this size"
NEVER = "never learned"


@dataclass(frozen=True)
class Curve:
    """A task's held-out accuracy over training."""

    steps: list[int]
    accuracy: list[float]

    @property
    def final(self) -> float:
        return self.accuracy[-1]

    @property
    def peak(self) -> tuple[float, int]:
        best = max(range(len(self.accuracy)), key=lambda i: (self.accuracy[i], -i))
        return self.accuracy[best], self.steps[best]


@dataclass(frozen=True)
class TaskVerdict:
    task: str
    verdict: str
    evidence: list[str]
    remedy: str | None
    numbers: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def curves_from_rows(rows: Sequence[Mapping], metric: str = "exact_match") -> dict[str, Curve]:
    """``curves.jsonl`` rows (step, task, metric) → one curve per task, in step order."""
    by_task: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        if metric in row:
            by_task.setdefault(row["task"], []).append((int(row["step"]), float(row[metric])))
    return {task: Curve([s for s, _ in sorted(points)], [a for _, a in sorted(points)])
            for task, points in sorted(by_task.items())}


def share_remedy(task: str, share: float | None, min_share: float | None) -> str:
    """What share to give the task."""
    if min_share is not None:
        return (f"raise {task}'s share to about {min_share:.0%} (the smallest share at which "
                f"this size learned it in the boost sweep)")
    if share is not None and share >= LARGE_SHARE:
        return (f"{task} already has {share:.0%} of the mixture; a larger share is unlikely to "
                "help — train longer or use a larger model")
    if share:
        target = min(0.3, max(10 * share, 0.01))
        return (f"raise {task}'s share to about {target:.0%} (rule of thumb: 10x its current "
                f"{share:.2%}; no measured min-share curve — run a boost sweep to confirm)")
    return f"raise {task}'s share (no share or min-share curve known)"


def judge(task: str, curve: Curve, isolation: float | None = None, share: float | None = None,
          min_share: float | None = None, threshold: float = LEARN_THRESHOLD,
          mechanism: Mapping[str, float] | None = None) -> TaskVerdict:
    """The verdict for one task (see the module doc); ``mechanism`` adds measured evidence
    (e.g. interference from other tasks, retention)."""
    peak, peak_step = curve.peak
    numbers = {"final": curve.final, "peak": peak, "peak_step": peak_step,
               "isolation": isolation, "share": share, "min_share": min_share,
               **dict(mechanism or {})}
    evidence = [f"final accuracy {curve.final:.2f} (threshold {threshold:.2f})",
                f"peak {peak:.2f} at step {peak_step}"]
    if share is not None:
        evidence.append(f"share of the training mixture {share:.2%}")
    if isolation is not None:
        evidence.append(f"trained alone (isolation control): {isolation:.2f}")
    for key, value in (mechanism or {}).items():
        evidence.append(f"{key.replace('_', ' ')} {value:+.3g}")
    if curve.final >= threshold:
        return TaskVerdict(task, LEARNED, evidence, None, numbers)
    if peak >= threshold:
        return TaskVerdict(task, OVERWRITTEN, evidence,
                       share_remedy(task, share, min_share)
                       + "; or stop at the peak / interleave it in later stages", numbers)
    if isolation is not None and isolation < threshold:
        return TaskVerdict(task, NOT_EXPRESSIBLE, evidence,
                       "a larger model or a simpler form of the task; a larger share will not "
                       "help at this size", numbers)
    return TaskVerdict(task, NEVER, evidence, share_remedy(task, share, min_share), numbers)
