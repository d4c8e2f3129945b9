"""Completion-only SFT on TRL: :func:`fit` trains any causal LM on encoded examples with TRL's
``SFTTrainer`` as a :class:`~smolmix.train.config.TrainConfig` says, with per-task curves.

What TRL does here: the training loop, packing (:func:`trl.pack_dataset`, best-fit
decreasing, see :func:`smolmix.train.encoding.pack`), the mixture's order (the sequential
sampler), checkpoint saving and rotation (``save_model`` under FSDP/ZeRO-3 too), logging to
``report_to`` integrations, and every ``SFTConfig`` / ``TrainingArguments`` key a config
passes through. What smolmix keeps: its pre-tokenized
dataset (encoding is done once, before the trainer, so dropped examples are counted and the
step count is known), its collator, and the model's own loss over smolmix's completion-only
``labels`` instead of TRL's fused LM-head loss (measured slower on a CPU: see
``_SFTTrainer.compute_loss``). TRL's padding-free collator isolates packed examples
only through flash attention's varlen kernels or, in transformers' SDPA path, by flattening
the whole batch into one row and masking it as one (batch·length)² block — on a CPU that
multiplies the attention work by the batch size — so packed rows get smolmix's per-row 4-D
block-diagonal mask instead (``tests/test_train_run.py`` checks packed logits against
unpacked ones).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from trl import SFTConfig, SFTTrainer

from smolmix.core.errors import SmolmixError, first_line
from smolmix.core.rundir import CHECKPOINTS_DIR, checkpoint_step
from smolmix.train.config import TrainConfig
from smolmix.train.curves import (
    CURVES_FILE,
    PerTaskEvalCallback,
    Scorer,
    TeacherForcedEvaluator,
    rows_up_to,
)
from smolmix.train.data import collate


class _SFTTrainer(SFTTrainer):
    """TRL's trainer with the model's own loss and no model card beside the checkpoints."""

    schedule_steps: int | None = None  # the steps the learning-rate schedule spans

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The schedule over ``schedule_steps`` when set (a loop's stages share one), else
        over the run's steps."""
        return super().create_scheduler(self.schedule_steps or num_training_steps, optimizer)

    def create_model_card(self, *args, **kwargs) -> None:
        """No README.md beside the checkpoints: the run folder's manifest.json and
        train_config.yaml say how the model was trained."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The model's own loss, as transformers' ``Trainer`` computes it (completion-only
        through the labels, normalised over the tokens of the whole accumulated batch).

        TRL's default loss runs a fused LM head (chunked log-probs, entropy and top-1
        accuracy) whose backward recomputes the logits: on SmolLM2-135M with LoRA on a 2-core
        CPU it measured 0.74-0.81x the tokens/s of a hand-written PEFT loop and 0.3-0.5 GiB
        more memory, against 1.01-1.04x for the model's own loss, with the same final loss
        (``benchmarks/smollm2_throughput.py``, docs/benchmarks.md). TRL's other loss types
        (``loss_type: dft``) still go through TRL."""
        if self.args.loss_type != "nll":
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    def _save_checkpoint(self, model, trial) -> None:
        """The Trainer's checkpoint, plus what the Trainer keeps between two logging steps (see
        :class:`LoggingState`), so a run resumed from it logs what an uninterrupted one does."""
        super()._save_checkpoint(model, trial)
        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        LoggingState.save(self, folder)


def training_arguments(config: TrainConfig, steps: int, run_dir: Path,
                       progress: bool = False) -> SFTConfig:
    """TRL's ``SFTConfig`` for ``config`` (``steps`` optimizer steps; ``progress``: the
    progress bar); the config's pass-through keys go in as they are."""
    saving = config.save_checkpoints
    every = config.save_every or config.eval.every
    return SFTConfig(
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
        train_sampling_strategy="random" if config.order == "shuffle" else "sequential",
        ddp_find_unused_parameters=False,
        max_length=config.max_length,
        dataset_kwargs={"skip_prepare_dataset": True},
        remove_unused_columns=False,
        # a continued run starts its own mixture from the top, not at the earlier run's step
        ignore_data_skip=config.continue_from is not None,
        **_checkpointing_args(config.gradient_checkpointing),
        **{"bf16": default_bf16(), **config.passthrough()},
    )


def default_bf16() -> bool:
    """bf16 mixed precision where the hardware has it (a CUDA GPU with bf16), as TRL's
    default means it; fp32 on a CPU (TRL would turn on CPU autocast), unless the config
    passes ``bf16`` through."""
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def check_training_arguments(config: TrainConfig) -> None:
    """The config's settings as TRL / transformers validate them (a pass-through value they
    reject is a one-line error before any model is loaded)."""
    try:
        training_arguments(config, 1, Path("unused"))
    except (ValueError, TypeError, ImportError) as exc:
        keys = ", ".join(config.passthrough()) or "none"
        raise SmolmixError(f"invalid training settings: {first_line(exc, 300)} "
                           f"(pass-through keys: {keys})", "train config") from None


def fit(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: Dataset,
        evaluator: TeacherForcedEvaluator, config: TrainConfig, steps: int, run_dir: Path,
        scorers: Sequence[Scorer] = (), resume_from: Path | None = None,
        callbacks: Sequence[TrainerCallback] = (), progress: bool = False,
        save_to: Path | None = None) -> list[dict]:
    """Train ``model`` on an encoded ``dataset`` (columns ``input_ids``, ``labels``, and
    ``position_ids`` when packed) for ``steps`` steps; return the per-task
    curves (also written to ``run_dir/curves.jsonl``).

    ``order: shuffle`` shuffles with the config's seed, ``mixture`` keeps the dataset's order;
    the Trainer cycles the data when the run needs more examples than there are. With
    ``save_checkpoints`` resumable checkpoints go to ``run_dir/checkpoints``; ``resume_from``
    (one of them) continues that run where it stopped. The training loss and learning rate
    go to ``run_dir/train_log.jsonl`` every ``logging_steps``; ``progress`` shows a bar.
    ``save_to``: the trained model goes there (see :func:`save_final`).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    callback = PerTaskEvalCallback(evaluator, config.eval.every, run_dir / CURVES_FILE, scorers)
    if resume_from is not None:
        callback.resume(checkpoint_step(resume_from))
    pad_id = tokenizer.pad_token_id
    bar = ProgressBar()

    def counted(rows):
        batch = collate(rows, pad_id)
        bar.tokens += sum(len(row["input_ids"]) for row in rows)
        return batch

    with _tensorboard_dir(run_dir / TENSORBOARD_DIR):
        trainer = _SFTTrainer(
            model=model,
            args=training_arguments(config, steps, run_dir, progress),
            train_dataset=dataset,
            processing_class=tokenizer,
            data_collator=counted,
            callbacks=[callback, TrainLog(run_dir / TRAIN_LOG_FILE, resume_from), *callbacks],
        )
    trainer.schedule_steps = config.schedule_steps
    callback.all_ranks = trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(LoggingState(trainer, resume_from))
    if progress:
        trainer.add_callback(bar)
    with _tied_head_not_missing(model):
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None
                      else None)
    if save_to is not None:
        save_final(trainer, Path(save_to))
    return callback.curves


class _TiedHeadFilter(logging.Filter):
    """Drops the Trainer's warning that a resumed checkpoint has no ``lm_head.weight``: with
    tied embeddings the head is the embedding matrix, saved once under its other name."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage().rstrip(".")
        return not (message.startswith("There were missing keys in the checkpoint")
                    and message.endswith(": ['lm_head.weight']"))


@contextmanager
def _tied_head_not_missing(model: PreTrainedModel) -> Iterator[None]:
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    log = logging.getLogger("transformers.trainer")
    dropped = _TiedHeadFilter()
    if tied:
        log.addFilter(dropped)
    try:
        yield
    finally:
        log.removeFilter(dropped)


def save_final(trainer: SFTTrainer, folder: Path) -> None:
    """The trained model as a checkpoint folder ``folder/model`` (safetensors, with the
    tokenizer), through ``trainer.save_model`` so FSDP / ZeRO-3 gather the full weights.
    LoRA: the adapter goes to ``folder/adapter``, and ``folder/model`` is the base with the
    adapter merged in (loads with no PEFT)."""
    model = trainer.model
    if not hasattr(model, "merge_and_unload"):
        trainer.save_model(str(folder / "model"))
        _drop_training_args(folder / "model")
        return
    trainer.save_model(str(folder / "adapter"))
    _drop_training_args(folder / "adapter")
    if trainer.accelerator.is_main_process:
        merged = trainer.accelerator.unwrap_model(model).merge_and_unload()
        merged.save_pretrained(folder / "model", safe_serialization=True)
        trainer.processing_class.save_pretrained(folder / "model")


def _drop_training_args(folder: Path) -> None:
    """``save_model`` also pickles the arguments; the run keeps them as train_config.yaml."""
    (Path(folder) / "training_args.bin").unlink(missing_ok=True)


class ProgressBar(ProgressCallback):
    """The Trainer's progress bar with the latest training loss and this process's tokens/s
    as its postfix (instead of a printed dict at every log)."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = 0
        self.start = (0.0, 0)

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        self.start = (time.perf_counter(), self.tokens)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs \
                and "loss" in logs:
            seconds = max(time.perf_counter() - self.start[0], 1e-9)
            rate = (self.tokens - self.start[1]) / seconds
            self.training_bar.set_postfix_str(f"loss {logs['loss']:.4g}, {rate:,.0f} tokens/s")


TRAIN_LOG_FILE = "train_log.jsonl"
TENSORBOARD_DIR = "tensorboard"


@contextmanager
def _tensorboard_dir(folder: Path) -> Iterator[None]:
    """TensorBoard event files (``report_to: tensorboard``) go to ``folder`` in the run,
    unless ``TENSORBOARD_LOGGING_DIR`` says where (transformers reads it when the trainer is
    built)."""
    if os.environ.get("TENSORBOARD_LOGGING_DIR"):
        yield
        return
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(folder)
    try:
        yield
    finally:
        del os.environ["TENSORBOARD_LOGGING_DIR"]


class LoggingState(TrainerCallback):
    """What the Trainer accumulates between two logging steps and does not checkpoint: the
    summed training loss since the last log and that log's step (a run resumed between two
    logging steps would otherwise log the mean over the resumed steps only), and TRL's
    per-log metrics and token count. Saved into each checkpoint (one file per process), and
    put back at the start of a run resumed from one."""

    def __init__(self, trainer: Trainer, resume_from: Path | None) -> None:
        self.trainer = trainer
        self.resume_from = resume_from

    @staticmethod
    def file(folder: Path, process: int) -> Path:
        return Path(folder) / f"smolmix_logging_{process}.json"

    @classmethod
    def save(cls, trainer: Trainer, folder: Path) -> None:
        loss = getattr(trainer, "_tr_loss", None)
        if not isinstance(loss, torch.Tensor) or not folder.is_dir():
            return  # a transformers version that keeps these elsewhere: nothing to carry
        metrics = getattr(trainer, "_metrics", {}).get("train", {})
        state = {"loss_since_log": loss.item(),
                 "last_logged_step": trainer._globalstep_last_logged,
                 "trl_metrics": {key: list(values) for key, values in metrics.items()},
                 "trl_train_tokens": getattr(trainer, "_total_train_tokens", None)}
        cls.file(folder, trainer.args.process_index).write_text(json.dumps(state))

    def on_train_begin(self, args, state, control, **kwargs):
        if self.resume_from is None:
            return
        path = self.file(self.resume_from, args.process_index)
        if not path.is_file() or not isinstance(getattr(self.trainer, "_tr_loss", None),
                                                torch.Tensor):
            return  # a checkpoint from before this record: the Trainer's own behaviour
        saved = json.loads(path.read_text())
        self.trainer._tr_loss.fill_(saved["loss_since_log"])
        self.trainer._globalstep_last_logged = saved["last_logged_step"]
        metrics = getattr(self.trainer, "_metrics", {}).get("train")
        if metrics is not None:
            metrics.clear()
            metrics.update(saved["trl_metrics"])
        if saved["trl_train_tokens"] is not None and hasattr(self.trainer, "_total_train_tokens"):
            self.trainer._total_train_tokens = saved["trl_train_tokens"]


class TrainLog(TrainerCallback):
    """Appends each of the Trainer's training logs (step, loss, learning rate, grad norm) to a
    JSONL file; a resumed run first drops the rows after its checkpoint."""

    def __init__(self, path: Path, resume_from: Path | None = None) -> None:
        self.path = Path(path)
        if resume_from is not None and self.path.exists():
            kept = rows_up_to(self.path, checkpoint_step(resume_from))
            self.path.write_text("".join(line + "\n" for line in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs and "loss" in logs:
            row = {"step": state.global_step, **{k: v for k, v in logs.items()
                                                 if isinstance(v, int | float)}}
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")


def _checkpointing_args(on: bool) -> dict:
    """Activation (gradient) checkpointing on or off (TRL's default is on), under the name
    this transformers version uses."""
    if "activation_checkpointing" not in inspect.signature(SFTConfig).parameters:
        return {"gradient_checkpointing": on,
                **({"gradient_checkpointing_kwargs": {"use_reentrant": False}} if on else {})}
    return {"gradient_checkpointing": None, "activation_checkpointing": on,
            **({"activation_checkpointing_kwargs": {"use_reentrant": False}} if on else {})}
