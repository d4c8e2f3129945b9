"""The canonical training/evaluation example and its JSONL reader/writer."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from smolmix.errors import SmolmixError


@dataclass(frozen=True)
class Record:
    """One example: a prompt and the completion a model should produce for it.

    ``answer`` is what a grader compares against (for lab tasks, the completion itself);
    ``tags`` carry free-form labels such as ``{"cot": "long"}`` or ``{"stage": "1"}``.
    """

    task: str
    prompt: str
    completion: str
    answer: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "record") -> Record:
        missing = [k for k in ("task", "prompt", "completion") if k not in data]
        if missing:
            raise SmolmixError(f"missing field {missing[0]!r}", where)
        return cls(
            task=str(data["task"]),
            prompt=str(data["prompt"]),
            completion=str(data["completion"]),
            answer=None if data.get("answer") is None else str(data["answer"]),
            tags={str(k): str(v) for k, v in (data.get("tags") or {}).items()},
        )


def write_jsonl(records: Iterable[Record], path: Path) -> None:
    """Write records one JSON object per line."""
    with open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec.to_dict(), ensure_ascii=False, sort_keys=True) + "\n")


def json_objects(path: Path) -> Iterator[tuple[str, dict]]:
    """Each non-blank line of a JSONL file as (``file:line``, object); a line that is not a
    JSON object is an error naming its file and line."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SmolmixError(f"malformed JSON ({exc.msg})", where) from None
            if not isinstance(data, dict):
                raise SmolmixError("line is not a JSON object", where)
            yield where, data


def read_jsonl(path: Path) -> Iterator[Record]:
    """Read records written by :func:`write_jsonl`; a bad line names file and line number."""
    for where, data in json_objects(path):
        yield Record.from_dict(data, where)
