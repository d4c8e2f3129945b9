"""The one example schema: :class:`Record`, its Arrow table form (:data:`SCHEMA`, the columns
of a mixture folder) and its JSONL form, with the conversions between them.

A record is a prompt and the completion a model should produce for it, or a conversation:
``messages`` with a ``completion`` (the reply to learn), or ``messages`` alone (TRL's format,
the assistant's turns are what to learn). ``answer`` is what a grader compares against;
``tags`` carry labels such as ``{"cot": "long"}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa

from smolmix.core.errors import SmolmixError
from smolmix.core.inputs import iter_json_objects, parse_json

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)
SCHEMA = pa.schema([
    ("source", pa.string()),
    ("task", pa.string()),
    ("prompt", pa.string()),
    ("messages", MESSAGES),
    ("completion", pa.string()),
    ("answer", pa.string()),
    ("tags", pa.string()),
])
FIELDS = ("task", "prompt", "messages", "completion", "answer", "tags")


@dataclass(frozen=True)
class Record:
    """One example: ``prompt`` + ``completion``, or ``messages`` (+ ``completion``)."""

    task: str
    prompt: str | None
    completion: str | None
    answer: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    messages: list[dict] | None = None

    @property
    def conversation(self) -> list[dict] | None:
        """The whole chat: the messages, with the completion (when there is one) as the
        assistant's reply at the end."""
        if self.messages is None or self.completion is None:
            return self.messages
        return [*self.messages, {"role": "assistant", "content": self.completion}]

    @property
    def reply(self) -> str:
        """What the model should produce: the completion, or the last message's content."""
        return self.completion if self.completion is not None else self.messages[-1]["content"]

    @property
    def reference(self) -> str:
        """What a grader compares a generation with: the answer, else the reply."""
        return self.answer or self.reply

    @property
    def prompt_input(self) -> str | list[dict]:
        """What a model answers: the prompt text, or every message before the reply."""
        if self.messages:
            return self.messages if self.completion is not None else self.messages[:-1]
        return self.prompt

    def key(self) -> str:
        """The example's content (prompt or messages, completion): equal keys, same example."""
        return json.dumps([self.prompt, self.messages, self.completion])

    def to_dict(self) -> dict:
        data = asdict(self)
        if data["messages"] is None:
            del data["messages"]
        return data

    @classmethod
    def from_dict(cls, data: dict, where: str = "record") -> Record:
        chat = bool(data.get("messages"))
        needed = ("task", "messages") if chat else ("task", "prompt", "completion")
        missing = [k for k in needed if data.get(k) is None]
        if missing:
            raise SmolmixError(f"missing field {missing[0]!r}", where)
        tags = data.get("tags") or {}
        if isinstance(tags, str):
            tags = parse_json(tags, where, line=0)
        if not isinstance(tags, dict):
            raise SmolmixError("field 'tags' must be an object", where)
        messages = data["messages"] if chat else None
        if messages is not None and not (isinstance(messages, list)
                                         and all(isinstance(m, dict) for m in messages)):
            raise SmolmixError("field 'messages' must be a list of objects", where)
        for name in ("task", "prompt", "completion", "answer"):
            if isinstance(data.get(name), dict | list):
                raise SmolmixError(f"field {name!r} must be text, not "
                                   f"{type(data[name]).__name__}", where)
        return cls(
            task=str(data["task"]),
            prompt=None if data.get("prompt") is None else str(data["prompt"]),
            completion=None if data.get("completion") is None else str(data["completion"]),
            answer=None if data.get("answer") is None else str(data["answer"]),
            tags={str(k): str(v) for k, v in tags.items() if v is not None},
            messages=[dict(m) for m in messages] if messages is not None else None,
        )


def records_from_table(table) -> list[Record]:
    """The records of a canonical Arrow table or of a ``datasets.Dataset`` (a mixture)."""
    columns = [c for c in FIELDS if c in table.column_names]
    if isinstance(table, pa.Table):
        data = table.select(columns).to_pydict()
    else:
        data = table.select_columns(columns).to_dict()
    n = len(data[columns[0]]) if columns else 0
    return [Record.from_dict({c: data[c][i] for c in columns}, f"row {i}") for i in range(n)]


def by_task(records: Iterable[Record]) -> dict[str, list[Record]]:
    """Records grouped by task, tasks in name order."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record.task, []).append(record)
    return dict(sorted(groups.items()))


def task_shares(records: Sequence[Record]) -> dict[str, float]:
    """Each task's fraction of ``records``."""
    counts: dict[str, int] = {}
    for record in records:
        counts[record.task] = counts.get(record.task, 0) + 1
    return {task: n / len(records) for task, n in counts.items()}


def write_jsonl(records: Iterable[Record], path: Path) -> None:
    """Write records one JSON object per line."""
    with open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec.to_dict(), ensure_ascii=False, sort_keys=True) + "\n")


def read_jsonl(path: Path) -> Iterator[Record]:
    """Read records written by :func:`write_jsonl`; a bad line names file and line number."""
    for where, data in iter_json_objects(Path(path), "JSONL file"):
        yield Record.from_dict(data, where)
