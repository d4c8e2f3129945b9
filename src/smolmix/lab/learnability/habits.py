"""What a student trained on long traces does with their habits: the ``wait , X = A , not B``
step that, in every training trace, catches a slip (B wrong) and corrects it (A right).

A student may imitate the step without having slipped: it then restates a right value
(A = B, right) or replaces a right value with a wrong one (B right, A wrong), and its answer
carries the damage. :func:`wait_outcome` reads the first such step of a generation and
recomputes X.
"""

from __future__ import annotations

import re

# The first "wait" step: the expression, the value it gives, the value it says it replaces.
WAIT = re.compile(r"wait , ([0-9+*\- ]+?) = ([0-9 ]+?) , not ([0-9 ]+?)(?: \.|$)")
OUTCOMES = ("no wait", "fixed a slip", "broke a right step", "restated a right value",
            "both wrong", "unreadable")


def evaluate(expression: str) -> int | None:
    """``1 2 + 8 * 3`` → 60: digits joined into numbers, applied left to right as the traces
    write their steps; None when it does not read as numbers and operators."""
    numbers, ops, current = [], [], ""
    for token in expression.split():
        if token.isdigit():
            current += token
        elif token in "+-*" and current:
            numbers.append(int(current))
            ops.append(token)
            current = ""
        else:
            return None
    if not current:
        return None
    numbers.append(int(current))
    value = numbers[0]
    for op, x in zip(ops, numbers[1:]):
        value = value + x if op == "+" else value - x if op == "-" else value * x
    return value


def _number(text: str) -> int | None:
    words = text.split()
    return int("".join(words)) if words and all(w.isdigit() for w in words) else None


def wait_outcome(generation: str) -> str:
    """What the generation's first ``wait`` step did (one of :data:`OUTCOMES`)."""
    text = " ".join(generation.split())
    found = WAIT.search(text)
    if found is None:
        return "unreadable" if " wait " in f" {text} " else "no wait"
    value = evaluate(found.group(1))
    new, old = _number(found.group(2)), _number(found.group(3))
    if value is None or new is None or old is None:
        return "unreadable"
    if new == value:
        return "restated a right value" if old == value else "fixed a slip"
    return "broke a right step" if old == value else "both wrong"
