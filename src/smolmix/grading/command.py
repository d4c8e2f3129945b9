"""``smolmix grade``: grade predictions made elsewhere (lm-evaluation-harness samples, another
tool's JSONL) without a model."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from smolmix.core.errors import SmolmixError, lookup
from smolmix.core.records import json_objects
from smolmix.grading.extract import EXTRACTORS
from smolmix.grading.grade import GradeVerdict, grade_many


@dataclass(frozen=True)
class GradeSummary:
    """Counts for a graded predictions file; ``verdicts`` are in line order."""

    path: Path
    out: Path | None
    total: int
    correct: int
    reasons: dict[str, int]
    verdicts: list[GradeVerdict] = field(repr=False)

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
