"""How should the lab spread grid cells over this machine's cores?

Runs the same small grid (natural-mixture cells of two sizes and two seeds) three ways and
prints wall times and ratios against the baseline (one process, one thread):

- ``1 proc x 1 thread``  baseline
- ``1 proc x N threads`` torch intra-op threads
- ``N procs x 1 thread`` what ``smolmix lab`` does (spawned worker processes, start-up included)

Usage: python benchmarks/lab_parallel.py [--steps 400] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from smolmix.core.pool import available_cores, run_cells
from smolmix.lab.rare_tasks.study import get_preset, plan_cells, prepare, run_cell


def grid(steps: int, root: Path) -> list:
    """The natural cells of a two-size lab, their sources and models written under ``root``."""
    preset = replace(get_preset("quick"), sizes=("xs", "m"), seeds=(0, 1), steps=steps,
                     eval_every=steps)
    cells = [c for c in plan_cells(preset) if c.kind == "natural"]
    prepare(preset, cells, root)
    return [(preset, c, root) for c in cells]


def timed(jobs: int, threads: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        todo = grid(steps, Path(tmp))
        start = time.perf_counter()
        run_cells(run_cell, todo, jobs=jobs, threads=threads, quiet=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cores = available_cores()
    ways = {"1 proc x 1 thread (baseline)": (1, 1),
            f"1 proc x {cores} threads": (1, cores),
            f"{cores} procs x 1 thread (lab default)": (cores, 1)}
    medians = {}
    for name, (jobs, threads) in ways.items():
        runs = [timed(jobs, threads, args.steps) for _ in range(args.repeats)]
        medians[name] = statistics.median(runs)
        print(f"{name:40s} median {medians[name]:6.1f} s  runs {[round(r, 1) for r in runs]}")
    base = medians["1 proc x 1 thread (baseline)"]
    for name, value in medians.items():
        print(f"{name:40s} speed-up vs baseline {base / value:4.2f}x")


if __name__ == "__main__":
    main()
