import json
import os
import signal
import subprocess
import sys
import time

import pytest

from smolmix.cli import main
from smolmix.lab.rare_tasks import customize, get_preset, plan_cells
from smolmix.mix.build import mixture_records

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


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    start = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(root)  # a relative --out, as in the README's default command
    try:
        assert main(["lab", "rare-tasks", "--preset", "smoke", "--out", "runs/run", "--jobs",
                     "1", "--quiet"]) == 0
    finally:
        os.chdir(cwd)
    return root / "runs" / "run", time.perf_counter() - start


def test_smoke_preset_is_fast_and_writes_every_output(smoke_run):
    out, seconds = smoke_run
    assert seconds < 60
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
    for key in ("rare_acc_by_size", "frequent_acc_by_size", "isolation_acc_by_size"):
        assert len(summary[key]) == len(preset.sizes)
        assert all(0.0 <= v <= 1.0 for v in summary[key])
    assert set(summary["min_share_to_learn"]) == set(preset.boost_sizes)
    assert len(results["cells"]) == len(plan_cells(preset))
    for cell in results["cells"]:
        cell_dir = out / "cells" / cell["id"]
        assert (cell_dir / "checkpoint" / "model.safetensors").is_file()
        # the cell's mixture recipe still builds from the finished (renamed) run directory
        records = mixture_records(cell_dir / "recipe.yaml")
        assert len(records) == cell["steps"] * preset.batch_size
        assert (cell_dir / "curves.jsonl").is_file()
        assert set(cell["final"]) == set(preset.tasks)
    html = (out / "report.html").read_text()
    assert "heatmap.png" in html and "boost.png" in html
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["smolmix"]["kind"] == "lab.rare-tasks"
    assert manifest["versions"]["torch"]


def test_same_seed_gives_identical_results(smoke_run, tmp_path):
    out, _ = smoke_run
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
        start_new_session=True, stderr=subprocess.PIPE, text=True,
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
