"""Grade model answers against references: extraction, a fast path, then math-verify.

A prediction's answer is extracted for its answer format (:mod:`smolmix.evaluate.extract`),
the reference's answer too (its last box or ``####`` answer, else the whole reference), and
the two are compared by the fast path (:mod:`smolmix.evaluate.equivalence`, whose conventions
are documented there: ``50%`` equals ``50`` not ``0.5``, units are dropped, numbers are exact),
and only when it cannot decide, by math-verify in a killable worker process
(:mod:`smolmix.evaluate.mathverify`): a call that overruns ``timeout`` seconds is graded
incorrect with reason ``"timeout"``. The ``exact`` format compares the stripped texts only.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from smolmix.errors import SmolmixError, lookup
from smolmix.evaluate.equivalence import clean, compare
from smolmix.evaluate.extract import ANSWER_FORMATS, EXTRACTORS, MAX_ANSWER, reference_answer
from smolmix.evaluate.mathverify import DIFFERENT, EQUAL, TIMEOUT, MathVerify, default_pool
from smolmix.records import json_objects

MAX_NESTING = 20  # brackets deeper than this are not sent to math-verify
_BRACKET = re.compile(r"[{}()\[\]]")

__all__ = ["ANSWER_FORMATS", "REASONS", "GradeSummary", "Verdict", "grade", "grade_file",
           "grade_many"]

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
class Verdict:
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
          timeout: float = 5.0) -> Verdict:
    """Grade one generation against its reference (see the module doc)."""
    return grade_many([prediction], [reference], answer_format, timeout=timeout)[0]


def grade_many(predictions: Sequence[str], references: Sequence[str],
               answer_format: str = "auto", *, timeout: float = 5.0,
               pool: MathVerify | None = None) -> list[Verdict]:
    """Grade each generation against its reference; the pairs the fast path cannot decide go
    to math-verify together, on all of ``pool``'s workers (default: the shared pool)."""
    extractor = lookup(EXTRACTORS, answer_format, "answer format", "answer_format")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    pool = pool or default_pool()
    verdicts: list[Verdict | None] = [None] * len(predictions)
    slow: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    for i, (prediction, reference) in enumerate(zip(predictions, references)):
        found = extractor(prediction)
        ref = reference.strip() if answer_format == "exact" else reference_answer(reference)
        if not ref:
            verdicts[i] = Verdict(", ".join(found) or None, ref, False, "no reference")
            continue
        if not found:
            verdicts[i] = Verdict(None, ref, False, "no answer")
            continue
        answer = ", ".join(found)
        if answer_format == "exact" or answer == ref:
            verdicts[i] = Verdict(answer, ref, answer == ref, "exact" if answer_format == "exact"
                                  else "match")
            continue
        if len(answer) > MAX_ANSWER or len(ref) > MAX_ANSWER:
            verdicts[i] = Verdict(answer, ref, False, "too complex")
            continue
        decided = compare(answer, ref)
        if decided is not None:
            verdicts[i] = Verdict(answer, ref, *decided)
        elif nesting(answer) > MAX_NESTING or nesting(ref) > MAX_NESTING:
            verdicts[i] = Verdict(answer, ref, False, "too complex")
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
                verdicts[i] = Verdict(answer, ref, result == EQUAL, reason)
    return verdicts  # type: ignore[return-value] - every slot is filled


# ---------------------------------------------------------------- files


@dataclass(frozen=True)
class GradeSummary:
    """Counts for a graded predictions file; ``verdicts`` are in line order."""

    path: Path
    out: Path | None
    total: int
    correct: int
    reasons: dict[str, int]
    verdicts: list[Verdict] = field(repr=False)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        return {"path": str(self.path), "out": None if self.out is None else str(self.out),
                "total": self.total, "correct": self.correct, "accuracy": self.accuracy,
                "reasons": self.reasons}


def get_field(data: dict, name: str, where: str) -> str:
    """``data[name]``, where a dotted name walks nested objects and lists (``resps.0.0``, as
    in lm-evaluation-harness samples); numbers become strings."""
    if name in data:
        value = data[name]
    else:
        value = data
        for part in name.split("."):
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.lstrip("-").isdigit() \
                    and -len(value) <= int(part) < len(value):
                value = value[int(part)]
            else:
                raise SmolmixError(f"missing field {name!r}", where)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise SmolmixError(f"field {name!r} is a {type(value).__name__}, not a string", where)
    return str(value)


def read_pairs(path: Path, prediction_field: str = "prediction",
               reference_field: str = "reference") -> tuple[list[int], list[str], list[str]]:
    """Line numbers, predictions and references of a JSONL file (blank lines skipped)."""
    lines, predictions, references = [], [], []
    try:
        for where, data in json_objects(path):
            predictions.append(get_field(data, prediction_field, where))
            references.append(get_field(data, reference_field, where))
            lines.append(int(where.rsplit(":", 1)[1]))
    except OSError as exc:
        raise SmolmixError(f"cannot read predictions ({exc.strerror})", str(path)) from None
    if not lines:
        raise SmolmixError("no predictions in the file", str(path))
    return lines, predictions, references


def _write_atomic(path: Path, rows: list[dict]) -> None:
    """Write JSONL rows to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def grade_file(path: Path, out: Path | None = None, prediction_field: str = "prediction",
               reference_field: str = "reference", answer_format: str = "auto", *,
               timeout: float = 5.0) -> GradeSummary:
    """Grade every line of a JSONL predictions file; with ``out``, write one verdict a line
    (``line``, ``answer``, ``reference``, ``correct``, ``reason``) there, atomically (an
    existing file is replaced). Bad input is a :class:`SmolmixError` naming ``file:line``,
    raised before anything is written."""
    path = Path(path)
    lookup(EXTRACTORS, answer_format, "answer format", "answer_format")
    lines, predictions, references = read_pairs(path, prediction_field, reference_field)
    verdicts = grade_many(predictions, references, answer_format, timeout=timeout)
    if out is not None:
        out = Path(out)
        _write_atomic(out, [{"line": n, **v.to_dict()} for n, v in zip(lines, verdicts)])
    return GradeSummary(path=path, out=out, total=len(verdicts),
                        correct=sum(v.correct for v in verdicts),
                        reasons=dict(Counter(v.reason for v in verdicts)), verdicts=verdicts)
