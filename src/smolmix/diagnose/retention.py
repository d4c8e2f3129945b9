"""Retention: how much of a task's progress survives the training mixture that follows it.

On a copy of the model: held-out loss ``L0``; ``k`` optimiser steps on the task -> ``L_k``;
``m`` steps on the mixture -> ``L_{k+m}``. With the gain ``d = L0 - L_k``,
``retention = (L0 - L_{k+m}) / d``: 1 keeps all of the gain, 0 loses it, below 0 ends worse
than it started, above 1 the mixture added to it. Undefined (``None``, with a reason) when the
task steps did not lower the held-out loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import torch

from smolmix.core.errors import SmolmixError
from smolmix.diagnose.batches import (
    Batch,
    batch_loss,
    check_batches,
    detached_copy,
    eval_mode,
    model_device,
    target_tokens,
)

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class Retention:
    """Held-out losses before, after the task steps and after the mixture steps; see module."""

    loss_start: float
    loss_after_task: float
    loss_after_mixture: float
    gain: float
    retention: float | None
    reason: str | None
    k: int
    m: int
    lr: float
    optimizer: str

    def to_dict(self) -> dict:
        return asdict(self)


def held_out_loss(model: torch.nn.Module, batches: Sequence[Batch]) -> float:
    """Mean target-token loss over ``batches`` (each batch weighted by its target tokens)."""
    device = model_device(model)
    total, tokens = 0.0, 0
    with eval_mode(model), torch.no_grad():
        for i, batch in enumerate(batches):
            count = target_tokens(batch)
            if count:
                total += batch_loss(model, batch, device, f"held-out batch {i}").item() * count
                tokens += count
    return total / tokens


def retention(model: torch.nn.Module, task_batches: Sequence[Batch],
              mixture_batches: Sequence[Batch], k: int, m: int, lr: float,
              optimizer: Literal["sgd", "adam"] = "sgd", *, held_out: Sequence[Batch],
              min_gain: float = 1e-4) -> Retention:
    """Retention of the task's held-out gain after ``k`` task steps then ``m`` mixture steps.

    Runs on a deep copy (``model`` is not changed), in eval mode (no dropout), with one fresh
    optimiser (plain SGD, or Adam with torch defaults) of rate ``lr`` kept across both phases.
    Step ``i`` of a phase uses batch ``i mod len(batches)`` (batches without target tokens
    skipped). ``held_out`` are the task's held-out batches, kept apart from ``task_batches``.
    A gain ``d < min_gain`` (nats) leaves ``retention`` undefined (``None``, with the reason).
    """
    if optimizer not in OPTIMIZERS:
        raise SmolmixError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}",
                           "optimizer")
    if k < 1 or m < 0:
        raise SmolmixError(f"need k >= 1 and m >= 0, got k={k}, m={m}", "retention")
    if not lr > 0:
        raise SmolmixError(f"the learning rate must be positive, got {lr}", "lr")
    task_batches = check_batches(task_batches, "the task's training batches")
    mixture_batches = (check_batches(mixture_batches, "the mixture batches") if m else [])
    held_out = check_batches(held_out, "the task's held-out batches")
    work = detached_copy(model)
    params = [p for p in work.parameters() if p.requires_grad]
    if not params:
        raise SmolmixError("the model has no trainable parameters", "model")
    opt = (torch.optim.SGD(params, lr=lr) if optimizer == "sgd"
           else torch.optim.Adam(params, lr=lr))
    opt.zero_grad(set_to_none=True)
    start = held_out_loss(work, held_out)
    train_steps(work, opt, task_batches, k, "the task")
    after_task = held_out_loss(work, held_out)
    train_steps(work, opt, mixture_batches, m, "the mixture")
    after_mixture = held_out_loss(work, held_out)
    gain = start - after_task
    value: float | None = None
    reason: str | None = None
    if not math.isfinite(gain) or gain < min_gain:
        reason = (f"the {k} task steps did not lower the held-out loss enough "
                  f"(gain {gain:.3g} < {min_gain:g}); raise k or lr")
    else:
        value = (start - after_mixture) / gain
    return Retention(loss_start=start, loss_after_task=after_task,
                     loss_after_mixture=after_mixture, gain=gain, retention=value, reason=reason,
                     k=k, m=m, lr=lr, optimizer=optimizer)


def train_steps(model: torch.nn.Module, opt: torch.optim.Optimizer, batches: Sequence[Batch],
                steps: int, what: str, start: int = 0) -> None:
    """``steps`` optimiser steps in eval mode, cycling through the batches that have target
    tokens: step ``i`` (counted from ``start``) uses usable batch ``i mod len``."""
    usable = [b for b in batches if target_tokens(b)]
    device = model_device(model)
    with eval_mode(model), torch.enable_grad():
        for i in range(start, start + steps):
            batch_loss(model, usable[i % len(usable)], device, f"step {i} on {what}").backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
