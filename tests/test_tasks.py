import random

import pytest

from smolmix.core.errors import SmolmixError
from smolmix.lab.tasks import TASKS, TrainStream, get_task, make_eval_set


def test_at_least_ten_tasks():
    assert len(TASKS) >= 10


@pytest.mark.parametrize("name", list(TASKS))
def test_generation_is_deterministic(name):
    task = TASKS[name]
    first = [task.make(random.Random(7)) for _ in range(5)]
    again = [task.make(random.Random(7)) for _ in range(5)]
    assert first == again
    assert make_eval_set(task, 20, seed=3) == make_eval_set(task, 20, seed=3)
    assert make_eval_set(task, 20, seed=3) != make_eval_set(task, 20, seed=4)


@pytest.mark.parametrize("name", list(TASKS))
def test_checker_accepts_answer_and_rejects_corruptions(name):
    task = TASKS[name]
    rng = random.Random(0)
    for _ in range(50):
        rec = task.make(rng)
        assert rec.task == name
        assert task.check(rec.prompt, rec.completion)
        toks = rec.completion.split()
        wrong_last = toks[:-1] + [str((int(toks[-1]) + 1) % 10)]
        assert not task.check(rec.prompt, " ".join(wrong_last))
        assert not task.check(rec.prompt, " ".join(toks + ["0"]))
        assert not task.check(rec.prompt, " ".join(toks[:-1]))


@pytest.mark.parametrize(
    "name,prompt,answer",
    [
        ("copy", "copy 3 1 2 =", "3 1 2"),
        ("reverse", "reverse 3 1 2 =", "2 1 3"),
        ("sort", "sort 3 1 2 =", "1 2 3"),
        ("increment", "increment 9 0 4 =", "0 1 5"),
        ("square", "square 3 4 9 =", "9 6 1"),
        ("prefix_sum", "prefix_sum 5 6 1 =", "5 1 2"),
        ("pair_sum", "pair_sum 5 6 1 =", "1 7"),
        ("running_max", "running_max 2 1 5 3 =", "2 2 5 5"),
        ("count", "count 2 1 2 2 =", "3 1 3 3"),
        ("swap_pairs", "swap_pairs 1 2 3 4 5 =", "2 1 4 3 5"),
        ("dedup", "dedup 1 2 1 3 2 =", "1 2 3"),
        ("rotate", "rotate 1 2 3 =", "2 3 1"),
        ("lookup", "lookup 1 7 4 2 ? 4 =", "2"),
    ],
)
def test_checker_on_hand_computed_cases(name, prompt, answer):
    assert TASKS[name].check(prompt, answer)
    assert TASKS[name].check(prompt, f"  {answer} ")


def test_complexity_knob_sets_length():
    rng = random.Random(1)
    for n in (2, 4, 8):
        rec = TASKS["copy"].make(rng, n)
        assert len(rec.completion.split()) == n
        assert len(rec.prompt.split()) == n + 2
    assert len(TASKS["lookup"].make(rng, 3).prompt.split()) == 3 * 2 + 4


@pytest.mark.parametrize("name", list(TASKS))
def test_training_stream_never_yields_eval_examples(name):
    task = TASKS[name]
    held_out = make_eval_set(task, 100, seed=0, n=3 if name != "lookup" else 2)
    prompts = {r.prompt for r in held_out}
    stream = TrainStream(task, seed=0, exclude=prompts, n=3 if name != "lookup" else 2)
    drawn = [stream.draw() for _ in range(2000)]
    assert not prompts & {r.prompt for r in drawn}


def test_unknown_task_and_wrong_prompt_are_user_errors():
    with pytest.raises(SmolmixError, match="unknown task 'nope'"):
        get_task("nope")
    with pytest.raises(SmolmixError):
        TASKS["copy"].check("sort 1 2 =", "1 2")


def test_eval_set_larger_than_task_space_is_refused():
    with pytest.raises(SmolmixError, match="fewer than"):
        make_eval_set(TASKS["copy"], 200, seed=0, n=2)
