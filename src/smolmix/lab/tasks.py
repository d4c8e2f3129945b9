"""Seeded synthetic tasks over short digit sequences, each with a complexity knob and a checker.

Every task maps a list of input symbols to a list of output symbols. A record's prompt is
``"<task> x1 x2 ... xn ="`` and its completion ``" y1 y2 ... ym"``; the checker recomputes the
answer from the prompt, so it never trusts the stored completion. The complexity knob is the
sequence length ``n`` (for ``lookup``, the number of key/value pairs).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate

from smolmix.core.errors import SmolmixError, lookup
from smolmix.core.records import Record
from smolmix.evaluate.tasks import TaskGenerator, register_generator

DIGITS = [str(d) for d in range(10)]
SEP = "="
QUERY = "?"

Sampler = Callable[[random.Random, int], list[str]]
Solver = Callable[[list[str]], list[str]]


def _digits(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(DIGITS) for _ in range(n)]


def _ints(xs: list[str]) -> list[int]:
    return [int(x) for x in xs]


def _strs(xs: list[int]) -> list[str]:
    return [str(x) for x in xs]


def _lookup_sample(rng: random.Random, n: int) -> list[str]:
    keys = rng.sample(DIGITS, n)
    pairs = [tok for k in keys for tok in (k, rng.choice(DIGITS))]
    return pairs + [QUERY, rng.choice(keys)]


def _lookup_solve(xs: list[str]) -> list[str]:
    table = dict(zip(xs[0:-2:2], xs[1:-2:2]))
    return [table[xs[-1]]]


def _dedup(xs: list[str]) -> list[str]:
    return list(dict.fromkeys(xs))


def _swap_pairs(xs: list[str]) -> list[str]:
    out = list(xs)
    for i in range(0, len(xs) - 1, 2):
        out[i], out[i + 1] = xs[i + 1], xs[i]
    return out


class FrequencyOrder:
    """A study's ``tasks``, most frequent first: the last ``rare_count`` are its rare tasks,
    the first ``frequent_count`` its frequent ones (a mixin for the labs' presets)."""

    @property
    def rare_tasks(self) -> tuple[str, ...]:
        return self.tasks[-self.rare_count:]

    @property
    def frequent_tasks(self) -> tuple[str, ...]:
        return self.tasks[: self.frequent_count]


@dataclass(frozen=True)
class SyntheticTask:
    """A synthetic task: how to sample an input of complexity ``n`` and how to solve it."""

    name: str
    description: str
    sample: Sampler
    solve: Solver
    default_n: int
    min_n: int = 1
    max_n: int = 10

    def make(self, rng: random.Random, n: int | None = None) -> Record:
        """Draw one example as a prompt/completion :class:`Record`."""
        n = self.default_n if n is None else n
        xs = self.sample(rng, n)
        ys = self.solve(xs)
        return Record(
            task=self.name,
            prompt=" ".join([self.name, *xs, SEP]),
            completion=" " + " ".join(ys),
            answer=" ".join(ys),
            tags={"n": str(n)},
        )

    def check(self, prompt: str, prediction: str) -> bool:
        """Exact match of ``prediction`` against the answer recomputed from ``prompt``."""
        toks = prompt.split()
        if len(toks) < 2 or toks[0] != self.name or toks[-1] != SEP:
            raise SmolmixError(f"prompt is not a {self.name!r} prompt", repr(prompt))
        return prediction.split() == self.solve(toks[1:-1])


TASKS: dict[str, SyntheticTask] = {
    t.name: t
    for t in [
        SyntheticTask("copy", "repeat the sequence", _digits, list, 6),
        SyntheticTask("reverse", "reverse the sequence", _digits, lambda xs: xs[::-1], 6),
        SyntheticTask("sort", "sort the digits", _digits, sorted, 6),
        SyntheticTask("increment", "add 1 mod 10 to each digit", _digits,
             lambda xs: _strs([(x + 1) % 10 for x in _ints(xs)]), 6),
        SyntheticTask("square", "square each digit mod 10", _digits,
             lambda xs: _strs([(x * x) % 10 for x in _ints(xs)]), 6),
        SyntheticTask("prefix_sum", "running sum mod 10", _digits,
             lambda xs: _strs([s % 10 for s in accumulate(_ints(xs))]), 6),
        SyntheticTask("pair_sum", "sum of neighbours mod 10", _digits,
             lambda xs: _strs([(a + b) % 10 for a, b in zip(_ints(xs), _ints(xs)[1:])]), 6,
             min_n=2),
        SyntheticTask("running_max", "maximum so far", _digits,
             lambda xs: _strs(list(accumulate(_ints(xs), max))), 6),
        SyntheticTask("count", "how often each digit occurs", _digits,
             lambda xs: _strs([xs.count(x) for x in xs]), 6, max_n=9),
        SyntheticTask("swap_pairs", "swap neighbouring digits", _digits, _swap_pairs, 6),
        SyntheticTask("dedup", "drop repeated digits", _digits, _dedup, 6),
        SyntheticTask("rotate", "move the first digit to the end", _digits,
             lambda xs: xs[1:] + xs[:1], 6),
        SyntheticTask("lookup", "value of the queried key", _lookup_sample, _lookup_solve, 4),
    ]
}


def get_task(name: str) -> SyntheticTask:
    """The task called ``name``; an unknown name is a user error listing the known ones."""
    return lookup(TASKS, name, "task", "task")


def vocabulary() -> list[str]:
    """Every symbol a lab prompt or completion can contain, in a fixed order."""
    return [*DIGITS, SEP, QUERY, *TASKS]


def make_eval_set(task: SyntheticTask, count: int, seed: int, n: int | None = None) -> list[Record]:
    """``count`` distinct held-out examples of ``task``, drawn from their own seed stream."""
    rng = random.Random(f"eval:{task.name}:{seed}")
    seen: dict[str, Record] = {}
    attempts = 0
    while len(seen) < count:
        rec = task.make(rng, n)
        seen.setdefault(rec.prompt, rec)
        attempts += 1
        if attempts > 50 * count:
            raise SmolmixError(
                f"task {task.name!r} at n={n} has fewer than {count} distinct examples", "eval set"
            )
    return list(seen.values())


class TrainStream:
    """Draws training examples of one task, never returning a prompt in ``exclude``."""

    def __init__(self, task: SyntheticTask, seed: int, exclude: set[str],
                 n: int | None = None) -> None:
        self.task = task
        self.n = n
        self.exclude = exclude
        self.rng = random.Random(f"train:{task.name}:{seed}")

    def draw(self) -> Record:
        for _ in range(10_000):
            rec = self.task.make(self.rng, self.n)
            if rec.prompt not in self.exclude:
                return rec
        raise SmolmixError(
            f"task {self.task.name!r} has no training examples left outside the eval set", "task"
        )


register_generator("lab", TaskGenerator(
    names=lambda: list(TASKS),
    make=lambda name, count, seed: make_eval_set(get_task(name), count, seed)))
