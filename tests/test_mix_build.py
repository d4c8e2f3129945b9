"""`smolmix mix` end to end: example recipes, determinism, dry run, build-level bad input."""

import filecmp
import json
import shutil
from pathlib import Path

import pytest
import yaml
from datasets import load_from_disk

from smolmix.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _mix(*args: str) -> int:
    return main(["mix", *args, "--quiet"])


@pytest.fixture
def examples(tmp_path):
    """A private copy of examples/ (recipes resolve data paths relative to themselves)."""
    dst = tmp_path / "examples"
    shutil.copytree(EXAMPLES, dst)
    return dst


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_rare_task_boost_example(examples, tmp_path):
    out = tmp_path / "boost"
    assert _mix(str(examples / "rare_task_boost.yaml"), "--out", str(out)) == 0
    ds = load_from_disk(str(out))
    assert len(ds) == 3000
    assert set(ds.column_names) >= {"task", "prompt", "completion", "source", "stage"}
    by_task = _manifest(out)["by_task"]["main"]
    assert by_task["running_max"]["requested_share"] == pytest.approx(0.10)
    assert abs(by_task["running_max"]["achieved_share"] - 0.10) <= 0.005
    assert min(g["achieved_share"] for g in by_task.values()) >= 0.005 - 1 / 3000
    assert max(g["repetitions"] for g in by_task.values()) <= 4
    assert sum(ds["task"].count(t) for t in ["running_max"]) == by_task["running_max"]["selected"]


def test_mix_long_example_hits_the_ratio_and_decontaminates(examples, tmp_path):
    out = tmp_path / "long"
    assert _mix(str(examples / "mix_long.yaml"), "--out", str(out)) == 0
    ds = load_from_disk(str(out))
    tags = ds["tags"]
    long_share = sum(t["cot"] == "long" for t in tags) / len(ds)
    assert long_share == pytest.approx(0.2, abs=0.005)
    manifest = _manifest(out)
    assert manifest["hygiene"]["by_source"]["math_short"]["contaminated"] == 10
    removed = (out / "removed.jsonl").read_text().splitlines()
    assert len(removed) == 10 and all(json.loads(r)["reason"] == "contaminated" for r in removed)
    leaked = [json.loads(line) for line in
              (examples / "data/math_short.jsonl").read_text().splitlines()[:10]]
    built = set(zip(ds["prompt"], ds["completion"]))
    assert not {(r["question"], r["solution"]) for r in leaked} & built


def test_two_stage_example_keeps_stage_order(examples, tmp_path):
    out = tmp_path / "staged"
    assert _mix(str(examples / "two_stage.yaml"), "--out", str(out)) == 0
    ds = load_from_disk(str(out))
    stages = ds["stage"]
    assert stages == ["broad"] * 2000 + ["rebalance"] * 1000
    second = ds.select(range(2000, 3000))
    assert "chat" not in set(second["task"])
    assert second["task"].count("arithmetic") == 300
    assert any(m for m in ds["messages"][:2000] if m)  # the chat source kept its messages


def test_same_seed_byte_identical_other_seed_reorders(examples, tmp_path):
    recipe = examples / "rare_task_boost.yaml"
    a, b = tmp_path / "a", tmp_path / "b"
    assert _mix(str(recipe), "--out", str(a), "--export", "jsonl,parquet") == 0
    assert _mix(str(recipe), "--out", str(b), "--export", "jsonl,parquet") == 0
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    for name in files:
        if name == "manifest.json":
            continue
        assert filecmp.cmp(a / name, b / name, shallow=False), name
    ma, mb = _manifest(a), _manifest(b)
    for m in (ma, mb):
        m.pop("created"), m.pop("command")
    assert ma == mb
    other = yaml.safe_load(recipe.read_text())
    other["seed"] = 1
    recipe2 = examples / "seed1.yaml"
    recipe2.write_text(yaml.safe_dump(other))
    c = tmp_path / "c"
    assert _mix(str(recipe2), "--out", str(c)) == 0
    first, third = load_from_disk(str(a)), load_from_disk(str(c))
    assert first["prompt"] != third["prompt"]


def test_dry_run_writes_nothing(examples, tmp_path, capsys):
    out = tmp_path / "never"
    assert _mix(str(examples / "two_stage.yaml"), "--out", str(out), "--dry-run") == 0
    printed = capsys.readouterr().out
    assert "rebalance" in printed and "arithmetic" in printed and "requested" in printed
    assert not out.exists() and list(tmp_path.iterdir()) == [examples]


def test_schema_is_printed(capsys):
    assert main(["mix", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "sources" in json.dumps(schema)


def _write_recipe(tmp_path: Path, recipe: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _expect_error(args, capsys, *needles):
    assert main(["mix", *args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_existing_output_directory_is_refused(examples, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    _expect_error([str(examples / "mix_long.yaml"), "--out", str(out)], capsys, str(out))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    built = tmp_path / "built"
    assert _mix(str(examples / "mix_long.yaml"), "--out", str(built)) == 0
    before = sorted(p.name for p in built.iterdir())
    _expect_error([str(examples / "mix_long.yaml"), "--out", str(built)], capsys,
                  "already exists")
    assert sorted(p.name for p in built.iterdir()) == before


def test_token_budget_that_breaks_the_cap_names_the_source(examples, tmp_path, capsys, tokenizer):
    tokenizer.save_pretrained(tmp_path / "tok")
    recipe = _write_recipe(tmp_path, {
        "budget": {"tokens": 10_000_000}, "tokenizer": str(tmp_path / "tok"), "max_repeats": 1,
        "sources": [{"name": "lab", "path": str(examples / "data/lab_tasks.jsonl")}],
    })
    out = tmp_path / "out"
    _expect_error([str(recipe), "--out", str(out)], capsys, "source 'lab'", "max_repeats")
    assert not out.exists() and not (tmp_path / "out.partial").exists()


def test_token_budget_is_met(examples, tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "tok")
    recipe = _write_recipe(tmp_path, {
        "budget": {"tokens": 20_000}, "tokenizer": str(tmp_path / "tok"),
        "sources": [{"name": "lab", "path": str(examples / "data/lab_tasks.jsonl")}],
        "strategy": ["natural", {"floor": 0.02}],
    })
    out = tmp_path / "out"
    assert _mix(str(recipe), "--out", str(out)) == 0
    by_task = _manifest(out)["by_task"]["main"]
    total = sum(g["tokens"] for g in by_task.values())
    assert abs(total - 20_000) <= 13 * 20
    for g in by_task.values():
        assert abs(g["achieved_share"] - g["requested_share"]) <= 0.005
        assert g["achieved_share"] >= 0.02 - 0.005


def test_mix_long_without_long_examples(examples, tmp_path, capsys):
    recipe = _write_recipe(tmp_path, {
        "budget": {"examples": 100},
        "sources": [{"name": "short", "path": str(examples / "data/math_short.jsonl"),
                     "fields": {"prompt": "question", "completion": "solution"},
                     "task": "arithmetic", "tags": {"cot": "short"}}],
        "strategy": ["natural", {"mix_long": {"long": 0.2, "tasks": ["arithmetic"]}}],
    })
    _expect_error([str(recipe), "--out", str(tmp_path / "o")], capsys, "cot=long")


def test_boost_of_an_unknown_task(examples, tmp_path, capsys):
    recipe = _write_recipe(tmp_path, {
        "budget": {"examples": 100},
        "sources": [{"name": "lab", "path": str(examples / "data/lab_tasks.jsonl")}],
        "strategy": ["natural", {"boost": {"sortt": 0.1}}],
    })
    _expect_error([str(recipe), "--out", str(tmp_path / "o")], capsys, "'sortt'")
