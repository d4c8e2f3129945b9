"""Grade model answers against references: extraction, a fast path, then math-verify.

A prediction's answer is extracted for its answer format (:mod:`smolmix.grading.extract`),
the reference's answer too (its last box or ``####`` answer, else the whole reference), and
the two are compared by the fast path (:mod:`smolmix.grading.equivalence`, whose conventions
are documented there: ``50%`` equals ``50`` not ``0.5``, units are dropped, numbers are exact),
and only when it cannot decide, by math-verify in a killable worker process
(:mod:`smolmix.grading.mathverify`): a call that overruns ``timeout`` seconds is graded
incorrect with reason ``"timeout"``. The ``exact`` format compares the stripped texts only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from smolmix.core.errors import lookup
from smolmix.grading.equivalence import clean, compare
from smolmix.grading.extract import EXTRACTORS, MAX_ANSWER, reference_answer
from smolmix.grading.mathverify import DIFFERENT, EQUAL, TIMEOUT, MathVerify, default_pool

MAX_NESTING = 20  # brackets deeper than this are not sent to math-verify
_BRACKET = re.compile(r"[{}()\[\]]")

REASONS = {
    "exact": "exact format: the stripped texts are (not) identical",
    "match": "the normalised answers are identical",
    "number": "compared as numbers",
    "value": "compared as evaluated expressions",
    "sequence": "compared as lists, tuples, sets or intervals",
    "unit": "same number, different units",
    "words": "compared as words, ignoring case",
    "math-verify": "decided by math-verify",
    "timeout": "math-verify ran past the timeout: graded incorrect",
    "error": "math-verify failed: graded incorrect",
    "too complex": "not identical, and too long or too deeply nested to compare safely",
    "no answer": "no answer found in the prediction",
    "no reference": "the reference is empty",
}


@dataclass(frozen=True)
class GradeVerdict:
    """The answer found in a prediction (``None`` if none), the reference's answer, whether
    they agree, and how that was decided (a key of :data:`REASONS`)."""

    answer: str | None
    reference: str
    correct: bool
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def nesting(text: str) -> int:
    """How deeply brackets nest in ``text``."""
    depth = deepest = 0
    for m in _BRACKET.finditer(text):
        depth += 1 if m.group() in "{([" else -1
        deepest = max(deepest, depth)
    return deepest


def grade(prediction: str, reference: str, answer_format: str = "auto", *,
          timeout: float = 5.0) -> GradeVerdict:
    """Grade one generation against its reference (see the module doc)."""
    return grade_many([prediction], [reference], answer_format, timeout=timeout)[0]


def grade_many(predictions: Sequence[str], references: Sequence[str],
               answer_format: str = "auto", *, timeout: float = 5.0,
               pool: MathVerify | None = None) -> list[GradeVerdict]:
    """Grade each generation against its reference; the pairs the fast path cannot decide go
    to math-verify together, on all of ``pool``'s workers (default: the shared pool)."""
    extractor = lookup(EXTRACTORS, answer_format, "answer format", "answer_format")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    pool = pool or default_pool()
    verdicts: list[GradeVerdict | None] = [None] * len(predictions)
    slow: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    for i, (prediction, reference) in enumerate(zip(predictions, references)):
        found = extractor(prediction)
        ref = reference.strip() if answer_format == "exact" else reference_answer(reference)
        if not ref:
            verdicts[i] = GradeVerdict(", ".join(found) or None, ref, False, "no reference")
            continue
        if not found:
            verdicts[i] = GradeVerdict(None, ref, False, "no answer")
            continue
        answer = ", ".join(found)
        if answer_format == "exact" or answer == ref:
            verdicts[i] = GradeVerdict(answer, ref, answer == ref,
                                       "exact" if answer_format == "exact" else "match")
            continue
        if len(answer) > MAX_ANSWER or len(ref) > MAX_ANSWER:
            verdicts[i] = GradeVerdict(answer, ref, False, "too complex")
            continue
        decided = compare(answer, ref)
        if decided is not None:
            verdicts[i] = GradeVerdict(answer, ref, *decided)
        elif nesting(answer) > MAX_NESTING or nesting(ref) > MAX_NESTING:
            verdicts[i] = GradeVerdict(answer, ref, False, "too complex")
        else:
            if not slow:
                pool.start(1)  # a worker starts up while the fast path goes on
            slow.setdefault((clean(answer), clean(ref)), []).append((i, answer, ref))
    if slow:
        results = pool.check_many(list(slow), timeout)
        for result, waiting in zip(results, slow.values()):
            reason = "math-verify" if result in (EQUAL, DIFFERENT) else \
                "timeout" if result == TIMEOUT else "error"
            for i, answer, ref in waiting:
                verdicts[i] = GradeVerdict(answer, ref, result == EQUAL, reason)
    return verdicts  # type: ignore[return-value] - every slot is filled
