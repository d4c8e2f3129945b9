"""The learnability-gap lab's problems and traces: every trace is correct and graded correct,
the styles differ as documented (docs/lab-learnability-gap-design.md), the vocabulary is
closed, held-out problems stay out of training, and everything is deterministic."""

from __future__ import annotations

import re
import statistics
from functools import cache

import pytest

from smolmix.core.errors import SmolmixError
from smolmix.grading.grade import grade_many
from smolmix.lab.learnability.problems import (
    ANSWER_FORMAT,
    TASKS,
    Problem,
    draw,
    held_out,
    split,
)
from smolmix.lab.learnability.traces import LENGTH_RATIOS, STEP, STYLES, steps, trace, vocabulary

PER_LEVEL = 200  # 4 tasks x 3 levels x 200 = 2,400 problems, 9,600 traces
LEVELS = [(task, d) for task, spec in TASKS.items() for d in spec.difficulties]


@pytest.fixture(scope="module")
def problems():
    return {(task, d): draw(task, d, PER_LEVEL, seed=11) for task, d in LEVELS}


@pytest.fixture(scope="module")
def traces(problems):
    return {key: {style: [trace(p, style) for p in ps] for style in STYLES}
            for key, ps in problems.items()}


# ------------------------------------------------------------------ independent ground truth


@cache
def _eval(expression: str) -> float:
    """An arithmetic expression over digit-by-digit numbers, by Python's own rules."""
    text = re.sub(r"(?<=\d) (?=\d)", "", expression)
    assert re.fullmatch(r"[\d+\-*/() ]+", text), expression
    return eval(text, {"__builtins__": {}})  # only digits, operators and brackets


def solve(prompt: str) -> int:
    """The answer recomputed from the prompt text alone."""
    toks = prompt.split()
    assert toks[-2:] == ["=", "?"], prompt
    body = " ".join(toks[:-2])
    if body.startswith("sum even [ "):
        items = body.removeprefix("sum even [ ").removesuffix(" ]").split(" , ")
        return sum(x for x in (int(i.replace(" ", "")) for i in items) if x % 2 == 0)
    return int(_eval(body))


def reference(value: int) -> str:
    return "( " + " , ".join(str(value)) + " )"


def test_solve_is_independent_of_the_generator():
    assert solve("( 3 4 + 5 ) * 7 - 1 2 = ?") == 261
    assert solve("3 4 7 + 5 8 9 = ?") == 936
    assert solve("sum even [ 3 , 8 , 1 2 , 5 ] = ?") == 20


# ------------------------------------------------------------------ (1) correct and graded


def test_every_trace_ends_with_the_true_answer_and_is_graded_correct(problems, traces):
    predictions, references = [], []
    for key, ps in problems.items():
        for i, p in enumerate(ps):
            truth = solve(p.prompt)
            assert (p.value, p.answer) == (truth, reference(truth)), p
            for style in STYLES:
                text = traces[key][style][i]
                assert text.splitlines()[-1] == f"#### {reference(truth)}"
                assert text.count("####") == 1
                predictions.append(text)
                references.append(reference(truth))
    assert len(predictions) >= 4 * 2000
    verdicts = grade_many(predictions, references, ANSWER_FORMAT)
    wrong = [(v, t) for v, t in zip(verdicts, predictions) if not v.correct]
    assert not wrong, wrong[:3]
    assert {v.reason for v in verdicts} == {"match"}  # decided by the fast path, exactly


_PREFIX = re.compile(r"^(?:so |check : |wait , )")


def _chains(step: str) -> list[list[str]]:
    """The ``a = b = c`` chains in one step (``so``, ``check :``, ``wait ,`` dropped)."""
    return [part.split(" = ") for part in _PREFIX.sub("", step).split(" , ") if " = " in part]


def _true(step: str) -> bool:
    return all(len({_eval(side) for side in chain}) == 1 for chain in _chains(step))


def test_every_equation_in_every_trace_holds_except_the_caught_slip(problems):
    for ps in problems.values():
        for p in ps[:60]:
            for style in STYLES:
                lines = steps(p, style)
                waits = [i for i, s in enumerate(lines) if s.startswith("wait , ")]
                assert len(waits) == (style == "long"), (style, lines)
                for i, s in enumerate(lines):
                    if i + 1 in waits:  # the slip: a wrong value, then caught
                        assert not _true(s), lines
                        slip_lhs, wrong = s.split(" = ")
                        lhs, rest = lines[i + 1].removeprefix("wait , ").split(" = ")
                        right, not_wrong = rest.split(" , not ")
                        assert (lhs, not_wrong) == (slip_lhs, wrong)
                        assert _eval(lhs) == _eval(right) != _eval(wrong)
                    else:
                        assert _true(s), (style, s, lines)


def test_written_digits_spell_the_answer_in_column_traces(problems):
    for task in ("add", "mul"):
        for d in TASKS[task].difficulties:
            for p in problems[task, d][:60]:
                for style in ("small", "long"):
                    written = [s.split(" carry ")[0].removeprefix("write ").replace(" ", "")
                               for s in steps(p, style) if s.startswith("write ")]
                    assert "".join(reversed(written)) == str(solve(p.prompt)), (style, p)


# ------------------------------------------------------------------ (2) and (3) the styles


def _tokens(texts: list[str]) -> float:
    return statistics.mean(len(t.split()) for t in texts)


def _steps(texts: list[str]) -> list[int]:
    return [t.split().count(STEP) for t in texts]


def test_long_traces_are_about_three_times_short_ones(traces):
    ratio = _tokens([t for v in traces.values() for t in v["long"]]) / \
        _tokens([t for v in traces.values() for t in v["short"]])
    assert abs(ratio - LENGTH_RATIOS["long/short"]) <= 0.15, ratio
    for key, v in traces.items():
        assert 2.4 <= _tokens(v["long"]) / _tokens(v["short"]) <= 4.0, key
        for short, long in zip(v["short"], v["long"]):
            assert len(long.split()) >= 1.5 * len(short.split()), (short, long)
            assert "we need" in long and "check :" in long and "wait ," in long


def test_large_and_small_teachers_are_as_long_but_large_takes_fewer_steps(traces):
    ratio = _tokens([t for v in traces.values() for t in v["large"]]) / \
        _tokens([t for v in traces.values() for t in v["small"]])
    assert abs(ratio - LENGTH_RATIOS["large/small"]) <= 0.05, ratio
    assert 0.85 <= ratio <= 1.15
    large_steps, small_steps = [], []
    for key, v in traces.items():
        assert 0.85 <= _tokens(v["large"]) / _tokens(v["small"]) <= 1.25, key
        for large, small in zip(_steps(v["large"]), _steps(v["small"])):
            assert 1 <= large < small, key
        large_steps += _steps(v["large"])
        small_steps += _steps(v["small"])
        for style in ("large", "small", "short"):  # the short register: no long habits
            assert not any(w in t for t in v[style] for w in ("wait", "check", "we need"))
    assert statistics.mean(large_steps) <= 0.5 * statistics.mean(small_steps)


def test_the_large_teacher_works_on_whole_numbers_the_small_one_on_digits():
    p = Problem("add", 3, "3 4 7 + 5 8 9 = ?", "( 9 , 3 , 6 )", 936, (347, 589), ("+",))
    assert steps(p, "large") == ["3 4 7 + 5 8 9 = 3 4 7 + 6 0 0 - 1 1 = 9 4 7 - 1 1",
                                 "9 4 7 - 1 1 = 9 3 6"]
    assert steps(p, "small") == ["7 + 9 = 1 6", "write 6 carry 1", "4 + 8 + 1 = 1 3",
                                 "write 3 carry 1", "3 + 5 + 1 = 9", "write 9"]
    assert steps(p, "short") == ["7 + 9 = 1 6", "4 + 8 + 1 = 1 3", "3 + 5 + 1 = 9"]


# ------------------------------------------------------------------ (4) wrong answers


def _corruptions(value: int) -> list[str]:
    text = str(value)
    out = {str(value + 1), str(value - 1) if value else "1", text + "0", "1" + text}
    if len(text) > 1:
        out |= {text[:-1], text[::-1], text[1:] + text[:1]}
    return [reference(int(w)) if not w.startswith("0") else "( " + " , ".join(w) + " )"
            for w in out if w != text]


def test_a_corrupted_final_answer_is_graded_wrong(problems):
    predictions, references = [], []
    for ps in problems.values():
        for p in ps[:25]:
            truth = reference(solve(p.prompt))
            for style in STYLES:
                body = trace(p, style).rsplit("\n", 1)[0]  # keeps intermediate numbers
                for wrong in _corruptions(solve(p.prompt)):
                    predictions.append(f"{body}\n#### {wrong}")
                    references.append(truth)
    verdicts = grade_many(predictions, references, ANSWER_FORMAT)
    accepted = [(v, t) for v, t in zip(verdicts, predictions) if v.correct]
    assert not accepted, accepted[:3]


def test_the_answer_inside_the_trace_does_not_rescue_a_wrong_final_answer():
    text = "check : 9 3 6 - 5 8 9 = 3 4 7 , correct .\n#### ( 9 , 3 , 7 )"
    (verdict,) = grade_many([text], ["( 9 , 3 , 6 )"], ANSWER_FORMAT)
    assert not verdict.correct
    (verdict,) = grade_many(["7 + 9 = 1 6 .\n#### ( 9 , 3 , 6 )"], ["( 9 , 3 , 6 )"],
                            ANSWER_FORMAT)
    assert verdict.correct


# ------------------------------------------------------------------ (5) vocabulary


def test_every_token_is_in_the_vocabulary(problems, traces):
    vocab = vocabulary()
    assert len(vocab) == len(set(vocab))
    known = set(vocab)
    seen = set()
    for key, ps in problems.items():
        for p in ps:
            seen |= set(p.prompt.split()) | set(p.answer.split())
        for texts in traces[key].values():
            for t in texts:
                seen |= set(t.split())
    assert seen <= known, seen - known
    assert known - seen <= {"borrow"}, known - seen  # nothing unused (no style writes a borrow)


def test_the_ladder_tokenizer_has_no_unknown_token(problems):
    from smolmix.models.ladder import build_tokenizer

    tok = build_tokenizer(vocabulary())
    p = problems["expr", 4][0]
    for style in STYLES:
        ids = tok(p.prompt + "\n" + trace(p, style))["input_ids"]
        assert tok.unk_token_id not in ids
    assert tok.unk_token_id in tok("3 4 + 5 = 39")["input_ids"]  # a joined number is unknown


# ------------------------------------------------------------------ (6) held out, (7) seeds


@pytest.mark.parametrize("task,d", LEVELS)
def test_held_out_problems_never_appear_in_training(task, d):
    train, test = split(task, d, 300, 100, seed=3)
    assert len({p.prompt for p in train}) == 300 and len({p.prompt for p in test}) == 100
    assert not {p.prompt for p in train} & {p.prompt for p in test}
    assert test == held_out(task, d, 100, seed=3)


def test_the_exclusion_does_the_work_in_a_small_problem_space():
    test = held_out("mul", 2, 100, seed=0)  # 720 distinct problems in all
    plain = draw("mul", 2, 600, seed=0)
    assert {p.prompt for p in plain} & {p.prompt for p in test}  # overlap without exclusion
    train, test2 = split("mul", 2, 600, 100, seed=0)
    assert test2 == test and not {p.prompt for p in train} & {p.prompt for p in test}
    with pytest.raises(SmolmixError, match="fewer than"):
        draw("mul", 2, 721, seed=0)


def test_generation_is_deterministic_for_a_seed():
    for task, d in LEVELS:
        a, b, c = draw(task, d, 30, seed=5), draw(task, d, 30, seed=5), draw(task, d, 30, seed=6)
        assert a == b and a != c
        assert [trace(p, s) for p in a for s in STYLES] == [trace(p, s) for p in b for s in STYLES]


def test_unknown_names_are_user_errors():
    p = draw("add", 2, 1, seed=0)[0]
    with pytest.raises(SmolmixError, match="unknown task"):
        draw("division", 2, 1, seed=0)
    with pytest.raises(SmolmixError, match="unknown difficulty"):
        draw("add", 9, 1, seed=0)
    with pytest.raises(SmolmixError, match="unknown trace style"):
        trace(p, "medium")
