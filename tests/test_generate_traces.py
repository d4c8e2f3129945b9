"""``smolmix generate`` and ``smolmix pair`` without a server: inputs, verification, the journal,
bad input, and a local checkpoint as the teacher (the in-process ``hf`` backend)."""

import json
import random
import time
from email.utils import formatdate

import httpx
import pytest
from helpers import clean_error

from smolmix.core.errors import SmolmixError
from smolmix.core.records import read_jsonl
from smolmix.generate.endpoint import RetryPolicy, retry_after
from smolmix.generate.journal import Journal
from smolmix.generate.pair import pair_outputs
from smolmix.generate.problems import read_problems, text_id
from smolmix.generate.run import Sampling, run_generate, sample_seed
from smolmix.generate.styles import resolve_style
from smolmix.generate.verify import TRUNCATED, Candidate, Filters, judge
from smolmix.inference.hf import generate
from smolmix.models.loading import load_checkpoint


def write_problems(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_problems_take_the_usual_fields_and_skip_repeats(tmp_path):
    path = write_problems(tmp_path / "math.jsonl", [
        {"problem": "1+1?", "answer": "2"},
        {"question": "2+2?", "solution": "so \\boxed{4}", "task": "arith"},
        {"prompt": "1+1?", "answer": "2"},            # same text, no id: a repeat
        {"id": 7, "problem": "3+3?", "answer": 6}])
    found = read_problems(path, need_answers=True)
    assert [p.id for p in found.items] == [text_id("1+1?"), text_id("2+2?"), "7"]
    assert [p.task for p in found.items] == ["math", "arith", "math"]
    assert found.items[1].answer == "so \\boxed{4}" and found.items[2].answer == "6"
    assert found.duplicates == 1


def test_problems_without_answers_need_no_verify(tmp_path):
    path = write_problems(tmp_path / "p.jsonl", [{"problem": "a", "answer": "1"},
                                                 {"problem": "b"}])
    with pytest.raises(SmolmixError, match=r"--no-verify.*p.jsonl:2"):
        read_problems(path, need_answers=True)
    assert read_problems(path, need_answers=False).items[1].answer is None


def test_styles_built_in_and_from_a_file(tmp_path):
    assert "{problem}" not in resolve_style("long").render("X") and \
        resolve_style("short").render("X").endswith("Problem: X")
    assert len(resolve_style("long").template) > 1.5 * len(resolve_style("short").template)
    template = tmp_path / "terse.txt"
    template.write_text("Q: {problem}\nEnd with \\boxed{}. {\"json\": 1}")
    style = resolve_style(str(template))
    assert style.name == "terse" and not style.built_in
    assert style.render("2+2") == "Q: 2+2\nEnd with \\boxed{}. {\"json\": 1}"


def test_retry_after_reads_seconds_and_dates():
    assert retry_after(httpx.Headers({"Retry-After": "3"})) == 3.0
    when = retry_after(httpx.Headers({"Retry-After": formatdate(time.time() + 30,
                                                                usegmt=True)}))
    assert 25 < when <= 31
    assert retry_after(httpx.Headers({})) is None
    assert retry_after(httpx.Headers({"Retry-After": "soon"})) is None


def test_backoff_doubles_up_to_the_cap_with_half_of_it_random():
    policy, rng = RetryPolicy(base_s=0.5, cap_s=4.0), random.Random(0)
    for attempt, full in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        waits = [policy.delay(attempt, rng) for _ in range(200)]
        assert full / 2 <= min(waits) and max(waits) <= full
        assert max(waits) - min(waits) > full / 4  # jittered, not fixed


def test_judge_keeps_correct_traces_and_says_why_others_go():
    filters = Filters(min_tokens=3, max_tokens=50)
    cases = [
        (Candidate("so the sum is \\boxed{12}", "stop", 10), "12", (True, "correct")),
        (Candidate("... \\boxed{13}", "stop", 10), "12", (False, "wrong answer")),
        (Candidate("I think so", "stop", 10), "12", (False, "no final answer")),
        (Candidate("\\boxed{12} and then more", "length", 10), "12", (False, TRUNCATED)),
        (Candidate("\\boxed{12}", "stop", 2), "12", (False, "shorter than")),
        (Candidate("\\boxed{12}", "stop", 51), "12", (False, "longer than")),
        (Candidate("", None, 0, refused="HTTP 400: too long"), "12", (False, "refused: HTTP 400")),
        (Candidate("it is \\boxed{1/2}", "stop", 10), "0.5", (True, "correct")),
    ]
    got = judge([c for c, _, _ in cases], [r for _, r, _ in cases], filters)
    for (_, _, (kept, reason)), j in zip(cases, got):
        assert j.accepted == kept and j.reason.startswith(reason), (j, reason)
    unverified = judge([Candidate("anything", "stop", 9)], [None], Filters(verify=False))
    assert unverified[0].accepted and unverified[0].reason == "unverified"


def test_journal_drops_a_torn_last_line_and_refuses_other_arguments(tmp_path):
    journal = Journal(tmp_path, {"style": "long"})
    journal.append({"problem": "a", "sample": 0, "text": "x"})
    journal.append({"problem": "b", "sample": 0, "text": "y"})
    with pytest.raises(RuntimeError, match="twice"):
        journal.append({"problem": "a", "sample": 0, "text": "x"})
    journal.close()
    with open(tmp_path / "journal.jsonl", "a") as fh:
        fh.write('{"problem": "c", "sam')  # a kill in the middle of a line
    again = Journal(tmp_path, {"style": "long"})
    assert set(again.done) == {("a", 0), ("b", 0)}
    again.append({"problem": "c", "sample": 0, "text": "z"})
    again.close()
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert [json.loads(line)["problem"] for line in lines] == ["a", "b", "c"]
    with pytest.raises(SmolmixError, match=r"other arguments \(style: 'long' there, 'short'"):
        Journal(tmp_path, {"style": "short"})


def test_sample_seeds_are_fixed_per_problem_and_sample():
    assert sample_seed(0, "p", 1) == sample_seed(0, "p", 1)
    assert len({sample_seed(0, "p", k) for k in range(50)}) == 50
    assert sample_seed(1, "p", 0) != sample_seed(0, "p", 0)


# -- bad input: one line, exit 2, nothing written ------------------------------------------

@pytest.fixture
def problems(tmp_path):
    return write_problems(tmp_path / "p.jsonl", [{"problem": "copy 1 2 =", "answer": "1 2"},
                                                 {"problem": "copy 3 4 ="}])


@pytest.mark.parametrize("extra, expected", [
    ([], "p.jsonl:2"),                                          # no reference answer
    (["--no-verify", "--style", "medium"], "unknown style 'medium'"),
    (["--no-verify", "--style", "TEMPLATE"], "no {problem} placeholder"),
    (["--no-verify", "--n", "0"], "(--n)"),
    (["--no-verify", "--n", "2"], "raise --temperature"),
    (["--no-verify", "--temperature", "-1"], "(--temperature)"),
    (["--no-verify", "--max-tokens", "0"], "(--max-tokens)"),
    (["--no-verify", "--concurrency", "0"], "(--concurrency)"),
    (["--no-verify", "--answer-format", "nope"], "unknown answer format"),
    (["--no-verify", "--min-trace-tokens", "9", "--max-trace-tokens", "3"],
     "(--min-trace-tokens)"),
    (["--no-verify", "--teacher", "ftp://x"], "(--teacher)"),
    (["--no-verify", "--teacher", "hf:MISSING"], "(--teacher)"),
    (["--no-verify", "--teacher", "hf:MODEL", "--temperature", "0.7"], "(--temperature)"),
    (["--no-verify", "--teacher", "hf:MODEL", "--model", "m"], "(--model)"),
    (["--no-verify", "--tag", "novalue"], "(--tag)"),
])
def test_generate_refuses_bad_input(extra, expected, tmp_path, problems, tiny_checkpoint,
                                    capfd):
    template = tmp_path / "bad.txt"
    template.write_text("no placeholder here")
    argv = ["generate", problems, "--teacher", "http://127.0.0.1:9/v1", "--style", "short",
            "--out", tmp_path / "out", "--retry-budget", "0"]
    named = {"TEMPLATE": str(template), "hf:MODEL": f"hf:{tiny_checkpoint}",
             "hf:MISSING": f"hf:{tmp_path / 'missing'}"}
    argv += [named.get(a, a) for a in extra]
    assert expected in clean_error(argv, tmp_path, capfd)


def test_an_unreachable_endpoint_is_one_error_after_the_budget(tmp_path, problems, capfd):
    start = time.monotonic()
    line = clean_error(["generate", problems, "--no-verify", "--teacher",
                        "http://127.0.0.1:9/v1", "--model", "m", "--style", "short", "--out",
                        tmp_path / "out", "--retry-budget", "2"], tmp_path, capfd)
    assert "http://127.0.0.1:9/v1 kept failing (ConnectError" in line and "2 s" in line
    assert 1.0 < time.monotonic() - start < 10


# -- a local checkpoint as the teacher -------------------------------------------------------

@pytest.fixture(scope="module")
def copy_problems(tmp_path_factory, partly_trained_copy):
    model, held_out = partly_trained_copy
    path = tmp_path_factory.mktemp("problems") / "copy.jsonl"
    write_problems(path, [{"problem": r.prompt, "answer": r.answer} for r in held_out])
    template = path.parent / "bare.txt"
    template.write_text("{problem}")
    return model, path, template, held_out


def test_a_local_teacher_keeps_exactly_the_traces_whose_answer_is_right(tmp_path,
                                                                         copy_problems):
    model_dir, path, template, held_out = copy_problems
    summary = run_generate(path, f"hf:{model_dir}", str(template), tmp_path / "out",
                           sampling=Sampling(max_tokens=8),
                           filters=Filters(answer_format="exact"), tags={"teacher": "small"},
                           quiet=True)
    model, tokenizer = load_checkpoint(model_dir)
    expected = [t.strip() for t in generate(model, tokenizer, [r.prompt for r in held_out], 8)]
    right = {r.prompt for r, text in zip(held_out, expected) if text == r.answer}
    assert 0 < len(right) < len(held_out)  # the teacher is right on some, wrong on others
    kept = list(read_jsonl(tmp_path / "out" / "traces.jsonl"))
    assert {r.prompt for r in kept} == right
    assert all(r.completion.strip() == r.answer for r in kept)
    assert all(r.tags["teacher"] == "small" and r.tags["style"] == "bare" for r in kept)
    rejected = [json.loads(line) for line in
                (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) + len(kept) == len(held_out)
    assert all(r["found"] != r["answer"] for r in rejected)
    assert summary["accepted"] == len(right) and summary["samples"] == len(held_out)
    assert summary["acceptance_rate"] == round(len(right) / len(held_out), 4)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["smolmix"]["kind"] == "generate"
    assert not (tmp_path / "out" / "journal.jsonl").exists()


def test_the_same_command_on_a_finished_output_does_nothing_and_other_arguments_are_refused(
        tmp_path, copy_problems, capfd):
    model_dir, path, template, _ = copy_problems
    argv = ["generate", path, "--teacher", f"hf:{model_dir}", "--style", template,
            "--max-tokens", "8", "--answer-format", "exact", "--out", tmp_path / "out",
            "--quiet"]
    from smolmix.cli import main

    assert main([str(a) for a in argv]) == 0
    before = (tmp_path / "out" / "traces.jsonl").read_bytes()
    assert main([str(a) for a in argv]) == 0
    assert (tmp_path / "out" / "traces.jsonl").read_bytes() == before
    line = clean_error([*argv, "--max-tokens", "9"], tmp_path, capfd)
    assert "other arguments (max_tokens: 8 there, 9 now)" in line


def test_pair_keeps_the_problems_both_outputs_solved(tmp_path, copy_problems):
    model_dir, path, template, held_out = copy_problems
    a = run_generate(path, f"hf:{model_dir}", str(template), tmp_path / "a",
                     sampling=Sampling(max_tokens=8), filters=Filters(answer_format="exact"),
                     tags={"cot": "short"}, quiet=True)
    b = run_generate(path, f"hf:{model_dir}", str(template), tmp_path / "b",
                     sampling=Sampling(max_tokens=8), filters=Filters(verify=False),
                     tags={"cot": "long"}, quiet=True)
    assert b["accepted"] == len(held_out) > a["accepted"]
    summary = pair_outputs(tmp_path / "a", tmp_path / "b", tmp_path / "pair", quiet=True)
    records = list(read_jsonl(tmp_path / "pair" / "traces.jsonl"))
    assert summary["problems_in_both"] == a["accepted"] == len(records) // 2
    by_cot = {c: [r.tags["problem"] for r in records if r.tags["cot"] == c]
              for c in ("short", "long")}
    assert by_cot["short"] == by_cot["long"] and len(set(by_cot["short"])) == a["accepted"]
    first = list(read_jsonl(tmp_path / "pair" / "first.jsonl"))
    second = list(read_jsonl(tmp_path / "pair" / "second.jsonl"))
    assert [r.tags["cot"] for r in first] == ["short"] * a["accepted"]
    assert [r.tags["problem"] for r in second] == by_cot["long"]
