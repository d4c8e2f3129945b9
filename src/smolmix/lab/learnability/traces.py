"""Correct reasoning traces in four styles that differ in one factor at a time.

- ``short``: few compact steps (one step per column, or per operation).
- ``long``: the same work one level finer (one single-digit operation per step for ``add`` and
  ``mul``; column by column for ``expr``; item by item for ``evens``) plus the habits of long
  reasoning traces: restating the problem, a tentative slip caught with ``wait`` and
  corrected, and a check by the inverse operation. About 3x ``short`` in tokens.
- ``small`` (teacher): short register, simple local steps: column by column, one operation or
  one piece of bookkeeping (``write 6 carry 1``) per step.
- ``large`` (teacher): short register, about as long as ``small`` but in fewer, bigger steps
  over whole numbers: roundings (``5 8 9 = 6 0 0 - 1 1``), chained reductions, sums at once.

A step ends with the token :data:`STEP`; a trace is its steps, one per line, then
``#### <answer>`` (the problem's reference answer). Everything is digit by digit from the
closed :func:`vocabulary`. Slip positions come from a generator seeded by the prompt, so a
problem always gets the same trace.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from smolmix.core.errors import lookup
from smolmix.lab.learnability.problems import ANSWER_FORMAT, MARK, Problem, apply, digits

__all__ = ["ANSWER_FORMAT", "LENGTH_RATIOS", "MEAN_STEPS", "STEP", "STYLES", "steps", "trace",
           "vocabulary"]

STEP = "."
# measured over 700 problems per task and difficulty (seed 1), every level weighted alike:
# mean tokens of one style over mean tokens of the other, and mean steps (STEP tokens)
LENGTH_RATIOS = {"long/short": 2.97, "large/small": 1.05}
MEAN_STEPS = {"short": 3.0, "long": 11.0, "small": 6.9, "large": 2.8}
WORDS = ["write", "carry", "borrow", "so", "wait", "not", "check", "correct", "we", "need",
         "the", "sum", "of", "even", "odd", "numbers", "in", "is", "none"]
_SYMBOLS = ["+", "-", "*", "/", "=", "?", "(", ")", "[", "]", ",", ":", STEP, MARK]


def vocabulary() -> list[str]:
    """Every symbol a prompt or a trace can contain, in a fixed order."""
    return [*map(str, range(10)), *_SYMBOLS, *WORDS]


# ------------------------------------------------------------------ digit-level work


@dataclass(frozen=True)
class Column:
    """One column of a written operation: the column as one compact step, its single-digit
    operations (text, result) in order, the digits it writes and what it carries into the
    next column (``-1``: a borrow)."""

    compact: str | None
    atoms: tuple[tuple[str, int], ...]
    written: int
    carry: int
    last: bool

    def fine(self) -> list[str]:
        """One step per single-digit operation."""
        return [f"{text} = {digits(result)}" for text, result in self.atoms]

    def bookkeeping(self) -> str:
        """``write 3 carry 1`` (``borrow 1`` in a subtraction; nothing carried from the last)."""
        word = "borrow" if self.carry < 0 else "carry"
        tail = f" {word} {abs(self.carry)}" if self.carry and not self.last else ""
        return f"write {digits(self.written)}{tail}"


def _place(n: int, i: int) -> int | None:
    return n // 10**i % 10 if n >= 10**i or i == 0 else None


def _column(a: int, op: str, b: int | None, carry: int) -> tuple[list[str], list, int]:
    """The terms of one column, its single-digit operations and its total (before the
    carry out); ``carry`` is -1 after a borrow."""
    if op == "*":
        atoms = [(f"{a} * {b}", a * b)]
        if carry:
            atoms.append((f"{digits(a * b)} + {carry}", a * b + carry))
        return [f"{a} * {b}", *([str(carry)] if carry else [])], atoms, a * b + carry
    if op == "+":
        terms = [t for t in (a, b) if t is not None] + ([carry] if carry else [])
        atoms, total = [], terms[0]
        for t in terms[1:]:
            atoms.append((f"{digits(total)} + {t}", total + t))
            total += t
        return [digits(t) for t in terms], atoms, total
    bottom = b or 0
    top = a + 10 * (a + carry < bottom)  # borrow from the next column
    terms = [digits(top), *(["1"] if carry else []), *([str(b)] if b is not None else [])]
    atoms, total = [], top
    for t in terms[1:]:
        atoms.append((f"{digits(total)} - {t}", total - int(t)))
        total -= int(t)
    return terms, atoms, total


def columns(value: int, op: str, x: int) -> list[Column]:
    """The columns of ``value op x`` written out, right to left (``-`` needs ``value >= x``;
    ``*`` needs a one-digit ``x``)."""
    width = len(str(value)) if op == "*" else max(len(str(value)), len(str(x)))
    out, carry = [], 0
    for i in range(width):
        a, last = _place(value, i) or 0, i == width - 1
        b = x if op == "*" else _place(x, i)
        terms, atoms, total = _column(a, op, b, carry)
        sep = " + " if op == "*" else f" {op} "
        compact = f"{sep.join(terms)} = {digits(total)}" if atoms else None
        borrowed = op == "-" and terms[0] != digits(a)
        nxt = -1 if borrowed else 0 if op == "-" else total // 10
        written = total if last else total % 10
        out.append(Column(compact, tuple(atoms), written, nxt, last))
        carry = nxt
    return out


def _leading(n: int) -> tuple[int, int]:
    """``n`` rounded to its leading place (half up) and the rest: ``589 -> (600, -11)``."""
    place = 10 ** (len(str(n)) - 1)
    rounded = (n + place // 2) // place * place
    return rounded, n - rounded


def _signed(x: int) -> str:
    return f"+ {digits(x)}" if x >= 0 else f"- {digits(-x)}"


def whole(value: int, op: str, x: int) -> list[str]:
    """``value op x`` in two big steps over whole numbers, rounding the multi-digit operand to
    its leading place: ``3 4 7 + 5 8 9 = 3 4 7 + 6 0 0 - 1 1 = 9 4 7 - 1 1`` then
    ``9 4 7 - 1 1 = 9 3 6``; ``3 8 9 * 6 = 4 0 0 * 6 - 1 1 * 6 = 2 4 0 0 - 6 6`` then
    ``2 4 0 0 - 6 6 = 2 3 3 4``. One step when there is nothing to round."""
    result = apply(value, op, x)
    head = f"{digits(value)} {op} {digits(x)}"
    if op == "*":
        rounded, rest = _leading(value)
        if rest == 0 or value < 10:
            return [f"{head} = {digits(result)}"]
        sign = "+" if rest > 0 else "-"
        return [f"{head} = {digits(rounded)} * {x} {sign} {digits(abs(rest))} * {x} = "
                f"{digits(rounded * x)} {_signed(rest * x)}",
                f"{digits(rounded * x)} {_signed(rest * x)} = {digits(result)}"]
    rounded, rest = _leading(x)
    if op == "-" and rounded > value:  # round down instead: no negative intermediate
        rounded, rest = x - x % 10 ** (len(str(x)) - 1), x % 10 ** (len(str(x)) - 1)
    if rest == 0 or x < 10:
        return [f"{head} = {digits(result)}"]
    first = apply(value, op, rounded)
    tail = _signed(rest if op == "+" else -rest)
    return [f"{head} = {digits(value)} {op} {digits(rounded)} {tail} = {digits(first)} {tail}",
            f"{digits(first)} {tail} = {digits(result)}"]


# ------------------------------------------------------------------ the four styles


def _rng(problem: Problem) -> random.Random:
    return random.Random(f"slip:{problem.prompt}")


def _ops(problem: Problem) -> list[tuple[int, str, int, int]]:
    """``(value, op, x, result)`` for each operation, left to right."""
    out, value = [], problem.numbers[0]
    for op, x in zip(problem.ops, problem.numbers[1:]):
        out.append((value, op, x, apply(value, op, x)))
        value = out[-1][3]
    return out


def _evens(problem: Problem) -> list[int]:
    return [x for x in problem.numbers if x % 2 == 0]


def _listed(xs: list[int]) -> str:
    return " , ".join(digits(x) for x in xs)


def _short(problem: Problem) -> list[str]:
    if problem.task == "evens":
        evens = _evens(problem)
        out, total = [f"even : {_listed(evens)}"], evens[0]
        for x in evens[1:]:
            out.append(f"{digits(total)} + {digits(x)} = {digits(total + x)}")
            total += x
        return out
    if problem.task == "expr":
        return [f"{digits(v)} {op} {digits(x)} = {digits(r)}" for v, op, x, r in _ops(problem)]
    (v, op, x, _), = _ops(problem)
    return [c.compact for c in columns(v, op, x) if c.compact]


def _small(problem: Problem) -> list[str]:
    if problem.task == "evens":
        out, total = [], 0
        for x in problem.numbers:
            if x % 2:
                out.append(f"{digits(x)} odd")
            else:
                out.append(f"{digits(x)} even , {digits(total)} + {digits(x)} = "
                           f"{digits(total + x)}")
                total += x
        return out
    if problem.task == "expr":  # each operation column by column, then its result
        return [s for v, op, x, r in _ops(problem)
                for s in [*(c.compact for c in columns(v, op, x) if c.compact),
                          f"so {digits(v)} {op} {digits(x)} = {digits(r)}"]]
    (v, op, x, _), = _ops(problem)
    return [s for c in columns(v, op, x) for s in [c.compact, c.bookkeeping()] if s]


def _large(problem: Problem) -> list[str]:
    if problem.task != "evens":
        return [step for v, op, x, _ in _ops(problem) for step in whole(v, op, x)]
    evens = _evens(problem)
    odds = [x for x in problem.numbers if x % 2]
    out = [f"odd : {_listed(odds) if odds else 'none'} , even : {_listed(evens)}"]
    if len(evens) > 1:  # tens and units apart: 8 + 1 2 + 4 4 = ( 1 0 + 4 0 ) + ( 8 + 2 + 4 )
        tens = [x - x % 10 for x in evens if x >= 10]
        units = [x % 10 for x in evens if x % 10]
        groups = [g for g in (tens, units) if g]
        parts = " + ".join(f"( {' + '.join(digits(x) for x in g)} )" if len(g) > 1
                           else digits(g[0]) for g in groups)
        sums = " + ".join(digits(sum(g)) for g in groups)
        chain = [" + ".join(digits(x) for x in evens), parts]
        if len(groups) > 1:
            chain.append(sums)
        out.append(" = ".join([*chain, digits(sum(evens))]))
    return out


def _slip(step: str, rng: random.Random) -> list[str]:
    """``4 + 8 = 1 2`` as a wrong value, caught and corrected."""
    lhs, rhs = step.rsplit(" = ", 1)
    right = int(rhs.replace(" ", ""))
    wrong = right + 1 if right == 0 or rng.random() < 0.5 else right - 1
    return [f"{lhs} = {digits(wrong)}", f"wait , {lhs} = {rhs} , not {digits(wrong)}"]


def _inverse(v: int, op: str, x: int, r: int) -> str:
    inverse = {"+": "-", "-": "+", "*": "/"}[op]
    return f"check : {digits(r)} {inverse} {digits(x)} = {digits(v)} , correct"


def _long(problem: Problem) -> list[str]:
    rng = _rng(problem)
    question = problem.prompt.removesuffix(" = ?")
    if problem.task == "evens":
        out, total = [f"we need the sum of the even numbers in {_listed(list(problem.numbers))}"], 0
        slip = rng.choice([i for i, x in enumerate(problem.numbers) if x % 2 == 0])
        for i, x in enumerate(problem.numbers):
            if x % 2:
                out.append(f"{digits(x)} is odd")
                continue
            step = f"{digits(total)} + {digits(x)} = {digits(total + x)}"
            out += [f"{digits(x)} is even"] + (_slip(step, rng) if i == slip else [step])
            total += x
        evens = _evens(problem)
        out.append(f"check : {digits(total)} - {digits(evens[-1])} = {digits(total - evens[-1])}"
                   " , correct")
        return out
    ops = _ops(problem)
    out = [f"we need {question}"]
    slip_at = rng.randrange(len(ops))
    for j, (v, op, x, r) in enumerate(ops):
        cols = columns(v, op, x)
        work = [c.compact for c in cols if c.compact] if problem.task == "expr" else \
            [s for c in cols for s in [*c.fine(), c.bookkeeping()]]
        if j == slip_at:
            at = rng.choice([i for i, s in enumerate(work) if " = " in s])
            work[at:at + 1] = _slip(work[at], rng)
        out += work
        if j < len(ops) - 1:  # the last result is stated by the check
            out.append(f"so {digits(v)} {op} {digits(x)} = {digits(r)}")
    out.append(_inverse(*ops[-1]))
    return out


STYLES: dict[str, Callable[[Problem], list[str]]] = {
    "short": _short,
    "long": _long,
    "small": _small,
    "large": _large,
}


def steps(problem: Problem, style: str) -> list[str]:
    """The steps of ``problem``'s trace in ``style`` (without :data:`STEP`)."""
    return lookup(STYLES, style, "trace style", "style")(problem)


def trace(problem: Problem, style: str) -> str:
    """The full trace: one step per line, each ending in :data:`STEP`, then
    ``#### <answer>``."""
    lines = [f"{s} {STEP}" for s in steps(problem, style)]
    return "\n".join([*lines, f"{MARK} {problem.answer}"])
