"""Load a recipe source (JSONL, Parquet, CSV, a saved or Hub dataset) into the canonical table.

The canonical table has one row per example and these columns, in this order:
``source, task, prompt, messages, completion, answer, tags``. Exactly one of ``prompt`` and
``messages`` is set in a row; ``answer`` may be null; ``tags`` is a JSON object with sorted keys
(``json.dumps(tags, sort_keys=True, ensure_ascii=False)``). Reading and mapping use pyarrow
throughout, so a file of a few hundred thousand examples loads in about a second. A source's
``format`` maps ShareGPT (``conversations`` of ``{from, value}``) and alpaca
(``instruction`` + ``input``, ``output``) records onto these columns; TRL's conversational
prompt/completion (``prompt`` a list of messages, ``completion`` the assistant's message) is
recognised by its types.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from smolmix.core.errors import SmolmixError, first_line
from smolmix.core.inputs import (
    BOM,
    MAX_DEPTH,
    iter_json_objects,
    parse_json,
    read_csv_header,
    read_csv_table,
    read_json,
    read_text,
    reading,
)
from smolmix.core.records import MESSAGES, SCHEMA
from smolmix.mix.hygiene import ArrowTexts
from smolmix.mix.recipe import SourceSpec

JSONL_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
_JSON_BLOCK = 1 << 24


@dataclass
class _Origin:
    """Where rows come from, to name a bad one: ``file:line`` for JSONL, else ``file: row N``."""

    name: str
    lines: Callable[[], list[int]] | None = None

    def row(self, index: int) -> str:
        if self.lines is not None:
            return f"{self.name}:{self.lines()[index]}"
        return f"{self.name}: row {index}"


@dataclass(frozen=True)
class _Plan:
    """Which column feeds each canonical field (None: a constant or absent)."""

    text: str
    chat: bool
    completion: str | None
    answer: str | None
    task: str | None
    task_value: str | None
    tag_fields: dict[str, str] = field(default_factory=dict)
    format: str = "auto"
    extra: str | None = None  # alpaca: the input column joined to the instruction
    record_tags: str | None = None  # a ``tags`` object per record (smolmix's own JSONL)

    def columns(self) -> list[str]:
        named = [self.task, self.text, self.extra, self.completion, self.answer,
                 *self.tag_fields.values(), self.record_tags]
        return list(dict.fromkeys(c for c in named if c is not None))


def load_source(spec: SourceSpec, base_dir: Path, *, eval_set: bool = False) -> pa.Table:
    """Read ``spec`` (paths relative to ``base_dir``) into the canonical table (:data:`SCHEMA`).

    With ``eval_set`` (evaluation sets for decontamination) ``completion`` may be absent (null)
    and ``task`` defaults to the source's name.
    """
    table, origin = _read(spec, Path(base_dir), eval_set)
    if table.num_rows == 0:
        raise SmolmixError(f"source {spec.name!r} has no examples", origin.name)
    plan = _plan(spec, table.column_names, eval_set, origin.name)
    return _canonical(table, spec, plan, origin)


def record_text(table: pa.Table) -> list[str]:
    """Per row, the text used for dedup and decontamination: the prompt (or the messages'
    contents joined by newlines), a newline, and the completion (when there is one)."""
    return record_text_array(table).to_pylist()


def record_text_array(table: pa.Table) -> pa.ChunkedArray:
    """:func:`record_text` as an Arrow array (no Python strings)."""
    joined = pa.chunked_array(
        [pc.binary_join(_contents(chunk), "\n") for chunk in table["messages"].chunks],
        pa.string())
    text = pc.coalesce(table["prompt"], joined)
    return pc.binary_join_element_wise(text, table["completion"], "\n", null_handling="skip")


class RecordTexts(Sequence[str]):
    """:func:`record_text` of a table, built slice by slice when asked (never all at once)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return list(self)[index]
            return ArrowTexts(record_text_array(self._rows(start, stop - start)))
        return record_text_array(self._rows(int(index), 1))[0].as_py()

    def __iter__(self):
        for start in range(0, len(self), 8192):
            yield from record_text_array(self._rows(start, 8192)).to_pylist()

    def take(self, indices: Sequence[int]) -> list[str]:
        """The texts of the rows at ``indices``, in that order."""
        return record_text_array(take_rows(self.table, indices)).to_pylist()

    def _rows(self, start: int, count: int) -> pa.Table:
        # A compact copy: some kernels reject slices whose null bitmaps start at an offset.
        return self.table.slice(start, max(0, count)).combine_chunks().take(
            pa.array(range(min(max(0, count), len(self) - start))))


def take_rows(table: pa.Table, indices: Sequence[int] | np.ndarray) -> pa.Table:
    """``table.take(indices)`` as one compact chunk, gathering chunk by chunk.

    Arrow's take on a chunked table concatenates whole columns first; a few scattered rows
    of a large table are far cheaper to gather from each record batch they fall in.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) and (indices.min() < 0 or indices.max() >= table.num_rows):
        raise IndexError(f"row index out of range for a table of {table.num_rows} rows")
    order = np.argsort(indices, kind="stable")
    wanted = indices[order]
    batches = table.to_batches()
    bounds = np.cumsum([0] + [batch.num_rows for batch in batches])
    which = np.searchsorted(bounds, wanted, side="right") - 1
    cuts = np.searchsorted(which, np.arange(len(batches) + 1))
    parts = [batches[b].take(pa.array(wanted[cuts[b]:cuts[b + 1]] - bounds[b]))
             for b in range(len(batches)) if cuts[b] < cuts[b + 1]]
    gathered = pa.Table.from_batches(parts, schema=table.schema).combine_chunks()
    return gathered.take(pa.array(np.argsort(order, kind="stable")))


def _contents(chunk: pa.ListArray) -> pa.ListArray:
    contents = pc.struct_field(chunk.values, "content")
    return pa.ListArray.from_arrays(chunk.offsets, contents, mask=chunk.is_null())


# --- reading --------------------------------------------------------------------------------


def _read(spec: SourceSpec, base_dir: Path, eval_set: bool) -> tuple[pa.Table, _Origin]:
    """The source's needed columns, read through the one input layer: any problem with the
    file (missing, unreadable, corrupt, text that is not UTF-8) is one error naming it."""
    what = f"source {spec.name!r}"
    if spec.hub is not None:
        origin = _Origin(f"hub {spec.hub}")
        table = _dataset_table(_load_hub(spec, origin), spec, eval_set, origin)
        _check_utf8(table, spec, origin)
        return table, origin
    path = spec.location(base_dir)
    assert path is not None
    origin = _Origin(str(path))
    if not path.exists():
        raise SmolmixError(f"{what}: file not found", str(path))
    if path.is_dir():
        data = _load_disk(path, spec, origin)
        with reading(path, what):
            table = _dataset_table(data, spec, eval_set, origin)
        _check_utf8(table, spec, origin)
        return table, origin
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return _read_jsonl(path, spec, eval_set)
    needed = _needed(spec, eval_set, str(path))
    if suffix in PARQUET_SUFFIXES:
        with reading(path, what):
            names = pq.read_schema(path).names
        columns = needed(names)
        with reading(path, what):
            table = pq.read_table(path, columns=columns)
        _check_utf8(table, spec, origin)
        return table, origin
    if suffix in CSV_SUFFIXES:
        table = read_csv_table(path, what, needed(read_csv_header(path, what)))
        _check_utf8(table, spec, origin)
        return table, origin
    raise SmolmixError(f"{what}: unsupported file type {suffix or path.name!r} "
                       "(use .jsonl, .json, .parquet, .csv or a datasets folder)", str(path))


def _needed(spec: SourceSpec, eval_set: bool, where: str) -> Callable[[list[str]], list[str]]:
    return lambda names: _plan(spec, names, eval_set, where).columns()


def _check_utf8(table: pa.Table, spec: SourceSpec, origin: _Origin) -> None:
    """Every string in ``table`` must be UTF-8: pyarrow's readers (Parquet, Arrow, its JSON
    reader) take invalid bytes into string columns, and a mixture holding them cannot be
    loaded. A bad value is an error naming its column and row."""
    try:
        table.validate(full=True)
        return
    except pa.ArrowInvalid:
        pass
    for name in table.column_names:
        before = 0
        for chunk in table[name].chunks:
            try:
                chunk.validate(full=True)
            except pa.ArrowInvalid as exc:
                if "UTF8" not in str(exc):
                    raise SmolmixError(f"source {spec.name!r}: column {name!r} is corrupt "
                                       f"({first_line(exc, 120)})", origin.name) from None
                row = _first_invalid(chunk)
                raise SmolmixError(f"source {spec.name!r}: column {name!r} holds text that "
                                   f"is not UTF-8{_bad_byte(chunk, row)}",
                                   origin.row(before + row)) from None
            before += len(chunk)
    raise SmolmixError(f"source {spec.name!r}: the data is corrupt", origin.name)


def _first_invalid(chunk: pa.Array) -> int:
    """The first row of ``chunk`` that fails full validation (bisection over slices)."""
    lo, hi = 0, len(chunk)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            chunk.slice(lo, mid - lo).validate(full=True)
            lo = mid
        except pa.ArrowInvalid:
            hi = mid
    return lo


def _bad_byte(chunk: pa.Array, row: int) -> str:
    """``: byte 0x.. at offset N of the value`` for a plain string column, else nothing."""
    if not pa.types.is_string(chunk.type):
        return ""
    raw = chunk.slice(row, 1).view(pa.binary())[0].as_py()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f": byte 0x{raw[exc.start]:02x} at offset {exc.start} of the value"
    return ""


def _read_jsonl(path: Path, spec: SourceSpec, eval_set: bool) -> tuple[pa.Table, _Origin]:
    """pyarrow's reader first; when it fails, or takes what the strict reader would refuse
    (text that is not UTF-8, numbers too large for a double, values nested too deeply), a
    line-by-line rescan through the input layer names the bad line (or, when every line
    parses, builds the table in Python: mixed types, JSON arrays)."""
    what = f"source {spec.name!r}"
    with reading(path, what):
        try:
            table = pj.read_json(path, read_options=pj.ReadOptions(block_size=_JSON_BLOCK))
        except pa.ArrowException:  # the strict reader names the problem
            table = None
    if table is not None and _as_strict_reads_it(table):
        return table, _Origin(str(path), cache(lambda: _record_lines(path)))
    records, lines = _parse_jsonl(path, what)
    origin = _Origin(str(path), (lambda: lines) if lines is not None else None)
    return _records_table(records, spec, eval_set, origin), origin


def _as_strict_reads_it(table: pa.Table) -> bool:
    """Whether pyarrow's table holds what the strict reader would give: no timestamps (pyarrow
    turns date-like strings into them; the slow path keeps the text as written), no nesting
    beyond the input layer's bound, valid UTF-8, and only finite numbers (pyarrow reads a
    5,000-digit integer as ``inf``)."""
    if any(pa.types.is_temporal(f.type) or _too_deep(f.type) for f in table.schema):
        return False
    try:
        table.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return not any(_has_nonfinite(chunk) for column in table.columns for chunk in column.chunks)


def _too_deep(kind: pa.DataType) -> bool:
    """Whether a type nests more than :data:`MAX_DEPTH` levels (walked without recursion)."""
    stack = [(kind, 1)]
    while stack:
        kind, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        stack.extend((kind.field(i).type, depth + 1) for i in range(kind.num_fields))
    return False


def _has_nonfinite(values: pa.Array) -> bool:
    kind = values.type
    if pa.types.is_floating(kind):
        finite = pc.is_finite(values)
        return bool(pc.any(pc.invert(finite.fill_null(True))).as_py() or False)
    if pa.types.is_struct(kind):
        return any(_has_nonfinite(values.field(i)) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _has_nonfinite(values.values)
    return False


def _record_lines(path: Path) -> list[int]:
    """The 1-based line number of each record (pyarrow skips blank lines)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [n for n, line in enumerate(fh, start=1) if line.strip()]


def _parse_jsonl(path: Path, what: str) -> tuple[list[dict], list[int] | None]:
    """Records of a JSONL file (or of a JSON array of records), read strictly."""
    if _starts_with_bracket(path, what):  # one JSON array of records
        records = parse_json(read_text(path, what), str(path))
        if not isinstance(records, list):
            raise SmolmixError("expected a JSON array of records", str(path))
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise SmolmixError("record is not a JSON object", f"{path}: row {i}")
        return records, None
    records, lines = [], []
    for where, data in iter_json_objects(path, what):
        records.append(data)
        lines.append(int(where.rsplit(":", 1)[1]))
    return records, lines


def _starts_with_bracket(path: Path, what: str) -> bool:
    """Whether the file's first character (after a BOM and whitespace) is ``[``."""
    with reading(path, what), open(path, "rb") as fh:
        first = True
        while block := fh.read(1 << 16):
            if first:
                block, first = block.removeprefix(BOM), False
            block = block.lstrip()
            if block:
                return block[:1] == b"["
    return False


def _records_table(records: list[dict], spec: SourceSpec, eval_set: bool,
                   origin: _Origin) -> pa.Table:
    """The needed columns of parsed records, scalars as text (the slow, forgiving path)."""
    if not records:
        return pa.table({})
    names = list(dict.fromkeys(k for rec in records for k in rec))
    plan = _plan(spec, names, eval_set, origin.name)
    columns = {}
    for name in plan.columns():
        conversational = name in (plan.text, plan.completion) and any(
            isinstance(rec.get(name), list) for rec in records)  # TRL's prompt/completion
        if (plan.chat and name == plan.text) or conversational:
            values = [_py_messages(rec.get(name), spec, name, origin, i,
                                   sharegpt=plan.format == "sharegpt")
                      for i, rec in enumerate(records)]
            columns[name] = pa.array(values, MESSAGES)
        elif name == plan.record_tags:  # objects as JSON text, read back by _own_tags
            columns[name] = pa.array([v if v is None or isinstance(v, str) else json.dumps(v)
                                      for v in (rec.get(name) for rec in records)],
                                     pa.string())
        else:
            columns[name] = pa.array([_py_text(rec.get(name), spec, name, origin, i)
                                      for i, rec in enumerate(records)], pa.string())
    return pa.table(columns)


def _py_text(value: Any, spec: SourceSpec, name: str, origin: _Origin, row: int) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    raise SmolmixError(f"source {spec.name!r}: {name!r} must be text, not "
                       f"{type(value).__name__}", origin.row(row))


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "system": "system"}


def _py_messages(value: Any, spec: SourceSpec, name: str, origin: _Origin,
                 row: int, sharegpt: bool = False) -> list[dict] | None:
    """Messages as ``{role, content}`` dicts; ShareGPT's ``{from, value}`` turns mapped
    (human → user, gpt → assistant, system)."""
    if value is None:
        return None
    keys = ("from", "value") if sharegpt else ("role", "content")
    bad = SmolmixError(f"source {spec.name!r}: {name!r} must be a list of "
                       f"{{{keys[0]}, {keys[1]}}} messages", origin.row(row))
    if not isinstance(value, list):
        raise bad
    out = []
    for msg in value:
        if not isinstance(msg, dict):
            raise bad
        role, content = (_py_text(msg.get(k), spec, f"{name}.{k}", origin, row) for k in keys)
        if sharegpt:
            if role not in SHAREGPT_ROLES:
                raise SmolmixError(f"source {spec.name!r}: unknown ShareGPT speaker {role!r} "
                                   f"(known: {', '.join(SHAREGPT_ROLES)})", origin.row(row))
            role = SHAREGPT_ROLES[role]
        out.append({"role": role, "content": content})
    return out


def _load_disk(path: Path, spec: SourceSpec, origin: _Origin) -> Any:
    what = f"source {spec.name!r}"
    if _no_shards(path) or _no_shards(path / spec.split):
        # datasets cannot load a saved dataset with no rows (no shards)
        raise SmolmixError(f"{what} has no examples", origin.name)
    with reading(path, what):
        try:
            data = datasets.load_from_disk(str(path))
        except FileNotFoundError as exc:
            raise SmolmixError(f"{what}: not a datasets save_to_disk folder "
                               f"({first_line(exc)})", origin.name) from None
    if isinstance(data, datasets.DatasetDict):
        if spec.split not in data:
            raise SmolmixError(f"{what}: no split {spec.split!r} "
                               f"(has {', '.join(data)})", origin.name)
        data = data[spec.split]
    return data


def _no_shards(folder: Path) -> bool:
    if not (folder / "state.json").is_file():
        return False
    try:
        state = read_json(folder / "state.json", "state.json")
    except SmolmixError:
        return False
    return isinstance(state, dict) and not state.get("_data_files")


def _load_hub(spec: SourceSpec, origin: _Origin) -> Any:
    try:
        return datasets.load_dataset(spec.hub, spec.config, split=spec.split)
    except Exception as exc:  # offline, missing, gated: all a user's problem
        raise SmolmixError(f"source {spec.name!r}: cannot load {spec.hub!r} from the Hub "
                           f"({first_line(exc)})", origin.name) from None


def _dataset_table(data: Any, spec: SourceSpec, eval_set: bool, origin: _Origin) -> pa.Table:
    if data.num_rows == 0:
        return pa.table({})
    columns = _plan(spec, data.column_names, eval_set, origin.name).columns()
    return data.select_columns(columns).with_format("arrow")[:]


# --- mapping to the canonical columns -------------------------------------------------------


def _plan(spec: SourceSpec, names: list[str], eval_set: bool, where: str) -> _Plan:
    """Resolve the field mapping against the columns present; a missing column is an error."""
    present = set(names)
    fields = spec.fields

    def column(name: str, role: str) -> str:
        if name not in present:
            raise SmolmixError(f"source {spec.name!r}: no column {name!r} (for {role}; "
                               f"columns: {', '.join(names) or 'none'})", where)
        return name

    extra, default_completion = None, "completion"
    if spec.format == "sharegpt":
        text, chat = column(fields.messages or "conversations", "ShareGPT conversations"), True
    elif spec.format == "alpaca":
        text, chat = column(fields.prompt or "instruction", "alpaca instruction"), False
        extra, default_completion = ("input" if "input" in present else None), "output"
    elif fields.messages is not None:
        text, chat = column(fields.messages, "messages"), True
    elif fields.prompt is not None:
        text, chat = column(fields.prompt, "prompt"), False
    elif "prompt" in present:
        text, chat = "prompt", False
    elif "messages" in present:
        text, chat = "messages", True
    else:
        raise SmolmixError(f"source {spec.name!r}: no column 'prompt' or 'messages' (map one "
                           f"in fields; columns: {', '.join(names) or 'none'})", where)
    if fields.completion is None and (eval_set or chat) and default_completion not in present:
        completion = None  # a chat without a completion: TRL's messages, replies inside
    else:
        completion = column(fields.completion or default_completion, "completion")
    if fields.answer is not None:
        answer = column(fields.answer, "answer")
    else:
        answer = "answer" if "answer" in present else None
    task, task_value = None, None
    if fields.task is not None:
        task = column(fields.task, "task")
    elif spec.task is not None:
        task_value = spec.task
    elif "task" in present:
        task = "task"
    elif eval_set:
        task_value = spec.name
    else:
        raise SmolmixError(f"source {spec.name!r}: no task (set task: or fields.task, or add "
                           "a 'task' column)", where)
    tag_fields = {tag: column(col, f"tag {tag!r}") for tag, col in spec.tag_fields.items()}
    used = {text, extra, completion, answer, task, *tag_fields.values()}
    record_tags = "tags" if "tags" in present and "tags" not in used else None
    return _Plan(text, chat, completion, answer, task, task_value, tag_fields, spec.format,
                 extra, record_tags)


def _canonical(table: pa.Table, spec: SourceSpec, plan: _Plan, origin: _Origin) -> pa.Table:
    n = table.num_rows

    def text(column: str | None, role: str, nullable: bool = False) -> pa.ChunkedArray:
        if column is None:
            return pa.chunked_array([pa.nulls(n, pa.string())])
        return _text(table[column], column, role, nullable, spec, origin)

    if plan.task is not None:
        task = text(plan.task, "task")
    else:
        task = _constant(plan.task_value, n)
    completion = None
    if not plan.chat and _is_messages(table[plan.text].type):
        # TRL's conversational prompt/completion: the prompt is the messages, the completion
        # the assistant's reply (a one-message list)
        plan = dataclasses.replace(plan, chat=True)
        if plan.completion is not None and _is_messages(table[plan.completion].type):
            replies = _messages(table[plan.completion], plan.completion, spec, origin)
            completion = pa.chunked_array([pa.array(
                [m[-1]["content"] for m in replies.to_pylist()], pa.string())])
    if plan.chat:
        prompt = text(None, "prompt")
        values = table[plan.text]
        if plan.format == "sharegpt" and values.type != MESSAGES:
            values = pa.chunked_array([pa.array(
                [_py_messages(v, spec, plan.text, origin, i, sharegpt=True)
                 for i, v in enumerate(values.to_pylist())], MESSAGES)], MESSAGES)
        messages = _messages(values, plan.text, spec, origin)
    else:
        prompt = text(plan.text, "prompt")
        if plan.extra is not None:  # alpaca: "instruction\n\ninput", the input when there is one
            extra = text(plan.extra, "input", nullable=True)
            extra = pc.if_else(pc.equal(extra, ""), pa.scalar(None, pa.string()), extra)
            prompt = pc.binary_join_element_wise(prompt, extra, "\n\n", null_handling="skip")
        messages = pa.chunked_array([pa.nulls(n, MESSAGES)])
    if completion is None:
        completion = text(plan.completion, "completion")
    columns = [_constant(spec.name, n), task, prompt, messages,
               completion, text(plan.answer, "answer", nullable=True),
               _tags(table, spec, plan, origin)]
    return pa.Table.from_arrays([_chunked(c) for c in columns], schema=SCHEMA)


def _is_messages(kind: pa.DataType) -> bool:
    """Whether a column type is a list of ``{role, content}`` structs."""
    return ((pa.types.is_list(kind) or pa.types.is_large_list(kind))
            and pa.types.is_struct(kind.value_type)
            and {"role", "content"} <= {f.name for f in kind.value_type})


def _chunked(values: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])


def _constant(value: str, n: int) -> pa.Array:
    return pa.nulls(n, pa.string()).fill_null(value) if n else pa.array([], pa.string())


def _first_null(values: pa.ChunkedArray | pa.Array) -> int:
    return pc.index(values.is_null(), True).as_py()


def _missing(spec: SourceSpec, column: str, role: str, origin: _Origin, row: int) -> SmolmixError:
    label = f"{column!r}" if column == role else f"{column!r} ({role})"
    return SmolmixError(f"source {spec.name!r}: record has no {label}", origin.row(row))


def _text(values: pa.ChunkedArray, column: str, role: str, nullable: bool, spec: SourceSpec,
          origin: _Origin) -> pa.ChunkedArray:
    """A column as strings; nulls are an error unless ``nullable``; numbers become text."""
    if not nullable and values.null_count:
        raise _missing(spec, column, role, origin, _first_null(values))
    kind = values.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_string(kind) and values.type == kind:
        return values
    textual = (pa.types.is_string(kind) or pa.types.is_large_string(kind)
               or kind == pa.string_view() or pa.types.is_integer(kind)
               or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
               or pa.types.is_decimal(kind) or pa.types.is_null(kind))
    if not textual:
        raise SmolmixError(f"source {spec.name!r}: column {column!r} ({role}) must hold text, "
                           f"not {values.type}", origin.name)
    return values.cast(pa.string())


def _messages(values: pa.ChunkedArray, column: str, spec: SourceSpec,
              origin: _Origin) -> pa.ChunkedArray:
    """A column of chat messages as ``list<struct<role, content>>``, every part present."""
    bad = SmolmixError(f"source {spec.name!r}: column {column!r} must hold messages, a list of "
                       f"{{role, content}}, not {values.type}", origin.name)
    kind = values.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) or not (
            pa.types.is_struct(kind.value_type)
            and {"role", "content"} <= {f.name for f in kind.value_type}):
        raise bad
    try:
        values = values.cast(MESSAGES)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise bad from None
    if values.null_count:
        raise _missing(spec, column, "messages", origin, _first_null(values))
    empty = pc.equal(pc.list_value_length(values), 0)
    if pc.any(empty).as_py():
        row = pc.index(empty, True).as_py()
        raise SmolmixError(f"source {spec.name!r}: record has no messages", origin.row(row))
    flat = pc.list_flatten(values)
    holes = pc.or_(pc.is_null(flat), pc.or_(pc.is_null(pc.struct_field(flat, "role")),
                                            pc.is_null(pc.struct_field(flat, "content"))))
    if pc.any(holes).as_py():
        row = pc.list_parent_indices(values)[pc.index(holes, True).as_py()].as_py()
        raise SmolmixError(f"source {spec.name!r}: a message in {column!r} lacks role or "
                           "content", origin.row(row))
    return values


def _own_tags(value: Any, spec: SourceSpec, origin: _Origin, row: int) -> dict[str, str]:
    """A record's ``tags`` (an object, or its JSON text) as text values; null: none."""
    if isinstance(value, str):
        value = parse_json(value, origin.row(row)) if value.strip() else None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SmolmixError(f"source {spec.name!r}: field 'tags' must be an object, not "
                           f"{type(value).__name__}", origin.row(row))
    return {str(k): str(v) for k, v in value.items() if v is not None}


def _merged_tags(table: pa.Table, spec: SourceSpec, plan: _Plan, origin: _Origin) -> pa.Array:
    """Per row: the record's own tags, then the recipe's ``tags`` and ``tag_fields`` over
    them."""
    fielded = {tag: _text(table[col], col, f"tag {tag!r}", False, spec, origin).to_pylist()
               for tag, col in plan.tag_fields.items()}
    out = []
    for i, value in enumerate(table[plan.record_tags].to_pylist()):
        tags = {**_own_tags(value, spec, origin, i), **spec.tags}
        tags.update({tag: values[i] for tag, values in fielded.items()})
        out.append(json.dumps(tags, sort_keys=True, ensure_ascii=False))
    return pa.chunked_array([pa.array(out, pa.string())])


def _tags(table: pa.Table, spec: SourceSpec, plan: _Plan, origin: _Origin) -> pa.Array:
    """Per row, ``json.dumps(tags, sort_keys=True)`` of the record's own tags (when it has a
    ``tags`` object), the recipe's constant tags and its per-record tag fields."""
    n = table.num_rows
    if plan.record_tags is not None:
        return _merged_tags(table, spec, plan, origin)
    if not plan.tag_fields:
        return _constant(json.dumps(dict(spec.tags), sort_keys=True, ensure_ascii=False), n)
    parts: dict[str, str | pa.Array] = {k: _json(v) for k, v in spec.tags.items()}
    for tag, column in plan.tag_fields.items():
        values = _text(table[column], column, f"tag {tag!r}", False, spec, origin)
        encoded = values.combine_chunks().dictionary_encode()
        dictionary = pa.array([_json(v) for v in encoded.dictionary.to_pylist()], pa.string())
        parts[tag] = dictionary.take(encoded.indices)
    pieces = []
    for tag in sorted(parts):
        key = _json(tag) + ": "
        value = parts[tag]
        pieces.append(key + value if isinstance(value, str) else
                      pc.binary_join_element_wise(key, value, ""))
    body = pc.binary_join_element_wise(*pieces, ", ")
    return pc.binary_join_element_wise("{", body, "}", "")


def _json(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)
