"""What the loop reads before its first stage: each task's examples in the sources, the
held-out set by task, stage 1's shares, and the checks that need them (every task held out,
the whole loop's budget within the repetition cap)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from smolmix.core.errors import SmolmixError
from smolmix.core.records import Record
from smolmix.loop.plan import Plan
from smolmix.mix.sources import load_source
from smolmix.train.data import read_records


@dataclass(frozen=True)
class LoopData:
    """The tasks (in the order of the sources), their examples and their held-out records."""

    available: dict[str, int]  # examples per task in the sources
    sources: dict[str, list[str]]  # per task, the sources that hold it
    start: dict[str, float]  # stage 1's shares
    natural: dict[str, float]  # shares by example count
    heldout: dict[str, list[Record]]

    @property
    def tasks(self) -> list[str]:
        return list(self.available)


def read_loop_data(plan: Plan) -> LoopData:
    """Read the sources' task columns and the held-out set; check what a plan cannot say
    alone. Every problem is one error at the plan's line."""
    available: Counter[str] = Counter()
    sources: dict[str, list[str]] = {}
    for spec in plan.sources:
        table = load_source(spec, plan.base_dir)
        for task, count in Counter(table.column("task").to_pylist()).items():
            available[task] += count
            sources.setdefault(task, []).append(spec.name)
    total = sum(available.values())
    natural = {t: n / total for t, n in available.items()}
    start = natural if plan.start == "natural" else _start_shares(plan, natural)
    heldout = _heldout(plan, list(available))
    _check_budget(plan, dict(available), sources, start)
    return LoopData(dict(available), sources, start, natural, heldout)


def question(record: Record) -> str | None:
    """The prompt a held-out record asks: its prompt, or its one user message."""
    if record.prompt is not None:
        return record.prompt
    messages = record.messages or []
    if len(messages) == 1 and messages[0].get("role") == "user":
        return messages[0].get("content")
    return None


def _start_shares(plan: Plan, natural: dict[str, float]) -> dict[str, float]:
    weights = dict(plan.start)
    unknown = sorted(set(weights) - set(natural))
    if unknown:
        raise SmolmixError(f"start names task {unknown[0]!r}, which no source holds "
                           f"(tasks: {', '.join(natural)})", plan.where("start"))
    total = sum(weights.values())
    return {t: weights.get(t, 0.0) / total for t in natural}


def _heldout(plan: Plan, tasks: list[str]) -> dict[str, list[Record]]:
    records = read_records(plan.path(plan.heldout), "heldout")
    by_task: dict[str, list[Record]] = {}
    for r in records:
        if r.completion is None or question(r) is None:
            raise SmolmixError("held-out records must have a completion and a prompt (or "
                               f"messages holding one user question); one of task {r.task!r} "
                               "has not", plan.where("heldout"))
        by_task.setdefault(r.task, []).append(r)
    missing = [t for t in tasks if t not in by_task]
    if missing:
        raise SmolmixError(f"the held-out set has no example of task {missing[0]!r}, which "
                           "the sources have (every task needs held-out examples)",
                           plan.where("heldout"))
    return {t: by_task[t] for t in tasks}


def _check_budget(plan: Plan, available: dict[str, int], sources: dict[str, list[str]],
                  start: dict[str, float]) -> None:
    """Stage 1 at its shares, and the whole loop at any shares, within ``max_epochs``."""
    epochs = plan.policy.max_epochs
    first = plan.stages.budgets[0]
    for task, share in start.items():
        if share * first > epochs * available[task] + 1e-9:
            raise SmolmixError(
                f"the stage budget cannot be met under the repetition cap: source "
                f"{sources[task][0]!r} has {available[task]:,} examples of {task!r}; its "
                f"{share:.2%} of stage 1's {first:,} would repeat them "
                f"{share * first / available[task]:.1f} times (max_epochs {epochs:g})",
                plan.where("stages", "examples"))
    need, room = sum(plan.stages.budgets), epochs * sum(available.values())
    if need > room:
        task = min(available, key=lambda t: available[t] / max(start[t], 1e-12))
        raise SmolmixError(
            f"the stage budget cannot be met under the repetition cap: the {plan.stages.count} "
            f"stages need {need:,} examples, the sources give {room:,.0f} at max_epochs "
            f"{epochs:g} (source {sources[task][0]!r} runs out first)",
            plan.where("stages", "examples"))
