"""``--executor``: the lab's cells as Ray tasks give what worker processes give; errors and bad
choices are the same one-line user errors, before anything is written."""

import json
import os
import sys
import time
from pathlib import Path

import pytest
from helpers import clean_error

from smolmix.cli import main
from smolmix.core.errors import SmolmixError
from smolmix.core.pool import EXECUTORS, RAY_MISSING, run_cells, start_ray

SMOKE = ["lab", "rare-tasks", "--preset", "smoke", "--sizes", "xxs", "--steps", "5", "--quiet"]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray of 2 CPUs for the module (starting one takes seconds), started as
    ``run_cells`` starts it; the cells of this module travel by value (Ray's workers cannot
    import a test module)."""
    ray = pytest.importorskip("ray")
    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)
    started = time.perf_counter()
    start_ray(jobs=2, quiet=True)
    print(f"ray.init: {time.perf_counter() - started:.1f} s")  # shown with pytest -s
    yield ray
    ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(module)


def square_slowly(item: int) -> tuple[int, int]:
    """The square, late for the first items (they finish last); and the cell's torch threads."""
    import torch

    time.sleep(0.3 * (3 - item))
    return item * item, torch.get_num_threads()


def fail_first(job: tuple[int, Path]) -> int:
    """Cell 0 fails once cell 1 has started; cell 1 would finish 2 s later."""
    item, folder = job
    if item == 0:
        while not (folder / "started").exists():
            time.sleep(0.05)
        raise SmolmixError("cell 0 failed", "--where")
    (folder / "started").touch()
    time.sleep(2)
    (folder / "finished").touch()
    return item


def _numbers(results: dict) -> dict:
    """results.json without timings (the only thing two runs may differ in)."""
    if isinstance(results, dict):
        return {k: _numbers(v) for k, v in results.items() if "seconds" not in k}
    if isinstance(results, list):
        return [_numbers(v) for v in results]
    return results


def test_ray_cells_come_back_in_item_order(local_ray):
    items = [0, 1, 2, 3]
    got = run_cells(square_slowly, items, jobs=2, executor="ray", quiet=True)
    assert got == [(i * i, 1) for i in items]
    assert local_ray.is_initialized()  # a Ray it did not start is left running


def test_lab_on_ray_matches_worker_processes(local_ray, tmp_path):
    assert main([*SMOKE, "--jobs", "1", "--out", str(tmp_path / "process")]) == 0
    cwd = os.getcwd()
    os.chdir(tmp_path)  # a relative --out: Ray's tasks run in this working directory
    try:
        assert main([*SMOKE, "--jobs", "2", "--executor", "ray", "--out", "ray"]) == 0
    finally:
        os.chdir(cwd)
    first, second = (json.loads((tmp_path / run / "results.json").read_text())
                     for run in ("process", "ray"))
    assert len(first["cells"]) > 1 and _numbers(first) == _numbers(second)


GAP_SMOKE = ["lab", "learnability-gap", "--preset", "smoke", "--sizes", "xxs", "--steps", "4",
             "--styles", "short,long", "--long-ratios", "0,1", "--quiet"]


def test_learnability_lab_on_ray_matches_worker_processes(local_ray, tmp_path):
    assert main([*GAP_SMOKE, "--jobs", "1", "--out", str(tmp_path / "process")]) == 0
    assert main([*GAP_SMOKE, "--jobs", "2", "--executor", "ray",
                 "--out", str(tmp_path / "ray")]) == 0
    first, second = (json.loads((tmp_path / run / "results.json").read_text())
                     for run in ("process", "ray"))
    assert len(first["cells"]) == 3 and _numbers(first) == _numbers(second)


def test_an_error_in_a_ray_cell_rises_as_itself_and_cancels_the_rest(local_ray, tmp_path):
    with pytest.raises(SmolmixError) as exc:
        run_cells(fail_first, [(0, tmp_path), (1, tmp_path)], jobs=2, executor="ray",
                  quiet=True)
    assert str(exc.value) == "cell 0 failed (--where)" and exc.value.where == "--where"
    time.sleep(3)
    assert (tmp_path / "started").exists() and not (tmp_path / "finished").exists()


def test_an_unknown_executor_is_a_one_line_error(tmp_path, capfd, monkeypatch):
    # argparse's choices reject it: SystemExit(2), which clean_error wants returned
    def returning(argv):
        try:
            return main(argv)
        except SystemExit as exc:
            return exc.code

    monkeypatch.setattr("smolmix.cli.main", returning)
    line = clean_error([*SMOKE, "--executor", "nope", "--out", tmp_path / "X"], tmp_path, capfd)
    assert "--executor" in line and all(name in line for name in EXECUTORS)
    with pytest.raises(SmolmixError, match="unknown executor 'nope'.*--executor"):
        run_cells(square_slowly, [0], jobs=1, executor="nope")


def test_ray_not_installed_is_a_one_line_error(tmp_path, capfd, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    line = clean_error([*SMOKE, "--executor", "ray", "--out", tmp_path / "X"], tmp_path, capfd)
    assert line == f"error: {RAY_MISSING} (--executor)"
