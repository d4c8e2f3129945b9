"""The answer grader: a table of (prediction, reference, format, verdict) a careful human
grader agrees with, extraction, time bounds, threads, and grading predictions files."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from smolmix.core.errors import SmolmixError
from smolmix.grading import mathverify
from smolmix.grading.command import grade_file
from smolmix.grading.extract import (
    ANSWER_FORMATS,
    MAX_ANSWER,
    answer_is,
    boxed,
    last_number,
    reference_answer,
)
from smolmix.grading.grade import REASONS, GradeVerdict, grade, grade_many
from smolmix.grading.mathverify import DIFFERENT, EQUAL, MathVerify

GSM8K_SOLUTION = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
                  "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72")

# (prediction, reference, answer format, correct?)
CASES = [
    # fractions
    (r"\boxed{\frac{1}{2}}", "0.5", "boxed", True),
    (r"\boxed{0.5}", r"\frac{1}{2}", "boxed", True),
    ("The answer is 1/2.", r"\frac12", "answer_is", True),
    (r"\boxed{\dfrac{3}{4}}", "3/4", "boxed", True),
    (r"\boxed{\tfrac{6}{8}}", r"\frac{3}{4}", "boxed", True),
    (r"\boxed{\frac{4}{2}}", "2", "boxed", True),
    (r"\boxed{-\frac{1}{2}}", "-0.5", "boxed", True),
    (r"\boxed{\frac{-1}{2}}", r"-\frac12", "boxed", True),
    (r"\boxed{\frac{1}{2}}", r"-\frac{1}{2}", "boxed", False),
    (r"\boxed{0.33}", r"\frac{1}{3}", "boxed", False),
    (r"\boxed{1/2}", "2", "boxed", False),
    (r"\boxed{\frac{2}{3}}", r"\frac{3}{2}", "boxed", False),
    (r"\boxed{1\frac{1}{2}}", r"\frac{3}{2}", "boxed", True),
    # LaTeX
    (r"\boxed{\frac{\sqrt{2}}{2}}", r"\sqrt{2}/2", "boxed", True),
    (r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{\sqrt2}{2}", "boxed", True),
    (r"\boxed{2\sqrt{3}}", r"\sqrt{12}", "boxed", True),
    (r"\boxed{\sqrt{3}}", r"\sqrt{2}", "boxed", False),
    (r"\boxed{2\pi}", r"2 \pi", "boxed", True),
    (r"\boxed{\frac{\pi}{2}}", r"\pi/2", "boxed", True),
    (r"\boxed{\pi}", "3.14", "boxed", False),
    (r"\boxed{\sqrt[3]{8}}", "2", "boxed", True),
    (r"\boxed{2^{10}}", "1024", "boxed", True),
    (r"\boxed{x^2+2x+1}", "(x+1)^2", "boxed", True),
    (r"\boxed{x^2-1}", "(x-1)(x+2)", "boxed", False),
    (r"\boxed{\frac{x}{2}}", "x/2", "boxed", True),
    (r"\boxed{x = 5}", "5", "boxed", True),
    (r"\boxed{\text{(B)}}", "B", "boxed", True),
    (r"\boxed{(C)}", "B", "boxed", False),
    (r"\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}", r"\begin{pmatrix}1\\2\end{pmatrix}",
     "boxed", True),
    (r"\boxed{y = 2x + 3}", "y=3+2x", "boxed", True),
    (r"\boxed{e^3}", "e^{2}", "boxed", False),
    (r"\boxed{\begin{pmatrix} 1 \\ 3 \end{pmatrix}}", r"\begin{pmatrix}1\\2\end{pmatrix}",
     "boxed", False),
    (r"\boxed{45^\circ}", "45", "boxed", True),
    (r"\boxed{30^{\circ}}", "60", "boxed", False),
    (r"\fbox{7}", "7", "boxed", True),
    (r"\boxed{\sin 60^\circ}", r"\frac{\sqrt{3}}{2}", "boxed", True),
    (r"\boxed{\cos\frac{\pi}{3}}", r"\frac{\sqrt{3}}{2}", "boxed", False),
    (r"\boxed{e^2}", "e^{2}", "boxed", True),
    (r"\boxed{\log_2 8}", "3", "boxed", True),
    (r"\boxed{\binom{6}{2}}", "15", "boxed", True),
    (r"\boxed{5!}", "100", "boxed", False),
    (r"\boxed{2i + 5}", "5 + 2i", "boxed", True),
    (r"\boxed{3 - 3i}", "3 + 3i", "boxed", False),
    (r"\boxed{\arctan 1}", r"\frac{\pi}{4}", "boxed", True),
    (r"\boxed{x^2 + y^2 = 9}", "y^2 + x^2 = 9", "boxed", True),
    (r"\boxed{x^2 + y^2 = 3}", "x^2 + y^2 = 9", "boxed", False),
    (r"\boxed{x = 2}", "x^2 = 4", "boxed", False),
    (r"\boxed{\text{Odd}}", r"\text{odd}", "boxed", True),
    (r"\boxed{\text{even}}", r"\text{odd}", "boxed", False),
    # units and currency
    (r"\boxed{5\text{ cm}}", "5", "boxed", True),
    (r"The answer is \$5.", "5", "answer_is", True),
    ("The answer is 5 dollars.", "5", "answer_is", True),
    ("#### 18 dollars", "18", "gsm8k", True),
    ("The answer is 5 cm.", "5 m", "answer_is", False),
    ("The answer is $18.00.", "18", "answer_is", True),
    (r"\boxed{12\text{ inches}}", "12", "boxed", True),
    ("The answer is 120 minutes.", "12", "answer_is", False),
    # thousands separators
    ("The answer is 1,234.", "1234", "answer_is", True),
    ("#### 1,234,567", "1234567", "gsm8k", True),
    (r"\boxed{1{,}000}", "1000", "boxed", True),
    ("The answer is 1,234.", "1,243", "answer_is", False),
    # negative numbers
    ("#### -3", "-3", "gsm8k", True),
    (r"\boxed{-3}", "3", "boxed", False),
    (r"\boxed{3}", "-3", "boxed", False),
    ("The temperature drops to \u22125 degrees.", "-5", "last_number", True),
    ("The difference is 7-3", "-3", "last_number", False),
    (r"\boxed{-\frac{2}{3}}", r"\frac{-2}{3}", "boxed", True),
    # percentages: the sign is dropped, 50% is 50 and not 0.5
    ("The answer is 50%.", "50", "answer_is", True),
    (r"\boxed{50\%}", "50", "boxed", True),
    (r"\boxed{0.5}", r"50\%", "boxed", False),
    ("#### 25%", "25", "gsm8k", True),
    (r"\boxed{25\%}", r"20\%", "boxed", False),
    # intervals, tuples, sets
    (r"\boxed{[1, 2)}", "(1,2]", "boxed", False),
    (r"\boxed{[1,2)}", "[1, 2)", "boxed", True),
    (r"\boxed{(-\infty, 3]}", r"(-\infty,3]", "boxed", True),
    (r"\boxed{(-\infty, 3)}", r"(-\infty, 3]", "boxed", False),
    (r"\boxed{[0, \frac{1}{2}]}", "[0, 0.5]", "boxed", True),
    (r"\boxed{\left( 1, 2 \right)}", "(1,2)", "boxed", True),
    (r"\boxed{(1, 2)}", "(2, 1)", "boxed", False),
    (r"\boxed{\{1, 2\}}", r"\{2, 1\}", "boxed", True),
    (r"\boxed{x \in [1,2]}", "[1,2]", "boxed", True),
    (r"\boxed{x \ge 3}", r"[3, \infty)", "boxed", True),
    (r"\boxed{x < 3}", r"(-\infty, 3]", "boxed", False),
    (r"\boxed{(-\infty, 1) \cup (9, \infty)}", r"(9,\infty)\cup(-\infty,1)", "boxed", True),
    (r"\boxed{(-\infty, 1] \cup [9, \infty)}", r"(-\infty,1)\cup(9,\infty)", "boxed", False),
    (r"\boxed{\pm 2}", "2, -2", "boxed", True),
    (r"\boxed{\frac{1 \pm \sqrt{5}}{2}}", r"\frac{1-\sqrt5}{2}, \frac{1+\sqrt5}{2}", "boxed", True),
    (r"\boxed{\pm 3}", "3", "boxed", False),
    (r"\boxed{(-1, 1) \cup (2, \infty)}", r"(-1,1)\cup(2,\infty)", "boxed", True),
    # several boxed answers: one unordered list
    (r"\boxed{2}, \boxed{3}", "2, 3", "boxed", True),
    (r"\boxed{2}, \boxed{3}", "3, 2", "boxed", True),
    (r"$\boxed{2}$ and $\boxed{3}$", "2,3", "boxed", True),
    (r"$x = \boxed{2}$ or $x = \boxed{-2}$", "-2, 2", "boxed", True),
    (r"\boxed{2}, \boxed{3}", "2", "boxed", False),
    (r"\boxed{2}", "2, 3", "boxed", False),
    (r"\boxed{2}, \boxed{3}", "2, 4", "boxed", False),
    (r"First we get \boxed{12}. So the answer is \boxed{72}.", "72", "boxed", True),
    # GSM8K
    (GSM8K_SOLUTION, "72", "gsm8k", True),
    (GSM8K_SOLUTION.replace("#### 72", "#### 71"), "72", "gsm8k", False),
    ("#### 72", GSM8K_SOLUTION, "gsm8k", True),
    ("She sold 72 clips. The answer is 72.", "72", "gsm8k", True),
    ("48 + 24 = 72, so 72 in total", "72", "gsm8k", True),
    ("#### 12", "120", "gsm8k", False),
    # "the answer is"
    ("The answer is 72.", "72", "answer_is", True),
    ("Therefore, the answer is: **72**", "72", "answer_is", True),
    (r"Final Answer: The final answer is $\frac{3}{5}$. I hope it is correct.", "3/5",
     "answer_is", True),
    ("The answer is 72. Wait, no: the answer is 27.", "27", "answer_is", True),
    ("ANSWER: 15", "15", "answer_is", True),
    ("The answer is 72.", "7", "answer_is", False),
    # last number
    ("She has 3 apples and 72 pears.", "72", "last_number", True),
    ("It is 3.5 km away.", "3.5", "last_number", True),
    ("which is 3/4 of the cake", "0.75", "last_number", True),
    ("so we get 1,234.", "1234", "last_number", True),
    ("the result is 12", "120", "last_number", False),
    ("it costs $2.50", "2.5", "last_number", True),
    # auto
    (r"So the answer is \boxed{7}.", "7", "auto", True),
    ("5 boxes hold 8 each\n#### 40", "40", "auto", True),
    ("The answer is 9", "9", "auto", True),
    ("I think it's 13", "13", "auto", True),
    (r"It is \boxed{13}, not 14", "14", "auto", False),
    # no answer
    ("", "72", "auto", False),
    ("I cannot solve this problem.", "72", "auto", False),
    (r"\boxed{}", "72", "boxed", False),
    ("no box here: 72", "72", "boxed", False),
    ("It is seventy-two.", "72", "last_number", False),
    # exact (lab tasks)
    (" 3 1 4 1", "3 1 4 1", "exact", True),
    ("3 1 4 1 5", "3 1 4 1", "exact", False),
    ("3 1 4", "3 1 4 \n", "exact", True),
    ("a b c", "c b a", "exact", False),
    ("1 2 3", "1 2 3.0", "exact", False),
    # wrong answers that look alike
    (r"\boxed{120}", "12", "boxed", False),
    (r"\boxed{1000000}", "1000001", "boxed", False),
    (r"\boxed{0.1}", "1", "boxed", False),
    (r"\boxed{12.5}", "125", "boxed", False),
    (r"\boxed{\sqrt{2}}", "2", "boxed", False),
    (r"\boxed{2x}", "2", "boxed", False),
    (r"\boxed{x+1}", "x-1", "boxed", False),
    (r"\boxed{1.414}", r"\sqrt{2}", "boxed", False),
    # decimals
    (r"\boxed{0.333333}", r"\frac13", "boxed", True),
    (r"\boxed{1.414214}", r"\sqrt{2}", "boxed", True),
    (r"\boxed{5.0}", "5", "boxed", True),
    (r"\boxed{.5}", "1/2", "boxed", True),
]


@pytest.mark.parametrize(("prediction", "reference", "answer_format", "correct"), CASES)
def test_table(prediction: str, reference: str, answer_format: str, correct: bool) -> None:
    verdict = grade(prediction, reference, answer_format)
    assert verdict.correct is correct, verdict
    assert verdict.reason in REASONS


def test_table_size_and_formats() -> None:
    assert len(CASES) >= 70
    assert {case[2] for case in CASES} == set(ANSWER_FORMATS)


def test_grade_many_matches_grade() -> None:
    # The batched path (fast path for all, then math-verify for the undecided in parallel)
    # gives each pair exactly the verdict grading it alone gives, in the input order.
    for fmt in ("auto", "boxed"):
        verdicts = grade_many([c[0] for c in CASES], [c[1] for c in CASES], fmt)
        assert verdicts == [grade(c[0], c[1], fmt) for c in CASES], fmt
    assert len({v.reason for v in verdicts}) > 3 and "math-verify" in {v.reason for v in verdicts}
    boxed_cases = [c for c in CASES if c[2] == "boxed"]
    verdicts = grade_many([c[0] for c in boxed_cases], [c[1] for c in boxed_cases], "boxed")
    assert [v.correct for v in verdicts] == [c[3] for c in boxed_cases]


def test_answers_too_long_to_compare_are_wrong() -> None:
    # Over MAX_ANSWER characters on either side (here: two boxes, joined): not compared (too
    # complex), graded wrong unless identical.
    half = "1" * (MAX_ANSWER // 2 + 1)
    two_boxes = rf"\boxed{{{half}}} or \boxed{{{half}}}"
    long_answer = "1" * (MAX_ANSWER + 1)
    cases = [(two_boxes, "72"), (r"\boxed{72}", long_answer + "2"),
             (rf"\boxed{{{'9' * MAX_ANSWER}}}", "9" * (MAX_ANSWER - 1) + "8")]
    verdicts = grade_many([p for p, _ in cases], [r for _, r in cases], "boxed")
    assert [(v.correct, v.reason) for v in verdicts[:2]] == [(False, "too complex")] * 2
    assert verdicts[2].reason != "too complex" and not verdicts[2].correct  # at the limit
    assert grade(two_boxes, f"{half}, {half}", "boxed").correct  # identical


def test_verdict_fields() -> None:
    verdict = grade(r"We get \boxed{\frac{1}{2}}.", r"The answer: $\boxed{0.5}$", "boxed")
    assert verdict == GradeVerdict(answer=r"\frac{1}{2}", reference="0.5", correct=True,
                              reason="value")
    assert grade("nothing", "5").answer is None
    assert grade("nothing", "5").reason == "no answer"
    assert grade("#### 5", "  ").reason == "no reference"


# ---------------------------------------------------------------- extraction


def test_boxed_extraction() -> None:
    assert boxed(r"so \boxed{\frac{1}{2}} is it") == (r"\frac{1}{2}",)
    assert boxed(r"\boxed{\{1, 2\}}") == (r"\{1, 2\}",)
    assert boxed(r"$\boxed 5$") == ("5",)
    assert boxed(r"\boxed{2}, \boxed{3} and \boxed{4}") == ("2", "3", "4")
    assert boxed(r"\boxed{2}. Later, we find \boxed{3}") == ("3",)
    assert boxed(r"\boxed{unclosed") == ()
    assert boxed(r"\boxed{1} then \boxed{2") == ("1",)


def test_other_extractors() -> None:
    assert answer_is("The answer is $\\boxed{4}$.") == ("4",)
    assert answer_is("the answer is 3.5.") == ("3.5",)
    assert last_number("from -2 to -7.5") == ("-7.5",)
    assert last_number("x^2 = 1,000,000") == ("1,000,000",)
    assert last_number("about 40 %") == ("40 %",)
    assert last_number(r"so \dfrac{3}{4}") == (r"\dfrac{3}{4}",)
    assert reference_answer(GSM8K_SOLUTION) == "72"
    assert reference_answer(r"Thus $x = \boxed{\frac{1}{3}}$.") == r"\frac{1}{3}"
    assert reference_answer(" 42 ") == "42"


# ---------------------------------------------------------------- time, threads


ADVERSARIAL = [
    "1" * 1_000_000,
    "1," * 500_000,
    r"\boxed{" * 150_000,
    "{" * 1_000_000,
    r"\frac{" * 170_000,
    "(" * 500_000 + ")" * 500_000,
    "The answer is " * 80_000,
    "-" * 1_000_000,
    "#### " + "9" * 1_000_000,
    r"\boxed{" + "1+" * 500_000 + "}",
    "a" * 1_000_000 + r"\boxed{" + "(" * 300 + "1" + ")" * 300 + "}",
    "x" * 999_990 + r"\boxed{1,1}",
    r"\boxed{" + "1," * 400 + "2}",
    r"\boxed{" + r"(1,2)\cup" * 80 + "(1,3)}",
    r"\boxed{" + r"\sqrt{" * 150 + "2" + "}" * 150 + "}",
    r"\boxed{" + "9" * 900 + "}",
    r"\boxed{" + r"10^{" * 40 + "9" + "}" * 40 + "}",
    "The answer is " + r"\pm" * 300,
]


@pytest.mark.timing
@pytest.mark.parametrize("answer_format", ANSWER_FORMATS)
def test_one_megabyte_is_graded_without_blowing_up(answer_format: str) -> None:
    # Each is graded in well under a second on a 2-core machine (benchmarks/grading.py
    # --adversarial measures it); a hang or a quadratic blow-up on 1 MB takes minutes, so a
    # generous bound catches it on a loaded machine too.
    for text in ADVERSARIAL:
        start = time.perf_counter()
        verdict = grade(text, "72", answer_format)
        assert time.perf_counter() - start < 10.0, (text[:30], verdict)
        assert not verdict.correct


def test_math_verify_in_threads() -> None:
    """math-verify's signal timeouts fail outside the main thread; these run in threads."""
    pairs = [(r"\boxed{x \in [1,2]}", "[1,2]", True), (r"\boxed{x \in [1,3]}", "[1,2]", False)]
    results: dict[int, list[GradeVerdict]] = {}

    def work(k: int) -> None:
        results[k] = grade_many([p for p, _, _ in pairs], [r for _, r, _ in pairs], "boxed")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 3
    for verdicts in results.values():
        assert [v.correct for v in verdicts] == [c for _, _, c in pairs]
        assert {v.reason for v in verdicts} == {"math-verify"}


# short answers the fast path cannot decide and math-verify is slow on: bounded by the timeout
SLOW = [r"\boxed{2^{10^{10}}}", r"\boxed{" + "x=" * 400 + "2}", r"\boxed{" + "x^" * 400 + "2}"]


@pytest.mark.timing
def test_timeout_is_incorrect_not_a_hang() -> None:
    for text in SLOW:
        start = time.perf_counter()
        verdict = grade(text, "2", "boxed", timeout=0.5)
        assert time.perf_counter() - start < 30  # 0.5 s, plus (re)starting a worker; a hang
        # (the timeout not applied) runs for minutes
        assert not verdict.correct and verdict.reason in ("timeout", "math-verify"), verdict
    assert grade(r"\boxed{2^{10^{10}}}", "2", "boxed", timeout=0.5).reason == "timeout"
    assert grade(r"\boxed{x \in [1,2]}", "[1,2]", "boxed").correct  # a fresh worker


def test_math_verify_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = MathVerify(workers=2)
    try:
        pairs = [(r"x \in [1, 2]", "[1,2]"), (r"x \in [1, 3]", "[1,2]")] * 40
        assert pool.check_many(pairs) == [EQUAL, DIFFERENT] * 40
        pool.close()
        assert pool.check(r"\ln e", "1") == EQUAL  # restarted after close
    finally:
        pool.close()
    broken = tmp_path / "worker.py"
    broken.write_text('print(\'{"error": "No module named math_verify"}\')\n')
    monkeypatch.setattr(mathverify, "WORKER", broken)
    with pytest.raises(SmolmixError, match="pip install math-verify"):
        MathVerify(workers=1).check("1", "2")


def test_unknown_format_and_length_mismatch() -> None:
    with pytest.raises(SmolmixError) as err:
        grade("1", "1", "latex")
    assert err.value.where == "answer_format" and "known: auto" in err.value.what
    with pytest.raises(ValueError):
        grade_many(["1"], [], "auto")


# ---------------------------------------------------------------- files


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_grade_file_round_trip(tmp_path: Path) -> None:
    src = _write(tmp_path / "preds.jsonl", [
        {"prediction": "#### 72", "reference": GSM8K_SOLUTION},
        "",
        {"prediction": r"\boxed{\frac12}", "reference": "0.5"},
        {"prediction": "no idea", "reference": "3"},
        {"prediction": r"\boxed{x \in [1,2]}", "reference": "[1,2]"},
    ])
    out = tmp_path / "graded" / "verdicts.jsonl"
    summary = grade_file(src, out)
    assert (summary.total, summary.correct) == (4, 3)
    assert summary.accuracy == 0.75
    assert summary.reasons == {"match": 1, "value": 1, "no answer": 1, "math-verify": 1}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 3, 4, 5]
    assert rows[0] == {"line": 1, "answer": "72", "reference": "72", "correct": True,
                       "reason": "match"}
    assert [r["correct"] for r in rows] == [v.correct for v in summary.verdicts]
    assert summary.to_dict()["accuracy"] == 0.75
    assert sorted(p.name for p in out.parent.iterdir()) == ["verdicts.jsonl"]
    assert grade_file(src).out is None


def test_grade_file_lm_eval_samples(tmp_path: Path) -> None:
    """lm-evaluation-harness ``--log_samples`` lines: generations in ``resps`` (a list per
    request, a list per sample), the reference in ``target``."""
    src = _write(tmp_path / "samples_gsm8k.jsonl", [
        {"doc_id": 0, "doc": {"question": "?"}, "target": GSM8K_SOLUTION,
         "resps": [["She sold 72 clips.\n#### 72"]], "filtered_resps": ["72"]},
        {"doc_id": 1, "doc": {"question": "?"}, "target": 5,
         "resps": [["The answer is 6."]], "filtered_resps": ["6"]},
    ])
    summary = grade_file(src, None, prediction_field="resps.0.0", reference_field="target",
                         answer_format="gsm8k")
    assert [v.correct for v in summary.verdicts] == [True, False]
    summary = grade_file(src, None, "filtered_resps.0", "target", "auto")
    assert [v.correct for v in summary.verdicts] == [True, False]


BAD_FILES = [
    (['{"prediction": "1", "reference": "1"}', '{"prediction": "1", '], ":2", "malformed JSON"),
    (['{"prediction": "1", "reference": "1"}', '[1, 2]'], ":2", "not a JSON object"),
    (['{"prediction": "1", "reference": "1"}', "", '{"reference": "1"}'], ":3",
     "missing field 'prediction'"),
    (['{"prediction": "1"}'], ":1", "missing field 'reference'"),
    (['{"prediction": ["1"], "reference": "1"}'], ":1", "field 'prediction' is a list"),
    (['{"prediction": null, "reference": "1"}'], ":1", "field 'prediction' is a NoneType"),
    ([], "", "no predictions"),
    (["", "  "], "", "no predictions"),
]


@pytest.mark.parametrize(("lines", "where", "what"), BAD_FILES)
def test_grade_file_bad_input(tmp_path: Path, lines: list[str], where: str, what: str) -> None:
    src = tmp_path / "preds.jsonl"
    src.write_text("".join(line + "\n" for line in lines))
    out = tmp_path / "out" / "verdicts.jsonl"
    with pytest.raises(SmolmixError) as err:
        grade_file(src, out)
    assert err.value.where == f"{src}{where}"
    assert what in err.value.what
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_grade_file_bad_format_missing_file_and_nested_field(tmp_path: Path) -> None:
    src = _write(tmp_path / "preds.jsonl", [{"resps": [["1"]], "reference": "1"}])
    out = tmp_path / "verdicts.jsonl"
    with pytest.raises(SmolmixError) as err:
        grade_file(src, out, answer_format="nope")
    assert err.value.where == "answer_format"
    with pytest.raises(SmolmixError) as err:
        grade_file(src, out, prediction_field="resps.0.1")
    assert err.value.where == f"{src}:1" and "'resps.0.1'" in err.value.what
    with pytest.raises(SmolmixError) as err:
        grade_file(tmp_path / "missing.jsonl", out)
    assert err.value.where == str(tmp_path / "missing.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.jsonl"]
    assert grade_file(src, out, prediction_field="resps.0.0").correct == 1


def test_existing_output_untouched_on_error(tmp_path: Path) -> None:
    out = _write(tmp_path / "verdicts.jsonl", ["old"])
    src = _write(tmp_path / "preds.jsonl", ['{"prediction": "1", "reference": "1"}', "{"])
    with pytest.raises(SmolmixError):
        grade_file(src, out)
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.jsonl", "verdicts.jsonl"]


@pytest.mark.parametrize("prediction, reference, correct", [
    ("#### 9 3 6", "9 3 6", True),
    ("#### 6 3 9", "9 3 6", False),     # a permutation (math-verify: the same product)
    ("#### 4 5", "5 4", False),
    ("#### 0 9 3 6", "9 3 6", False),   # an extra digit
    ("#### 9 3", "9 3 6", False),
    ("#### 9 3 6", "936", True),        # written digit by digit
    ("#### 2 3", "6", False),           # not 2 x 3
    ("#### 1.5 2", "1.50 2", True),
])
def test_numbers_separated_by_spaces_are_an_ordered_sequence(prediction, reference, correct):
    verdict = grade(prediction, reference, "gsm8k")
    assert verdict.correct is correct and verdict.reason in ("match", "sequence"), verdict
