"""The bad-input catalogue of ``mix``, ``grade``, ``report`` and ``convert`` (issue 11): every
case is a real file or folder a user could give, and each must end in one ``error:`` line,
exit 2 and nothing created, changed or removed (:func:`helpers.clean_error`). The fuzz tests
at the end feed random bytes and random JSON structures to the readers: nothing but
SmolmixError may escape."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset
from helpers import clean_error, listing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smolmix.core.errors import SmolmixError
from smolmix.grading.command import grade_file
from smolmix.mix.command import build_mixture
from smolmix.mix.recipe import MAX_REPEATS, SourceSpec
from smolmix.mix.sample import BYTES_PER_DRAWN_ROW, available_memory
from smolmix.mix.sources import load_source

ROWS = [{"task": "a" if i % 2 else "b", "prompt": f"question {i}", "completion": f"answer {i}"}
        for i in range(8)]
LATIN1 = b'{"task": "a", "prompt": "caf\xe9", "completion": "x"}\n'  # é in latin-1: byte 0xe9


def _jsonl(path: Path, rows=ROWS) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A workspace holding a good source, ``data.jsonl``."""
    _jsonl(tmp_path / "data.jsonl")
    return tmp_path


# --- mix ---------------------------------------------------------------------------------------


def _mix(root: Path, text: str | bytes, out: str = "out") -> list:
    """Write ``recipe.yaml``; the argv that builds it into ``root/out``."""
    recipe = root / "recipe.yaml"
    if isinstance(text, str):
        recipe.write_text(text, encoding="utf-8")
    else:
        recipe.write_bytes(text)
    return ["mix", recipe, "--out", root / out, "--quiet"]


def _recipe(body: str = "", source: str = "{name: s, path: data.jsonl}",
            budget: str = "budget: {examples: 4}\n") -> str:
    return f"seed: 0\n{budget}sources:\n  - {source}\n{body}"


def recipe_case(body: str = "", **kwargs):
    return lambda root: _mix(root, _recipe(body, **kwargs))


def source_case(name: str, content: bytes, **source):
    """A recipe whose only source is ``name`` holding ``content``."""
    extra = "".join(f", {k}: {v}" for k, v in source.items())

    def setup(root: Path) -> list:
        (root / name).write_bytes(content)
        return _mix(root, _recipe(source=f"{{name: s, path: {name}{extra}}}"))
    return setup


def _parquet(root: Path, name: str, prompts: pa.Array) -> Path:
    table = pa.table({"task": ["a"] * len(prompts), "prompt": prompts,
                      "completion": ["x"] * len(prompts)})
    pq.write_table(table, root / name)
    return root / name


def _not_utf8() -> pa.Array:
    """A string column holding a latin-1 byte (pyarrow writes and reads it unchecked)."""
    return pa.array([b"ok", b"caf\xe9"], pa.binary()).view(pa.string())


def bad_utf8_parquet(root: Path) -> list:
    _parquet(root, "p.parquet", _not_utf8())
    return _mix(root, _recipe(source="{name: s, path: p.parquet}"))


def bad_utf8_dataset(root: Path) -> list:
    Dataset(pa.table({"task": ["a", "a"], "prompt": _not_utf8(),
                      "completion": ["x", "y"]})).save_to_disk(str(root / "ds"))
    return _mix(root, _recipe(source="{name: s, path: ds}"))


def truncated_parquet(root: Path) -> list:
    path = _parquet(root, "p.parquet", pa.array([f"p{i}" for i in range(100)]))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return _mix(root, _recipe(source="{name: s, path: p.parquet}"))


def truncated_arrow(root: Path) -> list:
    Dataset.from_list(ROWS * 50).save_to_disk(str(root / "ds"))
    shard = next((root / "ds").glob("*.arrow"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    return _mix(root, _recipe(source="{name: s, path: ds}"))


def corrupt_state_json(root: Path) -> list:
    Dataset.from_list(ROWS).save_to_disk(str(root / "ds"))
    (root / "ds" / "state.json").write_text('{"_data_files": [{"filename": ')
    return _mix(root, _recipe(source="{name: s, path: ds}"))


def not_a_dataset_folder(root: Path) -> list:
    (root / "folder").mkdir()
    (root / "folder" / "notes.txt").write_text("hello")
    return _mix(root, _recipe(source="{name: s, path: folder}"))


def bad_eval_set(root: Path) -> list:
    (root / "eval.jsonl").write_bytes(LATIN1)
    return _mix(root, _recipe("hygiene:\n  decontaminate:\n    - {name: ev, path: eval.jsonl}\n"))


def latin1_dedup_none(root: Path) -> list:
    """Issue 11, class I: pyarrow's JSON reader takes the byte, and with no dedup nothing
    else looked at the text, so an unloadable mixture was written."""
    (root / "bad.jsonl").write_bytes(LATIN1 + LATIN1.replace(b"caf", b"th"))
    return _mix(root, _recipe("hygiene: {dedup: none}\n", source="{name: s, path: bad.jsonl}"))


def token_recipe(tokenizer_files: dict[str, bytes], max_repeats: int = 1):
    def setup(root: Path) -> list:
        (root / "tok").mkdir()
        for name, content in tokenizer_files.items():
            (root / "tok" / name).write_bytes(content)
        return _mix(root, _recipe(f"tokenizer: tok\nmax_repeats: {max_repeats}\n",
                                  budget="budget: {tokens: 1000}\n"))
    return setup


def plan_beyond_memory(root: Path) -> list:
    """Enough distinct examples and repeats for a budget the cap allows but that needs twice
    the memory this machine has now."""
    budget = min(10**12, 2 * available_memory() // BYTES_PER_DRAWN_ROW)
    rows = [{"task": "a", "prompt": f"q {i}", "completion": "c"}
            for i in range(budget // MAX_REPEATS + 2)]
    _jsonl(root / "big.jsonl", rows)
    return _mix(root, _recipe(f"max_repeats: {MAX_REPEATS}\n",
                              source="{name: s, path: big.jsonl}",
                              budget=f"budget: {{examples: {budget}}}\n"))


def out_case(out, text: str | None = None):
    """The good recipe, built into ``out(root)``."""
    def setup(root: Path) -> list:
        argv = _mix(root, text or _recipe())
        argv[3] = out(root)
        return argv
    return setup


def existing_mixture(root: Path) -> list:
    argv = _mix(root, _recipe())
    (root / "out").mkdir()
    (root / "out" / "keep.txt").write_text("mine")
    return argv


def out_is_a_source_folder(root: Path) -> list:
    Dataset.from_list(ROWS).save_to_disk(str(root / "ds"))
    argv = _mix(root, _recipe(source="{name: s, path: ds}"))
    argv[3] = root / "ds"
    return argv


def seed_case(seed: str):
    """A bad seed, with an --out whose parent folders do not exist yet: no partial folder and
    no empty parents may be left behind."""
    def setup(root: Path) -> list:
        argv = _mix(root, _recipe(budget="budget: {examples: 4}\nhygiene: {dedup: near}\n")
                    .replace("seed: 0", f"seed: {seed}"))
        argv[3] = root / "new" / "deeper" / "out"
        return argv
    return setup


DEEP = "a: " + "[" * 3000 + "]" * 3000 + "\n"
HUGE = "1" * 5000

MIX_CASES = [
    # the recipe file itself
    pytest.param(lambda r: ["mix", r / "nope.yaml", "--out", r / "out"], "recipe file not found",
                 id="recipe-missing"),
    pytest.param(lambda r: ["mix", r, "--out", r / "out"], "is a folder", id="recipe-is-folder"),
    pytest.param(lambda r: _mix(r, _recipe().encode() + b"# caf\xe9\n"),
                 "not UTF-8 text: byte 0xe9 at offset", id="A-recipe-not-utf8"),
    pytest.param(lambda r: _mix(r, DEEP), "nested more than 64 levels", id="B-recipe-deep"),
    pytest.param(lambda r: _mix(r, "x: &a [1]\n" + "".join(
        f"x{i}: &a{i} [*{'a' if i == 0 else f'a{i - 1}'}, *{'a' if i == 0 else f'a{i - 1}'}]\n"
        for i in range(40))), "values", id="B-recipe-alias-bomb"),
    pytest.param(lambda r: _mix(r, _recipe().replace("seed: 0", f"seed: {HUGE}")), "too large",
                 id="B-recipe-huge-integer"),
    pytest.param(lambda r: _mix(r, "seed: 0\nbudget: {examples: 4\n"), "invalid YAML",
                 id="recipe-bad-yaml"),
    pytest.param(lambda r: _mix(r, "- a\n- b\n"), "must be a YAML mapping", id="recipe-a-list"),
    pytest.param(lambda r: _mix(r, _recipe("seed: 1\n")), "duplicate key 'seed'",
                 id="recipe-duplicate-key"),
    pytest.param(recipe_case("sourcs: []\n"), "unknown key 'sourcs'", id="recipe-unknown-key"),
    pytest.param(recipe_case("strategy: [sharpen]\n"), "unknown strategy step",
                 id="recipe-unknown-step"),
    # numbers the schema must refuse
    pytest.param(recipe_case("strategy: [{weights: {a: .nan, b: 1}}]\n"), "finite number",
                 id="C-weight-nan"),
    pytest.param(recipe_case("strategy: [{weights: {a: .inf, b: 1}}]\n"), "finite number",
                 id="C-weight-inf"),
    pytest.param(recipe_case("strategy: [{weights: {a: 1.0e+300, b: 1}}]\n"), "at most 1e+12",
                 id="C-weight-absurd"),
    pytest.param(recipe_case("strategy: [{weights: {a: -1, b: 1}}]\n"), "must not be negative",
                 id="C-weight-negative"),
    pytest.param(recipe_case("strategy: [natural, {boost: {a: .nan}}]\n"), "finite number",
                 id="C-boost-nan"),
    pytest.param(recipe_case("strategy: [natural, {floor: .inf}]\n"), "finite number",
                 id="C-floor-inf"),
    pytest.param(recipe_case("strategy: [natural, {mix_long: {long: .nan}}]\n"),
                 "finite number", id="C-mix-long-nan"),
    pytest.param(recipe_case("strategy: [{temperature: {alpha: .inf}}]\n"), "finite number",
                 id="C-temperature-inf"),
    pytest.param(recipe_case("strategy: [{temperature: {alpha: 1000}}]\n"),
                 "less than or equal to 100", id="C-temperature-1000"),
    pytest.param(recipe_case("strategy: [{temperature: {alpha: -1}}]\n"),
                 "greater than or equal to 0", id="C-temperature-negative"),
    pytest.param(recipe_case(budget="budget: {examples: 1000000000000000000000000000000}\n"),
                 "less than or equal to 1000000000000", id="C-budget-examples-1e30"),
    pytest.param(recipe_case("tokenizer: .\n", budget="budget: {tokens: 1.0e+30}\n"),
                 "budget.tokens", id="C-budget-tokens-1e30"),
    pytest.param(recipe_case(budget="budget: {examples: 0}\n"), "greater than 0",
                 id="C-budget-zero"),
    pytest.param(recipe_case(budget="budget: {examples: .nan}\n"), "budget.examples",
                 id="C-budget-nan"),
    pytest.param(recipe_case("max_repeats: 0\n"), "max_repeats", id="C-max-repeats-zero"),
    pytest.param(token_recipe({}, max_repeats=10_000_000), "max_repeats",
                 id="C-max-repeats-1e7-token-budget"),
    pytest.param(plan_beyond_memory, "GiB available", id="C-plan-beyond-memory"),
    pytest.param(recipe_case("hygiene: {dedup: near, near: {num_perm: 1000000000}}\n"),
                 "num_perm", id="C-num-perm-absurd"),
    pytest.param(recipe_case("hygiene: {dedup: near, near: {threshold: .nan}}\n"),
                 "threshold", id="C-threshold-nan"),
    pytest.param(seed_case("-1"), "seed", id="F-seed-negative"),
    pytest.param(seed_case(str(2**40)), "less than or equal to 4294967295", id="F-seed-2-40"),
    pytest.param(seed_case("1.5"), "seed", id="F-seed-float"),
    # sources: bytes that are not UTF-8, in every reader
    pytest.param(source_case("bad.jsonl", b'{"task": "a", "prompt": "ok", "completion": "x"}\n'
                             + LATIN1), "not UTF-8 text: byte 0xe9 at offset 77",
                 id="A-jsonl-latin1"),
    pytest.param(latin1_dedup_none, "not UTF-8 text: byte 0xe9 at offset 28",
                 id="I-latin1-dedup-none"),
    pytest.param(source_case("bad.json", b"[\n" + LATIN1.rstrip() + b"\n]\n"),
                 "not UTF-8 text: byte 0xe9", id="A-json-array-latin1"),
    pytest.param(source_case("bad.csv", b"task,prompt,compl\xe9tion\na,p,c\n"),
                 "not UTF-8 text: byte 0xe9 at offset 17", id="A-csv-header-latin1"),
    pytest.param(source_case("bad.csv", b"task,prompt,completion\na,caf\xe9,c\n"),
                 "not UTF-8 text: byte 0xe9 at offset 28", id="A-csv-row-latin1"),
    pytest.param(bad_utf8_parquet, "holds text that is not UTF-8: byte 0xe9 at offset 3",
                 id="A-I-parquet-not-utf8"),
    pytest.param(bad_utf8_dataset, "holds text that is not UTF-8", id="A-I-dataset-not-utf8"),
    pytest.param(bad_eval_set, "not UTF-8 text: byte 0xe9 at offset 28", id="A-eval-set-latin1"),
    pytest.param(token_recipe({"tokenizer_config.json": b'{"x": "\xff"}'}),
                 "not UTF-8", id="A-tokenizer-config-not-utf8"),
    # sources: huge, deep, malformed and corrupt
    pytest.param(source_case("big.jsonl", b'{"task": "a", "prompt": "p", "completion": "c", '
                             b'"n": ' + HUGE.encode() + b"}\n"),
                 "an integer with 5000 digits", id="B-source-5000-digit-integer"),
    pytest.param(source_case("big.jsonl", b'{"task": "a", "prompt": "p", "completion": "c", '
                             b'"answer": ' + HUGE.encode() + b"}\n"),
                 "an integer with 5000 digits", id="B-source-5000-digit-answer"),
    pytest.param(source_case("deep.jsonl", b'{"task": "a", "prompt": "p", "completion": "c", '
                             b'"n": ' + b"[" * 100 + b"]" * 100 + b"}\n"),
                 "nested more than 64 levels", id="B-source-deep-value"),
    pytest.param(source_case("deep.jsonl", b'{"task": "a", "prompt": "p", "completion": "c", '
                             b'"n": ' + b"[" * 1000 + b"]" * 1000 + b"}\n"),
                 "nested more than 64 levels", id="B-source-very-deep-value"),
    pytest.param(source_case("bad.jsonl", b'{"task": "a", "prompt": "p", "completion": \n'),
                 "malformed JSON", id="source-malformed-line"),
    pytest.param(source_case("bad.jsonl", b'{"task": "a", "prompt": "p", "completion": "c"}\n'
                             b"[1, 2]\n"), "not a JSON object", id="source-line-not-object"),
    pytest.param(source_case("bad.jsonl", bytes(range(256)) * 4), "malformed JSON",
                 id="source-binary-garbage"),
    pytest.param(source_case("bad.json", b'[{"task": "a", "prompt": "p", "completion": "c"},'),
                 "malformed JSON", id="source-json-array-cut"),
    pytest.param(source_case("empty.jsonl", b"\n\n"), "has no examples", id="source-empty"),
    pytest.param(source_case("bad.csv", b"task,prompt,completion\na,p,c,extra\n"),
                 "corrupt or unreadable", id="source-csv-ragged"),
    pytest.param(source_case("bad.parquet", bytes(range(256)) * 8), "corrupt or unreadable",
                 id="E-parquet-garbage"),
    pytest.param(truncated_parquet, "corrupt or unreadable", id="E-parquet-truncated"),
    pytest.param(truncated_arrow, "corrupt or unreadable", id="E-arrow-truncated"),
    pytest.param(corrupt_state_json, "corrupt or unreadable", id="E-dataset-state-json-cut"),
    pytest.param(not_a_dataset_folder, "not a datasets save_to_disk folder",
                 id="source-plain-folder"),
    pytest.param(source_case("data.txt", b"hello\n"), "unsupported file type",
                 id="source-unsupported-type"),
    pytest.param(recipe_case(source="{name: s, path: gone.jsonl}"), "does not exist",
                 id="source-missing"),
    pytest.param(token_recipe({"tokenizer.json": b"garbage"}), "corrupt or unreadable",
                 id="E-tokenizer-garbage"),
    pytest.param(token_recipe({"tokenizer.json": b'{"version": "1.0", "model": {"type": '}),
                 "corrupt or unreadable", id="E-tokenizer-truncated"),
    pytest.param(token_recipe({}), "corrupt or unreadable", id="E-tokenizer-empty-folder"),
    # outputs
    pytest.param(out_case(lambda r: r / "data.jsonl" / "out"), "is a file, not a folder",
                 id="D-out-under-a-file"),
    pytest.param(out_case(lambda r: r / "data.jsonl" / "a" / "b"), "is a file, not a folder",
                 id="D-out-deep-under-a-file"),
    pytest.param(out_case(lambda r: r / ("x" * 300)), "output name too long",
                 id="D-out-name-over-255-bytes"),
    pytest.param(out_case(lambda r: r / "recipe.yaml"), "is an input", id="out-is-the-recipe"),
    pytest.param(out_case(lambda r: r / "data.jsonl"), "is an input", id="out-is-a-source"),
    pytest.param(out_is_a_source_folder, "is an input", id="out-is-a-source-folder"),
    pytest.param(existing_mixture, "already exists", id="out-exists"),
    pytest.param(lambda r: [*_mix(r, _recipe()), "--export", "csv"], "unknown export format",
                 id="export-unknown"),
    pytest.param(lambda r: _mix(r, _recipe())[:2], "an output directory is required",
                 id="out-missing"),
    pytest.param(lambda r: ["mix", "--out", r / "out"], "a recipe file is required",
                 id="recipe-not-given"),
]


@pytest.mark.parametrize(("setup", "message"), MIX_CASES)
def test_mix_bad_input(root, capfd, setup, message):
    argv = setup(root)
    line = clean_error(argv, root, capfd)
    assert message in line, line


def test_mix_accepts_what_the_strict_readers_accept(root, capfd):
    """The other side of the catalogue: a BOM, a JSON array, CSV and Parquet sources, a
    large temperature (taken without overflow) all build."""
    (root / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + (root / "data.jsonl").read_bytes())
    (root / "rows.csv").write_bytes(b"\xef\xbb\xbftask,prompt,completion\nc,caf\xc3\xa9,x\n")
    (root / "rows.json").write_text(json.dumps([{"task": "d", "prompt": "p", "completion": "c"}]))
    _parquet(root, "rows.parquet", pa.array(["\u00e9t\u00e9", "hiver"]))
    text = ("seed: 4294967295\nbudget: {examples: 20}\nmax_repeats: 10\nsources:\n"
            "  - {name: bom, path: bom.jsonl}\n  - {name: csv, path: rows.csv}\n"
            "  - {name: json, path: rows.json}\n  - {name: pq, path: rows.parquet}\n"
            "strategy: [{temperature: {alpha: 100}}]\nexport: [jsonl]\n")
    argv = _mix(root, text)
    from smolmix.cli import main

    assert main([str(a) for a in argv]) == 0, capfd.readouterr().err
    rows = [json.loads(line) for line in open(root / "out" / "mixture.jsonl", encoding="utf-8")]
    assert len(rows) == 20 and {r["source"] for r in rows} <= {"bom", "csv", "json", "pq"}


# --- grade -------------------------------------------------------------------------------------


def _grade(root: Path, content: bytes, *flags) -> list:
    (root / "p.jsonl").write_bytes(content)
    return ["grade", root / "p.jsonl", *flags]


GOOD = b'{"prediction": "1", "reference": "1"}\n'


def grade_out(out, content: bytes = GOOD):
    def setup(root: Path) -> list:
        argv = _grade(root, content)
        return [*argv, "--out", out(root)]
    return setup


def symlinked_out(root: Path) -> list:
    argv = _grade(root, GOOD)
    (root / "link.jsonl").symlink_to(root / "p.jsonl")
    return [*argv, "--out", root / "link.jsonl"]


def hardlinked_out(root: Path) -> list:
    argv = _grade(root, GOOD)
    os.link(root / "p.jsonl", root / "hard.jsonl")
    return [*argv, "--out", root / "hard.jsonl"]


def fifo_out(root: Path) -> list:
    argv = _grade(root, GOOD)
    os.mkfifo(root / "pipe")
    return [*argv, "--out", root / "pipe"]


GRADE_CASES = [
    pytest.param(lambda r: _grade(r, b'{"prediction":"caf\351","reference":"1"}\n'),
                 "not UTF-8 text: byte 0xe9 at offset 18", id="A-issue-example-latin1"),
    pytest.param(lambda r: _grade(r, b"\xef\xbb\xbf" + GOOD + b'{"prediction": "\xff"}\n'),
                 "byte 0xff at offset 57", id="A-latin1-after-a-bom"),
    pytest.param(lambda r: ["grade", r / "missing.jsonl"], "not found", id="missing-file"),
    pytest.param(lambda r: ["grade", r], "is a folder", id="a-folder"),
    pytest.param(lambda r: _grade(r, GOOD + b'{"prediction": "1", '), "malformed JSON",
                 id="malformed-line"),
    pytest.param(lambda r: _grade(r, b"[1, 2]\n"), "not a JSON object", id="line-not-object"),
    pytest.param(lambda r: _grade(r, b'{"reference": "1"}\n'), "missing field 'prediction'",
                 id="missing-field"),
    pytest.param(lambda r: _grade(r, b'{"prediction": ["1"], "reference": "1"}\n'),
                 "is a list", id="field-a-list"),
    pytest.param(lambda r: _grade(r, b"\n \n"), "no predictions", id="empty"),
    pytest.param(lambda r: _grade(r, b'{"prediction": ' + b"[" * 5000 + b"]" * 5000 + b"}\n"),
                 "nested more than 64 levels", id="B-deep-line"),
    pytest.param(lambda r: _grade(r, b'{"prediction": ' + HUGE.encode()
                                  + b', "reference": "1"}\n'), "5000 digits",
                 id="B-5000-digit-integer"),
    pytest.param(lambda r: _grade(r, bytes(range(256)) * 4), "malformed JSON",
                 id="binary-garbage"),
    pytest.param(lambda r: _grade(r, GOOD, "--format", "roman"), "unknown answer format",
                 id="unknown-format"),
    pytest.param(grade_out(lambda r: r / "p.jsonl"), "is the predictions file",
                 id="out-is-the-input"),
    pytest.param(symlinked_out, "is the predictions file", id="out-symlink-to-input"),
    pytest.param(hardlinked_out, "is the predictions file", id="out-hardlink-to-input"),
    pytest.param(grade_out(lambda r: r / "p.jsonl" / "v.jsonl"), "is a file, not a folder",
                 id="D-out-under-a-file"),
    pytest.param(grade_out(lambda r: r / ("v" * 300)), "output name too long",
                 id="D-out-name-over-255-bytes"),
    pytest.param(grade_out(lambda r: r), "is a folder", id="out-is-a-folder"),
    pytest.param(fifo_out, "not a regular file", id="out-is-a-fifo"),
    pytest.param(grade_out(lambda r: r / "v.jsonl", GOOD + b'{"prediction": "caf\xe9"}\n'),
                 "byte 0xe9", id="A-bad-input-with-out"),
]


@pytest.mark.parametrize(("setup", "message"), GRADE_CASES)
def test_grade_bad_input(root, capfd, setup, message):
    line = clean_error(setup(root), root, capfd)
    assert message in line, line


def test_grade_accepts_a_byte_order_mark_as_mix_does(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD + b'{"prediction": "caf\xc3\xa9", "reference": "2"}\n')
    summary = grade_file(path, tmp_path / "new" / "v.jsonl")
    assert (summary.total, summary.correct) == (2, 1)
    assert [json.loads(line)["line"] for line in
            (tmp_path / "new" / "v.jsonl").read_text().splitlines()] == [1, 2]
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["v.jsonl"]


# --- report ------------------------------------------------------------------------------------


@pytest.fixture
def run(root, lab_mixture) -> Path:
    """A private copy of a real mixture folder (a run report reads)."""
    shutil.copytree(lab_mixture, root / "mix")
    return root / "mix"


def _edit_manifest(run: Path, edit) -> None:
    path = run / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def manifest_bytes(content: bytes):
    def setup(root: Path, run: Path) -> list:
        (run / "manifest.json").write_bytes(content)
        return ["report", run, "--out", root / "page", "--quiet"]
    return setup


def manifest_edit(edit):
    def setup(root: Path, run: Path) -> list:
        _edit_manifest(run, edit)
        return ["report", run, "--out", root / "page", "--quiet"]
    return setup


def _stats(data: dict) -> None:
    del next(iter(next(iter(data["by_task"].values())).values()))["achieved_share"]


REPORT_CASES = [
    pytest.param(lambda root, run: ["report", root / "gone", "--out", root / "page"],
                 "not a smolmix run folder", id="run-missing"),
    pytest.param(lambda root, run: ["report", root, "--out", root / "page"],
                 "not a smolmix run folder", id="run-plain-folder"),
    pytest.param(manifest_bytes(b'{"smolmix": {"kind": "mixt\xe9re"}}'),
                 "not a smolmix run folder", id="A-manifest-not-utf8"),
    pytest.param(manifest_bytes(b'{"smolmix": {"kind": "mixture"'), "not a smolmix run folder",
                 id="manifest-truncated"),
    pytest.param(manifest_bytes(b'{"smolmix": {"kind": "mixture"}, "x": ' + b"[" * 3000
                                + b"]" * 3000 + b"}"), "not a smolmix run folder",
                 id="B-manifest-deep"),
    pytest.param(manifest_edit(lambda d: d.update(stages="all of them")),
                 "manifest stages must be a list", id="manifest-stages-a-string"),
    pytest.param(manifest_edit(_stats), "lacks one of", id="manifest-stats-incomplete"),
    pytest.param(manifest_edit(lambda d: d["smolmix"].update(kind="poem")),
                 "no report for runs of kind 'poem'", id="manifest-unknown-kind"),
    pytest.param(lambda root, run: ["report", run, run, "--out", root / "page"],
                 "given twice", id="same-run-twice"),
    pytest.param(lambda root, run: ["report", run, "--out", run], "is an input",
                 id="out-is-the-run"),
    pytest.param(lambda root, run: ["report", run, "--out", root / "data.jsonl" / "page"],
                 "is a file, not a folder", id="D-out-under-a-file"),
    pytest.param(lambda root, run: ["report", run, "--out", root / ("r" * 300)],
                 "output name too long", id="D-out-name-over-255-bytes"),
]


@pytest.mark.parametrize(("setup", "message"), REPORT_CASES)
def test_report_bad_input(root, run, capfd, setup, message):
    line = clean_error(setup(root, run), root, capfd)
    assert message in line, line


# --- convert -----------------------------------------------------------------------------------


def _gguf_header(keys: dict[str, str | int], count: int | None = None) -> bytes:
    """A GGUF v3 header with string or uint32 metadata ``keys`` (no tensors)."""
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(keys) if count is None else count)
    for key, value in keys.items():
        out += struct.pack("<Q", len(key)) + key.encode()
        if isinstance(value, int):
            out += struct.pack("<II", 4, value)
        else:
            out += struct.pack("<IQ", 8, len(value)) + value.encode()
    return out


def gguf_case(content: bytes, *flags, out=lambda r: r / "model"):
    def setup(root: Path) -> list:
        (root / "m.gguf").write_bytes(content)
        return ["convert", root / "m.gguf", "--out", out(root), "--quiet", *flags]
    return setup


ARCH = _gguf_header({"general.architecture": "llama"})

CONVERT_CASES = [
    pytest.param(lambda r: ["convert", r / "data.jsonl", "--out", r / "model"],
                 "is not a .gguf file", id="not-gguf"),
    pytest.param(lambda r: ["convert", r / "gone.gguf", "--out", r / "model"],
                 "does not exist", id="gguf-missing"),
    pytest.param(gguf_case(bytes(range(256)) * 4), "no GGUF magic", id="E-gguf-garbage"),
    pytest.param(gguf_case(b"GGUF" + struct.pack("<I", 3) + b"\x00\x00"), "truncated",
                 id="E-gguf-truncated"),
    pytest.param(gguf_case(b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 2**63) + b"x" * 16),
                 "truncated", id="E-gguf-huge-string-length"),
    pytest.param(gguf_case(_gguf_header({}, count=2**60)), "truncated",
                 id="E-gguf-huge-key-count"),
    pytest.param(gguf_case(b"GGUF" + struct.pack("<IQQ", 7, 0, 0)), "unsupported GGUF version",
                 id="E-gguf-version"),
    pytest.param(gguf_case(_gguf_header({"general.name": "x"})), "no general.architecture",
                 id="gguf-no-architecture"),
    pytest.param(gguf_case(ARCH), "not a complete model", id="gguf-no-sizes"),
    pytest.param(gguf_case(_gguf_header({"general.architecture": "llama", "llama.block_count":
                                         "2", "llama.embedding_length": "8"})),
                 "must be a positive integer", id="gguf-sizes-as-text"),
    pytest.param(gguf_case(_gguf_header({"general.architecture": "llama", "llama.block_count":
                                         0, "llama.embedding_length": 8})),
                 "must be a positive integer", id="gguf-no-layers"),
    pytest.param(gguf_case(ARCH, "--dtype", "float8"), "unknown dtype", id="dtype-unknown"),
    pytest.param(gguf_case(ARCH, out=lambda r: r / "m.gguf"), "is an input",
                 id="out-is-the-gguf"),
    pytest.param(gguf_case(ARCH, out=lambda r: r / "data.jsonl" / "model"),
                 "is a file, not a folder", id="D-out-under-a-file"),
    pytest.param(gguf_case(ARCH, out=lambda r: r / ("m" * 300)), "output name too long",
                 id="D-out-name-over-255-bytes"),
    pytest.param(lambda r: ["convert", "--out", r / "model"], "give a .gguf file or --smollm2",
                 id="no-file"),
]


@pytest.mark.parametrize(("setup", "message"), CONVERT_CASES)
def test_convert_bad_input(root, capfd, setup, message):
    line = clean_error(setup(root), root, capfd)
    assert message in line, line


# --- unwritable destinations, in a subprocess (root writes anywhere it can) ---------------------


def _no_write_permission(argv: list[str]) -> list[str]:
    """Run ``argv`` without the right to write where the folder's mode forbids it: as root,
    by dropping the capabilities that override file modes."""
    if os.geteuid() != 0:
        return argv
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is not installed: cannot drop "
                    "the capability that lets root write a read-only folder")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", *argv]


def _read_only_mount(folder: Path, argv: list[str]) -> list[str]:
    """Run ``argv`` with a read-only tmpfs mounted on ``folder`` (in a private namespace)."""
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if shutil.which("unshare") is None or probe.returncode != 0:
        pytest.skip("user namespaces (unshare -rm) unavailable: cannot mount a read-only "
                    "filesystem without privileges")
    script = 'mount -t tmpfs -o ro tmpfs "$0" && exec "$@"'
    return ["unshare", "-rm", "sh", "-c", script, str(folder), *argv]


def _smolmix(*args) -> list[str]:
    return [sys.executable, "-m", "smolmix.cli", *map(str, args)]


def _mix_args(root: Path, out: Path) -> list:
    (root / "recipe.yaml").write_text(_recipe())
    return ["mix", root / "recipe.yaml", "--out", out, "--quiet"]


def _grade_args(root: Path, out: Path) -> list:
    (root / "p.jsonl").write_bytes(GOOD)
    return ["grade", root / "p.jsonl", "--out", out]


@pytest.mark.parametrize("command", [_mix_args, _grade_args], ids=["mix", "grade"])
@pytest.mark.parametrize("how", ["D-no-permission", "D-read-only-filesystem"])
def test_unwritable_destination_is_one_line_before_any_work(root, command, how):
    target = root / "target"
    target.mkdir()
    argv = command(root, target / "out")
    if how == "D-no-permission":
        target.chmod(0o555)
        argv, expected = _no_write_permission(_smolmix(*argv)), "permission denied"
    else:
        argv, expected = _read_only_mount(target, _smolmix(*argv)), "read-only filesystem"
    before = listing(root)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    finally:
        target.chmod(0o755)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert listing(root) == before


# --- fuzzing: random bytes and random structures ------------------------------------------------

FUZZ = settings(max_examples=50, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=8)
TEXT_OR_ANY = st.one_of(st.text(max_size=8), st.text(max_size=8), JSON_VALUES)
MESSAGES = st.lists(st.fixed_dictionaries({"role": TEXT_OR_ANY, "content": TEXT_OR_ANY}),
                    max_size=3)
RECORDS = st.lists(st.one_of(
    st.fixed_dictionaries(  # mostly well-formed records, with odd values here and there
        {"task": TEXT_OR_ANY, "prompt": TEXT_OR_ANY, "completion": TEXT_OR_ANY},
        optional={"answer": TEXT_OR_ANY, "tags": JSON_VALUES, "x": JSON_VALUES}),
    st.fixed_dictionaries({"task": TEXT_OR_ANY, "messages": st.one_of(MESSAGES, JSON_VALUES)},
                          optional={"completion": TEXT_OR_ANY}),
    st.dictionaries(st.sampled_from(["task", "prompt", "completion", "messages", "x"]),
                    JSON_VALUES, max_size=5)), min_size=1, max_size=6)
SOURCE_BYTES = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=60).map(lambda b: b'{"task": "a", "prompt": "' + b + b'", '
                               b'"completion": "c"}\n'),
    st.binary(max_size=60).map(lambda b: b"task,prompt,completion\n" + b))


@FUZZ
@given(content=SOURCE_BYTES, suffix=st.sampled_from([".jsonl", ".json", ".csv"]))
def test_fuzz_random_bytes_as_a_source(tmp_path, content, suffix):
    (tmp_path / f"src{suffix}").write_bytes(content)
    try:
        table = load_source(SourceSpec(name="s", path=f"src{suffix}"), tmp_path)
    except SmolmixError:
        return
    table.validate(full=True)  # whatever is accepted is valid (UTF-8) data


@FUZZ
@given(records=RECORDS, separate=st.booleans())
def test_fuzz_random_records_through_build_mixture(tmp_path, records, separate):
    text = ("".join(json.dumps(r) + "\n" for r in records) if separate
            else json.dumps(records))
    (tmp_path / "data.jsonl").write_text(text, encoding="utf-8")
    (tmp_path / "recipe.yaml").write_text(_recipe("max_repeats: 100\nhygiene: {dedup: none}\n"))
    try:
        build_mixture(tmp_path / "recipe.yaml", None, quiet=True, dry_run=True)
    except SmolmixError:
        pass


@FUZZ
@given(content=st.one_of(st.binary(max_size=300),
                         st.binary(max_size=40).map(lambda b: b'{"prediction": "' + b)))
def test_fuzz_random_bytes_as_grade_input(tmp_path, content):
    (tmp_path / "p.jsonl").write_bytes(content)
    try:
        grade_file(tmp_path / "p.jsonl", timeout=0.5)
    except SmolmixError:
        pass


def test_the_catalogue_covers_every_command():
    counts = {"mix": len(MIX_CASES) + 2, "grade": len(GRADE_CASES) + 2,
              "report": len(REPORT_CASES), "convert": len(CONVERT_CASES)}
    assert counts["mix"] >= 55 and counts["grade"] >= 15
    assert counts["report"] >= 8 and counts["convert"] >= 7
    assert sum(counts.values()) >= 85
