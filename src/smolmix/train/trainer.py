"""Completion-only SFT through the transformers Trainer: :func:`fit` trains any causal LM on
encoded examples as a :class:`~smolmix.train.config.TrainConfig` says, with per-task curves."""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import SequentialSampler
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from smolmix.core.rundir import CHECKPOINTS_DIR, checkpoint_step
from smolmix.train.config import TrainConfig
from smolmix.train.curves import CURVES_FILE, PerTaskEvalCallback, Scorer, TeacherForcedEvaluator
from smolmix.train.data import TokenDataset, collate


class _OrderedTrainer(Trainer):
    """A Trainer that reads the training set in its own order (no shuffling)."""

    def _get_train_sampler(self, train_dataset=None):
        return SequentialSampler(train_dataset if train_dataset is not None
                                 else self.train_dataset)


def training_arguments(config: TrainConfig, steps: int, run_dir: Path,
                       progress: bool = False) -> TrainingArguments:
    """The Trainer's arguments for ``config`` (``steps`` optimizer steps; ``progress``: the
    Trainer's progress bar)."""
    saving = config.save_checkpoints
    every = config.save_every or config.eval.every
    return TrainingArguments(
        output_dir=str(Path(run_dir) / CHECKPOINTS_DIR),
        max_steps=steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        lr_scheduler_type=config.lr_scheduler,
        seed=config.seed,
        data_seed=config.seed,
        save_strategy="steps" if saving else "no",
        save_steps=every,
        save_total_limit=config.save_total_limit,
        eval_strategy="no",
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        report_to=config.report_to,
        disable_tqdm=not progress,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        dataloader_drop_last=True,
        ddp_find_unused_parameters=False,
        **(_checkpointing_args() if config.gradient_checkpointing else {}),
    )


def fit(model: PreTrainedModel, pad_id: int, dataset: TokenDataset,
        evaluator: TeacherForcedEvaluator, config: TrainConfig, steps: int, run_dir: Path,
        scorers: Sequence[Scorer] = (), resume_from: Path | None = None,
        callbacks: Sequence[TrainerCallback] = (), progress: bool = False) -> list[dict]:
    """Train ``model`` on an encoded ``dataset`` for ``steps`` steps; return the per-task
    curves (also written to ``run_dir/curves.jsonl``).

    ``order: shuffle`` shuffles with the config's seed, ``mixture`` keeps the dataset's order;
    the Trainer cycles the data when the run needs more examples than there are. With
    ``save_checkpoints`` resumable checkpoints go to ``run_dir/checkpoints``; ``resume_from``
    (one of them) continues that run where it stopped. The training loss and learning rate
    go to ``run_dir/train_log.jsonl`` every ``logging_steps``; ``progress`` shows a bar.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    callback = PerTaskEvalCallback(evaluator, config.eval.every, run_dir / CURVES_FILE, scorers)
    if resume_from is not None:
        callback.resume(checkpoint_step(resume_from))
    trainer = (Trainer if config.order == "shuffle" else _OrderedTrainer)(
        model=model,
        args=training_arguments(config, steps, run_dir, progress),
        train_dataset=dataset,
        data_collator=lambda rows: collate(rows, pad_id),
        callbacks=[callback, TrainLog(run_dir / TRAIN_LOG_FILE, resume_from), *callbacks],
    )
    trainer.remove_callback(PrinterCallback)
    if not progress:
        trainer.remove_callback(ProgressCallback)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    return callback.curves


TRAIN_LOG_FILE = "train_log.jsonl"


class TrainLog(TrainerCallback):
    """Appends each of the Trainer's training logs (step, loss, learning rate, grad norm) to a
    JSONL file; a resumed run first drops the rows after its checkpoint."""

    def __init__(self, path: Path, resume_from: Path | None = None) -> None:
        self.path = Path(path)
        if resume_from is not None and self.path.exists():
            step = checkpoint_step(resume_from)
            kept = [line for line in self.path.read_text().splitlines()
                    if line and json.loads(line)["step"] <= step]
            self.path.write_text("".join(line + "\n" for line in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs and "loss" in logs:
            row = {"step": state.global_step, **{k: v for k, v in logs.items()
                                                 if isinstance(v, int | float)}}
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")


def _checkpointing_args() -> dict:
    """Activation (gradient) checkpointing, under the name this transformers version uses."""
    name = ("activation_checkpointing" if "activation_checkpointing"
            in inspect.signature(TrainingArguments).parameters else "gradient_checkpointing")
    return {name: True, f"{name}_kwargs": {"use_reentrant": False}}
