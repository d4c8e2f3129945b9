"""``smolmix loop``: stages through the user's commands, one schedule and optimizer over them,
the policy's decisions between them, a killed loop resumed to the same end, the report, and bad
plans refused before anything is written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import clean_error, user_model_size

from smolmix.core.records import write_jsonl
from smolmix.core.rundir import read_manifest
from smolmix.lab.tasks import TrainStream, get_task, make_eval_set
from smolmix.loop.run import run_loop

TASKS = {"copy": 300, "reverse": 120, "sort": 60}
PLAN = {
    "model": "start",
    "sources": [{"name": t, "path": f"data/{t}.jsonl"} for t in TASKS],
    "heldout": "data/heldout.jsonl",
    "train": {"batch_size": 8, "learning_rate": 0.003, "logging_steps": 1},
    "stages": {"count": 3, "examples": 80},
    "schedule": {"kind": "wsd", "warmup_steps": 3, "decay_fraction": 0.3},
    "policy": {"name": "verdict", "max_change": 3, "max_epochs": 4},
    "eval": {"max_new_tokens": 12, "batch_size": 64},
    "seed": 0,
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tokenizer):
    from smolmix.models.ladder import build_model, save_checkpoint

    root = tmp_path_factory.mktemp("loop")
    save_checkpoint(build_model(user_model_size(), tokenizer, seed=0, max_positions=64),
                    tokenizer, root / "start")
    (root / "data").mkdir()
    held = []
    for task, count in TASKS.items():
        evals = make_eval_set(get_task(task), 12, 0)
        held += evals
        stream = TrainStream(get_task(task), 0, {r.prompt for r in evals})
        write_jsonl((stream.draw() for _ in range(count)), root / "data" / f"{task}.jsonl")
    write_jsonl(held, root / "data" / "heldout.jsonl")
    return root


def write_plan(folder: Path, name: str, **changes) -> Path:
    plan = {**PLAN, **changes}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def loop(folder):
    """One uninterrupted loop, with the isolation probe on."""
    out = folder / "runs" / "whole"
    results = run_loop(write_plan(folder, "plan", probe={"isolation_steps": 4}), out,
                       quiet=True)
    return out, results


def test_every_stage_is_an_ordinary_mixture_train_and_eval_folder(loop):
    out, results = loop
    assert read_manifest(out).kind == "loop"
    for k in (1, 2, 3):
        stage = out / "stages" / str(k)
        assert read_manifest(stage / "mixture").kind == "mixture"
        assert read_manifest(stage / "train").kind == "train"
        evals = read_manifest(stage / "eval")
        assert evals.kind == "eval" and evals.get("tags") == {"loop": "stage", "stage": str(k)}
        scores = json.loads((stage / "eval" / "scores.json").read_text())
        assert set(scores["tasks"]) == set(TASKS)
        assert results["stages"][k - 1]["accuracy"] == {t: scores["tasks"][t]["mean"]
                                                         for t in TASKS}


def test_each_stage_trains_on_the_shares_the_last_decision_gave(loop):
    out, results = loop
    for k in (2, 3):
        decided = results["stages"][k - 2]["next_shares"]
        assert results["stages"][k - 1]["shares"] == decided
        recipe = yaml.safe_load((out / "stages" / str(k) / "recipe.yaml").read_text())
        assert recipe["strategy"][0]["weights"] == pytest.approx(decided)
        drawn = read_manifest(out / "stages" / str(k) / "mixture").get("by_task")["main"]
        for task, share in decided.items():
            assert abs(drawn.get(task, {"selected": 0})["selected"] - share * 80) <= 1


def test_the_stages_carry_on_one_optimizer_and_one_schedule(loop):
    """Steps continue from stage to stage, and the learning rates are those of one
    warmup-stable-decay schedule over all 30 steps."""
    out, _ = loop
    rates = {}
    for k in (1, 2, 3):
        summary = read_manifest(out / "stages" / str(k) / "train")
        assert summary.get("start_step") == 10 * (k - 1) and summary.get("steps") == 10
        for line in (out / "stages" / str(k) / "train" / "train_log.jsonl").read_text() \
                .splitlines():
            row = json.loads(line)
            if "learning_rate" in row:
                rates[row["step"]] = row["learning_rate"]
    assert sorted(rates) == list(range(1, 31))
    assert [rates[s] for s in range(1, 31)] == pytest.approx(one_wsd_schedule(0.003, 30, 3, 9))
    assert max(rates.values()) == pytest.approx(0.003) and rates[30] < rates[25] < 0.003


def one_wsd_schedule(peak: float, steps: int, warmup: int, decay: int) -> list[float]:
    """The rate of each step of one warmup-stable-decay run (transformers' own schedule)."""
    import torch
    from transformers.optimization import get_wsd_schedule

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    schedule = get_wsd_schedule(optimizer, warmup, decay, num_training_steps=steps)
    rates = []
    for _ in range(steps):
        rates.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    return rates


def test_the_decision_log_has_a_row_per_task_between_stages(loop):
    out, results = loop
    rows = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["task"]) for r in rows] == [(k, t) for k in (1, 2) for t in TASKS]
    for r in rows:
        stage = results["stages"][r["stage"] - 1]
        assert r["old_share"] == stage["shares"][r["task"]]
        assert r["new_share"] == stage["next_shares"][r["task"]]
        assert r["verdict"] == stage["verdicts"][r["task"]]
        assert f"{r['old_share']:.2%} → {r['new_share']:.2%}" in r["text"]


def test_the_isolation_probe_is_a_short_run_on_the_task_alone(loop):
    out, results = loop
    probes = [p for s in results["stages"] for p in s["probes"]]
    assert probes and all(p["kind"] == "isolation" and p["steps"] == 4 for p in probes)
    first = probes[0]
    index = list(TASKS).index(first["task"])
    probe = out / "stages" / "1" / "probes" / f"isolation-{index}"
    recipe = yaml.safe_load((probe / "recipe.yaml").read_text())
    assert recipe["strategy"][0]["weights"] == {t: float(t == first["task"]) for t in TASKS}
    assert read_manifest(probe / "train").get("start_step") == 10
    assert results["summary"]["compute"]["probe_steps"] == 4 * len(probes)


def test_report_shows_the_stages_and_decisions(loop, tmp_path):
    from smolmix.cli import main

    out, results = loop
    assert main(["report", str(out), "--out", str(tmp_path / "rep"), "--quiet"]) == 0
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "stage 1: share → accuracy" in html
    first = json.loads((out / "decisions.jsonl").read_text().splitlines()[0])["text"]
    assert first.split(":")[1].strip().split(" ")[0] in html
    assert "overhead" in html


def _run_cli(plan: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "smolmix.cli", "loop", str(plan), "--out",
                             str(out), "--quiet", *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_killed_loop_resumes_from_its_last_finished_stage_to_the_same_end(folder, loop):
    plan = write_plan(folder, "plan", probe={"isolation_steps": 4})  # the loop fixture's plan
    whole, results = loop
    out = folder / "runs" / "killed"
    proc = _run_cli(plan, out)
    partial = out.with_name("killed.partial")
    deadline = time.monotonic() + 300
    while not (partial / "stages" / "2" / "train.partial").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and (partial / "stages" / "1" / "stage.json").is_file()
    assert not (partial / "stages" / "2" / "stage.json").exists()
    resumed = _run_cli(plan, out, "--resume")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err.decode()
    again = json.loads((out / "results.json").read_text())
    assert [s["accuracy"] for s in again["stages"]] == [s["accuracy"] for s in results["stages"]]
    assert [s["shares"] for s in again["stages"]] == [s["shares"] for s in results["stages"]]
    assert (out / "decisions.jsonl").read_text() == (whole / "decisions.jsonl").read_text()


def test_excess_loss_with_a_reference_and_the_annealing_probe(folder, loop):
    whole, _ = loop
    plan = write_plan(folder, "excess", policy={"name": "excess-loss", "max_change": 3},
                      reference="runs/whole/stages/3/train/model",
                      probe={"anneal_steps": 3}, stages={"count": 2, "examples": 80})
    results = run_loop(plan, folder / "runs" / "excess", quiet=True)
    reference = json.loads((folder / "runs" / "excess" / "reference.json").read_text())
    assert set(reference["losses"]) == set(TASKS)
    (probe,) = results["stages"][0]["probes"]
    assert probe["kind"] == "anneal" and probe["steps"] == 6
    next_shares = results["stages"][0]["next_shares"]
    if probe["kept"]:
        assert probe["means"]["proposed"] >= probe["means"]["current"]
    else:
        assert next_shares == results["stages"][0]["shares"]
    rows = [json.loads(x) for x in (folder / "runs" / "excess" / "decisions.jsonl")
            .read_text().splitlines()]
    for r in rows:
        assert f"vs reference {reference['losses'][r['task']]:.3f}" in r["text"]


@pytest.mark.parametrize("changes, words", [
    ({"policy": {"name": "magic"}}, "unknown policy 'magic'"),
    ({"stages": {"count": 3, "examples": 700}}, "the sources give 1,920 at max_epochs 4"),
    ({"start": {"copy": 1, "reverse": 1, "sort": 8}, "stages": {"count": 1, "examples": 400}},
     "source 'sort' has 60 examples"),
    ({"heldout": "data/copy.jsonl"}, "no example of task 'reverse'"),
])
def test_a_bad_plan_is_one_line_and_nothing_written(folder, capfd, changes, words):
    plan = write_plan(folder, "bad", **changes)
    line = clean_error(["loop", plan, "--out", folder / "runs" / "bad"], folder, capfd)
    assert words in line and "bad.yaml:" in line


def test_an_output_that_exists_is_refused(folder, capfd, loop):
    plan = write_plan(folder, "plan", probe={"isolation_steps": 4})
    line = clean_error(["loop", plan, "--out", loop[0]], folder, capfd)
    assert "--out" in line and "exists" in line


def _boundary_scores(out: Path, k: int) -> tuple[dict, dict]:
    """Held-out losses at the step between stage k and k + 1, as each stage measured them."""
    def at(stage: int, step: int) -> dict:
        rows = [json.loads(x) for x in (out / "stages" / str(stage) / "train" / "curves.jsonl")
                .read_text().splitlines()]
        return {r["task"]: r["loss"] for r in rows if r["step"] == step}
    end = read_manifest(out / "stages" / str(k) / "train").get("start_step") + \
        read_manifest(out / "stages" / str(k) / "train").get("steps")
    return at(k, end), at(k + 1, end)


def test_each_stage_starts_from_the_weights_the_last_one_ended_with(loop):
    out, _ = loop
    for k in (1, 2):
        ended, started = _boundary_scores(out, k)
        assert ended and started == pytest.approx(ended, rel=1e-5)


def test_a_lora_loop_carries_its_adapter_from_stage_to_stage(folder):
    plan = write_plan(folder, "lora", stages={"count": 2, "examples": 48},
                      train={**PLAN["train"], "lora": {"r": 4, "alpha": 8}})
    out = folder / "runs" / "lora"
    run_loop(plan, out, quiet=True)
    ended, started = _boundary_scores(out, 1)
    assert started == pytest.approx(ended, rel=1e-5)
    assert (out / "stages" / "2" / "train" / "adapter").is_dir()
