"""``smolmix eval``, ``smolmix grade`` and ``smolmix gap`` through the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from helpers import one_line_error as _error

from smolmix.cli import main
from smolmix.evaluate.metrics import bootstrap_difference, bootstrap_mean, bucket_of
from smolmix.lab.tasks import TASKS


def test_eval_writes_samples_scores_and_buckets(tmp_path, tiny_checkpoint, lab_mixture):
    out = tmp_path / "ev"
    assert main(["eval", str(tiny_checkpoint), "--tasks", "lab:copy,lab:sort", "--out", str(out),
                 "--mixture", str(lab_mixture), "--tag", "student=s", "--quiet"]) == 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 400 and {s["task"] for s in samples} == {"copy", "sort"}
    assert set(samples[0]) >= {"prompt", "generation", "extracted", "reference", "correct"}
    scores = json.loads((out / "scores.json").read_text())
    for task in ("copy", "sort"):
        s = scores["tasks"][task]
        expected = sum(x["correct"] for x in samples if x["task"] == task) / 200
        assert s["mean"] == pytest.approx(expected) and s["low"] <= s["mean"] <= s["high"]
    # copy is 1/3 of the mixture: a frequent task
    assert scores["tasks"]["copy"]["bucket"] == "frequent"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tags"] == {"student": "s"}


def test_each_sample_is_scored_as_the_task_checker_says(tmp_path, partly_trained_copy):
    # A partly trained model: some generations right, some wrong. Every sample's verdict must
    # be the lab checker's (which recomputes the answer from the prompt), and the score the
    # fraction of right ones.
    model, held_out = partly_trained_copy
    data = tmp_path / "copy3.jsonl"
    data.write_text("".join(json.dumps({"prompt": r.prompt, "answer": r.answer}) + "\n"
                            for r in held_out))
    (tmp_path / "task.yaml").write_text("name: copy\npath: copy3.jsonl\nanswer_format: exact\n"
                                        "max_new_tokens: 8\n")
    out = tmp_path / "ev"
    assert main(["eval", str(model), "--tasks", str(tmp_path / "task.yaml"), "--out", str(out),
                 "--quiet"]) == 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["prompt"] for s in samples] == [r.prompt for r in held_out]
    checker = TASKS["copy"]
    assert [s["correct"] for s in samples] == [checker.check(s["prompt"], s["generation"])
                                               for s in samples]
    right = sum(s["correct"] for s in samples)
    assert 0 < right < len(samples), "want a partly trained model"
    scores = json.loads((out / "scores.json").read_text())
    assert scores["tasks"]["copy"]["mean"] == pytest.approx(right / len(samples))


def test_task_file_with_gsm8k_style_data(tmp_path, tiny_checkpoint):
    data = tmp_path / "qa.jsonl"
    data.write_text("\n".join(json.dumps({"q": f"copy {i} =", "a": f"#### {i}"})
                              for i in range(5)) + "\n")
    (tmp_path / "task.yaml").write_text(
        "name: qa\npath: qa.jsonl\nprompt_field: q\nreference_field: a\n"
        "prompt_template: '{q}'\nanswer_format: gsm8k\nmax_new_tokens: 4\n")
    out = tmp_path / "ev"
    assert main(["eval", str(tiny_checkpoint), "--tasks", str(tmp_path / "task.yaml"),
                 "--out", str(out), "--quiet"]) == 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["reference"] for s in samples] == ["0", "1", "2", "3", "4"]  # from "#### N"


def test_bad_eval_inputs(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "ev"
    (tmp_path / "bad.yaml").write_text("name: qa\npath: qa.jsonl\npromt_field: q\n")
    (tmp_path / "qa.jsonl").write_text(json.dumps({"q": "copy 1 ="}) + "\n")
    (tmp_path / "nofield.yaml").write_text("name: qa\npath: qa.jsonl\nprompt_field: q\n"
                                           "reference_field: a\n")
    cases = [
        ([str(tmp_path / "nowhere"), "--tasks", "lab:copy"], "does not exist"),
        ([str(tmp_path), "--tasks", "lab:copy"], "no config.json"),
        ([str(tiny_checkpoint), "--tasks", "lab:nope"], "unknown lab task"),
        ([str(tiny_checkpoint), "--tasks", str(tmp_path / "bad.yaml")], "promt_field"),
        ([str(tiny_checkpoint), "--tasks", str(tmp_path / "nofield.yaml")], "no field 'a'"),
    ]
    for argv, message in cases:
        assert main(["eval", *argv, "--out", str(out), "--quiet"]) == 2
        assert message in _error(capsys)
        assert not out.exists() and not (tmp_path / "ev.partial").exists()


def test_interrupted_eval_leaves_nothing_and_a_rerun_does_not_mix(tmp_path, tiny_checkpoint):
    out = tmp_path / "ev"
    stale = tmp_path / "ev.partial"
    stale.mkdir()
    (stale / "samples.jsonl").write_text('{"task": "stale", "index": 0}\n')
    cmd = [sys.executable, "-m", "smolmix.cli", "eval", str(tiny_checkpoint), "--tasks",
           "lab:copy,lab:sort,lab:reverse,lab:count", "--out", str(out), "--batch-size", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and '"task": "copy"' not in _read(stale / "samples.jsonl"):
        time.sleep(0.2)  # wait until the rerun replaced the stale partial and is writing
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    assert not out.exists() and not stale.exists()
    assert main(["eval", str(tiny_checkpoint), "--tasks", "lab:copy", "--out", str(out),
                 "--quiet"]) == 0
    tasks = {json.loads(line)["task"]
             for line in (out / "samples.jsonl").read_text().splitlines()}
    assert tasks == {"copy"}


def _read(path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_grade_a_predictions_file(tmp_path, capsys):
    preds = tmp_path / "preds.jsonl"
    rows = [{"resps": [["The answer is 12."]], "target": "12"},
            {"resps": [["so \\boxed{\\frac{1}{2}}"]], "target": "0.5"},
            {"resps": [["#### 7"]], "target": "8"}]
    preds.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "verdicts.jsonl"
    assert main(["grade", str(preds), "--prediction-field", "resps.0.0", "--reference-field",
                 "target", "--out", str(out)]) == 0
    assert "accuracy 0.6667 (2/3)" in capsys.readouterr().out
    verdicts = [json.loads(line) for line in out.read_text().splitlines()]
    assert [v["correct"] for v in verdicts] == [True, True, False]
    preds.write_text(json.dumps({"prediction": "1"}) + "\n")
    assert main(["grade", str(preds), "--out", str(tmp_path / "v2.jsonl")]) == 2
    assert "reference" in _error(capsys) and not (tmp_path / "v2.jsonl").exists()


def _fake_eval_run(tmp_path, name, tags, correct):
    from smolmix.core.rundir import write_manifest

    run = tmp_path / name
    run.mkdir()
    (run / "samples.jsonl").write_text("\n".join(
        json.dumps({"task": "t", "index": i, "correct": c}) for i, c in enumerate(correct)))
    write_manifest(run, "eval", {}, seed=0, extra={"tags": tags})
    return run


def test_gap_is_the_accuracy_difference_with_an_interval(tmp_path, capsys):
    long = _fake_eval_run(tmp_path, "long", {"student": "a", "cot": "long"}, [1, 0, 0, 0] * 25)
    short = _fake_eval_run(tmp_path, "short", {"student": "a", "cot": "short"}, [1, 1, 0, 0] * 25)
    assert main(["gap", str(long), str(short), "--out", str(tmp_path / "gap")]) == 0
    rows = json.loads((tmp_path / "gap" / "gaps.json").read_text())
    assert len(rows) == 1 and rows[0]["gap"] == "long_cot" and rows[0]["paired"]
    assert rows[0]["diff"] == pytest.approx(-0.25)
    assert rows[0]["low"] < -0.25 < rows[0]["high"] < 0
    assert (rows[0]["high_tag"], rows[0]["low_tag"]) == ("cot=long", "cot=short")
    assert (tmp_path / "gap" / "gaps.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["gap", str(long)]) == 2
    assert "no gap" in _error(capsys)
    assert main(["gap", str(tmp_path)]) == 2
    assert "not an eval run" in _error(capsys)


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n():
    small = bootstrap_mean([1, 0] * 10)
    large = bootstrap_mean([1, 0] * 1000)
    assert small["low"] < 0.5 < small["high"] and large["low"] < 0.5 < large["high"]
    assert large["high"] - large["low"] < small["high"] - small["low"]
    same = bootstrap_difference([1, 0, 1, 0], [1, 0, 1, 0], paired=True)
    assert same == {"diff": 0.0, "low": 0.0, "high": 0.0}  # paired: identical runs, no spread
    assert [bucket_of(s) for s in (0.001, 0.05, 0.5)] == ["rare", "medium", "frequent"]


def test_needle_probe_run_writes_grid_and_heatmap(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "needle"
    assert main(["eval", str(tiny_checkpoint), "--probe", "needle", "--lengths", "16,32",
                 "--depths", "0,1", "--trials", "2", "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "needle.json").read_text())
    assert result["lengths"] == [16, 32] and len(result["accuracy"]) == 2
    assert all(0 <= a <= 1 for row in result["accuracy"] for a in row)
    assert (out / "needle.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["eval", str(tiny_checkpoint), "--probe", "needle", "--lengths", "4096",
                 "--out", str(tmp_path / "n2"), "--quiet"]) == 2
    assert "--lengths" in _error(capsys) and not (tmp_path / "n2").exists()
