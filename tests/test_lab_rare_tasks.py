import copy
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import sigint_default

from smolmix.cli import main
from smolmix.lab.rare_tasks.study import customize, get_preset, plan_cells, summarize_study
from smolmix.train.config import load_train_config
from smolmix.train.data import load_mixture

SUMMARY_KEYS = {
    "sizes", "rare_tasks", "rare_acc_by_size", "frequent_acc_by_size", "isolation_acc_by_size",
    "min_share_to_learn", "wall_seconds",
}


def _numbers(results: dict) -> dict:
    """results.json without timings, which are the only thing allowed to differ between runs."""
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if "seconds" not in k}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj
    return strip(results)


def _summary_from_cells(results: dict, preset) -> dict:
    """The summary's accuracies recomputed from the cells' final scores, by hand: per size,
    the mean over seeds of the mean over a group's tasks (each task scored in the cell that
    trained on it), and the smallest share at which the boost target reached 90%."""
    cells = results["cells"]

    def acc(kind, size, seed, task, **match):
        found = [c["final"][task]["exact_match"] for c in cells
                 if c["kind"] == kind and c["size"] == size and c["seed"] == seed
                 and all(c[k] == v for k, v in match.items())]
        assert len(found) == 1
        return found[0]

    def mean(values):
        values = list(values)
        return sum(values) / len(values)

    def by_size(kind, tasks, focus=False):
        return [pytest.approx(mean(mean(acc(kind, size, seed, t, **({"focus": t} if focus
                                                                      else {}))
                                         for t in tasks) for seed in preset.seeds), abs=1e-4)
                for size in preset.sizes]

    target = preset.boost_target
    natural_share = preset.natural_shares()[target]
    min_share = {}
    for size in preset.boost_sizes:
        points = {natural_share: mean(acc("natural", size, s, target) for s in preset.seeds)}
        for share in preset.boost_shares:
            points[share] = mean(acc("boost", size, s, target, boost_share=share)
                                 for s in preset.seeds)
        learned = sorted(s for s, a in points.items() if a >= 0.9)
        min_share[size] = pytest.approx(learned[0], abs=1e-6) if learned else None
    return {"rare_acc_by_size": by_size("natural", preset.rare_tasks),
            "frequent_acc_by_size": by_size("natural", preset.frequent_tasks),
            "isolation_acc_by_size": by_size("isolation", preset.rare_tasks, focus=True),
            "min_share_to_learn": min_share}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    cwd = os.getcwd()
    os.chdir(root)  # a relative --out, as in the README's default command
    try:
        assert main(["lab", "rare-tasks", "--preset", "smoke", "--out", "runs/run", "--jobs",
                     "1", "--quiet"]) == 0
    finally:
        os.chdir(cwd)
    return root / "runs" / "run"


def test_smoke_preset_writes_every_output(smoke_run):
    out = smoke_run
    for name in ("results.json", "report.html", "manifest.json", "heatmap.png", "curves.png",
                 "boost.png", "rare_vs_size.png"):
        assert (out / name).is_file(), name
    assert not out.with_name("run.partial").exists()
    assert not out.with_name("run.old").exists()
    results = json.loads((out / "results.json").read_text())
    summary = results["summary"]
    assert SUMMARY_KEYS <= set(summary)
    preset = get_preset("smoke")
    assert len(summary["sizes"]) == len(preset.sizes)
    assert all(isinstance(n, int) and n > 0 for n in summary["sizes"])
    assert summary["rare_tasks"] == list(preset.rare_tasks)
    assert summary == {**summary, **_summary_from_cells(results, preset)}
    assert set(summary["min_share_to_learn"]) == set(preset.boost_sizes)
    assert len(results["cells"]) == len(plan_cells(preset))
    for cell in results["cells"]:
        run = out / "cells" / cell["id"]  # a smolmix train run
        assert json.loads((run / "manifest.json").read_text())["smolmix"]["kind"] == "train"
        assert (run / "model" / "model.safetensors").is_file()
        assert not (run / "checkpoints").exists()  # save_checkpoints: false, the final model only
        # its config still resolves from the finished (renamed) lab directory: the initial
        # model, the mixture built by smolmix mix and the held-out sets
        config = load_train_config(run / "train_config.yaml")
        assert (Path(config.model) / "config.json").is_file()
        assert Path(config.eval.data).is_file()
        assert len(load_mixture(config.mixture)) == cell["steps"] * preset.batch_size
        assert (out / "recipes" / f"{cell['id']}.yaml").is_file()
        assert (run / "curves.jsonl").is_file()
        assert set(cell["final"]) == set(preset.tasks)
    html = (out / "report.html").read_text()
    assert "heatmap.png" in html and "boost.png" in html
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["smolmix"]["kind"] == "lab.rare-tasks"
    assert manifest["versions"]["torch"]


def test_the_summary_is_computed_from_the_cells(smoke_run):
    # The smoke run's rare tasks are all at 0%, which hides a wrong average; give every cell
    # other final scores (seeded) and recompute the summary from them.
    results = json.loads((smoke_run / "results.json").read_text())
    preset = get_preset("smoke")
    rng = random.Random(0)
    cells = copy.deepcopy(results["cells"])
    for cell in cells:
        for scores in cell["final"].values():
            scores["exact_match"] = rng.choice([0.0, 0.25, 0.5, 0.875, 0.9375, 1.0])
    params = {s["name"]: s["params"] for s in results["sizes"]}
    summary = summarize_study(preset, cells, params)
    assert summary == {**summary, **_summary_from_cells({"cells": cells}, preset)}


def test_a_lab_cell_is_a_run_the_user_commands_take(smoke_run, tmp_path, capsys):
    """diagnose and eval work on a lab cell as on any train run: no lab branch."""
    out = smoke_run
    results = json.loads((out / "results.json").read_text())
    cell = next(c for c in results["cells"] if c["kind"] == "natural")
    run = out / "cells" / cell["id"]
    assert main(["diagnose", str(run), "--batch-size", "8", "--max-batches", "1",
                 "--retention-steps", "2", "--out", str(tmp_path / "diag"), "--quiet"]) == 0
    report = json.loads((tmp_path / "diag" / "diagnosis.json").read_text())
    assert report["tasks"] == sorted(cell["final"])
    # the verdicts use the controls the lab wrote: each rare task's isolation cell
    isolation = {c["focus"]: c["final"][c["focus"]]["exact_match"] for c in results["cells"]
                 if c["kind"] == "isolation" and c["size"] == cell["size"]
                 and c["seed"] == cell["seed"]}
    verdicts = {v["task"]: v for v in report["verdicts"]}
    for task, accuracy in isolation.items():
        assert verdicts[task]["numbers"]["isolation"] == accuracy
        assert verdicts[task]["numbers"]["final"] == cell["final"][task]["exact_match"]
    assert main(["eval", str(run / "model"), "--tasks", "lab:copy", "--out",
                 str(tmp_path / "eval"), "--mixture",
                 str(out / "mixtures" / cell["id"]), "--quiet"]) == 0
    scores = json.loads((tmp_path / "eval" / "scores.json").read_text())
    assert scores["tasks"]["copy"]["bucket"] == "frequent"
    capsys.readouterr()


def test_same_seed_gives_identical_results(smoke_run, tmp_path):
    out = smoke_run
    again = tmp_path / "again"
    assert main(["lab", "rare-tasks", "--preset", "smoke", "--out", str(again), "--jobs", "2",
                 "--quiet"]) == 0
    first = json.loads((out / "results.json").read_text())
    second = json.loads((again / "results.json").read_text())
    assert _numbers(first) == _numbers(second)


def test_rerun_replaces_an_existing_run(smoke_run, tmp_path):
    out = tmp_path / "run"
    args = ["lab", "rare-tasks", "--preset", "smoke", "--out", str(out), "--jobs", "1",
            "--quiet", "--sizes", "xxs", "--steps", "5"]
    assert main(args) == 0
    assert main(args[:-1] + ["6"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["preset"]["steps"] == 6


def test_overrides_change_the_grid():
    preset = customize(get_preset("quick"), sizes=["m", "xs"], seeds=[5], steps=10,
                       tasks=["copy", "reverse", "sort", "count", "dedup", "rotate", "lookup"])
    assert preset.sizes == ("xs", "m") and preset.seeds == (5,) and preset.steps == 10
    assert preset.rare_tasks == ("dedup", "rotate", "lookup") and preset.boost_target == "lookup"
    kinds = {c.kind for c in plan_cells(preset)}
    assert kinds == {"natural", "isolation", "boost"}


@pytest.mark.parametrize(
    "flags,named",
    [
        (["--preset", "huge"], "'huge'"),
        (["--sizes", "xs,giant"], "'giant'"),
        (["--seeds", "0,x"], "--seeds"),
        (["--seeds", "-1"], "--seeds"),
        (["--steps", "0"], "--steps"),
        (["--steps", "-3"], "--steps"),
        (["--jobs", "0"], "--jobs"),
        (["--tasks", "copy,sort,rotate,reverse,count,dedup,juggle"], "'juggle'"),
        (["--tasks", "copy,sort"], "--tasks"),
        (["--bogus"], "--bogus"),
    ],
)
def test_bad_flags_are_one_line_errors(flags, named, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        code = main(["lab", "rare-tasks", "--out", str(out), "--quiet", *flags])
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and named in err
    assert list(tmp_path.iterdir()) == []


def test_existing_non_smolmix_output_is_refused(tmp_path, capsys):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    assert main(["lab", "rare-tasks", "--preset", "smoke", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "not a smolmix run" in err and str(out) in err
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]


def test_ctrl_c_leaves_nothing_that_looks_complete(tmp_path):
    out = tmp_path / "run"
    partial = tmp_path / "run.partial"
    proc = subprocess.Popen(
        [sys.executable, "-m", "smolmix.cli", "lab", "rare-tasks", "--preset", "smoke",
         "--out", str(out), "--jobs", "2", "--quiet"],
        start_new_session=True, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default,
    )
    deadline = time.time() + 60
    while not (partial / "cells").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, "run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert not out.exists() and not partial.exists()
    assert "interrupted" in err


def test_the_quick_grid_has_every_control_the_design_names():
    """docs/lab-rare-tasks-design.md: natural cells at every size and seed; every task alone
    at the two smallest sizes (first seed); the rare tasks alone at every size and seed; the
    boost sweep at the two smallest sizes."""
    preset = get_preset("quick")
    cells = plan_cells(preset)
    iso = {(c.size, c.seed, c.focus) for c in cells if c.kind == "isolation"}
    for size in preset.sizes:
        for seed in preset.seeds:
            alone = set(preset.tasks) if size in ("xs", "s") and seed == 0 \
                else set(preset.rare_tasks)
            assert {t for s, sd, t in iso if s == size and sd == seed} == alone
    assert preset.rare_tasks == ("lookup", "sort", "running_max")
    assert {(c.size, c.boost_share) for c in cells if c.kind == "boost"} == \
        {(s, b) for s in ("xs", "s") for b in (0.01, 0.03, 0.1)}
    assert sum(c.kind == "natural" for c in cells) == 10 and len(cells) == 64
    assert preset.natural_shares()["running_max"] == pytest.approx(0.0031, abs=1e-4)
