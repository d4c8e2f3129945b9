"""Retention during training: how fast the mixture erodes a task step's gain, with a half-life.

Probed from the live model and the live optimiser (e.g. by a Trainer callback at 25/50/75% of
training), never changing either. The model is deep-copied and the optimiser rebuilt over the
copy with its state (Adam moments, momentum buffers) and the current learning rate of each group;
the schedule is frozen at that rate for the probe's steps. Everything runs in eval mode (no
dropout). From that copy, two branches:

* A ("with"): ``k`` optimiser steps on the task's training batches, then ``n`` mixture steps;
* B ("without", the control, shared by all probed tasks): the same ``n`` mixture steps only.

The mixture is the run's mixture without the probed task(s). With held-out losses ``L_A(n)``,
``L_B(n)`` and the gain ``d = L_B(0) - L_A(0)``:

* ``retention(n) = (L_B(n) - L_A(n)) / d``: the share of the task steps' gain over the same run
  without them that is left after ``n`` mixture steps (counterfactual; robust to the mixture
  moving the task's loss either way);
* ``retention_raw(n) = (L0 - L_A(n)) / d`` with ``L0 = L_B(0)``, the loss before the task steps.

Both are 1 at ``n = 0``; undefined (``None``, with a reason) when ``d < min_gain``. The half-life
is the smallest ``n`` with ``retention(n) <= 0.5``, see :func:`half_life`; when retention stays
above 0.5 up to ``N`` it is ``None`` and ``censored_at = N`` (report it as ">N").
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch

from smolmix.core.errors import SmolmixError, first_line
from smolmix.diagnose.batches import Batch, check_batches, detached_copy
from smolmix.diagnose.retention import held_out_loss, train_steps

HALF = 0.5


@dataclass(frozen=True)
class RetentionCurve:
    """One task's held-out losses with (A) and without (B) its ``k`` task steps at each number
    of mixture steps in ``points``, and the retention they give; see the module docstring."""

    task: str
    k: int
    points: list[int]
    loss_with: list[float]
    loss_without: list[float]
    gain: float
    retention: list[float | None]
    retention_raw: list[float | None]
    half_life: float | None
    censored_at: int | None
    reason: str | None

    @classmethod
    def from_losses(cls, task: str, k: int, points: Sequence[int], loss_with: Sequence[float],
                    loss_without: Sequence[float], min_gain: float = 1e-3) -> RetentionCurve:
        """The curve of the two branches' losses (``points[0]`` must be 0)."""
        points, loss_with, loss_without = list(points), list(loss_with), list(loss_without)
        gain = loss_without[0] - loss_with[0]
        if not math.isfinite(gain) or gain < min_gain:
            none: list[float | None] = [None] * len(points)
            reason = (f"the {k} task steps did not lower the held-out loss enough "
                      f"(gain {gain:.3g} < {min_gain:g}); raise k")
            return cls(task, k, points, loss_with, loss_without, gain, none, list(none),
                       None, None, reason)
        kept = [(b - a) / gain for a, b in zip(loss_with, loss_without)]
        raw = [(loss_without[0] - a) / gain for a in loss_with]
        life = half_life(points, kept)
        return cls(task, k, points, loss_with, loss_without, gain, kept, raw, life,
                   points[-1] if life is None else None, None)

    def to_dict(self) -> dict:
        return asdict(self)


def half_life(points: Sequence[int], retention: Sequence[float | None]) -> float | None:
    """The smallest ``n`` at which ``retention(n) <= 0.5``, interpolated between the two points
    that bracket the crossing: linearly in ``log2(n)``, or linearly in ``n`` when the lower point
    is ``n = 0``. ``None`` when retention never falls to 0.5 (or is undefined before it does).
    """
    previous: tuple[int, float] | None = None
    for n, value in zip(points, retention):
        if value is None:
            return None
        if value <= HALF:
            if previous is None:
                return float(n)
            lo, above = previous
            share = (above - HALF) / (above - value)
            return lo + share * (n - lo) if lo == 0 else lo * (n / lo) ** share
        previous = (n, value)
    return None


def default_points(n_max: int) -> list[int]:
    """0, 1, 2, 4, 8, ... up to ``n_max``, and ``n_max`` itself."""
    points, n = [0], 1
    while n < n_max:
        points.append(n)
        n *= 2
    return [*points, n_max]


def copy_optimizer(optimizer: torch.optim.Optimizer, source_model: torch.nn.Module,
                   target_model: torch.nn.Module) -> torch.optim.Optimizer:
    """A new optimiser of ``optimizer``'s class over ``target_model`` (a copy of
    ``source_model``), with the same groups, hyperparameters (current ``lr`` included) and a deep
    copy of the state; ``optimizer`` is not changed. Parameters are matched by name through
    ``named_parameters()`` (tied ones once). An optimiser parameter missing from the model, a
    trainable model parameter missing from the optimiser, or a class that cannot be rebuilt from
    its param groups and state dict is a user error. An accelerate wrapper is unwrapped.
    """
    inner = getattr(optimizer, "optimizer", None)
    if isinstance(inner, torch.optim.Optimizer):
        optimizer = inner
    mapping = _parameter_map(source_model, target_model)
    groups = [_copy_group(group, i, mapping) for i, group in enumerate(optimizer.param_groups)]
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = [name for name, p in source_model.named_parameters()
               if p.requires_grad and id(p) not in held]
    if missing:
        raise SmolmixError(f"the model's trainable parameters {', '.join(missing[:3])}"
                           f"{' ...' if len(missing) > 3 else ''} are not in the optimizer",
                           "optimizer")
    name = type(optimizer).__name__
    try:
        copied = type(optimizer)(groups)
        copied.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    except (TypeError, ValueError, KeyError) as exc:
        raise SmolmixError(f"cannot copy the {name} optimizer from its param groups and state "
                           f"dict: {first_line(exc, 200)}", "optimizer") from exc
    copied.defaults = copy.deepcopy(optimizer.defaults)
    return copied


def _parameter_map(source: torch.nn.Module, target: torch.nn.Module,
                   ) -> dict[int, torch.nn.Parameter]:
    """``id`` of each of ``source``'s parameters -> the same-named parameter of ``target``."""
    targets = dict(target.named_parameters())
    mapping = {}
    for name, param in source.named_parameters():
        twin = targets.get(name)
        if twin is None or twin.shape != param.shape:
            raise SmolmixError(f"the copy has no parameter {name} of shape {tuple(param.shape)}",
                               "target_model")
        mapping[id(param)] = twin
    return mapping


def _copy_group(group: Mapping, index: int, mapping: Mapping[int, torch.nn.Parameter]) -> dict:
    """``group`` with its parameters swapped for the copy's and its hyperparameters copied."""
    params = []
    for param in group["params"]:
        if id(param) not in mapping:
            raise SmolmixError(f"param group {index} of the optimizer holds a parameter of shape "
                               f"{tuple(param.shape)} that is not in the model", "optimizer")
        params.append(mapping[id(param)])
    settings = copy.deepcopy({key: value for key, value in group.items() if key != "params"})
    return {**settings, "params": params}


def retention_curves(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     task_batches: Mapping[str, Sequence[Batch]],
                     mixture_batches: Sequence[Batch], held_out: Mapping[str, Sequence[Batch]],
                     k: int = 1, n_max: int = 64, points: Sequence[int] | None = None,
                     min_gain: float = 1e-3) -> dict[str, RetentionCurve]:
    """Per task (sorted by name), its retention curve over ``points`` mixture steps (default
    0, 1, 2, 4, ... and ``n_max``; 0 and ``n_max`` always added); see the module docstring.

    Task step ``j`` uses ``task_batches[task][j mod len]``, mixture step ``i`` uses
    ``mixture_batches[i mod len]`` (batches without target tokens skipped). ``held_out`` holds
    each task's held-out batches. The control branch runs once for all tasks, the task branch
    once per task; ``model`` and ``optimizer`` are left exactly as they were.
    """
    if k < 1 or n_max < 1:
        raise SmolmixError(f"need k >= 1 and n_max >= 1, got k={k}, n_max={n_max}",
                           "retention_curves")
    points = _check_points(points, n_max)
    if not task_batches:
        raise SmolmixError("no tasks given", "task_batches")
    tasks = sorted(task_batches)
    trains = {t: check_batches(task_batches[t], f"task {t!r}'s training batches") for t in tasks}
    missing = [t for t in tasks if t not in held_out]
    if missing:
        raise SmolmixError(f"no held-out batches for task(s) {', '.join(missing)}", "held_out")
    held = {t: check_batches(held_out[t], f"task {t!r}'s held-out batches") for t in tasks}
    mixture = check_batches(mixture_batches, "the mixture batches")
    without = _mixture_branch(*_fork(model, optimizer), mixture, held, points)
    curves = {}
    for task in tasks:
        work, opt = _fork(model, optimizer)
        train_steps(work, opt, trains[task], k, f"task {task!r}")
        loss_with = _mixture_branch(work, opt, mixture, {task: held[task]}, points)[task]
        curves[task] = RetentionCurve.from_losses(task, k, points, loss_with, without[task],
                                                  min_gain)
    return curves


def _check_points(points: Sequence[int] | None, n_max: int) -> list[int]:
    """The sorted, distinct probe points with 0 and ``n_max``; one outside [0, n_max] is an
    error."""
    if points is None:
        return default_points(n_max)
    bad = [n for n in points if not 0 <= n <= n_max]
    if bad:
        raise SmolmixError(f"points must lie in [0, n_max={n_max}], got {bad}", "points")
    return sorted({0, n_max, *(int(n) for n in points)})


def _fork(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
          ) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A deep copy of the model (no gradients) and the optimiser rebuilt over it."""
    work = detached_copy(model)
    work.zero_grad(set_to_none=True)
    return work, copy_optimizer(optimizer, model, work)


def _mixture_branch(work: torch.nn.Module, opt: torch.optim.Optimizer, mixture: Sequence[Batch],
                    held: Mapping[str, Sequence[Batch]], points: Sequence[int],
                    ) -> dict[str, list[float]]:
    """Mixture steps up to each point in turn; each task's held-out loss at every point."""
    losses: dict[str, list[float]] = {task: [] for task in held}
    done = 0
    for n in points:
        train_steps(work, opt, mixture, n - done, "the mixture", start=done)
        done = n
        for task, batches in held.items():
            losses[task].append(held_out_loss(work, batches))
    return losses
