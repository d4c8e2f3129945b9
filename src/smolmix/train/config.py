"""The ``smolmix train`` config: a YAML file, ``--set key=value`` overrides, validated.

Paths in the file are relative to the file's folder (paths given with ``--set`` to the
working directory). The resolved config is saved in the run as ``train_config.yaml``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from smolmix.core.config import apply_overrides, invalid, read_yaml
from smolmix.core.errors import SmolmixError

CONFIG_FILE = "train_config.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraSpec(_Model):
    """LoRA adapters (PEFT) instead of full fine-tuning."""

    r: int = Field(16, gt=0)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class GenerationSpec(_Model):
    """Generation accuracy during training (greedy decoding, graded per task)."""

    max_new_tokens: int = Field(64, gt=0)
    answer_format: str = "exact"
    examples: int | None = Field(None, gt=0, description="at most this many per task")
    batch_size: int = Field(32, gt=0)


class EvalSpec(_Model):
    """Per-task held-out evaluation during training."""

    data: str | None = Field(None, description="held-out records: JSONL or a mixture folder")
    holdout_per_task: int = Field(0, ge=0, description="or carve this many per task out of "
                                  "the mixture (removed from training)")
    every: int = Field(100, gt=0)
    batch_size: int = Field(64, gt=0)
    generate: GenerationSpec | None = None


class TrainConfig(_Model):
    """Everything one ``smolmix train`` run does (the lab's presets are overrides of it).

    Keys it does not define pass through to TRL's ``SFTConfig`` (``bf16``, ``optim``,
    ``neftune_noise_alpha``, ``push_to_hub``, ...): see :func:`check_passthrough`."""

    model_config = ConfigDict(extra="allow", frozen=True, title="smolmix train config")

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
    max_length: int = Field(1024, gt=0)
    steps: int | None = Field(None, gt=0, description="default: epochs over the mixture")
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(8, gt=0)
    grad_accum: int = Field(1, gt=0)
    learning_rate: float = Field(2e-5, gt=0)
    lr_scheduler: str = "linear"
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    seed: int = 0
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    gradient_checkpointing: bool = Field(False, description="recompute activations in the "
                                         "backward pass: less memory, about 30% more time")
    order: Literal["mixture", "shuffle"] = Field(
        "mixture", description="mixture: train in the mixture's order (keeps its stages)")
    save_checkpoints: bool = Field(True, description="resumable checkpoints (--resume, "
                                   "diagnose over checkpoints); false: final model only")
    save_every: int | None = Field(None, gt=0, description="checkpoint every N steps "
                                   "(default: at each evaluation)")
    save_total_limit: int | None = Field(2, gt=0, description="keep the newest N checkpoints "
                                         "(null: all)")
    logging_steps: int = Field(10, gt=0, description="training loss and learning rate every "
                               "N steps into train_log.jsonl")
    report_to: list[str] | str = Field("none", description="transformers integrations, e.g. "
                                       "tensorboard")
    eval: EvalSpec = EvalSpec()

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
