"""The learnability-gap study: do small students learn worse from long CoT and large teachers?

Every cell is one student size and seed trained on one arm, through the user's flow: a recipe
→ ``smolmix mix`` (``mix_long`` / ``mix_large`` for the mixes) → ``smolmix train`` →
``smolmix eval`` on held-out problems per difficulty (greedy generation, smolmix's grader),
tagged so that ``smolmix gap`` reads the runs. Arms, per size and seed:

- the ``long`` axis: the share of long-CoT traces among long + short, at each ratio
  (0 is the short arm, 1 the long arm, in between ``mix_long``);
- the ``large`` axis: the share of large-teacher traces among large + small, the same way;
- ``base``: the initial model, not trained (the no-SFT baseline).

Matched optimisation: every trained cell takes the same steps, batch size (examples per
step), learning rate and schedule, without packing or truncation. Each style's training
problems are drawn independently from the same distribution (its own seed stream, the
held-out problems excluded), so a mix sees as many problems, repeats included, as a single
source. The tokens each cell trained on are recorded.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from smolmix.core.errors import SmolmixError
from smolmix.core.inputs import iter_json_objects
from smolmix.core.output import atomic_output
from smolmix.core.pool import check_executor, run_cells
from smolmix.core.records import Record, write_jsonl
from smolmix.core.rundir import versions
from smolmix.evaluate.command import SAMPLES_FILE, run_eval
from smolmix.evaluate.tasks import TaskSpec
from smolmix.lab.grid import check_jobs, finish_run, write_models
from smolmix.lab.learnability.arms import AXES, BASE, arm_name, group_name
from smolmix.lab.learnability.habits import OUTCOMES, wait_outcome
from smolmix.lab.learnability.preset import Preset
from smolmix.lab.learnability.problems import ANSWER_FORMAT, held_out, sample
from smolmix.lab.learnability.report import write_report
from smolmix.lab.learnability.summary import summarize
from smolmix.lab.learnability.traces import trace, vocabulary
from smolmix.mix.command import build_mixture
from smolmix.models.ladder import build_tokenizer
from smolmix.train.command import train
from smolmix.train.config import TrainConfig

KIND = "lab.learnability-gap"
EVAL_SEED = 0
EVAL_BATCH_SIZE = 256
# The longest prompt + trace is 227 tokens, the longest prompt about 30
# (docs/lab-learnability-gap-design.md): room for both, and for a generation of 240.
MAX_POSITIONS = 288
MAX_NEW_TOKENS = 240


@dataclass(frozen=True)
class Cell:
    """One student: a size and seed trained on one arm (``axis`` None: the untrained base)."""

    size: str
    seed: int
    axis: str | None = None
    ratio: float = 0.0

    @property
    def arm(self) -> str:
        """The arm's name (:func:`arm_name`; ``base`` for no training)."""
        return BASE if self.axis is None else arm_name(self.axis, self.ratio)

    @property
    def id(self) -> str:
        return f"{self.arm}-{self.size}-s{self.seed}"

    @property
    def tags(self) -> dict[str, str]:
        """The eval run's tags: ``smolmix gap`` pairs the single-source runs by these."""
        tags = {"student": f"{self.size}-s{self.seed}", "arm": self.arm}
        if self.axis is not None and self.ratio in (0, 1):
            key, high, low = AXES[self.axis]
            tags[key] = high if self.ratio == 1 else low
        return tags


def plan_cells(preset: Preset) -> list[Cell]:
    """Every cell of the study, in a fixed order; an arm shared by both axes runs once."""
    cells = []
    for seed in preset.seeds:
        for size in preset.sizes:
            cells.append(Cell(size, seed))
            cells += [Cell(size, seed, axis, r) for axis, ratios in preset.ratios.items()
                      for r in ratios]
    return cells


def heldout_sets(preset: Preset) -> dict[str, list]:
    """Per (task, difficulty): the held-out problems, the same for every seed and cell."""
    return {group_name(t, d): held_out(t, d, preset.eval_per_level, EVAL_SEED)
            for t, d in preset.groups}


def write_sources(preset: Preset, data_dir: Path, held: dict[str, list]) -> int:
    """Per seed and style, ``steps x batch`` training examples (``data/s<seed>/<style>.jsonl``):
    every (task, difficulty) equally often, each style from its own stream. Return the
    longest prompt + trace in tokens."""
    tokenizer = build_tokenizer(vocabulary())
    per_group = -(-preset.examples // len(preset.groups))
    longest = 0
    for seed in preset.seeds:
        folder = data_dir / f"s{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        for style in preset.styles:
            records = []
            for task, level in preset.groups:
                name = group_name(task, level)
                excluded = {p.prompt for p in held[name]}
                for p in sample(task, level, per_group, seed, stream=f"train-{style}",
                                exclude=excluded):
                    records.append(Record(prompt=p.prompt, completion=trace(p, style),
                                          task=name))
            write_jsonl(records, folder / f"{style}.jsonl")
            longest = max(longest, *(len(tokenizer(r.prompt + " " + r.completion).input_ids)
                                     for r in records))
    return longest


def write_heldout(held: dict[str, list], data_dir: Path) -> None:
    folder = data_dir / "heldout"
    folder.mkdir(parents=True, exist_ok=True)
    for name, problems in held.items():
        write_jsonl((Record(prompt=p.prompt, completion=p.answer, task=name) for p in problems),
                    folder / f"{name}.jsonl")


def cell_recipe(preset: Preset, cell: Cell, data_dir: Path) -> dict:
    """The ``smolmix mix`` recipe of a trained cell: the styles' sources, tagged, with
    ``mix_long`` / ``mix_large`` at the cell's ratio (a single source at 0 and 1)."""
    key, high, low = AXES[cell.axis]
    used = [low] if cell.ratio == 0 else [high] if cell.ratio == 1 else [high, low]
    recipe = {
        "seed": cell.seed,
        "budget": {"examples": preset.examples},
        "max_repeats": 1,
        "sources": [{"name": s, "path": str(data_dir / f"s{cell.seed}" / f"{s}.jsonl"),
                     "tags": {key: s}} for s in used],
        "hygiene": {"dedup": "none"},
    }
    if len(used) == 2:
        recipe["strategy"] = [{f"mix_{cell.axis}": {cell.axis: cell.ratio}}]
    return recipe


def eval_specs(preset: Preset, root: Path) -> list[TaskSpec]:
    """One eval task per (task, difficulty), graded in the traces' answer format."""
    return [TaskSpec(name=group_name(t, d), kind="custom",
                     path=str(root / "data" / "heldout" / f"{group_name(t, d)}.jsonl"),
                     reference_field="completion", answer_format=ANSWER_FORMAT,
                     max_new_tokens=MAX_NEW_TOKENS)
            for t, d in preset.groups]


def cell_config(preset: Preset, cell: Cell, root: Path) -> TrainConfig:
    """The ``smolmix train`` config of a trained cell: the same for every arm but the data."""
    return TrainConfig(
        model=str(root / "models" / f"{cell.size}-s{cell.seed}"),
        mixture=str(root / "mixtures" / cell.id), steps=preset.steps,
        batch_size=preset.batch_size, learning_rate=preset.size_learning_rate(cell.size),
        warmup_steps=preset.warmup_steps, seed=cell.seed, order="shuffle",
        max_length=MAX_POSITIONS, save_checkpoints=False)


def read_samples(eval_dir: Path) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """An eval run's per-problem verdicts per eval task (1.0 right, 0.0 wrong, in problem
    order), and what each generation's ``wait`` step did: {outcome: [right, wrong]}."""
    by_task: dict[str, list[float]] = {}
    waits = {outcome: [0, 0] for outcome in OUTCOMES}
    for _, row in iter_json_objects(eval_dir / SAMPLES_FILE, SAMPLES_FILE):
        by_task.setdefault(row["task"], []).append(float(row["correct"]))
        waits[wait_outcome(row["generation"])][0 if row["correct"] else 1] += 1
    return by_task, waits


def run_cell(job: tuple[Preset, Cell, Path]) -> dict:
    """One cell through the flow: recipe → ``smolmix mix`` → ``smolmix train`` →
    ``smolmix eval`` (the base cell: the eval of the initial model); return its result."""
    preset, cell, root = job
    start = time.perf_counter()
    model = root / "models" / f"{cell.size}-s{cell.seed}"
    tokens = 0
    if cell.axis is not None:
        recipe = root / "recipes" / f"{cell.id}.yaml"
        recipe.parent.mkdir(parents=True, exist_ok=True)
        recipe.write_text(yaml.safe_dump(cell_recipe(preset, cell, Path("..", "data")),
                                         sort_keys=False))
        build_mixture(recipe, root / "mixtures" / cell.id, quiet=True)
        run = root / "cells" / cell.id
        summary = train(cell_config(preset, cell, root), run, quiet=True)
        if summary.get("truncated"):
            raise SmolmixError(f"{summary['truncated']} examples were truncated", str(run))
        tokens = int(summary["target_tokens"])
        model = run / "model"
    evaluated = root / "evals" / cell.id
    run_eval(str(model), eval_specs(preset, root), evaluated, backend="hf",
             batch_size=EVAL_BATCH_SIZE, tags=cell.tags, seed=EVAL_SEED, quiet=True)
    verdicts, waits = read_samples(evaluated)
    return {"id": cell.id, "arm": cell.arm, "axis": cell.axis, "ratio": cell.ratio,
            "size": cell.size, "seed": cell.seed, "target_tokens": tokens,
            "verdicts": verdicts, "wait": waits,
            "seconds": round(time.perf_counter() - start, 2)}


def example_traces(preset: Preset, held: dict[str, list]) -> list[dict]:
    """One held-out problem per task in every style the study trains on (for the report)."""
    shown, seen = [], set()
    for task, level in preset.groups:
        if task in seen:
            continue
        seen.add(task)
        problem = held[group_name(task, level)][0]
        shown.append({"task": task, "difficulty": level, "prompt": problem.prompt,
                      "answer": problem.answer,
                      "traces": {s: trace(problem, s) for s in preset.styles}})
    return shown


def run_study(preset: Preset, out: Path, jobs: int | None = None, quiet: bool = False,
              executor: str = "process") -> dict:
    """Run every cell, then write results.json, plots, report.html and manifest.json to
    ``out``, atomically (Ctrl-C leaves nothing that looks complete)."""
    started = time.perf_counter()
    jobs = check_jobs(jobs)
    check_executor(executor)
    with atomic_output(Path(out), replace=True, kind=KIND) as work:
        held = heldout_sets(preset)
        params = write_models(preset.sizes, preset.seeds, vocabulary(), work / "models",
                              MAX_POSITIONS)
        longest = write_sources(preset, work / "data", held)
        if longest + 2 > MAX_POSITIONS or longest > MAX_NEW_TOKENS:
            raise SmolmixError(f"a training example has {longest} tokens, more than the "
                               f"students hold ({MAX_NEW_TOKENS})", "--tasks")
        write_heldout(held, work / "data")
        cells = plan_cells(preset)
        order = sorted(range(len(cells)), key=lambda i: -params[cells[i].size])
        done = run_cells(run_cell, [(preset, cells[i], work) for i in order], jobs=jobs,
                         quiet=quiet, label="learnability-gap", executor=executor)
        by_id = {r["id"]: r for r in done}
        ordered = [by_id[c.id] for c in cells]
        results = {
            "smolmix": {"kind": KIND, "version": versions()["smolmix"]},
            "preset": asdict(preset),
            "sizes": [{"name": s, "params": params[s]} for s in preset.sizes],
            "longest_example_tokens": longest,
            "examples": example_traces(preset, held),
            "cells": ordered,
            "summary": summarize(preset, ordered, params),
        }
        finish_run(work, KIND, results, preset, jobs, started, write_report)
    return results
