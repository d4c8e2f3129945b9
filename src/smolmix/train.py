"""Completion-only SFT through the transformers Trainer, with per-task held-out curves.

:func:`train` takes any causal LM and tokenizer, a list of prompt/completion records and
per-task eval sets; :class:`PerTaskEvalCallback` records each task's held-out loss and exact
match every ``eval_every`` steps into ``curves.jsonl`` in the run directory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from datasets import Dataset
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from smolmix.encoding import encode_prompt_completion
from smolmix.errors import SmolmixError
from smolmix.evaluate.teacher_forced import TaskScore, TeacherForcedEvaluator, pad_batch
from smolmix.records import Record

CURVES_FILE = "curves.jsonl"


@dataclass(frozen=True)
class TrainConfig:
    """What a training run does; the defaults suit the lab's tiny models on a CPU."""

    steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 250
    eval_batch_size: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise SmolmixError(f"{name} must be positive, got {getattr(self, name)}", name)


class PerTaskEvalCallback(TrainerCallback):
    """Every ``every`` steps (and at the last step) score each task and append to ``curves``."""

    def __init__(self, evaluator: TeacherForcedEvaluator, every: int, out_file: Path | None,
                 on_eval: Callable[[int, dict[str, TaskScore]], None] | None = None) -> None:
        self.evaluator = evaluator
        self.every = every
        self.out_file = out_file
        self.on_eval = on_eval
        self.curves: list[dict] = []

    def record(self, step: int, model: PreTrainedModel) -> None:
        scores = self.evaluator(model)
        rows = [{"step": step, "task": t, **asdict(s)} for t, s in scores.items()]
        self.curves.extend(rows)
        if self.out_file is not None:
            with open(self.out_file, "a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in rows)
        if self.on_eval is not None:
            self.on_eval(step, scores)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.record(0, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.record(state.global_step, model)


def to_train_dataset(tokenizer: PreTrainedTokenizerBase, records: Sequence[Record]) -> Dataset:
    """Tokenize records (batched) into a ``datasets.Dataset`` of input_ids/labels."""
    enc = encode_prompt_completion(
        tokenizer, [r.prompt for r in records], [r.completion for r in records]
    )
    return Dataset.from_dict(enc)


def train(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, records: Sequence[Record],
          eval_sets: Mapping[str, Sequence[Record]], config: TrainConfig, run_dir: Path,
          on_eval: Callable[[int, dict[str, TaskScore]], None] | None = None) -> list[dict]:
    """Train ``model`` on ``records`` for ``config.steps`` steps; return the per-task curves.

    The Trainer shuffles ``records`` with ``config.seed`` and cycles them if the run needs more
    examples than there are.
    """
    if not records:
        raise SmolmixError("no training records", "mixture")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    evaluator = TeacherForcedEvaluator(tokenizer, eval_sets, config.eval_batch_size)
    callback = PerTaskEvalCallback(evaluator, config.eval_every, run_dir / CURVES_FILE, on_eval)
    args = TrainingArguments(
        output_dir=str(run_dir / "trainer"),
        max_steps=config.steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        lr_scheduler_type="linear",
        seed=config.seed,
        data_seed=config.seed,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=not _has_accelerator(),
        dataloader_num_workers=0,
        dataloader_drop_last=True,
    )
    pad_id = tokenizer.pad_token_id
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=to_train_dataset(tokenizer, records),
        data_collator=lambda rows: pad_batch(
            [r["input_ids"] for r in rows], [r["labels"] for r in rows], pad_id
        ),
        callbacks=[callback],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.train()
    return callback.curves


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available()
