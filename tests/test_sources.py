"""Loading sources into the canonical table: every format, mappings, and one test per bad input."""

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, DatasetDict

from smolmix.core.errors import SmolmixError
from smolmix.mix import sources
from smolmix.mix.recipe import SourceSpec
from smolmix.mix.sources import SCHEMA, load_source, record_text

ROWS = [
    {"question": f"what is {i} + {i}?", "solution": f"{i} + {i}\n= {2 * i}", "final": 2 * i,
     "subject": "algebra" if i % 3 else "geometry", "level": i % 2, "extra": [i]}
    for i in range(6)
]
MAPPED = {
    "fields": {"prompt": "question", "completion": "solution", "answer": "final",
               "task": "subject"},
    "tags": {"teacher": "large", "cot": "long"},
    "tag_fields": {"difficulty": "level"},
}


def _spec(path: str, **extra) -> SourceSpec:
    return SourceSpec(name="src", path=path, **extra)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _error(spec: SourceSpec, base: Path, **kwargs) -> SmolmixError:
    with pytest.raises(SmolmixError) as info:
        load_source(spec, base, **kwargs)
    assert "\n" not in str(info.value)
    return info.value


def _expected() -> list[dict]:
    return [{"source": "src", "task": r["subject"], "prompt": r["question"], "messages": None,
             "completion": r["solution"], "answer": str(r["final"]),
             "tags": json.dumps({"cot": "long", "difficulty": str(r["level"]),
                                 "teacher": "large"}, sort_keys=True)}
            for r in ROWS]


def _write_all_formats(tmp_path: Path) -> list[str]:
    _jsonl(tmp_path / "rows.jsonl", ROWS)
    _jsonl(tmp_path / "rows.json", ROWS)
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "rows.parquet")
    with open(tmp_path / "rows.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[k for k in ROWS[0] if k != "extra"])
        writer.writeheader()
        writer.writerows({k: v for k, v in r.items() if k != "extra"} for r in ROWS)
    Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    DatasetDict({"test": Dataset.from_list(ROWS[:1]), "train": Dataset.from_list(ROWS)}
                ).save_to_disk(str(tmp_path / "saved_dict"))
    return ["rows.jsonl", "rows.json", "rows.parquet", "rows.csv", "saved", "saved_dict"]


# --- happy paths ----------------------------------------------------------------------------


def test_every_format_loads_to_the_same_canonical_table(tmp_path):
    for name in _write_all_formats(tmp_path):
        table = load_source(_spec(name, **MAPPED), tmp_path)
        assert table.schema == SCHEMA, name
        assert table.to_pylist() == _expected(), name


def test_clean_jsonl_takes_the_fast_path(tmp_path, monkeypatch):
    def slow(path):
        raise AssertionError("parsed line by line")

    monkeypatch.setattr(sources, "_parse_jsonl", slow)
    _jsonl(tmp_path / "rows.jsonl", ROWS)
    assert load_source(_spec("rows.jsonl", **MAPPED), tmp_path).to_pylist() == _expected()


def test_mixed_types_take_the_slow_path_to_the_same_result(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[4]["final"] = "8"  # a string among numbers: pyarrow's reader gives up
    rows[5]["extra"] = {"not": "a list"}
    _jsonl(tmp_path / "mixed.jsonl", rows)
    assert load_source(_spec("mixed.jsonl", **MAPPED), tmp_path).to_pylist() == _expected()


def test_date_like_text_stays_as_written(tmp_path):
    _jsonl(tmp_path / "d.jsonl", [{"prompt": "2020-01-01", "completion": "2020-01-02 10:00",
                                   "task": "t", "when": "2021-03-04"}])
    table = load_source(_spec("d.jsonl", tag_fields={"when": "when"}), tmp_path)
    [row] = table.select(["prompt", "completion", "tags"]).to_pylist()
    assert row == {"prompt": "2020-01-01", "completion": "2020-01-02 10:00",
                   "tags": '{"when": "2021-03-04"}'}


def test_json_array_file(tmp_path):
    (tmp_path / "rows.json").write_text(json.dumps(ROWS, indent=1))
    assert load_source(_spec("rows.json", **MAPPED), tmp_path).to_pylist() == _expected()


def test_canonical_file_needs_no_mapping(tmp_path):
    rows = [{"task": "t", "prompt": "p", "completion": "c", "answer": "a"},
            {"task": "u", "prompt": "q", "completion": "d", "answer": None}]
    table = load_source(_spec("canon.jsonl"), _jsonl(tmp_path / "canon.jsonl", rows).parent)
    got = table.select(["task", "prompt", "completion", "answer", "tags"]).to_pylist()
    assert got == [{**rows[0], "tags": "{}"}, {**rows[1], "tags": "{}"}]
    assert record_text(table) == ["p\nc", "q\nd"]


def test_constant_task_and_tags(tmp_path):
    _jsonl(tmp_path / "c.jsonl", [{"prompt": "p", "completion": "c", "task": "ignored"}])
    table = load_source(_spec("c.jsonl", task="math", tags={"cot": "short"}), tmp_path)
    assert table["task"].to_pylist() == ["math"]
    assert table["tags"].to_pylist() == ['{"cot": "short"}']
    assert table["answer"].to_pylist() == [None]


def test_per_record_task_and_tags(tmp_path):
    _jsonl(tmp_path / "r.jsonl", [
        {"prompt": "p", "completion": "c", "kind": "a", "lvl": 1, "t": "x\"y"},
        {"prompt": "q", "completion": "d", "kind": "b", "lvl": 2, "t": "é"},
    ])
    spec = _spec("r.jsonl", fields={"task": "kind"}, tag_fields={"level": "lvl", "b": "t"})
    table = load_source(spec, tmp_path)
    assert table["task"].to_pylist() == ["a", "b"]
    tags = table["tags"].to_pylist()
    assert tags == [json.dumps({"b": 'x"y', "level": "1"}, sort_keys=True, ensure_ascii=False),
                    json.dumps({"b": "é", "level": "2"}, sort_keys=True, ensure_ascii=False)]
    assert [json.loads(t) for t in tags] == [{"b": 'x"y', "level": "1"}, {"b": "é", "level": "2"}]


def test_a_records_own_tags_are_kept_and_the_recipes_override_them(tmp_path):
    """smolmix's own JSONL (generate's traces, an exported mixture) carries a ``tags`` object
    or its JSON text per record: those tags survive, and the recipe's win on a clash."""
    _jsonl(tmp_path / "own.jsonl", [
        {"task": "t", "prompt": "p", "completion": "c", "tags": {"cot": "long", "n": 3}},
        {"task": "t", "prompt": "q", "completion": "d"},
        {"task": "t", "prompt": "r", "completion": "e", "tags": '{"cot": "short"}'},
        {"task": "t", "prompt": "s", "completion": "f", "tags": None}])
    table = load_source(_spec("own.jsonl", tags={"teacher": "small"}), tmp_path)
    assert [json.loads(t) for t in table["tags"].to_pylist()] == [
        {"cot": "long", "n": "3", "teacher": "small"}, {"teacher": "small"},
        {"cot": "short", "teacher": "small"}, {"teacher": "small"}]
    table = load_source(_spec("own.jsonl", tags={"cot": "forced"}), tmp_path)
    assert [json.loads(t)["cot"] for t in table["tags"].to_pylist()] == ["forced"] * 4
    _jsonl(tmp_path / "bad.jsonl", [{"task": "t", "prompt": "p", "completion": "c",
                                     "tags": "[1]"}])
    assert "field 'tags' must be an object" in str(_error(_spec("bad.jsonl"), tmp_path))


def test_messages_source(tmp_path):
    rows = [{"conv": [{"role": "system", "content": "be brief", "name": "x"},
                      {"content": "hi", "role": "user"}], "reply": "hello", "task": "chat"}]
    _jsonl(tmp_path / "chat.jsonl", rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "chat.parquet")
    for name in ("chat.jsonl", "chat.parquet"):
        spec = _spec(name, fields={"messages": "conv", "completion": "reply"})
        table = load_source(spec, tmp_path)
        assert table.schema == SCHEMA
        assert table["prompt"].to_pylist() == [None]
        assert table["messages"].to_pylist() == [[{"role": "system", "content": "be brief"},
                                                  {"role": "user", "content": "hi"}]]
        assert record_text(table) == ["be brief\nhi\nhello"]


def test_messages_column_by_default_name(tmp_path):
    _jsonl(tmp_path / "m.jsonl", [{"messages": [{"role": "user", "content": "x"}],
                                   "completion": "y", "task": "t"}])
    assert record_text(load_source(_spec("m.jsonl"), tmp_path)) == ["x\ny"]


def test_eval_set_without_completion_or_task(tmp_path):
    _jsonl(tmp_path / "eval.jsonl", [{"question": "2+2?", "answer": "4"}])
    table = load_source(_spec("eval.jsonl", fields={"prompt": "question"}), tmp_path,
                        eval_set=True)
    assert table["task"].to_pylist() == ["src"] and table["completion"].to_pylist() == [None]
    assert record_text(table) == ["2+2?"]


def test_blank_lines_are_skipped(tmp_path):
    (tmp_path / "b.jsonl").write_text('\n{"task": "t", "prompt": "p", "completion": "c"}\n\n')
    assert load_source(_spec("b.jsonl"), tmp_path).num_rows == 1


# --- bad input: one test each ---------------------------------------------------------------


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"task": "t", "prompt": "p", "completion": "c"}\n\n'
                    '{"task": "t", "prompt": "p", "completion": \n'
                    '{"task": "t", "prompt": "p", "completion": "c"}\n')
    err = _error(_spec("bad.jsonl"), tmp_path)
    assert err.where == f"{path}:3" and "malformed JSON" in err.what


def test_line_that_is_not_an_object(tmp_path):
    (tmp_path / "list.jsonl").write_text('{"task": "t", "prompt": "p", "completion": "c"}\n[1]\n')
    assert _error(_spec("list.jsonl"), tmp_path).where == f"{tmp_path / 'list.jsonl'}:2"


def test_record_missing_a_mapped_field_jsonl(tmp_path):
    rows = [dict(r) for r in ROWS]
    del rows[3]["solution"]
    path = _jsonl(tmp_path / "m.jsonl", rows)
    err = _error(_spec("m.jsonl", **MAPPED), tmp_path)
    assert err.where == f"{path}:4"
    assert err.what == "source 'src': record has no 'solution' (completion)"


def test_record_with_null_field_parquet(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[2]["question"] = None
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "n.parquet")
    err = _error(_spec("n.parquet", **MAPPED), tmp_path)
    assert err.where == f"{tmp_path / 'n.parquet'}: row 2"
    assert "'question' (prompt)" in err.what and "source 'src'" in err.what


def test_record_with_null_tag_field(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[1]["level"] = None
    _jsonl(tmp_path / "t.jsonl", rows)
    err = _error(_spec("t.jsonl", **MAPPED), tmp_path)
    assert err.where.endswith("t.jsonl:2") and "'level' (tag 'difficulty')" in err.what


def test_mapped_column_absent(tmp_path):
    _jsonl(tmp_path / "a.jsonl", ROWS)
    spec = _spec("a.jsonl", fields={"prompt": "question", "completion": "answer_text"},
                 task="t")
    err = _error(spec, tmp_path)
    assert "no column 'answer_text'" in err.what and err.where == str(tmp_path / "a.jsonl")


def test_no_prompt_column(tmp_path):
    _jsonl(tmp_path / "a.jsonl", ROWS)
    assert "no column 'prompt' or 'messages'" in _error(_spec("a.jsonl", task="t"), tmp_path).what


def test_no_task(tmp_path):
    _jsonl(tmp_path / "a.jsonl", [{"prompt": "p", "completion": "c"}])
    assert "no task" in _error(_spec("a.jsonl"), tmp_path).what


def test_text_field_that_is_not_text(tmp_path):
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "x.parquet")
    spec = _spec("x.parquet", fields={"prompt": "extra", "completion": "solution"}, task="t")
    assert "'extra' (prompt) must hold text" in _error(spec, tmp_path).what


def test_message_without_content(tmp_path):
    _jsonl(tmp_path / "m.jsonl", [
        {"messages": [{"role": "user", "content": "x"}], "completion": "y", "task": "t"},
        {"messages": [{"role": "user"}], "completion": "y", "task": "t"},
    ])
    err = _error(_spec("m.jsonl"), tmp_path)
    assert "lacks role or content" in err.what and err.where.endswith("m.jsonl:2")


@pytest.mark.parametrize("name, content", [
    ("empty.jsonl", ""), ("blank.jsonl", "\n\n"), ("header.csv", "prompt,completion,task\n"),
])
def test_empty_source(tmp_path, name, content):
    (tmp_path / name).write_text(content)
    assert _error(_spec(name), tmp_path).what == "source 'src' has no examples"


def test_empty_saved_dataset(tmp_path):
    Dataset.from_dict({"prompt": [], "completion": [], "task": []}).save_to_disk(
        str(tmp_path / "empty"))
    assert _error(_spec("empty"), tmp_path).what == "source 'src' has no examples"


def test_missing_file(tmp_path):
    err = _error(_spec("gone.jsonl"), tmp_path)
    assert "file not found" in err.what and err.where == str(tmp_path / "gone.jsonl")


def test_unsupported_extension(tmp_path):
    (tmp_path / "data.txt").write_text("hello\n")
    assert "unsupported file type '.txt'" in _error(_spec("data.txt"), tmp_path).what


def test_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "folder").mkdir()
    assert "not a datasets save_to_disk folder" in _error(_spec("folder"), tmp_path).what


def test_missing_split(tmp_path):
    DatasetDict({"test": Dataset.from_list(ROWS)}).save_to_disk(str(tmp_path / "d"))
    assert "no split 'train'" in _error(_spec("d", **MAPPED), tmp_path).what


def test_hub_failure_offline_names_the_source(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    spec = SourceSpec(name="remote", hub="smolmix-test/does-not-exist")
    err = _error(spec, tmp_path)
    assert "source 'remote'" in err.what and "smolmix-test/does-not-exist" in err.what


SHAREGPT = [{"conversations": [{"from": "system", "value": "Be brief."},
                               {"from": "human", "value": f"Name colour {i}."},
                               {"from": "gpt", "value": "Red."}], "id": i} for i in range(3)]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_sharegpt_conversations_become_messages(tmp_path, suffix):
    path = tmp_path / f"chat{suffix}"
    if suffix == ".jsonl":
        _jsonl(path, SHAREGPT)
    else:
        pq.write_table(pa.Table.from_pylist(SHAREGPT), path)
    table = load_source(_spec(path.name, format="sharegpt", task="chat"), tmp_path)
    assert table["messages"].to_pylist()[1] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name colour 1."},
        {"role": "assistant", "content": "Red."}]
    assert table["completion"].to_pylist() == [None] * 3  # the replies are in the messages
    bad = _jsonl(tmp_path / "bad.jsonl", [{"conversations": [{"from": "robot", "value": "x"}]}])
    assert "robot" in str(_error(_spec(bad.name, format="sharegpt", task="chat"), tmp_path))


def test_alpaca_instruction_and_input_become_the_prompt(tmp_path):
    rows = [{"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
            {"instruction": "Say hi.", "input": "", "output": "hi"},
            {"instruction": "Count to two.", "output": "1 2"}]
    _jsonl(tmp_path / "alpaca.jsonl", rows)
    table = load_source(_spec("alpaca.jsonl", format="alpaca", task="instruct"), tmp_path)
    assert table["prompt"].to_pylist() == ["Add the numbers.\n\n2 and 3", "Say hi.",
                                           "Count to two."]
    assert table["completion"].to_pylist() == ["5", "hi", "1 2"]


@pytest.mark.parametrize("mixed", [False, True])
def test_trl_conversational_prompt_completion(tmp_path, mixed):
    # TRL's conversational prompt/completion: the prompt is a list of messages, the
    # completion the assistant's message. A "mixed" file (a number where text is expected)
    # takes the forgiving line-by-line path.
    rows = [{"prompt": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": f"Add {i} and 1."}],
             "completion": [{"role": "assistant", "content": str(i + 1)}],
             "answer": i + 1 if mixed and i == 0 else str(i + 1)} for i in range(3)]
    _jsonl(tmp_path / "cpc.jsonl", rows)
    table = load_source(_spec("cpc.jsonl", task="add"), tmp_path)
    assert table["prompt"].to_pylist() == [None] * 3
    assert table["messages"].to_pylist()[2] == rows[2]["prompt"]
    assert table["completion"].to_pylist() == ["1", "2", "3"]
