"""Evaluation tasks described as data (as in lm-evaluation-harness): where the examples are,
which fields hold the question and the reference, how to prompt, how to grade.

A task file (YAML or JSON) holds one task or a list under ``tasks:``. Built-in kinds fill the
defaults for GSM8K-style data (``question``/``answer`` with ``#### N``), MATH-style data
(``problem``/``solution`` with ``\\boxed{}``) and the synthetic lab tasks. On the command
line a task is ``NAME`` (a lab task, e.g. ``lab:sort``), ``gsm8k=PATH``, ``math=PATH`` or a
task file.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import datasets
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from smolmix.core.config import invalid, read_yaml
from smolmix.core.errors import SmolmixError, first_line
from smolmix.core.inputs import (
    iter_json_objects,
    read_csv_header,
    read_csv_table,
    reading,
)
from smolmix.core.records import Record
from smolmix.grading.extract import ANSWER_FORMATS
from smolmix.models.prompting import CHAT, Prompt

LAB_PREFIX = "lab:"


@dataclass(frozen=True)
class TaskGenerator:
    """Where generated tasks (``lab:NAME``) come from: their names and a function
    ``make(name, count, seed)`` giving ``count`` records."""

    names: Callable[[], Sequence[str]]
    make: Callable[[str, int, int], list[Record]]


GENERATORS: dict[str, TaskGenerator] = {}


def register_generator(kind: str, generator: TaskGenerator) -> None:
    """Make ``kind:NAME`` tasks available (``smolmix.lab`` registers ``lab``)."""
    GENERATORS[kind] = generator


def _generator(kind: str) -> TaskGenerator:
    if kind not in GENERATORS:
        raise SmolmixError(f"{kind} tasks need their generator (import smolmix.lab)", "--tasks")
    return GENERATORS[kind]


class TaskSpec(BaseModel):
    """One evaluation task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["custom", "gsm8k", "math", "lab"] = "custom"
    path: str | None = Field(None, description="JSONL/JSON/Parquet/CSV file or datasets folder")
    split: str | None = None
    prompt_field: str | None = None
    reference_field: str | None = None
    prompt_template: str | None = Field(None, description="str.format over the row's fields")
    answer_format: str | None = None
    max_new_tokens: int | None = Field(None, gt=0, le=2**24, description="1 to 16,777,216")
    stop: list[str] | None = None
    limit: int | None = Field(None, gt=0, description="evaluate the first N examples")
    num_fewshot: int = Field(0, ge=0, description="solved examples before each question "
                             "(from fewshot_path, else the task's first rows, then not scored)")
    fewshot_path: str | None = Field(None, description="where the few-shot examples come from")
    target_delimiter: str = Field(" ", description="plain prompts: between a few-shot "
                                  "question and its answer")
    fewshot_delimiter: str = Field("\n\n", description="plain prompts: between examples")
    bucket: str | None = Field(None, description="frequency bucket (rare, frequent, ...)")
    count: int = Field(200, gt=0, description="lab tasks: examples generated")


DEFAULTS = {
    "gsm8k": {"prompt_field": "question", "reference_field": "answer",
              "prompt_template": "Question: {question}\nAnswer:", "answer_format": "gsm8k",
              "max_new_tokens": 256, "stop": ["\n\nQuestion:"]},
    "math": {"prompt_field": "problem", "reference_field": "solution",
             "prompt_template": "Problem: {problem}\nSolution:", "answer_format": "boxed",
             "max_new_tokens": 512, "stop": ["\n\nProblem:"]},
    "lab": {"prompt_field": "prompt", "reference_field": "completion",
            "prompt_template": "{prompt}", "answer_format": "exact", "max_new_tokens": 32,
            "stop": []},
    "custom": {"prompt_field": "prompt", "reference_field": "answer", "answer_format": "auto",
               "max_new_tokens": 256, "stop": []},
}


@dataclass(frozen=True)
class EvalTask:
    """A resolved task: its settings, its examples (prompt text and reference) and the
    solved examples (prompt, answer) shown before each question."""

    spec: TaskSpec
    prompts: list[str]
    references: list[str]
    shots: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    def inputs(self, prompt_format: str) -> list[Prompt]:
        """What the model is given for each example: ``plain``, the few-shot examples and
        the question as one text (lm-evaluation-harness's delimiters); ``chat``, one
        user/assistant exchange per few-shot example, then the question as the user's
        message (lm-eval's ``fewshot_as_multiturn``)."""
        if prompt_format == CHAT:
            context = [m for q, a in self.shots for m in (
                {"role": "user", "content": q}, {"role": "assistant", "content": a})]
            return [[*context, {"role": "user", "content": p}] for p in self.prompts]
        spec = self.spec
        prefix = "".join(f"{q}{spec.target_delimiter}{a}{spec.fewshot_delimiter}"
                         for q, a in self.shots)
        return [prefix + p for p in self.prompts]

    def setting(self, key: str):
        value = getattr(self.spec, key)
        return value if value is not None else DEFAULTS[self.spec.kind].get(key)


def parse_task_arg(text: str) -> list[TaskSpec]:
    """One ``--tasks`` item: ``lab:NAME``, ``gsm8k=PATH``, ``math=PATH`` or a task file."""
    if text.startswith(LAB_PREFIX):
        name, known = text[len(LAB_PREFIX):], sorted(_generator("lab").names())
        if name not in known:
            raise SmolmixError(f"unknown lab task {name!r}; known: {', '.join(known)}",
                               "--tasks")
        return [TaskSpec(name=name, kind="lab")]
    kind, sep, path = text.partition("=")
    if sep and kind in ("gsm8k", "math"):
        return [TaskSpec(name=Path(path).stem if kind not in Path(path).stem else kind,
                         kind=kind, path=path)]
    return load_task_file(Path(text))


def load_task_file(path: Path) -> list[TaskSpec]:
    """The tasks of a YAML/JSON task file; paths in it are relative to the file."""
    if not path.exists():
        raise SmolmixError(f"task {str(path)!r} is neither a lab task (lab:NAME), "
                           "gsm8k=PATH, math=PATH nor an existing task file", "--tasks")
    data, root = read_yaml(path, kind="task file")
    items = data["tasks"] if "tasks" in data else [data]
    if not isinstance(items, list) or not items:
        raise SmolmixError("'tasks' must be a non-empty list", f"{path}:1")
    specs = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise SmolmixError("each task must be a mapping", f"{path}:1")
        for key in ("path", "fewshot_path"):
            if item.get(key) and not Path(item[key]).is_absolute():
                item = {**item, key: str(path.parent / item[key])}
        try:
            specs.append(TaskSpec.model_validate(item))
        except ValidationError as exc:
            node = root if "tasks" not in data else None
            raise invalid(exc, node, path if node is not None else f"{path} tasks[{i}]") \
                from None
        _check_spec(specs[-1], str(path))
    return specs


def _check_spec(spec: TaskSpec, where: str) -> None:
    if spec.kind != "lab" and not spec.path:
        raise SmolmixError(f"task {spec.name!r}: missing 'path'", where)
    fmt = spec.answer_format
    if fmt is not None and fmt not in ANSWER_FORMATS:
        raise SmolmixError(f"task {spec.name!r}: unknown answer_format {fmt!r}; known: "
                           f"{', '.join(ANSWER_FORMATS)}", where)
    if spec.prompt_template is not None:
        template_fields(spec.prompt_template, f"task {spec.name!r}: prompt_template", where)


def template_fields(template: str, what: str, where: str) -> set[str]:
    """The row fields a ``str.format`` template names; a malformed template (an unbalanced
    brace, a positional ``{}`` or ``{0}``) is an error."""
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise SmolmixError(f"{what} is not a valid template ({exc}; write a literal brace "
                           "as {{ or }})", where) from None
    for name in names:
        if not name or name.isdigit():
            raise SmolmixError(f"{what} has a positional field {{{name}}}; name a row field, "
                               "e.g. {question}", where)
    return names


def load_task(spec: TaskSpec, seed: int = 0) -> EvalTask:
    """Read (or, for lab tasks, generate) the task's examples and build its prompts."""
    if spec.kind == "lab":
        records = _generator("lab").make(spec.name, spec.count, seed)
        rows = [{"prompt": r.prompt, "completion": r.completion} for r in records]
    else:
        rows = _read_rows(spec)
    shot_rows = []
    if spec.num_fewshot:
        if spec.fewshot_path:
            shot_rows = _read_rows(spec.model_copy(update={"path": spec.fewshot_path}))
        else:
            shot_rows, rows = rows[:spec.num_fewshot], rows[spec.num_fewshot:]
        if len(shot_rows) < spec.num_fewshot:
            raise SmolmixError(f"task {spec.name!r}: num_fewshot {spec.num_fewshot} but only "
                               f"{len(shot_rows)} examples to take them from",
                               str(spec.fewshot_path or spec.path or spec.name))
        shot_rows = shot_rows[:spec.num_fewshot]
    if spec.limit is not None:
        rows = rows[:spec.limit]
    if not rows:
        raise SmolmixError(f"task {spec.name!r} has no examples", str(spec.path))
    task = EvalTask(spec, [], [])
    for prompt, reference in (_example(task, i, row, "few-shot example ")
                              for i, row in enumerate(shot_rows)):
        task.shots.append((prompt, reference))
    for i, row in enumerate(rows):
        prompt, reference = _example(task, i, row)
        task.prompts.append(prompt)
        task.references.append(reference)
    return task


def _example(task: EvalTask, i: int, row: dict, what: str = "example ") -> tuple[str, str]:
    """One row's prompt (the task's template over its fields) and reference."""
    template = task.setting("prompt_template") or "{" + task.setting("prompt_field") + "}"
    where = str(task.spec.path or task.name)
    fields = template_fields(template, f"task {task.name!r}: prompt_template", where)
    needed = sorted(fields | {task.setting("reference_field")})
    missing = [f for f in needed if f not in row or row[f] is None]
    if missing:
        raise SmolmixError(f"task {task.name!r}: {what}{i} has no field {missing[0]!r}", where)
    try:
        prompt = template.format(**row)
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
        raise SmolmixError(f"task {task.name!r}: prompt_template cannot format {what}{i} "
                           f"({first_line(exc, 120)})", where) from None
    return prompt, str(row[task.setting("reference_field")])


def _read_rows(spec: TaskSpec) -> list[dict]:
    """The task's rows from its ``path``: JSONL (strict UTF-8, every line an object), a
    ``datasets`` folder (``save_to_disk``), Parquet or CSV (every column as text)."""
    path = Path(spec.path)
    what = f"task {spec.name!r} data"
    if not path.exists():
        raise SmolmixError(f"task {spec.name!r}: data {spec.path!r} does not exist", "path")
    if path.suffix.lower() in (".jsonl", ".json") and path.is_file():
        return [data for _, data in iter_json_objects(path, what)]
    if path.is_dir():
        return _read_saved(path, spec, what)
    kind = path.suffix.lower()
    if kind == ".parquet":
        import pyarrow.parquet as pq

        with reading(path, what):
            return pq.read_table(path).to_pylist()
    if kind == ".csv":
        names = read_csv_header(path, what)
        if not names or len(set(names)) != len(names):
            raise SmolmixError(f"{what}: the CSV header must name distinct columns, got "
                               f"{names}", f"{path}:1")
        return read_csv_table(path, what, names, nulls=True).to_pylist()
    raise SmolmixError(f"unsupported task data {path.suffix!r} (use .jsonl, .json, .parquet, "
                       ".csv or a datasets folder)", str(path))


def _read_saved(path: Path, spec: TaskSpec, what: str) -> list[dict]:
    """The rows of a ``datasets`` ``save_to_disk`` folder (a split of a ``DatasetDict``)."""
    if not any((path / name).is_file() for name in ("state.json", "dataset_dict.json")):
        raise SmolmixError(f"{what}: not a datasets folder (no state.json or "
                           "dataset_dict.json from save_to_disk)", str(path))
    with reading(path, what):
        data = datasets.load_from_disk(str(path))
    if isinstance(data, datasets.DatasetDict):
        split = spec.split or next(iter(data), None)
        if split not in data:
            raise SmolmixError(f"{what}: no split {split!r} (has {', '.join(data)})", str(path))
        data = data[split]
    with reading(path, what):
        return data.to_list()


def resolve_tasks(args: Sequence[str]) -> list[TaskSpec]:
    """Every ``--tasks`` item, with no name used twice."""
    specs = [spec for text in args for spec in parse_task_arg(text)]
    names = [s.name for s in specs]
    for name in names:
        if names.count(name) > 1:
            raise SmolmixError(f"task {name!r} is given twice", "--tasks")
    if not specs:
        raise SmolmixError("no tasks given", "--tasks")
    return specs
