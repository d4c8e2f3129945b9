"""One training segment of a loop, a stage or a probe from a stage's checkpoint, through the
user's commands: its recipe → ``smolmix mix`` → ``smolmix train`` (carrying on the previous
segment's weights, optimizer, step count and learning-rate schedule) → ``smolmix eval`` of
every task on its held-out prompts. Each is an ordinary mixture, train and eval folder."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from smolmix.core.records import Record
from smolmix.core.rundir import list_checkpoints
from smolmix.evaluate.command import run_eval
from smolmix.evaluate.tasks import TaskSpec
from smolmix.loop.plan import Plan, base_config
from smolmix.loop.sources import question
from smolmix.mix.command import build_mixture
from smolmix.models.loading import load_tokenizer
from smolmix.models.prompting import choose_format
from smolmix.train.command import train
from smolmix.train.config import EvalSpec, TrainConfig
from smolmix.train.curves import CURVES_FILE, Scorer, TeacherForcedEvaluator, read_curves
from smolmix.train.data import load_mixture

TRAIN_LOSS_EXAMPLES = 64  # per task: the stage's own examples its training loss is measured on
RECIPE_FILE = "recipe.yaml"


@dataclass(frozen=True)
class Segment:
    """What to train: shares, examples, steps, from which checkpoint; what to evaluate."""

    folder: Path
    shares: dict[str, float]
    examples: int
    steps: int
    seed: int
    continue_from: Path | None
    tasks: tuple[str, ...]
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Measured:
    """A segment's scores, per task, and what it cost."""

    accuracy: dict[str, float]
    heldout_loss: dict[str, float]
    train_loss: dict[str, float]
    checkpoint: Path
    end_step: int
    seconds: dict[str, float]

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "heldout_loss": self.heldout_loss,
                "train_loss": self.train_loss, "checkpoint": str(self.checkpoint),
                "end_step": self.end_step, "seconds": self.seconds}


def segment_recipe(plan: Plan, shares: Mapping[str, float], examples: int, seed: int) -> dict:
    """The ``smolmix mix`` recipe: the plan's sources weighted by task, ``examples`` of them,
    each source repeated at most as the plan's epoch cap allows."""
    sources = []
    for spec in plan.sources:
        data = spec.model_dump(exclude_defaults=True)
        if spec.path is not None:
            data["path"] = str(plan.path(spec.path).resolve())
        sources.append(data)
    return {"seed": seed, "budget": {"examples": examples},
            "max_repeats": max(1, -(-int(plan.policy.max_epochs * 1000) // 1000)),
            "sources": sources,
            "strategy": [{"weights": {t: float(w) for t, w in shares.items()}}],
            "hygiene": {"dedup": "none"}}


def schedule_keys(plan: Plan, total_steps: int) -> dict:
    """The train keys of the plan's schedule, spanning ``total_steps``."""
    schedule = plan.schedule
    keys: dict = {"warmup_steps": schedule.warmup_steps, "schedule_steps": total_steps}
    if schedule.kind == "wsd":
        decay = round(schedule.decay_fraction * total_steps)
        keys |= {"lr_scheduler": "warmup_stable_decay",
                 "lr_scheduler_kwargs": {"num_decay_steps": decay}}
    else:
        keys["lr_scheduler"] = schedule.kind
    return keys


def segment_config(plan: Plan, segment: Segment, mixture: Path, total_steps: int
                   ) -> TrainConfig:
    """The ``smolmix train`` config: the plan's train keys and the loop's (model, mixture,
    steps, schedule, the checkpoint to carry on from, the held-out curves)."""
    base = base_config(plan).model_dump()
    return TrainConfig(**{
        **base, "model": str(plan.path(plan.model)), "mixture": str(mixture),
        "steps": segment.steps, "seed": plan.seed,
        "continue_from": None if segment.continue_from is None else str(segment.continue_from),
        "save_checkpoints": True, "save_every": segment.steps, "save_total_limit": 1,
        "eval": EvalSpec(data=str(plan.path(plan.heldout)), every=segment.steps,
                         batch_size=plan.eval.batch_size),
        **schedule_keys(plan, total_steps)})


def train_loss_scorer(config: TrainConfig, records: Sequence[Record],
                      tasks: Sequence[str]) -> Scorer:
    """Each task's mean completion loss on the first examples of it the segment trains on."""
    tokenizer = load_tokenizer(config.tokenizer or config.model,
                               "tokenizer" if config.tokenizer else "model")
    fmt = choose_format(config.chat_template, tokenizer, flag="chat_template")
    samples: dict[str, list[Record]] = {}
    for r in records:
        if r.task in tasks and len(samples.setdefault(r.task, [])) < TRAIN_LOSS_EXAMPLES:
            samples[r.task].append(r)
    evaluator = TeacherForcedEvaluator.from_records(tokenizer, samples, config.eval.batch_size,
                                                    fmt)  # the loop's eval batch size
    return lambda model: {t: {"train_loss": s.loss} for t, s in evaluator(model).items()}


def eval_specs(plan: Plan, heldout_files: Mapping[str, Path], tasks: Sequence[str]
               ) -> list[TaskSpec]:
    """One eval task per loop task: its held-out prompts, graded against the completions."""
    settings = plan.eval
    return [TaskSpec(name=t, kind="custom", path=str(heldout_files[t]), prompt_field="prompt",
                     reference_field="completion",
                     answer_format=settings.answer_formats.get(t, settings.answer_format),
                     max_new_tokens=settings.max_new_tokens) for t in tasks]


def run_segment(plan: Plan, segment: Segment, total_steps: int,
                heldout_files: Mapping[str, Path]) -> Measured:
    """Mix, train and evaluate one segment into its folder."""
    folder = segment.folder
    folder.mkdir(parents=True, exist_ok=True)
    seconds = {}
    start = time.perf_counter()
    recipe = folder / RECIPE_FILE
    recipe.write_text(yaml.safe_dump(segment_recipe(plan, segment.shares, segment.examples,
                                                    segment.seed), sort_keys=False))
    build_mixture(recipe, folder / "mixture", quiet=True)
    seconds["mix"] = time.perf_counter() - start
    start = time.perf_counter()
    config = segment_config(plan, segment, folder / "mixture", total_steps)
    trained = [t for t, s in segment.shares.items() if s > 0]
    scorer = train_loss_scorer(config, load_mixture(folder / "mixture"), trained)
    train(config, folder / "train", quiet=True, scorers=[scorer])
    seconds["train"] = time.perf_counter() - start
    start = time.perf_counter()
    scores = run_eval(str(folder / "train" / "model"),
                      eval_specs(plan, heldout_files, segment.tasks), folder / "eval",
                      batch_size=plan.eval.batch_size, tags=dict(segment.tags),
                      seed=plan.seed, quiet=True)
    seconds["eval"] = time.perf_counter() - start
    rows = read_curves(folder / "train" / CURVES_FILE)
    end = max(r["step"] for r in rows)
    last = {r["task"]: r for r in rows if r["step"] == end}
    return Measured(
        accuracy={t: scores["tasks"][t]["mean"] for t in segment.tasks},
        heldout_loss={t: last[t]["loss"] for t in segment.tasks if t in last},
        train_loss={t: last[t]["train_loss"] for t in trained if "train_loss" in last.get(t, {})},
        checkpoint=list_checkpoints(folder / "train")[-1], end_step=end,
        seconds={k: round(v, 2) for k, v in seconds.items()})


def write_heldout_files(heldout: Mapping[str, Sequence[Record]], folder: Path
                        ) -> dict[str, Path]:
    """Each task's held-out prompts and completions in a file of its own (the eval tasks')."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i, (task, records) in enumerate(heldout.items()):
        path = folder / f"task-{i}.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps({"task": task, "prompt": question(r),
                                     "completion": r.completion}, ensure_ascii=False) + "\n")
        files[task] = path
    return files
