"""Seeded reasoning problems with verifiable answers, at several difficulty levels.

Numbers are written digit by digit (``3 4 7``) so that a closed word-level vocabulary covers
every prompt. Tasks (difficulty in brackets):

- ``add``: ``3 4 7 + 5 8 9 = ?`` (digits per operand: 2, 3, 4);
- ``mul``: ``3 4 7 * 6 = ?``, a multi-digit number times a digit 2-9 (digits: 2, 3, 4);
- ``expr``: ``( 3 4 + 5 ) * 7 - 1 2 = ?``, applied left to right (operations: 2, 3, 4);
- ``evens``: ``sum even [ 3 , 8 , 1 2 , 5 ] = ?``, the sum of the even numbers (length: 4, 6, 8).

The reference answer is the result's digits as an ordered tuple, ``( 9 , 3 , 6 )``: with
:data:`ANSWER_FORMAT` the grader extracts it after ``####`` and its fast path compares tuples
item by item (a permutation, a missing or an extra digit is wrong), whereas ``9 3 6`` would go
to math-verify, which accepts ``6 3 9``. Held-out sets come from their own seed stream and
training draws exclude them explicitly (:func:`split`).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from smolmix.core.errors import SmolmixError, lookup

ANSWER_FORMAT = "gsm8k"  # the text after the last "####"
MARK = "####"


def digits(n: int) -> str:
    """``936`` as ``9 3 6``."""
    return " ".join(str(n))


def answer_text(n: int) -> str:
    """The reference answer for the value ``n``: ``( 9 , 3 , 6 )``."""
    return "( " + " , ".join(str(n)) + " )"


@dataclass(frozen=True)
class Problem:
    """One problem: its prompt, its reference answer (:func:`answer_text`) and the numbers and
    operators it was built from (the trace generators work from these)."""

    task: str
    difficulty: int
    prompt: str
    answer: str
    value: int
    numbers: tuple[int, ...]
    ops: tuple[str, ...] = ()


def _problem(task: str, difficulty: int, prompt: str, value: int,
             numbers: Iterable[int], ops: Iterable[str] = ()) -> Problem:
    return Problem(task, difficulty, prompt, answer_text(value), value, tuple(numbers), tuple(ops))


def _number(rng: random.Random, n_digits: int) -> int:
    return rng.randrange(10 ** (n_digits - 1), 10**n_digits)


def _add(rng: random.Random, d: int) -> Problem:
    a, b = _number(rng, d), _number(rng, d)
    return _problem("add", d, f"{digits(a)} + {digits(b)} = ?", a + b, (a, b), ("+",))


def _mul(rng: random.Random, d: int) -> Problem:
    a, m = _number(rng, d), rng.randrange(2, 10)
    return _problem("mul", d, f"{digits(a)} * {m} = ?", a * m, (a, m), ("*",))


def apply(value: int, op: str, x: int) -> int:
    """``value op x`` for ``op`` in ``+ - *``."""
    return value + x if op == "+" else value - x if op == "-" else value * x


def expression(numbers: tuple[int, ...], ops: tuple[str, ...]) -> str:
    """The prompt text of ``numbers[0] op1 numbers[1] ...`` applied left to right: a ``*``
    after a ``+`` or ``-`` puts brackets around what came before."""
    text, low = digits(numbers[0]), False
    for op, x in zip(ops, numbers[1:]):
        if op == "*" and low:
            text = f"( {text} )"
        text, low = f"{text} {op} {digits(x)}", op != "*"
    return text


def _expr(rng: random.Random, k: int) -> Problem:
    """``k`` operations from ``+ - *``, at least one ``*`` and one ``+``/``-``; the value stays
    positive; ``+``/``-`` take 1-99, ``*`` takes 2-9."""
    while True:
        ops = [rng.choice("+-*") for _ in range(k)]
        if "*" in ops and set(ops) - {"*"}:
            break
    value = _number(rng, 2)
    numbers = [value]
    for i, op in enumerate(ops):
        if op == "-" and value < 2:
            op = ops[i] = "+"
        if op == "*":
            x = rng.randrange(2, 10)
        elif op == "-":
            x = rng.randrange(1, min(99, value - 1) + 1)
        else:
            x = rng.randrange(1, 100)
        numbers.append(x)
        value = apply(value, op, x)
    text = expression(tuple(numbers), tuple(ops))
    return _problem("expr", k, f"{text} = ?", value, numbers, ops)


def _evens(rng: random.Random, n: int) -> Problem:
    """``n`` numbers from 1-99, at least one of them even."""
    while True:
        xs = [rng.randrange(1, 100) for _ in range(n)]
        if any(x % 2 == 0 for x in xs):
            break
    listed = " , ".join(digits(x) for x in xs)
    value = sum(x for x in xs if x % 2 == 0)
    return _problem("evens", n, f"sum even [ {listed} ] = ?", value, xs)


@dataclass(frozen=True)
class Task:
    """A task: its difficulty levels and how to draw one problem at a level."""

    name: str
    description: str
    difficulties: tuple[int, ...]
    make: Callable[[random.Random, int], Problem]


TASKS: dict[str, Task] = {t.name: t for t in [
    Task("add", "add two numbers (difficulty: digits per number)", (2, 3, 4), _add),
    Task("mul", "a number times a digit (difficulty: digits of the number)", (2, 3, 4), _mul),
    Task("expr", "an arithmetic expression (difficulty: operations)", (2, 3, 4), _expr),
    Task("evens", "sum of the even numbers of a list (difficulty: length)", (4, 6, 8), _evens),
]}


def get_task(name: str) -> Task:
    """The task called ``name``; an unknown name is a user error."""
    return lookup(TASKS, name, "task", "task")


def _level(task: Task, difficulty: int) -> None:
    if difficulty not in task.difficulties:
        known = ", ".join(map(str, task.difficulties))
        raise SmolmixError(f"unknown difficulty {difficulty} for task {task.name!r}; "
                           f"known: {known}", "difficulty")


def _candidates(task: str, difficulty: int, count: int, seed: int, stream: str,
                exclude: Iterable[str]) -> Iterator[Problem]:
    """Problems of ``task`` at ``difficulty`` from the seed stream ``stream`` whose prompts are
    not in ``exclude``, at most ``50 * count + 100`` tried (the bound on a too-small pool)."""
    spec = get_task(task)
    _level(spec, difficulty)
    rng = random.Random(f"learnability:{stream}:{task}:{difficulty}:{seed}")
    banned = set(exclude)
    for _ in range(50 * count + 100):
        problem = spec.make(rng, difficulty)
        if problem.prompt not in banned:
            yield problem


def draw(task: str, difficulty: int, count: int, seed: int, *, stream: str = "train",
         exclude: Iterable[str] = ()) -> list[Problem]:
    """``count`` distinct problems of ``task`` at ``difficulty`` from the seed stream
    ``stream``, none of whose prompts is in ``exclude``; the same arguments, the same list."""
    found: dict[str, Problem] = {}
    for problem in _candidates(task, difficulty, count, seed, stream, exclude):
        if len(found) == count:
            break
        found.setdefault(problem.prompt, problem)
    if len(found) < count:
        raise SmolmixError(f"task {task!r} at difficulty {difficulty} has fewer than {count} "
                           "distinct problems outside the excluded ones", "count")
    return list(found.values())


def sample(task: str, difficulty: int, count: int, seed: int, *, stream: str = "train",
           exclude: Iterable[str] = ()) -> list[Problem]:
    """``count`` problems drawn independently (repeats as often as chance makes them) from the
    seed stream ``stream``, none of whose prompts is in ``exclude``: every training set drawn
    this way has the same distribution of problems, repeats included."""
    found = list(itertools.islice(_candidates(task, difficulty, count, seed, stream, exclude),
                                  count))
    if len(found) < count:
        raise SmolmixError(f"task {task!r} at difficulty {difficulty} has too few problems "
                           "outside the held-out ones", "count")
    return found


def held_out(task: str, difficulty: int, count: int, seed: int) -> list[Problem]:
    """``count`` evaluation problems, from their own seed stream."""
    return draw(task, difficulty, count, seed, stream="heldout")


def split(task: str, difficulty: int, n_train: int, n_heldout: int,
          seed: int) -> tuple[list[Problem], list[Problem]]:
    """``(train, heldout)``: held-out problems first, then training problems that exclude
    every held-out prompt."""
    test = held_out(task, difficulty, n_heldout, seed)
    train = draw(task, difficulty, n_train, seed, exclude={p.prompt for p in test})
    return train, test
