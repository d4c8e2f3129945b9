"""Recipe schema and YAML loading: happy paths, one test per bad input, hash, JSON schema."""

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from smolmix.core.errors import SmolmixError
from smolmix.mix.recipe import (
    Boost,
    Budget,
    Floor,
    MixLarge,
    MixLong,
    Natural,
    Temperature,
    Uniform,
    Weights,
    load_recipe,
    recipe_json_schema,
)

EXAMPLE = """\
seed: 0
budget: {examples: 10000}
max_repeats: 2
sources:
  - name: math_long
    path: data/math_long.jsonl
    fields: {prompt: question, completion: solution, answer: final, task: subject}
    tags: {cot: long, teacher: large}
    tag_fields: {difficulty: level}
  - name: chat
    path: data/chat.jsonl
    task: chat
strategy:
  - temperature: {alpha: 0.5}
  - boost: {geometry: 0.05}
  - floor: 0.01
  - mix_long: {long: 0.2, tasks: [math]}
  - mix_large
hygiene:
  dedup: near
  near: {threshold: 0.8, num_perm: 64, ngram: 3}
  decontaminate:
    - name: gsm8k
      path: data/gsm8k.jsonl
  ngram: 8
export: [jsonl, parquet]
"""

SOURCE = "sources:\n  - name: s\n    path: data/s.jsonl\n"


def _write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for stem in ("math_long", "chat", "gsm8k", "s"):
        (data / f"{stem}.jsonl").touch()
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _error(tmp_path: Path, text: str) -> SmolmixError:
    with pytest.raises(SmolmixError) as info:
        load_recipe(_write(tmp_path, text))
    return info.value


def _line(err: SmolmixError) -> int:
    """The line number in ``<file>:<line>``."""
    return int(err.where.rsplit(":", 1)[1])


# --- happy paths ----------------------------------------------------------------------------


def test_example_recipe_loads(tmp_path):
    recipe = load_recipe(_write(tmp_path, EXAMPLE))
    assert recipe.path == tmp_path / "recipe.yaml" and recipe.base_dir == tmp_path
    assert recipe.seed == 0 and recipe.max_repeats == 2
    math = recipe.sources[0]
    assert math.fields.prompt == "question" and math.fields.task == "subject"
    assert math.tags == {"cot": "long", "teacher": "large"}
    assert math.tag_fields == {"difficulty": "level"}
    assert math.location(recipe.base_dir) == tmp_path / "data/math_long.jsonl"
    assert recipe.sources[1].task == "chat" and recipe.sources[1].split == "train"
    [stage] = recipe.stages()
    assert stage.name == "main" and stage.budget == Budget(examples=10000)
    assert stage.sources == ["math_long", "chat"]
    assert stage.strategy == [Temperature(alpha=0.5), Boost(shares={"geometry": 0.05}),
                              Floor(share=0.01), MixLong(long=0.2, tasks=("math",)),
                              MixLarge(large=0.2, tasks=None)]
    assert recipe.hygiene.dedup == "near" and recipe.hygiene.near.num_perm == 64
    assert recipe.hygiene.decontaminate[0].name == "gsm8k" and recipe.hygiene.ngram == 8
    assert recipe.export == ["jsonl", "parquet"]
    assert recipe.tokenizer_path() is None


def test_defaults(tmp_path):
    recipe = load_recipe(_write(tmp_path, "budget: {examples: 5}\n" + SOURCE))
    assert recipe.seed == 0 and recipe.max_repeats == 1 and recipe.export == []
    assert recipe.hygiene.dedup == "exact" and recipe.hygiene.ngram == 13
    assert recipe.hygiene.near.threshold == 0.85 and recipe.hygiene.decontaminate == []
    [stage] = recipe.stages()
    assert stage.strategy == [Natural()] and stage.sources == ["s"]


def test_stages_resolve_sources_and_lead_with_a_base_step(tmp_path):
    recipe = load_recipe(_write(tmp_path, SOURCE + """\
  - name: t
    path: data/chat.jsonl
stages:
  - name: one
    budget: {examples: 10}
    sources: [t]
    strategy: [uniform, {floor: 0.1}]
  - name: two
    budget: {examples: 20}
    strategy:
      - boost: {a: 0.5}
  - name: three
    budget: {examples: 30}
"""))
    one, two, three = recipe.stages()
    assert (one.name, one.sources, one.strategy) == ("one", ["t"], [Uniform(), Floor(share=0.1)])
    assert two.sources == ["s", "t"] and two.strategy == [Natural(), Boost(shares={"a": 0.5})]
    assert three.strategy == [Natural()] and three.budget.examples == 30


def test_tokenizer_resolved_relative_to_recipe(tmp_path):
    (tmp_path / "tok").mkdir()
    recipe = load_recipe(_write(tmp_path, "budget: {tokens: 100}\ntokenizer: tok\n" + SOURCE))
    assert recipe.tokenizer_path() == tmp_path / "tok"
    assert recipe.stages()[0].budget.tokens == 100


def test_weights_and_steps_built_in_python():
    assert Weights(weights={"a": 2, "b": 0}).weights == {"a": 2.0, "b": 0.0}
    assert Boost(boost={"a": 0.2}) == Boost(shares={"a": 0.2})
    assert MixLong() == MixLong(long=0.2, tasks=None)
    assert Temperature(alpha=1).model_dump() == {"temperature": {"alpha": 1.0}}
    assert Natural().model_dump() == "natural"


# --- hash and schema ------------------------------------------------------------------------


def test_hash_stable_under_reordering_and_changed_by_a_value(tmp_path):
    data = yaml.safe_load(EXAMPLE)
    base = load_recipe(_write(tmp_path, EXAMPLE)).hash()
    reordered = {k: data[k] for k in reversed(list(data))}
    reordered["sources"][0] = dict(reversed(list(reordered["sources"][0].items())))
    text = yaml.safe_dump(reordered, sort_keys=False, default_flow_style=True, width=1000)
    assert load_recipe(_write(tmp_path, text, "b.yaml")).hash() == base
    written_out = EXAMPLE.replace("seed: 0\n", "").replace("alpha: 0.5", "alpha: 5.0e-1")
    assert load_recipe(_write(tmp_path, written_out, "c.yaml")).hash() == base
    changed = EXAMPLE.replace("floor: 0.01", "floor: 0.02")
    assert load_recipe(_write(tmp_path, changed, "d.yaml")).hash() != base
    assert len(base) == 64 and int(base, 16) >= 0


def test_dump_round_trips(tmp_path):
    recipe = load_recipe(_write(tmp_path, EXAMPLE))
    dumped = recipe.model_dump(mode="json", by_alias=True)
    again = load_recipe(_write(tmp_path, yaml.safe_dump(dumped), "again.yaml"))
    assert again.hash() == recipe.hash() and again.stages() == recipe.stages()


def test_json_schema_is_valid_and_accepts_the_example():
    jsonschema = pytest.importorskip("jsonschema")
    schema = recipe_json_schema()
    json.dumps(schema)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(yaml.safe_load(EXAMPLE))
    staged = yaml.safe_load(SOURCE + "stages:\n  - {name: a, budget: {tokens: 5}}\n")
    validator.validate(staged)
    assert not validator.is_valid({**yaml.safe_load(EXAMPLE), "sourcs": []})
    assert not validator.is_valid({**yaml.safe_load(EXAMPLE), "strategy": ["sharpen"]})


# --- bad input: one test each ---------------------------------------------------------------


def test_unknown_key_names_it_and_its_line(tmp_path):
    err = _error(tmp_path, "seed: 0\nbudget: {examples: 5}\nsourcs:\n  - name: s\n")
    assert "unknown key 'sourcs'" in err.what and _line(err) == 3
    assert err.where.startswith(str(tmp_path / "recipe.yaml"))


def test_nested_unknown_key(tmp_path):
    err = _error(tmp_path, "budget: {examples: 5}\n" + SOURCE + "    feilds: {prompt: q}\n")
    assert err.what == "sources[0]: unknown key 'feilds'" and _line(err) == 5


def test_unknown_strategy_step(tmp_path):
    err = _error(tmp_path, "budget: {examples: 5}\n" + SOURCE
                 + "strategy:\n  - natural\n  - sharpen: {x: 1}\n")
    assert "unknown strategy step 'sharpen'" in err.what and _line(err) == 7


@pytest.mark.parametrize("weights, message", [
    ("{a: -1, b: 2}", "weight for 'a' must not be negative"),
    ("{a: 0, b: 0}", "weights are all zero"),
])
def test_bad_weights(tmp_path, weights, message):
    err = _error(tmp_path, "budget: {examples: 5}\n" + SOURCE
                 + f"strategy:\n  - weights: {weights}\n")
    assert message in err.what and _line(err) == 6


@pytest.mark.parametrize("share", ["0", "1", "1.5", "-0.1"])
def test_boost_share_outside_unit_interval(tmp_path, share):
    err = _error(tmp_path, "budget: {examples: 5}\n" + SOURCE
                 + f"strategy:\n  - boost: {{x: {share}}}\n")
    assert "boost share for 'x' must be in (0, 1)" in err.what and _line(err) == 6


@pytest.mark.parametrize("share", ["0", "1", "2"])
def test_floor_share_outside_unit_interval(tmp_path, share):
    err = _error(tmp_path, "budget: {examples: 5}\n" + SOURCE + f"strategy: [floor: {share}]\n")
    assert "floor share must be in (0, 1)" in err.what


def test_boost_shares_summing_above_one(tmp_path):
    err = _error(tmp_path, "budget: {examples: 5}\n" + SOURCE
                 + "strategy:\n  - boost: {a: 0.6, b: 0.5}\n")
    assert "boost shares sum to 1.1, above 1" in err.what


def test_mix_long_share_outside_unit_interval(tmp_path):
    err = _error(tmp_path, "budget: {examples: 5}\n" + SOURCE
                 + "strategy:\n  - mix_long: {long: 1.2}\n")
    assert "long must be in (0, 1)" in err.what


@pytest.mark.parametrize("strategy, message", [
    ("[floor: 0.1, uniform]", "base step 'uniform' must come first"),
    ("[natural, {temperature: {alpha: 1}}]", "only one of natural/uniform/temperature/weights"),
])
def test_base_step_placement(tmp_path, strategy, message):
    err = _error(tmp_path, "budget: {examples: 5}\n" + SOURCE + f"strategy: {strategy}\n")
    assert message in err.what


def test_missing_tokenizer_path(tmp_path):
    err = _error(tmp_path, "budget: {tokens: 100}\ntokenizer: nowhere\n" + SOURCE)
    assert f"tokenizer path '{tmp_path / 'nowhere'}' does not exist" in err.what
    assert _line(err) == 2


def test_tokens_budget_needs_a_tokenizer(tmp_path):
    err = _error(tmp_path, SOURCE + "stages:\n  - {name: a, budget: {tokens: 5}}\n")
    assert "tokenizer: required" in err.what


def test_top_level_budget_with_stages(tmp_path):
    err = _error(tmp_path, "budget: {examples: 5}\n" + SOURCE
                 + "stages:\n  - {name: a, budget: {examples: 5}}\n")
    assert "budget: not allowed with stages" in err.what and _line(err) == 1


@pytest.mark.parametrize("budget", ["{examples: 5, tokens: 5}", "{}"])
def test_budget_needs_exactly_one_unit(tmp_path, budget):
    err = _error(tmp_path, f"budget: {budget}\n" + SOURCE)
    assert err.what == "budget: exactly one of examples/tokens" and _line(err) == 1


def test_stage_names_unknown_source(tmp_path):
    err = _error(tmp_path, SOURCE + "stages:\n  - name: a\n    budget: {examples: 5}\n"
                 "    sources: [s, nope]\n")
    assert "unknown source 'nope'" in err.what and _line(err) == 7


@pytest.mark.parametrize("extra", ["    hub: org/name\n", None])
def test_both_or_neither_path_and_hub(tmp_path, extra):
    text = SOURCE + extra if extra else "sources:\n  - name: s\n"
    err = _error(tmp_path, "budget: {examples: 5}\n" + text)
    assert err.what == "sources[0]: exactly one of path/hub" and _line(err) == 3


def test_duplicate_source_names(tmp_path):
    err = _error(tmp_path, "budget: {examples: 5}\n" + SOURCE + "  - name: s\n    path: x\n")
    assert "duplicate source name 's'" in err.what and _line(err) == 5


def test_missing_source_file(tmp_path):
    err = _error(tmp_path, "budget: {examples: 5}\nsources:\n  - {name: s, path: gone.jsonl}\n")
    assert "does not exist" in err.what and "gone.jsonl" in err.what and _line(err) == 3


def test_yaml_syntax_error_has_its_line(tmp_path):
    err = _error(tmp_path, "seed: 0\nbudget: {examples: 5\n" + SOURCE)
    assert err.what.startswith("invalid YAML") and _line(err) == 3


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_recipe_must_be_a_mapping(tmp_path, text):
    assert "must be a YAML mapping" in _error(tmp_path, text).what


def test_duplicate_key(tmp_path):
    err = _error(tmp_path, "seed: 1\nseed: 2\n")
    assert err.what == "duplicate key 'seed'" and _line(err) == 2


def test_missing_recipe_file(tmp_path):
    with pytest.raises(SmolmixError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_wrong_types_are_one_line(tmp_path):
    err = _error(tmp_path, "seed: -1\nbudget: {examples: 5}\n" + SOURCE)
    assert err.what == "seed: input should be greater than or equal to 0, got -1"
    err = _error(tmp_path, "budget: {examples: five}\n" + SOURCE)
    assert err.what.startswith("budget.examples: ") and "\n" not in err.what
