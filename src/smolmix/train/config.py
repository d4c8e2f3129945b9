"""The ``smolmix train`` config: a YAML file, ``--set key=value`` overrides, validated.

Paths in the file are relative to the file's folder (paths given with ``--set`` to the
working directory). The resolved config is saved in the run as ``train_config.yaml``.

Every number must be finite (no ``.inf`` / ``.nan``, here or in a pass-through key) and within
its limits, checked before any work starts: counts of steps (``steps``, ``warmup_steps``,
``save_every``, ``logging_steps``, ``eval.every``, ...) at most :data:`MAX_STEPS`; batch sizes,
``grad_accum`` and ``lora.r`` at most :data:`MAX_BATCH`; ``max_length`` and generation lengths
at most :data:`MAX_TOKENS`; ``epochs`` at most :data:`MAX_EPOCHS`; ``learning_rate`` in
(0, :data:`MAX_LEARNING_RATE`]; ``weight_decay`` in [0, :data:`MAX_WEIGHT_DECAY`];
``max_grad_norm`` in (0, :data:`MAX_GRAD_NORM`]; ``seed`` in [0, :data:`MAX_SEED`] (what
numpy and torch's generators take).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from smolmix.core.config import apply_overrides, invalid, read_yaml
from smolmix.core.errors import SmolmixError

CONFIG_FILE = "train_config.yaml"

MAX_STEPS = 10**9
MAX_BATCH = 2**16
MAX_TOKENS = 2**24
MAX_EPOCHS = 10**6
MAX_LEARNING_RATE = 10.0
MAX_WEIGHT_DECAY = 10.0
MAX_GRAD_NORM = 1e9
MAX_LORA_ALPHA = 1e6
MAX_SEED = 2**32 - 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LoraSpec(_Model):
    """LoRA adapters (PEFT) instead of full fine-tuning."""

    r: int = Field(16, gt=0, le=MAX_BATCH, description=f"rank, 1 to {MAX_BATCH}")
    alpha: float = Field(32.0, gt=0, le=MAX_LORA_ALPHA,
                         description=f"scaling, in (0, {MAX_LORA_ALPHA:g}]")
    dropout: float = Field(0.05, ge=0, lt=1, description="in [0, 1)")
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class GenerationSpec(_Model):
    """Generation accuracy during training (greedy decoding, graded per task)."""

    max_new_tokens: int = Field(64, gt=0, le=MAX_TOKENS, description=f"1 to {MAX_TOKENS:,}")
    answer_format: str = "exact"
    examples: int | None = Field(None, gt=0, le=MAX_STEPS,
                                 description="at most this many per task")
    batch_size: int = Field(32, gt=0, le=MAX_BATCH, description=f"1 to {MAX_BATCH:,}")


class EvalSpec(_Model):
    """Per-task held-out evaluation during training."""

    data: str | None = Field(None, description="held-out records: JSONL or a mixture folder")
    holdout_per_task: int = Field(0, ge=0, le=MAX_STEPS, description="or carve this many per "
                                  "task out of the mixture (removed from training)")
    every: int = Field(100, gt=0, le=MAX_STEPS, description=f"1 to {MAX_STEPS:,} steps")
    batch_size: int = Field(64, gt=0, le=MAX_BATCH, description=f"1 to {MAX_BATCH:,}")
    generate: GenerationSpec | None = None


class TrainConfig(_Model):
    """Everything one ``smolmix train`` run does (the lab's presets are overrides of it).

    Keys it does not define pass through to TRL's ``SFTConfig`` (``bf16``, ``optim``,
    ``neftune_noise_alpha``, ``push_to_hub``, ...): see :func:`check_passthrough`."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False,
                              title="smolmix train config")

    model: str = Field(description="a local checkpoint folder or a hub id")
    tokenizer: str | None = Field(None, description="default: the model's")
    mixture: str = Field(description="a folder written by smolmix mix")
    lora: LoraSpec | None = None
    chat_template: Literal["auto", "on", "off"] = Field(
        "auto", description="prompt/completion data as a user/assistant exchange through the "
        "tokenizer's chat template (auto: when it has one) or as plain text (off)")
    assistant_turns: Literal["all", "last"] = Field(
        "all", description="conversations: the loss on every assistant turn, or the last")
    packing: bool = False
    max_length: int = Field(1024, gt=0, le=MAX_TOKENS, description=f"1 to {MAX_TOKENS:,}")
    steps: int | None = Field(None, gt=0, le=MAX_STEPS, description="default: epochs over the "
                              f"mixture; 1 to {MAX_STEPS:,}")
    epochs: float = Field(1.0, gt=0, le=MAX_EPOCHS, description=f"in (0, {MAX_EPOCHS:,}]")
    batch_size: int = Field(8, gt=0, le=MAX_BATCH, description=f"1 to {MAX_BATCH:,}")
    grad_accum: int = Field(1, gt=0, le=MAX_BATCH, description=f"1 to {MAX_BATCH:,}")
    learning_rate: float = Field(2e-5, gt=0, le=MAX_LEARNING_RATE,
                                 description=f"in (0, {MAX_LEARNING_RATE:g}]")
    lr_scheduler: str = "linear"
    warmup_steps: int = Field(0, ge=0, le=MAX_STEPS, description=f"0 to {MAX_STEPS:,}")
    weight_decay: float = Field(0.0, ge=0, le=MAX_WEIGHT_DECAY,
                                description=f"in [0, {MAX_WEIGHT_DECAY:g}]")
    max_grad_norm: float = Field(1.0, gt=0, le=MAX_GRAD_NORM,
                                 description=f"gradient clipping, in (0, {MAX_GRAD_NORM:g}]")
    seed: int = Field(0, ge=0, le=MAX_SEED, description=f"0 to {MAX_SEED:,}")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    gradient_checkpointing: bool = Field(False, description="recompute activations in the "
                                         "backward pass: less memory, about 30% more time")
    order: Literal["mixture", "shuffle"] = Field(
        "mixture", description="mixture: train in the mixture's order (keeps its stages)")
    save_checkpoints: bool = Field(True, description="resumable checkpoints (--resume, "
                                   "diagnose over checkpoints); false: final model only")
    save_every: int | None = Field(None, gt=0, le=MAX_STEPS, description="checkpoint every "
                                   "N steps (default: at each evaluation)")
    save_total_limit: int | None = Field(2, gt=0, le=MAX_STEPS, description="keep the newest "
                                         "N checkpoints (null: all)")
    logging_steps: int = Field(10, gt=0, le=MAX_STEPS, description="training loss and "
                               "learning rate every N steps into train_log.jsonl")
    report_to: list[str] | str = Field("none", description="transformers integrations, e.g. "
                                       "tensorboard")
    eval: EvalSpec = EvalSpec()
    continue_from: str | None = Field(
        None, description="a checkpoint of an earlier run (a loop's previous stage): its "
        "weights (a LoRA run's adapter), optimizer and scheduler state and step count carry on, "
        "on this config's mixture from its start; model is the model that run started from")
    schedule_steps: int | None = Field(
        None, gt=0, le=MAX_STEPS, description="the steps the learning-rate schedule spans "
        "(default: the run's last step); a loop gives every stage the whole loop's")

    @field_validator("chat_template", mode="before")
    @classmethod
    def _yaml_on_off(cls, value):
        """YAML reads a bare ``on`` / ``off`` as a boolean."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    def passthrough(self) -> dict:
        """The keys that go to TRL's ``SFTConfig`` as they are."""
        return dict(self.model_extra or {})

    def fingerprint(self) -> str:
        """What makes two runs the same training (a resumed run must match its checkpoint)."""
        data = self.model_dump(mode="json")
        for key in ("save_checkpoints", "save_every", "save_total_limit", "logging_steps",
                    "report_to", *NOT_TRAINING):
            data.pop(key, None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# SFTConfig / TrainingArguments fields smolmix sets itself, and the smolmix key (or flag)
# that says the same thing.
OWN_KEYS = {
    "output_dir": "--out", "max_steps": "steps", "num_train_epochs": "epochs",
    "per_device_train_batch_size": "batch_size", "gradient_accumulation_steps": "grad_accum",
    "lr_scheduler_type": "lr_scheduler", "data_seed": "seed", "save_strategy":
    "save_checkpoints", "save_steps": "save_every", "logging_strategy": "logging_steps",
    "eval_strategy": "eval.every", "eval_steps": "eval.every", "packing": "packing",
    "padding_free": "packing", "packing_strategy": "packing", "assistant_only_loss":
    "assistant_turns", "completion_only_loss": "assistant_turns", "dataset_kwargs": "mixture",
    "dataset_text_field": "mixture", "model_init_kwargs": "dtype", "shuffle_dataset": "order",
    "train_sampling_strategy": "order",
    "resume_from_checkpoint": "--resume", "disable_tqdm": "--quiet", "use_cpu": "model",
    "dataloader_drop_last": "batch_size", "remove_unused_columns": "mixture",
    "gradient_checkpointing": "gradient_checkpointing", "activation_checkpointing":
    "gradient_checkpointing", "per_device_eval_batch_size": "eval.batch_size",
    "trust_remote_code": "model (smolmix never runs remote code)",
    "ignore_data_skip": "continue_from",
}
# Pass-through keys that change what is saved or shown, not what is trained.
NOT_TRAINING = ("push_to_hub", "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo",
                "run_name", "logging_first_step", "logging_dir", "project", "trackio_space_id",
                "save_only_model", "dataloader_num_workers", "dataloader_pin_memory")


def check_passthrough(config: TrainConfig, where: str = "train config") -> None:
    """Every key the config does not define must be a field of TRL's ``SFTConfig`` that
    smolmix does not set itself; anything else is a one-line error naming the key."""
    extra = config.model_extra or {}
    if not extra:
        return
    from trl import SFTConfig  # TRL takes seconds to import; only pass-through keys need it

    known = {f.name for f in dataclasses.fields(SFTConfig) if f.init}
    for key in extra:
        if key in OWN_KEYS:
            raise SmolmixError(f"{key!r} is set by smolmix: use {OWN_KEYS[key]}", where)
        if key not in known:
            raise SmolmixError(f"unknown key {key!r} (not a smolmix key, nor a field of TRL's "
                               "SFTConfig / transformers' TrainingArguments)", where)
        if not _finite(extra[key]):
            raise SmolmixError(f"{key}: input should be a finite number", where)


def _finite(value) -> bool:
    """No infinite or NaN float anywhere in ``value`` (a pass-through key's value)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _resolve(base: Path, value: str | None) -> str | None:
    """A path relative to ``base`` when it exists there; anything else (a hub id) unchanged."""
    if value is None or Path(value).is_absolute():
        return value
    candidate = base / value
    return str(candidate) if candidate.exists() or value.startswith(".") else value


PATH_KEYS = (("model",), ("tokenizer",), ("mixture",), ("eval", "data"))


def load_train_config(path: Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """The config file (optional) with ``overrides`` applied, validated; errors name the
    file and line, or ``--set``."""
    data: dict = {}
    root = None
    if path is not None:
        data, root = read_yaml(Path(path), kind="train config")
        base = Path(path).resolve().parent
        for keys in PATH_KEYS:
            node = data
            for key in keys[:-1]:
                node = node.get(key) if isinstance(node.get(key), dict) else {}
            if isinstance(node.get(keys[-1]), str):
                node[keys[-1]] = _resolve(base, node[keys[-1]])
    apply_overrides(data, overrides)
    try:
        config = TrainConfig.model_validate(data)
    except ValidationError as exc:
        where = str(path) if path is not None else "--set"
        if overrides:  # the line numbers would point at the file, not at the override
            raise invalid(exc, None, f"{where} with --set" if path else where) from None
        raise invalid(exc, root, where) from None
    check_passthrough(config, str(path) if path is not None else "--set")
    return config


def save_train_config(config: TrainConfig, folder: Path) -> None:
    """Write the resolved config (every default filled in) to ``folder/train_config.yaml``,
    local paths relative to the folder's parent, as ``../<path>`` from the folder, so the
    file stays valid when the run (or a lab run holding it) is renamed or moved."""
    data = config.model_dump(mode="json")
    folder = Path(folder)
    for keys in PATH_KEYS:
        node = data
        for key in keys[:-1]:
            node = node.get(key) or {}
        value = node.get(keys[-1])
        if isinstance(value, str) and Path(value).exists():
            node[keys[-1]] = os.path.relpath(Path(value).resolve(), folder.resolve())
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
