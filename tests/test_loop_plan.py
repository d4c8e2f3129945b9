"""The loop's plan file: a good plan loads; each mistake is one error naming the file and line."""

from __future__ import annotations

import pytest

from smolmix.core.errors import SmolmixError
from smolmix.loop.plan import load_plan

GOOD = """\
model: start
sources:
  - {name: copy, path: copy.jsonl}
  - {name: sort, path: sort.jsonl}
heldout: heldout.jsonl
train: {batch_size: 8, learning_rate: 0.003}
stages: {count: 3, examples: [100, 200, 200]}
schedule: {kind: wsd, warmup_steps: 5, decay_fraction: 0.2}
policy:
  name: verdict
  max_change: 2
  options: {raise_factor: 4}
seed: 1
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "start").mkdir()
    for name in ("copy.jsonl", "sort.jsonl", "heldout.jsonl"):
        (tmp_path / name).write_text('{"prompt": "a", "completion": "b", "task": "copy"}\n')
    return tmp_path


def _load(folder, text):
    (folder / "plan.yaml").write_text(text)
    return load_plan(folder / "plan.yaml")


def test_a_good_plan_loads(folder):
    plan = _load(folder, GOOD)
    assert plan.stages.budgets == [100, 200, 200]
    assert plan.policy.name == "verdict" and plan.policy.max_epochs == 4
    assert plan.path(plan.heldout) == folder / "heldout.jsonl"
    one = _load(folder, GOOD.replace("examples: [100, 200, 200]", "examples: 50"))
    assert one.stages.budgets == [50, 50, 50]


@pytest.mark.parametrize("old, new, words, line", [
    ("name: verdict", "name: magic", "unknown policy 'magic'", 10),
    ("options: {raise_factor: 4}", "options: {speed: 4}", "unknown option", 12),
    ("examples: [100, 200, 200]", "examples: [100, 200]", "2 budgets for 3 stages", 7),
    ("train: {batch_size: 8", "train: {steps: 8", "train.steps is set by the loop", 6),
    ("heldout: heldout.jsonl", "heldout: missing.jsonl", "does not exist", 5),
    ("path: sort.jsonl", "path: gone.jsonl", "sources.1.path", 4),
    ("max_change: 2", "max_change: 0.5", "greater than or equal to 1", 11),
    ("seed: 1", "seed: 1\nspeed: 3", "unknown key", 14),
])
def test_each_mistake_is_one_error_at_its_line(folder, old, new, words, line):
    with pytest.raises(SmolmixError) as exc:
        _load(folder, GOOD.replace(old, new))
    assert words in str(exc.value)
    assert exc.value.where == f"{folder / 'plan.yaml'}:{line}"


@pytest.mark.parametrize("extra, words, line", [
    ("eval: {answer_formats: {copy: magic}}", "unknown answer format 'magic'", 14),
    ("start: {copy: -1, sort: 2}", "start: weights must be finite, not negative", 14),
    ("policy2: 1", "unknown key", 14),
])
def test_eval_and_start_mistakes_name_their_line(folder, extra, words, line):
    with pytest.raises(SmolmixError) as exc:
        _load(folder, GOOD + extra + "\n")
    assert words in str(exc.value)
    assert exc.value.where == f"{folder / 'plan.yaml'}:{line}"


def test_excess_loss_without_a_reference_is_refused(folder):
    with pytest.raises(SmolmixError, match="needs a reference model"):
        _load(folder, GOOD.replace("name: verdict", "name: excess-loss")
              .replace("options: {raise_factor: 4}", "options: {}"))
