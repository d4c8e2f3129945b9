"""The rare-task study: in a Zipf mixture, do small models fail on rare tasks they can express?

Three kinds of grid cell, each one training run through :func:`smolmix.train.trainer.train`:

- ``natural``: every size on the natural (Zipf) mixture with the same token budget;
- ``isolation``: every size on each rare task alone (a fraction of the steps), the
  expressibility control: can this size learn the task at all?
- ``boost``: the smallest sizes with the boost target's share raised to each value of a sweep,
  everything else rescaled (the rare-task fix).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import yaml

from smolmix.core.errors import SmolmixError, lookup
from smolmix.core.output import atomic_output
from smolmix.core.pool import check_executor, run_cells
from smolmix.core.records import Record, write_jsonl
from smolmix.core.rundir import versions
from smolmix.diagnose.command import CONTROLS_FILE, batches
from smolmix.diagnose.live import MECHANISM_FILE, MechanismProbe, ProbePlan, read_mechanism
from smolmix.diagnose.verdicts import LEARN_THRESHOLD
from smolmix.lab.grid import (
    check_jobs,
    check_seeds,
    check_sizes,
    check_steps,
    finish_run,
    write_models,
)
from smolmix.lab.rare_tasks import mechanism
from smolmix.lab.rare_tasks.report import write_report
from smolmix.lab.tasks import (
    TASKS,
    FrequencyOrder,
    TrainStream,
    get_task,
    make_eval_set,
    vocabulary,
)
from smolmix.mix.command import build_mixture
from smolmix.mix.shares import zipf_shares
from smolmix.mix.strategies import boost
from smolmix.models.ladder import (
    build_tokenizer,
    get_size,
    scaled_learning_rate,
)
from smolmix.train.command import train
from smolmix.train.config import EvalSpec, TrainConfig
from smolmix.train.curves import CURVES_FILE, final_scores, read_curves
from smolmix.train.data import load_mixture

KIND = "lab.rare-tasks"
EVAL_SEED = 0
EVAL_BATCH_SIZE = 512
# The retention probe's rare-task batches come from their own seed stream.
RETENTION_SEED = 10_000
MIN_GAIN = 1e-4  # nats: below this the rare step taught nothing and retention is undefined

# Most frequent first (docs/lab-rare-tasks-design.md): three frequent tasks that map each
# input position to the output at the same offset, three middle ones that re-arrange or combine
# neighbours, and three rare ones that share no trick with the frequent ones (retrieval by
# content, a global count, a prefix scan).
DEFAULT_TASKS = (
    "copy", "increment", "square", "reverse", "swap_pairs", "pair_sum",
    "lookup", "sort", "running_max",
)
# The complexity knob of each task (sequence length; lookup: key/value pairs), recorded in
# results.json. Rare tasks: the largest n in 5, 4, 3 the smallest size learns alone (the
# design's one pilot rule). sort and running_max pass at 5; lookup, which the smallest size
# does not express at any n, stays as the rare task the verdicts must call "not expressible"
# there, at its own default n = 4 (docs/lab-rare-tasks-design.md). Every other task n = 5.
DEFAULT_COMPLEXITY = {
    "copy": 5, "increment": 5, "square": 5, "reverse": 5, "swap_pairs": 5, "pair_sum": 5,
    "lookup": 4, "sort": 5, "running_max": 5,
}


@dataclass(frozen=True)
class Preset(FrequencyOrder):
    """Everything that defines one run of the study."""

    name: str
    sizes: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    tasks: tuple[str, ...] = DEFAULT_TASKS
    complexity: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_COMPLEXITY),
                                       hash=False)
    zipf_exponent: float = 2.5
    rare_count: int = 3
    frequent_count: int = 3
    isolation_steps_fraction: float = 0.25
    isolation_all_count: int = 2
    isolation_all_seed_count: int = 1
    boost_count: int = 2
    boost_shares: tuple[float, ...] = (0.01, 0.03, 0.1)
    batch_size: int = 32
    learning_rate: float = 3e-3  # at width BASE_WIDTH; each size's rate is scaled by width
    warmup_steps: int = 50
    eval_examples: int = 100
    eval_every: int = 250
    probe_every: int = 200
    retention_points: tuple[float, ...] = (0.25, 0.5, 0.75)
    retention_n: int = 32

    @property
    def boost_target(self) -> str:
        return self.tasks[-1]

    @property
    def boost_sizes(self) -> tuple[str, ...]:
        return self.sizes[: self.boost_count]

    @property
    def isolation_all_sizes(self) -> tuple[str, ...]:
        """The sizes at which every task (not only the rare ones) is trained alone."""
        return self.sizes[: self.isolation_all_count]

    @property
    def isolation_all_seeds(self) -> tuple[int, ...]:
        """The seeds at which every task is trained alone (the rare tasks: at every seed)."""
        return self.seeds[: self.isolation_all_seed_count]

    def isolated_tasks(self, size: str, seed: int) -> tuple[str, ...]:
        """The tasks ``size`` trains alone with ``seed``: all of them at the smallest sizes
        and first seeds, else the rare ones."""
        every = size in self.isolation_all_sizes and seed in self.isolation_all_seeds
        return self.tasks if every else self.rare_tasks

    def n(self, task: str) -> int | None:
        """The task's complexity knob (None: the task's default)."""
        return self.complexity.get(task)

    def size_learning_rate(self, size: str) -> float:
        """The learning rate of ``size``: the preset's, scaled by width (µP-style)."""
        return scaled_learning_rate(get_size(size), self.learning_rate)

    @property
    def isolation_steps(self) -> int:
        return max(1, round(self.steps * self.isolation_steps_fraction))

    def natural_shares(self) -> dict[str, float]:
        return zipf_shares(self.tasks, self.zipf_exponent)


PRESETS: dict[str, Preset] = {
    "quick": Preset("quick", sizes=("xs", "s", "m", "l", "xl"), seeds=(0, 1), steps=2000),
    # closer to the paper: a 16x width span, 3x the steps, 3 seeds, boost shares from 0.25%
    "full": Preset("full", sizes=("xs", "s", "m", "l", "xl", "xxl"), seeds=(0, 1, 2),
                   steps=6000, isolation_steps_fraction=0.5, isolation_all_count=3,
                   isolation_all_seed_count=3,
                   boost_count=3, boost_shares=(0.0025, 0.005, 0.01, 0.03, 0.1, 0.3),
                   eval_every=500, probe_every=500, retention_n=64),
    "smoke": Preset("smoke", sizes=("xxs", "xs"), seeds=(0,), steps=40, boost_count=1,
                    boost_shares=(0.3,), eval_examples=16, eval_every=20, warmup_steps=5,
                    isolation_all_count=1, probe_every=10, retention_n=4),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is a user error listing the known ones."""
    return lookup(PRESETS, name, "preset", "--preset")


def customize(preset: Preset, sizes: list[str] | None = None, seeds: list[int] | None = None,
              steps: int | None = None, tasks: list[str] | None = None) -> Preset:
    """The preset with the CLI's overrides applied and validated.

    ``tasks`` are in frequency order (most frequent first): the last ``rare_count`` are the
    rare tasks, the first ``frequent_count`` the frequent ones, the last one the boost target.
    """
    check_steps(steps)
    sizes = check_sizes(sizes)
    seeds = check_seeds(seeds)
    if tasks is not None:
        for name in tasks:
            lookup(TASKS, name, "task", "--tasks")
        needed = preset.rare_count + preset.frequent_count
        if len(set(tasks)) != len(tasks) or len(tasks) < needed:
            raise SmolmixError(f"tasks must be at least {needed} distinct names, got {tasks}",
                               "--tasks")
    return replace(
        preset,
        tasks=tuple(tasks) if tasks is not None else preset.tasks,
        sizes=tuple(sizes) if sizes is not None else preset.sizes,
        seeds=tuple(seeds) if seeds is not None else preset.seeds,
        steps=steps if steps is not None else preset.steps,
    )


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    kind: str
    size: str
    seed: int
    steps: int
    shares: dict[str, float] = field(hash=False)
    boost_share: float | None = None
    focus: str | None = None

    @property
    def id(self) -> str:
        share = "" if self.boost_share is None else f"-{self.boost_share:g}"
        focus = "" if self.focus is None else f"-{self.focus}"
        return f"{self.kind}{share}{focus}-{self.size}-s{self.seed}"


def plan_cells(preset: Preset) -> list[Cell]:
    """Every cell of the study, in a fixed order."""
    natural = preset.natural_shares()
    cells = []
    for seed in preset.seeds:
        for size in preset.sizes:
            cells.append(Cell("natural", size, seed, preset.steps, natural))
            cells.extend(Cell("isolation", size, seed, preset.isolation_steps, {task: 1.0},
                              focus=task) for task in preset.isolated_tasks(size, seed))
        for size in preset.boost_sizes:
            for share in preset.boost_shares:
                shares = boost(natural, {preset.boost_target: share})
                cells.append(Cell("boost", size, seed, preset.steps, shares, share))
    return cells


def eval_sets(preset: Preset) -> dict[str, list[Record]]:
    """The held-out sets, shared by every cell (their own seed stream)."""
    return {t: make_eval_set(get_task(t), preset.eval_examples, EVAL_SEED, preset.n(t))
            for t in preset.tasks}


def pool_sizes(preset: Preset, cells: list[Cell]) -> dict[int, dict[str, int]]:
    """Per seed and task, the most examples any cell of that seed draws (so none repeats)."""
    sizes: dict[int, dict[str, int]] = {}
    for cell in cells:
        per_task = sizes.setdefault(cell.seed, {})
        total = cell.steps * preset.batch_size
        for task, share in cell.shares.items():
            per_task[task] = max(per_task.get(task, 0), math.ceil(share * total) + 1)
    return sizes


def write_task_pools(preset: Preset, cells: list[Cell], data_dir: Path) -> None:
    """The lab's sources: per seed, one JSONL of fresh training examples per task, none of
    them in the held-out sets."""
    held_out = eval_sets(preset)
    for seed, per_task in pool_sizes(preset, cells).items():
        folder = data_dir / f"s{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        for task, count in per_task.items():
            stream = TrainStream(get_task(task), seed, {r.prompt for r in held_out[task]},
                                 preset.n(task))
            write_jsonl((stream.draw() for _ in range(count)), folder / f"{task}.jsonl")


def cell_recipe(preset: Preset, cell: Cell, data_dir: Path) -> dict:
    """The ``smolmix mix`` recipe of one cell: the task pools, weighted by the cell's shares.

    ``data_dir`` is relative to the recipe's folder, so the run directory stays valid after it
    is renamed or moved.
    """
    tasks = [t for t, share in cell.shares.items() if share > 0]
    return {
        "seed": cell.seed,
        "budget": {"examples": cell.steps * preset.batch_size},
        "max_repeats": 1,
        "sources": [{"name": t, "path": str(data_dir / f"s{cell.seed}" / f"{t}.jsonl")}
                    for t in tasks],
        "strategy": [{"weights": {t: cell.shares[t] for t in tasks}}],
        "hygiene": {"dedup": "none"},
    }


HELD_OUT_FILE = "heldout.jsonl"


def cell_config(preset: Preset, cell: Cell, root: Path) -> TrainConfig:
    """The ``smolmix train`` config of one cell: the default config with the preset's
    overrides, the cell's initial model, mixture and the lab's held-out sets."""
    return TrainConfig(
        model=str(root / "models" / f"{cell.size}-s{cell.seed}"),
        mixture=str(root / "mixtures" / cell.id),
        steps=cell.steps, batch_size=preset.batch_size,
        learning_rate=preset.size_learning_rate(cell.size),
        warmup_steps=preset.warmup_steps, seed=cell.seed, order="shuffle",
        save_checkpoints=False,
        eval=EvalSpec(data=str(root / "data" / HELD_OUT_FILE), every=preset.eval_every,
                      batch_size=EVAL_BATCH_SIZE))


def fresh_examples(preset: Preset, task: str, seed: int, count: int) -> list[Record]:
    """``count`` training examples of ``task`` from its own seed stream (none held out)."""
    stream = TrainStream(get_task(task), seed, set(), preset.n(task))
    return [stream.draw() for _ in range(count)]


def probe_plan(preset: Preset, steps: int) -> ProbePlan:
    """What a natural cell's mechanism probe measures, and when."""
    return ProbePlan(update_every=preset.probe_every,
                     retention_at=tuple(sorted({max(1, round(steps * f))
                                                for f in preset.retention_points})),
                     probed=preset.rare_tasks, groups={"frequent": preset.frequent_tasks},
                     k=1, n_max=preset.retention_n, min_gain=MIN_GAIN)


def mechanism_probe(preset: Preset, cell: Cell, config: TrainConfig, tokenizer,
                    held_out: dict[str, list[Record]]) -> MechanismProbe:
    """The probe of a natural cell: every task's held-out set as one batch; one batch of fresh
    examples per rare task (its one-step gain); the start of the cell's mixture without the
    rare tasks (what follows the gain)."""
    size = preset.batch_size
    rest = [r for r in load_mixture(config.mixture)
            if r.task not in preset.rare_tasks][: preset.retention_n * size]
    return MechanismProbe(
        probe_plan(preset, cell.steps),
        {t: batches(tokenizer, recs, len(recs)) for t, recs in held_out.items()}, cell.shares,
        {t: batches(tokenizer, fresh_examples(preset, t, RETENTION_SEED + cell.seed, size),
                    size) for t in preset.rare_tasks},
        batches(tokenizer, rest, size), max_grad_norm=config.max_grad_norm)


def run_cell(job: tuple[Preset, Cell, Path]) -> dict:
    """One cell through the flow: its recipe → ``smolmix mix`` → ``smolmix train`` (with the
    mechanism probe in natural cells); return its result."""
    preset, cell, root = job
    start = time.perf_counter()
    recipe = root / "recipes" / f"{cell.id}.yaml"
    recipe.parent.mkdir(parents=True, exist_ok=True)
    recipe.write_text(yaml.safe_dump(cell_recipe(preset, cell, Path("..", "data")),
                                     sort_keys=False))
    build_mixture(recipe, root / "mixtures" / cell.id, quiet=True)
    natural = cell.kind == "natural"
    run = root / "cells" / cell.id
    config = cell_config(preset, cell, root)
    probes = [mechanism_probe(preset, cell, config, build_tokenizer(vocabulary()),
                              eval_sets(preset))] if natural else []
    train(config, run, quiet=True, callbacks=probes)
    curves = read_curves(run / CURVES_FILE)
    measured = (mechanism.cell_mechanism(read_mechanism(run / MECHANISM_FILE),
                                         preset.rare_tasks, cell.steps) if natural else None)
    by_task: dict[str, dict[str, list]] = {}
    for row in curves:
        entry = by_task.setdefault(row["task"], {key: [] for key in ("step", "exact_match",
                                                                     "loss")})
        for key in entry:
            entry[key].append(row.get(key))
    final = {task: {k: v[k] for k in ("exact_match", "loss", "count")}
             for task, v in final_scores(curves).items()}
    return {
        "id": cell.id, "kind": cell.kind, "size": cell.size, "seed": cell.seed,
        "boost_share": cell.boost_share, "focus": cell.focus, "shares": cell.shares,
        "steps": cell.steps, "learning_rate": config.learning_rate,
        "final": final, "curves": by_task, "mechanism": measured,
        "train_seconds": round(time.perf_counter() - start, 2),
    }


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    return round(mean, 4), round(std, 4)


def summarize_study(preset: Preset, cells: list[dict], params: dict[str, int]) -> dict:
    """The ``summary`` object of results.json, computed from the cells' final scores."""

    def group_acc(kind: str, size: str, tasks: tuple[str, ...],
                  seeds: tuple[int, ...] = preset.seeds) -> tuple[float, float]:
        """Mean over ``tasks`` (each scored by the cell that trained on it), mean ± std over
        ``seeds``."""
        per_seed = []
        for seed in seeds:
            mine = [c for c in cells
                    if c["kind"] == kind and c["size"] == size and c["seed"] == seed]
            per_seed.append(statistics.fmean(
                next(c for c in mine if c["shares"].get(t, 0) > 0)["final"][t]["exact_match"]
                for t in tasks))
        return _mean_std(per_seed)

    def by_size(kind: str, tasks: tuple[str, ...]) -> tuple[list[float], list[float]]:
        pairs = [group_acc(kind, size, tasks) for size in preset.sizes]
        return [m for m, _ in pairs], [s for _, s in pairs]

    rare, rare_std = by_size("natural", preset.rare_tasks)
    freq, freq_std = by_size("natural", preset.frequent_tasks)
    iso, iso_std = by_size("isolation", preset.rare_tasks)
    smallest = preset.sizes[0]
    # the rare tasks the smallest size expresses alone (measured, not assumed)
    expressible = tuple(t for t in preset.rare_tasks
                        if group_acc("isolation", smallest, (t,))[0] >= LEARN_THRESHOLD)
    expr, expr_std = by_size("natural", expressible) if expressible else (None, None)
    target = preset.boost_target
    natural_share = preset.natural_shares()[target]
    boost_acc, boost_std, min_share = {}, {}, {}
    for size in preset.boost_sizes:
        points = {natural_share: group_acc("natural", size, (target,))}
        for share in preset.boost_shares:
            points[share] = _mean_std(
                [c["final"][target]["exact_match"] for c in cells
                 if c["kind"] == "boost" and c["size"] == size and c["boost_share"] == share])
        boost_acc[size] = {str(s): points[s][0] for s in preset.boost_shares}
        boost_std[size] = {str(s): points[s][1] for s in preset.boost_shares}
        learned = [s for s in sorted(points) if points[s][0] >= LEARN_THRESHOLD]
        min_share[size] = round(learned[0], 6) if learned else None
    return {
        "size_names": list(preset.sizes),
        "sizes": [params[s] for s in preset.sizes],
        "rare_tasks": list(preset.rare_tasks),
        "frequent_tasks": list(preset.frequent_tasks),
        "rare_acc_by_size": rare, "rare_acc_std_by_size": rare_std,
        "frequent_acc_by_size": freq, "frequent_acc_std_by_size": freq_std,
        "isolation_acc_by_size": iso, "isolation_acc_std_by_size": iso_std,
        "isolation_task_acc_by_size": {
            t: [group_acc("isolation", size, (t,))[0] for size in preset.sizes]
            for t in preset.rare_tasks
        },
        "rare_task_acc_by_size": {
            t: [group_acc("natural", size, (t,))[0] for size in preset.sizes]
            for t in preset.rare_tasks
        },
        "expressible_rare_tasks": list(expressible),
        "rare_expressible_acc_by_size": expr, "rare_expressible_acc_std_by_size": expr_std,
        "every_task_alone": {
            "sizes": list(preset.isolation_all_sizes),
            "seeds": list(preset.isolation_all_seeds),
            "isolation": {t: [group_acc("isolation", size, (t,), preset.isolation_all_seeds)[0]
                              for size in preset.isolation_all_sizes] for t in preset.tasks},
            "natural": {t: [group_acc("natural", size, (t,), preset.isolation_all_seeds)[0]
                            for size in preset.isolation_all_sizes] for t in preset.tasks},
        },
        "boost_target": target,
        "boost_acc": boost_acc, "boost_acc_std": boost_std,
        "min_share_to_learn": min_share,
        "learn_threshold": LEARN_THRESHOLD,
        "mechanism": mechanism.summarize_mechanism(preset, cells),
        "diagnosis": mechanism.lab_verdicts(preset, cells, min_share, LEARN_THRESHOLD),
    }


def task_table(preset: Preset) -> list[dict]:
    shares = preset.natural_shares()
    return [
        {"name": t, "share": round(shares[t], 6),
         "group": "rare" if t in preset.rare_tasks
         else "frequent" if t in preset.frequent_tasks else "middle"}
        for t in preset.tasks
    ]


def write_controls(preset: Preset, cells: list[dict], cells_dir: Path,
                   min_share: dict[str, float | None]) -> None:
    """Give each natural cell the controls ``smolmix diagnose`` reads (``controls.json``): the
    isolation accuracy of each rare task at its size and seed, and the measured min share."""
    for cell in cells:
        if cell["kind"] != "natural":
            continue
        isolation = {c["focus"]: c["final"][c["focus"]]["exact_match"] for c in cells
                     if c["kind"] == "isolation" and c["size"] == cell["size"]
                     and c["seed"] == cell["seed"]}
        mins = {preset.boost_target: min_share[cell["size"]]} \
            if min_share.get(cell["size"]) is not None else {}
        (cells_dir / cell["id"] / CONTROLS_FILE).write_text(
            json.dumps({"isolation": isolation, "min_share": mins}, indent=1) + "\n")


def prepare(preset: Preset, cells: list[Cell], root: Path) -> dict[str, int]:
    """What the cells under ``root`` start from: initial models, training pools, held-out
    sets. Returns each size's parameter count."""
    params = write_models(preset.sizes, preset.seeds, vocabulary(), root / "models")
    write_task_pools(preset, cells, root / "data")
    write_jsonl((r for recs in eval_sets(preset).values() for r in recs),
                root / "data" / HELD_OUT_FILE)
    return params


def run_study(preset: Preset, out: Path, jobs: int | None = None, quiet: bool = False,
              executor: str = "process") -> dict:
    """Run every cell, then write results.json, plots, report.html and manifest.json to ``out``.

    The output appears atomically; Ctrl-C leaves no directory that looks complete.
    """
    started = time.perf_counter()
    jobs = check_jobs(jobs)
    check_executor(executor)
    with atomic_output(Path(out), replace=True, kind=KIND) as work:
        cells = plan_cells(preset)
        params = prepare(preset, cells, work)
        # Longest cells first, so the pool does not end waiting on one big run.
        order = sorted(range(len(cells)), key=lambda i: -params[cells[i].size] * cells[i].steps)
        todo = [(preset, cells[i], work) for i in order]
        done = run_cells(run_cell, todo, jobs=jobs, quiet=quiet, label="rare-tasks",
                         executor=executor)
        by_id = {r["id"]: r for r in done}
        ordered = [by_id[c.id] for c in cells]
        results = {
            "smolmix": {"kind": KIND, "version": versions()["smolmix"]},
            "preset": {**asdict(preset), "rare_tasks": list(preset.rare_tasks),
                       "boost_target": preset.boost_target,
                       "isolation_steps": preset.isolation_steps},
            "tasks": task_table(preset),
            "sizes": [{"name": s, "params": params[s]} for s in preset.sizes],
            "cells": ordered,
            "summary": summarize_study(preset, ordered, params),
        }
        write_controls(preset, ordered, work / "cells", results["summary"]["min_share_to_learn"])
        finish_run(work, KIND, results, preset, jobs, started, write_report)
    return results
