"""``smolmix generate`` against a real OpenAI-compatible server: ``transformers serve`` started
here on a small trained checkpoint (right on some copy problems, wrong on others), and a real
failing proxy process in front of it. Kill -9 and restart, a server stopped and restarted
mid-run, 429/500 answers, authentication and an unknown model."""

import json
import os
import shutil
import signal
import time
import urllib.request

import pytest
from helpers import clean_error
from serving import free_port, proxy, read_entries, serve, smolmix, stop

from smolmix.core.records import read_jsonl
from smolmix.generate.run import Sampling, Transport, run_generate
from smolmix.generate.verify import Filters
from smolmix.models.loading import load_tokenizer

SAMPLED = ["--n", "2", "--temperature", "1.0", "--seed", "3", "--max-tokens", "8",
           "--answer-format", "exact", "--api", "completion", "--quiet"]
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['content'] }}{% endfor %}"
                 "{% if add_generation_prompt %}{% endif %}")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, partly_trained_copy):
    """The copy checkpoint with a chat template (so both APIs work), and its problems."""
    model, held_out = partly_trained_copy
    root = tmp_path_factory.mktemp("teacher")
    shutil.copytree(model, root / "model")
    tokenizer = load_tokenizer(root / "model")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(root / "model")
    problems = root / "copy.jsonl"
    problems.write_text("".join(json.dumps({"problem": r.prompt, "answer": r.answer}) + "\n"
                                for r in held_out))
    (root / "bare.txt").write_text("{problem}")
    return root / "model", problems, root / "bare.txt", held_out


@pytest.fixture(scope="module")
def server(teacher):
    port = free_port()
    proc = serve(teacher[0], port)
    yield port
    stop(proc)


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1"


def argv(teacher, port, out, *extra):
    _, problems, template, _ = teacher
    return ["generate", problems, "--teacher", url(port), "--style", template, "--out", out,
            *SAMPLED, *extra]


@pytest.fixture(scope="module")
def reference(teacher, server, tmp_path_factory):
    """An uninterrupted sampled run (2 samples a problem, seeded), one request at a time."""
    out = tmp_path_factory.mktemp("reference") / "out"
    code = smolmix(*argv(teacher, server, out, "--concurrency", "1")).wait()
    assert code == 0
    return read_entries(out)


def journal_lines(out) -> int:
    path = out.with_name(out.name + ".partial") / "journal.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_server_teacher_keeps_exactly_the_right_traces_and_matches_the_local_one(
        teacher, server, tmp_path):
    model, problems, template, held_out = teacher
    served = run_generate(problems, url(server), str(template), tmp_path / "served",
                          sampling=Sampling(max_tokens=8, api="completion"),
                          transport=Transport(concurrency=4),
                          filters=Filters(answer_format="exact"), quiet=True)
    local = run_generate(problems, f"hf:{model}", str(template), tmp_path / "local",
                         sampling=Sampling(max_tokens=8, api="completion"),
                         filters=Filters(answer_format="exact"), quiet=True)
    kept = list(read_jsonl(tmp_path / "served" / "traces.jsonl"))
    assert 0 < len(kept) < len(held_out)
    assert all(r.completion.strip() == r.answer for r in kept)
    assert served["accepted"] == local["accepted"]
    assert {r.prompt for r in kept} == {r.prompt for r in
                                        read_jsonl(tmp_path / "local" / "traces.jsonl")}
    assert served["tokens_counted_by"] == ["server"] and served["teacher"] == str(model)


def test_the_chat_api_and_the_key_kept_out_of_every_file(teacher, server, tmp_path, capfd):
    port = free_port()
    guard = proxy(server, port, "--key", "sk-test-5ecret")
    try:
        _, problems, template, _ = teacher
        line = clean_error(["generate", problems, "--teacher", url(port), "--style", template,
                            "--out", tmp_path / "out", "--answer-format", "exact"],
                           tmp_path, capfd)
        assert "authentication failed" in line and "$OPENAI_API_KEY" in line
        run = smolmix("generate", problems, "--teacher", url(port), "--style", template,
                      "--out", tmp_path / "out", "--answer-format", "exact", "--max-tokens",
                      "8", "--api", "chat", "--api-key-env", "SMOLMIX_TEST_KEY",
                      env={"SMOLMIX_TEST_KEY": "sk-test-5ecret"})
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
    finally:
        stop(guard)
    summary = json.loads((tmp_path / "out" / "manifest.json").read_text())["summary"]
    assert summary["samples"] == 40 and summary["accepted"] > 0
    for path in (tmp_path / "out").rglob("*"):
        assert b"5ecret" not in path.read_bytes(), path
    assert "5ecret" not in stdout + stderr
    assert "SMOLMIX_TEST_KEY" in (tmp_path / "out" / "manifest.json").read_text()


@pytest.mark.parametrize("bound", [1, 3])
def test_no_more_requests_in_flight_than_the_bound(teacher, server, tmp_path, bound):
    port = free_port()
    counting = proxy(server, port)
    try:
        _, problems, template, _ = teacher
        run_generate(problems, url(port), str(template), tmp_path / "out",
                     sampling=Sampling(max_tokens=8, api="completion"),
                     transport=Transport(concurrency=bound), filters=Filters(verify=False),
                     quiet=True)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats") as response:
            assert json.load(response)["max_in_flight"] == bound
    finally:
        stop(counting)


def test_an_unknown_model_is_one_error(teacher, server, tmp_path, capfd):
    _, problems, template, _ = teacher
    line = clean_error(["generate", problems, "--teacher", url(server), "--model", "nope",
                        "--style", template, "--out", tmp_path / "out", "--no-verify"],
                       tmp_path, capfd)
    assert "model 'nope' is not served" in line and "(--model)" in line


def test_kill_9_then_the_same_command_gives_the_uninterrupted_output(teacher, server,
                                                                     reference, tmp_path):
    out = tmp_path / "out"
    run = smolmix(*argv(teacher, server, out, "--concurrency", "1"))
    wait_for(lambda: journal_lines(out) >= 12 or run.poll() is not None)
    run.send_signal(signal.SIGKILL)
    run.wait()
    done = journal_lines(out)
    assert 12 <= done < 80 and not out.exists()  # killed mid-run: nothing looks complete
    assert smolmix(*argv(teacher, server, out, "--concurrency", "4")).wait() == 0
    got = read_entries(out)
    assert got == reference
    assert len({(p, k) for p, k, _, _ in got}) == len(got) == 80  # each sample exactly once
    assert not out.with_name("out.partial").exists()


def test_a_server_stopped_and_restarted_mid_run_loses_and_repeats_nothing(
        teacher, reference, tmp_path):
    port = free_port()
    first = serve(teacher[0], port)
    out = tmp_path / "out"
    run = smolmix(*argv(teacher, port, out, "--concurrency", "2", "--retry-budget", "120"))
    try:
        wait_for(lambda: journal_lines(out) >= 10 or run.poll() is not None)
        stop(first, signal.SIGKILL)
        down_at = journal_lines(out)
        time.sleep(1.0)
        second = serve(teacher[0], port)
        try:
            _, stderr = run.communicate(timeout=300)
        finally:
            stop(second)
    finally:
        stop(first)
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, stderr
    assert down_at < 80
    assert read_entries(out) == reference
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    assert summary["retries"] >= 1


def test_429_and_500_answers_are_retried_within_the_budget(teacher, server, reference,
                                                          tmp_path):
    port = free_port()
    flaky = proxy(server, port, "--fail", "4", "--status", "429", "--retry-after", "1",
                  "--then-fail", "3", "--then-status", "500")
    try:
        start = time.monotonic()
        run = smolmix(*argv(teacher, port, tmp_path / "out", "--concurrency", "8"))
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
    finally:
        stop(flaky)
    assert read_entries(tmp_path / "out") == reference
    summary = json.loads((tmp_path / "out" / "manifest.json").read_text())["summary"]
    assert summary["retries"] == 7
    assert time.monotonic() - start >= 1.0  # Retry-After: 1 was honoured


def test_a_server_that_keeps_failing_stops_the_run_after_the_budget(teacher, server,
                                                                   tmp_path, capfd):
    port = free_port()
    broken = proxy(server, port, "--fail", "-1", "--status", "503")
    try:
        line = clean_error(argv(teacher, port, tmp_path / "out", "--retry-budget", "2"),
                           tmp_path, capfd)
    finally:
        stop(broken)
    assert "kept failing (HTTP 503)" in line and "(--retry-budget)" in line
    assert not os.path.exists(tmp_path / "out")
