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

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import SequentialSampler
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
from smolmix.evaluate.teacher_forced import TaskScore, TeacherForcedEvaluator, collate
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
    grad_accum: int = 1
    lr_scheduler: str = "linear"
    shuffle: bool = True  # False: the dataset's own order (a staged mixture keeps its stages)
    save_every: int | None = None  # steps between resumable checkpoints (None: none)
    save_total_limit: int | None = None
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_batch_size", "grad_accum"):
            if getattr(self, name) <= 0:
                raise SmolmixError(f"{name} must be positive, got {getattr(self, name)}", name)
        if self.save_every is not None and self.save_every <= 0:
            raise SmolmixError(f"save_every must be positive, got {self.save_every}", "save_every")


Scorer = Callable[[PreTrainedModel], Mapping[str, Mapping[str, float]]]


class PerTaskEvalCallback(TrainerCallback):
    """Every ``every`` steps (and at the last step) score each task and append to ``curves``.

    ``scorers`` each map a model to per-task metrics; their metrics are merged per task. Only
    the main process evaluates and writes (the others wait for it at the next step).
    """

    def __init__(self, evaluator: TeacherForcedEvaluator, every: int, out_file: Path | None,
                 on_eval: Callable[[int, dict[str, TaskScore]], None] | None = None,
                 scorers: Sequence[Scorer] = ()) -> None:
        self.evaluator = evaluator
        self.every = every
        self.out_file = out_file
        self.on_eval = on_eval
        self.scorers = list(scorers)
        self.curves: list[dict] = []
        self.done: set[int] = set()

    def resume(self, step: int) -> None:
        """Continue a run from a checkpoint at ``step``: keep the curve rows up to it only."""
        if self.out_file is None or not self.out_file.exists():
            return
        rows = [json.loads(line) for line in self.out_file.read_text().splitlines() if line]
        self.curves = [r for r in rows if r["step"] <= step]
        self.done = {r["step"] for r in self.curves}
        _write_rows(self.out_file, self.curves, mode="w")

    def record(self, step: int, model: PreTrainedModel) -> None:
        if step in self.done:
            return
        self.done.add(step)
        scores = self.evaluator(model)
        extra: dict[str, dict[str, float]] = {}
        for scorer in self.scorers:
            for task, metrics in scorer(model).items():
                extra.setdefault(task, {}).update(metrics)
        rows = [{"step": step, "task": t, **asdict(s), **extra.get(t, {})}
                for t, s in scores.items()]
        self.curves.extend(rows)
        if self.out_file is not None:
            _write_rows(self.out_file, rows, mode="a")
        if self.on_eval is not None:
            self.on_eval(step, scores)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            self.record(state.global_step, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        due = state.global_step % self.every == 0 or state.global_step == state.max_steps
        if due and state.is_world_process_zero:
            self.record(state.global_step, model)


def _write_rows(path: Path, rows: Sequence[dict], mode: str) -> None:
    with open(path, mode, encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)


class TokenDataset(TorchDataset):
    """Encoded examples held as flat int32 arrays (``input_ids``, ``labels``, optional
    ``position_ids``) with row offsets: compact, and :func:`collate` pads a batch of them with
    numpy slices instead of per-row tensor building (the per-step cost on tiny models)."""

    KEYS = ("input_ids", "labels", "position_ids")

    def __init__(self, encoded: Mapping[str, Sequence[Sequence[int]]]) -> None:
        lengths = np.fromiter((len(r) for r in encoded["input_ids"]), dtype=np.int64,
                              count=len(encoded["input_ids"]))
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.columns = {key: np.fromiter((t for row in encoded[key] for t in row),
                                         dtype=np.int32, count=int(self.offsets[-1]))
                        for key in self.KEYS if key in encoded}

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        start, stop = self.offsets[index], self.offsets[index + 1]
        return {key: col[start:stop] for key, col in self.columns.items()}


def to_train_dataset(tokenizer: PreTrainedTokenizerBase, records: Sequence[Record]
                     ) -> TokenDataset:
    """Tokenize records (batched) into a :class:`TokenDataset`."""
    enc = encode_prompt_completion(
        tokenizer, [r.prompt for r in records], [r.completion for r in records]
    )
    return TokenDataset(enc)


def train(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, records: Sequence[Record],
          eval_sets: Mapping[str, Sequence[Record]], config: TrainConfig, run_dir: Path,
          on_eval: Callable[[int, dict[str, TaskScore]], None] | None = None,
          scorers: Sequence[Scorer] = ()) -> list[dict]:
    """Train ``model`` on ``records`` for ``config.steps`` steps; return the per-task curves
    (``scorers`` add per-task metrics at each evaluation).

    The Trainer shuffles ``records`` with ``config.seed`` and cycles them if the run needs more
    examples than there are.
    """
    if not records:
        raise SmolmixError("no training records", "mixture")
    evaluator = TeacherForcedEvaluator(tokenizer, eval_sets, config.eval_batch_size)
    return fit(model, tokenizer.pad_token_id, to_train_dataset(tokenizer, records), evaluator,
               config, run_dir, on_eval=on_eval, scorers=scorers)


class _OrderedTrainer(Trainer):
    """A Trainer that reads the training set in its own order (no shuffling)."""

    def _get_train_sampler(self, train_dataset=None):
        return SequentialSampler(train_dataset if train_dataset is not None
                                 else self.train_dataset)


def fit(model: PreTrainedModel, pad_id: int, dataset: TokenDataset,
        evaluator: TeacherForcedEvaluator, config: TrainConfig, run_dir: Path,
        on_eval: Callable[[int, dict[str, TaskScore]], None] | None = None,
        scorers: Sequence[Scorer] = (), resume_from: Path | None = None,
        callbacks: Sequence[TrainerCallback] = ()) -> list[dict]:
    """Train ``model`` on an encoded ``dataset`` (:class:`TokenDataset`) with the transformers
    Trainer; curves go to ``run_dir/curves.jsonl``.

    With ``config.save_every`` resumable checkpoints go to ``run_dir/checkpoints``;
    ``resume_from`` (one of them) continues that run where it stopped.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    callback = PerTaskEvalCallback(evaluator, config.eval_every, run_dir / CURVES_FILE, on_eval,
                                   scorers)
    if resume_from is not None:
        callback.resume(_checkpoint_step(resume_from))
    saving = config.save_every is not None
    args = TrainingArguments(
        output_dir=str(run_dir / CHECKPOINTS_DIR),
        max_steps=config.steps,
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
        save_steps=config.save_every if saving else 500,
        save_total_limit=config.save_total_limit,
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=not _has_accelerator(),
        dataloader_num_workers=0,
        dataloader_drop_last=True,
        ddp_find_unused_parameters=False,
        **(_checkpointing_args() if config.gradient_checkpointing else {}),
    )
    trainer = (Trainer if config.shuffle else _OrderedTrainer)(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=lambda rows: collate(rows, pad_id),
        callbacks=[callback, *callbacks],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    return callback.curves


CHECKPOINTS_DIR = "checkpoints"


def _checkpoint_step(path: Path) -> int:
    """The step a Trainer checkpoint directory (``checkpoint-<step>``) was saved at."""
    try:
        return int(Path(path).name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        raise SmolmixError("not a training checkpoint (expected checkpoint-<step>)",
                           str(path)) from None


def _checkpointing_args() -> dict:
    """Activation (gradient) checkpointing, under the name this transformers version uses."""
    import inspect

    name = ("activation_checkpointing" if "activation_checkpointing"
            in inspect.signature(TrainingArguments).parameters else "gradient_checkpointing")
    return {name: True, f"{name}_kwargs": {"use_reentrant": False}}


def _has_accelerator() -> bool:

    return torch.cuda.is_available()
