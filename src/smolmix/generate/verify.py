"""Rejection sampling: which traces to keep, and why the others were not kept.

A trace is rejected, in this order, when the server refused the request, when it was cut at
the generation limit (``finish_reason == "length"``: its end, and usually its answer, is
missing), when it is shorter or longer than the length filters, and, when verifying, when the
final answer the smolmix grader extracts does not equal the problem's reference answer (or no
answer is found). Kept traces carry the reason ``correct`` (``unverified`` with
``--no-verify``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from smolmix.core.errors import SmolmixError, lookup
from smolmix.grading.extract import EXTRACTORS
from smolmix.grading.grade import grade_many

CORRECT = "correct"
UNVERIFIED = "unverified"
TRUNCATED = "truncated at --max-tokens"


@dataclass(frozen=True)
class Filters:
    """What a kept trace must satisfy."""

    verify: bool = True
    answer_format: str = "auto"
    min_tokens: int | None = None
    max_tokens: int | None = None
    grade_timeout_s: float = 5.0

    def check(self) -> None:
        lookup(EXTRACTORS, self.answer_format, "answer format", "--answer-format")
        for flag, value in (("--min-trace-tokens", self.min_tokens),
                            ("--max-trace-tokens", self.max_tokens)):
            if value is not None and value < 0:
                raise SmolmixError(f"must be 0 or more, got {value}", flag)
        if None not in (self.min_tokens, self.max_tokens) and self.min_tokens > self.max_tokens:
            raise SmolmixError(f"{self.min_tokens} is above --max-trace-tokens "
                               f"{self.max_tokens}", "--min-trace-tokens")


@dataclass(frozen=True)
class Candidate:
    """What :func:`judge` looks at: the trace, how it ended, its length, any refusal."""

    text: str
    finish_reason: str | None
    tokens: int
    refused: str | None = None


@dataclass(frozen=True)
class Judgement:
    accepted: bool
    reason: str
    answer: str | None  # the final answer the grader found (None when not graded or none)


def _length_problem(candidate: Candidate, filters: Filters) -> str | None:
    if candidate.refused is not None:
        return f"refused: {candidate.refused}"
    if candidate.finish_reason == "length":
        return TRUNCATED
    if filters.min_tokens is not None and candidate.tokens < filters.min_tokens:
        return f"shorter than --min-trace-tokens ({candidate.tokens} tokens)"
    if filters.max_tokens is not None and candidate.tokens > filters.max_tokens:
        return f"longer than --max-trace-tokens ({candidate.tokens} tokens)"
    return None


def judge(candidates: Sequence[Candidate], references: Sequence[str | None],
          filters: Filters) -> list[Judgement]:
    """Keep or reject each candidate against its reference (see the module doc)."""
    out: list[Judgement | None] = [None] * len(candidates)
    graded: list[int] = []
    for i, candidate in enumerate(candidates):
        problem = _length_problem(candidate, filters)
        if problem is not None:
            out[i] = Judgement(False, problem, None)
        elif not filters.verify:
            out[i] = Judgement(True, UNVERIFIED, None)
        else:
            graded.append(i)
    if graded:
        verdicts = grade_many([candidates[i].text for i in graded],
                              [references[i] or "" for i in graded], filters.answer_format,
                              timeout=filters.grade_timeout_s)
        for i, verdict in zip(graded, verdicts, strict=True):
            if verdict.correct:
                out[i] = Judgement(True, CORRECT, verdict.answer)
            elif verdict.answer is None:
                out[i] = Judgement(False, "no final answer", None)
            else:
                out[i] = Judgement(False, f"wrong answer ({verdict.reason})", verdict.answer)
    return out  # type: ignore[return-value] - every slot is filled
