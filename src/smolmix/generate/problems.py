"""The problems file of ``smolmix generate``: JSONL, one problem per line.

Each line holds the problem text in ``problem`` (or ``question``, or ``prompt``), its reference
answer in ``answer`` (or a worked ``solution`` whose last ``\\boxed{}`` or ``####`` answer the
grader takes), and optionally ``id`` and ``task``. A problem without ``id`` is named by a hash
of its text, so two generate runs over the same problems (in any order) pair up by id. A
problem whose id (or, without ids, whose text) repeats an earlier line is skipped and counted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from smolmix.core.errors import SmolmixError
from smolmix.core.inputs import file_sha256, iter_json_objects

TEXT_FIELDS = ("problem", "question", "prompt")
ANSWER_FIELDS = ("answer", "solution")


@dataclass(frozen=True)
class Problem:
    """One problem: its id, its text, its reference answer (None without one), its task."""

    id: str
    text: str
    answer: str | None
    task: str


@dataclass(frozen=True)
class Problems:
    """The problems of a file, in file order, and how many repeated lines were skipped."""

    items: list[Problem]
    duplicates: int


def _field(data: dict, names: tuple[str, ...], where: str) -> str | None:
    for name in names:
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, dict | list | bool):
            raise SmolmixError(f"field {name!r} must be text, not {type(value).__name__}", where)
        return str(value)
    return None


def text_id(text: str) -> str:
    """A problem's id when the file gives none: 12 hex digits of its text's SHA-256."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def read_problems(path: Path, need_answers: bool, task: str | None = None) -> Problems:
    """The problems in ``path``; a line without a problem text, or (when ``need_answers``)
    without a reference answer, is an error naming it. ``task`` (default: the file's name
    without suffix) is used where a line gives none."""
    path = Path(path)
    default_task = task or path.stem
    seen: set[str] = set()
    items: list[Problem] = []
    duplicates = 0
    for where, data in iter_json_objects(path, "problems file"):
        text = _field(data, TEXT_FIELDS, where)
        if text is None or not text.strip():
            raise SmolmixError(f"no problem text (give one of {', '.join(TEXT_FIELDS)})", where)
        answer = _field(data, ANSWER_FIELDS, where)
        if answer is not None and not answer.strip():
            answer = None
        if answer is None and need_answers:
            raise SmolmixError("no reference answer (field 'answer'); pass --no-verify to "
                               "keep traces unchecked", where)
        given = data.get("id")
        if isinstance(given, dict | list | bool):
            raise SmolmixError("field 'id' must be text or a number", where)
        pid = str(given) if given is not None else text_id(text)
        if pid in seen:
            duplicates += 1
            continue
        seen.add(pid)
        items.append(Problem(pid, text, answer, _field(data, ("task",), where) or default_task))
    if not items:
        raise SmolmixError("no problems in the file", str(path))
    return Problems(items, duplicates)


def problems_digest(path: Path) -> str:
    """SHA-256 of the problems file's bytes (a resumed run must read the same file)."""
    return file_sha256(path)
