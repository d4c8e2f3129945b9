"""Trace styles: prompt templates with a ``{problem}`` placeholder.

Two are built in, ``long`` (long chain of thought: every step, checks, corrections) and
``short`` (the essential steps only); both ask for the final answer in ``\\boxed{}``, which the
smolmix grader extracts. Any other ``--style`` is a UTF-8 text file holding a template; its
style name is the file's name without suffix. Only ``{problem}`` is replaced, so a template may
contain other braces (``\\boxed{}``, JSON) as they are.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from smolmix.core.errors import SmolmixError
from smolmix.core.inputs import read_text

PLACEHOLDER = "{problem}"

BUILT_IN = {
    "long": (
        "Solve the following problem. Reason at length before you answer: restate what is "
        "asked, work through every step in detail, check each intermediate result, and if you "
        "find a mistake, say so and correct it. End with the final answer in \\boxed{}.\n\n"
        "Problem: {problem}"),
    "short": (
        "Solve the following problem. Show only the essential steps, briefly, then give the "
        "final answer in \\boxed{}.\n\nProblem: {problem}"),
}


@dataclass(frozen=True)
class Style:
    """A named prompt template."""

    name: str
    template: str
    built_in: bool

    def render(self, problem: str) -> str:
        return self.template.replace(PLACEHOLDER, problem)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.template.encode()).hexdigest()[:16]


def resolve_style(value: str) -> Style:
    """``long``, ``short`` or a template file's path as a :class:`Style`."""
    if value in BUILT_IN:
        return Style(value, BUILT_IN[value], True)
    path = Path(value)
    if not path.exists():
        raise SmolmixError(f"unknown style {value!r} (built in: {', '.join(BUILT_IN)}; or a "
                           "template file with a {problem} placeholder)", "--style")
    template = read_text(path, "style template")
    if PLACEHOLDER not in template:
        raise SmolmixError("the template has no {problem} placeholder", str(path))
    return Style(path.stem, template, False)
