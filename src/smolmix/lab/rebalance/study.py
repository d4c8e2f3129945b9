"""The rebalance lab: every policy of ``smolmix loop`` on the rare-task lab's tasks and ladder.

A cell is one size × seed × policy: a plan file (``plans/<id>.yaml``) that ``smolmix loop``
runs into ``loops/<id>/``, starting from the rare-task lab's natural (Zipf) mixture, with the
same stages, steps, examples, schedule, limits and initial weights for every policy.

Two policies use more than their own loop, and that compute counts as their overhead:

- ``excess-loss``: its reference model is the ``static`` loop's final model of the same size
  and seed;
- ``verdict``: the rare-task lab's isolation control, each rare task trained alone from the
  initial weights for a quarter of the steps (a one-stage loop, ``isolation/<id>/``), tells it
  which tasks this size can express (``controls/<size>-s<seed>.json``).

Both run in a second phase, after what they read.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from smolmix.core.output import atomic_output
from smolmix.core.pool import check_executor, run_cells
from smolmix.core.records import write_jsonl
from smolmix.core.rundir import versions
from smolmix.lab.grid import check_jobs, finish_run, write_models
from smolmix.lab.rebalance.preset import Preset
from smolmix.lab.rebalance.report import write_report
from smolmix.lab.rebalance.summary import summarize
from smolmix.lab.tasks import TrainStream, get_task, make_eval_set, vocabulary
from smolmix.loop.run import STAGES_DIR, run_loop

KIND = "lab.rebalance"
EVAL_SEED = 0
HELD_OUT_FILE = "heldout.jsonl"


SECOND_PHASE = ("excess-loss", "verdict")


@dataclass(frozen=True)
class Cell:
    size: str
    seed: int
    policy: str  # or "isolation" (a control for verdict), with its task
    task: str | None = None

    @property
    def id(self) -> str:
        return f"{self.policy}-{self.size}-s{self.seed}" if self.task is None else \
            f"isolation-{self.task}-{self.size}-s{self.seed}"


def plan_cells(preset: Preset) -> list[Cell]:
    return [Cell(size, seed, policy) for seed in preset.seeds for size in preset.all_sizes
            for policy in preset.size_policies(size)]


def isolation_cells(preset: Preset) -> list[Cell]:
    if "verdict" not in preset.policies:
        return []
    return [Cell(size, seed, "isolation", task) for seed in preset.seeds
            for size in preset.sizes for task in preset.rare_tasks]


def write_data(preset: Preset, root: Path) -> None:
    """Per seed, one JSONL of fresh training examples per task (none held out), and the
    held-out set every cell is scored on."""
    held = {t: make_eval_set(get_task(t), preset.eval_examples, EVAL_SEED,
                             preset.complexity.get(t)) for t in preset.tasks}
    (root / "data").mkdir(parents=True, exist_ok=True)
    write_jsonl((r for recs in held.values() for r in recs), root / "data" / HELD_OUT_FILE)
    for seed in preset.seeds:
        folder = root / "data" / f"s{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        for task in preset.tasks:
            stream = TrainStream(get_task(task), seed, {r.prompt for r in held[task]},
                                 preset.complexity.get(task))
            write_jsonl((stream.draw() for _ in range(preset.pool_size(task))),
                        folder / f"{task}.jsonl")


def reference_model(preset: Preset, cell: Cell) -> str:
    """The static loop's final model of the cell's size and seed (from ``plans/``)."""
    return str(Path("..", "loops", Cell(cell.size, cell.seed, "static").id, STAGES_DIR,
                    str(preset.stages), "train", "model"))


def controls_file(cell: Cell) -> Path:
    return Path("controls", f"{cell.size}-s{cell.seed}.json")


def cell_plan(preset: Preset, cell: Cell) -> dict:
    """The ``smolmix loop`` plan of one cell (paths relative to ``plans/``); an isolation
    control is one stage on its task alone, as long as the rare-task lab's."""
    data = Path("..", "data")
    alone = cell.task is not None
    tasks = [cell.task] if alone else list(preset.tasks)
    per_stage = preset.examples // preset.stages
    plan = {
        "model": str(Path("..", "models", f"{cell.size}-s{cell.seed}")),
        "sources": [{"name": t, "path": str(data / f"s{cell.seed}" / f"{t}.jsonl")}
                    for t in tasks],
        "heldout": str(data / HELD_OUT_FILE),
        "start": {cell.task: 1.0} if alone else preset.start_shares(),
        "train": {"batch_size": preset.batch_size,
                  "learning_rate": preset.size_learning_rate(cell.size),
                  "order": "shuffle", "logging_steps": 50},
        "stages": {"count": 1, "examples": preset.isolation_steps * preset.batch_size}
        if alone else {"count": preset.stages, "examples": per_stage},
        "schedule": {"kind": "wsd", "warmup_steps": preset.warmup_steps,
                     "decay_fraction": preset.decay_fraction},
        "policy": {"name": "static" if alone else cell.policy,
                   "options": preset.policy_options(cell.policy),
                   "max_change": preset.max_change, "max_epochs": preset.max_epochs},
        "eval": {"answer_format": "exact", "max_new_tokens": preset.max_new_tokens,
                 "batch_size": 512},
        "seed": cell.seed,
    }
    if cell.policy == "verdict":
        plan["controls"] = str(Path("..") / controls_file(cell))
    if cell.policy == "excess-loss":
        plan["reference"] = reference_model(preset, cell)
    return plan


def run_cell(job: tuple[Preset, Cell, Path]) -> dict:
    """One cell: its plan → ``smolmix loop``; return the loop's results with the cell's keys."""
    preset, cell, root = job
    plan = root / "plans" / f"{cell.id}.yaml"
    plan.parent.mkdir(parents=True, exist_ok=True)
    plan.write_text(yaml.safe_dump(cell_plan(preset, cell), sort_keys=False))
    start = time.perf_counter()
    results = run_loop(plan, root / "loops" / cell.id, quiet=True)
    return {"id": cell.id, **asdict(cell), "seconds": round(time.perf_counter() - start, 1),
            "stages": results["stages"], "summary": results["summary"]}


def write_controls(preset: Preset, controls: list[dict], root: Path) -> None:
    """Per size and seed, the rare tasks' isolation accuracy, as ``smolmix diagnose`` and
    ``smolmix loop`` read it."""
    for size in preset.sizes:
        for seed in preset.seeds:
            cell = Cell(size, seed, "verdict")
            isolation = {c["task"]: c["summary"]["final_accuracy"][c["task"]] for c in controls
                         if c["size"] == size and c["seed"] == seed}
            path = root / controls_file(cell)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"isolation": isolation}, indent=1) + "\n")


def run_study(preset: Preset, out: Path, jobs: int | None = None, quiet: bool = False,
              executor: str = "process") -> dict:
    """Run every cell, then write results.json, plots, report.html and manifest.json to
    ``out`` (atomically)."""
    started = time.perf_counter()
    jobs = check_jobs(jobs)
    check_executor(executor)
    with atomic_output(Path(out), replace=True, kind=KIND) as work:
        cells = plan_cells(preset)
        params = write_models(preset.all_sizes, preset.seeds, vocabulary(), work / "models")
        write_data(preset, work)
        done = {}
        first = [c for c in cells if c.policy not in SECOND_PHASE] + isolation_cells(preset)
        for k, phase in enumerate((first, [c for c in cells if c.policy in SECOND_PHASE])):
            if k == 1:
                write_controls(preset, [done[c.id] for c in isolation_cells(preset)], work)
            order = sorted(phase, key=lambda c: -params[c.size])
            for result in run_cells(run_cell, [(preset, c, work) for c in order], jobs=jobs,
                                    quiet=quiet, label="rebalance", executor=executor):
                done[result["id"]] = result
        ordered = [done[c.id] for c in cells]
        controls = [done[c.id] for c in isolation_cells(preset)]
        results = {
            "smolmix": {"kind": KIND, "version": versions()["smolmix"]},
            "preset": {**asdict(preset), "rare_tasks": list(preset.rare_tasks),
                       "frequent_tasks": list(preset.frequent_tasks),
                       "start_shares": preset.start_shares(),
                       "pool_sizes": {t: preset.pool_size(t) for t in preset.tasks}},
            "sizes": [{"name": s, "params": params[s]} for s in preset.all_sizes],
            "cells": ordered,
            "isolation": [{"id": c["id"], "size": c["size"], "seed": c["seed"],
                           "task": c["task"],
                           "accuracy": c["summary"]["final_accuracy"][c["task"]],
                           "compute": c["summary"]["compute"]} for c in controls],
            "summary": summarize(preset, ordered, params, controls),
        }
        finish_run(work, KIND, results, preset, jobs, started, write_report)
    return results
