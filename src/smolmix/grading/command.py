"""``smolmix grade``: grade predictions made elsewhere (lm-evaluation-harness samples, another
tool's JSONL) without a model."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from smolmix.core.errors import SmolmixError, lookup
from smolmix.core.inputs import iter_json_objects
from smolmix.core.output import check_destination
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
    """Line numbers, predictions and references of a JSONL file (blank lines skipped), read
    through the one input layer: strict UTF-8 (a BOM accepted), a bad byte named by its
    offset, every problem an error naming ``file:line``."""
    lines, predictions, references = [], [], []
    for where, data in iter_json_objects(path, "predictions file"):
        predictions.append(get_field(data, prediction_field, where))
        references.append(get_field(data, reference_field, where))
        lines.append(int(where.rsplit(":", 1)[1]))
    if not lines:
        raise SmolmixError("no predictions in the file", str(path))
    return lines, predictions, references


def check_verdicts_out(out: Path, predictions: Path, flag: str = "--out") -> None:
    """``out`` can take the verdicts: not the predictions file itself (by any name: a symlink
    or a hard link to it counts), not a folder or a special file, and a place this process
    can write (see :func:`check_destination`)."""
    out = Path(out)
    check_destination(out, flag)  # first: a name too long cannot even be looked up
    if out.exists() and Path(predictions).exists() and os.path.samefile(out, predictions):
        raise SmolmixError(f"{str(out)!r} is the predictions file being graded; write the "
                           "verdicts elsewhere", flag)
    if out.is_dir():
        raise SmolmixError(f"{str(out)!r} is a folder; give a file name", flag)
    if out.exists() and not out.is_file():
        raise SmolmixError(f"{str(out)!r} exists and is not a regular file", flag)


@contextmanager
def _file_beside(path: Path, flag: str = "--out") -> Iterator[Path]:
    """An empty temporary file beside ``path`` (missing parent folders made), for
    :func:`_replace_with`; on any error or interrupt in the block it is removed, with the
    folders made for it, and ``path`` is left as it was."""
    created = _make_parents(path.parent, flag)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:32]}.",
                                    suffix=".partial")
    except OSError as exc:
        _remove(created)
        raise SmolmixError(f"cannot write in {str(path.parent)!r} ({exc.strerror})",
                           flag) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        _remove(created)
        raise


def _replace_with(tmp: Path, path: Path, rows: list[dict], flag: str = "--out") -> None:
    """Write JSONL ``rows`` to ``tmp``, then rename it to ``path``."""
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise SmolmixError(f"cannot write {str(path)!r} ({exc.strerror})", flag) from None


def _make_parents(folder: Path, flag: str) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created (outermost first)."""
    missing = []
    folder = Path(os.path.abspath(folder))
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    created: list[Path] = []
    for made in reversed(missing):
        try:
            os.mkdir(made)
        except FileExistsError:
            continue
        except OSError as exc:
            _remove(created)
            raise SmolmixError(f"cannot create {str(made)!r} ({exc.strerror})", flag) from None
        created.append(made)
    return created


def _remove(folders: list[Path]) -> None:
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()


def grade_file(path: Path, out: Path | None = None, prediction_field: str = "prediction",
               reference_field: str = "reference", answer_format: str = "auto", *,
               timeout: float = 5.0) -> GradeSummary:
    """Grade every line of a JSONL predictions file; with ``out``, write one verdict a line
    (``line``, ``answer``, ``reference``, ``correct``, ``reason``) there, atomically (an
    existing file is replaced; the predictions file itself never is). Bad input, and an
    ``out`` that cannot be written, is a :class:`SmolmixError` raised before any grading,
    with nothing written."""
    path = Path(path)
    lookup(EXTRACTORS, answer_format, "answer format", "answer_format")
    if out is not None:
        out = Path(out)
        check_verdicts_out(out, path)
    lines, predictions, references = read_pairs(path, prediction_field, reference_field)
    if out is None:
        verdicts = grade_many(predictions, references, answer_format, timeout=timeout)
    else:
        with _file_beside(out) as tmp:
            verdicts = grade_many(predictions, references, answer_format, timeout=timeout)
            _replace_with(tmp, out, [{"line": n, **v.to_dict()}
                                     for n, v in zip(lines, verdicts, strict=True)])
    return GradeSummary(path=path, out=out, total=len(verdicts),
                        correct=sum(v.correct for v in verdicts),
                        reasons=dict(Counter(v.reason for v in verdicts)), verdicts=verdicts)
