"""Shared plumbing for the diagnose measures: batch checks, token counts, device, eval mode."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch

from smolmix.core.errors import SmolmixError
from smolmix.train.encoding import IGNORE_INDEX

Batch = Mapping[str, torch.Tensor]
TaskBatches = Mapping[str, Sequence[Batch]]


def target_tokens(batch: Batch) -> int:
    """Tokens a causal LM's loss averages over: ``labels[:, 1:] != -100`` (HF shifts labels)."""
    return int((batch["labels"][..., 1:] != IGNORE_INDEX).sum().item())


def check_batches(batches: Sequence[Batch], where: str, max_batches: int | None = None,
                  ) -> list[Batch]:
    """The first ``max_batches`` batches; none, no ``labels`` or no target token is a user error."""
    if max_batches is not None and max_batches < 1:
        raise SmolmixError(f"max_batches must be at least 1, got {max_batches}", "max_batches")
    chosen = list(batches)[:max_batches]
    if not chosen:
        raise SmolmixError(f"{where} has no batches", where)
    for i, batch in enumerate(chosen):
        if "labels" not in batch:
            raise SmolmixError(f"batch {i} of {where} has no 'labels'", where)
    if sum(target_tokens(b) for b in chosen) == 0:
        raise SmolmixError(f"{where} has no target tokens (every label is -100)", where)
    return chosen


def check_tasks(batches: TaskBatches, max_batches: int | None = None) -> dict[str, list[Batch]]:
    """Per task (sorted by name), its checked batches; see :func:`check_batches`."""
    if not batches:
        raise SmolmixError("no tasks given", "batches")
    return {task: check_batches(batches[task], f"task {task!r}", max_batches)
            for task in sorted(batches)}


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def to_device(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def batch_loss(model: torch.nn.Module, batch: Batch, device: torch.device, where: str,
               ) -> torch.Tensor:
    """``model(**batch).loss`` (the mean over the batch's target tokens); non-finite is an error."""
    loss = model(**to_device(batch, device)).loss
    if loss is None:
        raise SmolmixError("the model returned no loss (is it a causal LM given labels?)", where)
    if not torch.isfinite(loss.detach()).item():
        raise SmolmixError(f"non-finite loss ({loss.item()})", where)
    return loss


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) inside; every submodule's own train/eval flag restored after."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def detached_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``model`` that computes with its own weights.

    A trainer may replace a module's ``forward`` on the instance with a closure over the
    original module (TRL's fused-loss forward, accelerate's autocast wrapper); a deep copy keeps
    that closure, so the copy would run the original's weights. Such instance-level
    ``forward`` attributes are dropped from the copy, which then runs its class's forward (in
    the parameters' own precision, without the trainer's autocast)."""
    work = copy.deepcopy(model)
    for module in work.modules():
        if "forward" in vars(module):
            del module.forward
    return work
