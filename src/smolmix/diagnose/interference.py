"""Gradient interference between tasks: does one mixture step undo a task's progress?

With per-task mean-loss gradients ``g_s`` and mixture shares ``p_s`` (summing to 1), one SGD step
on the mixture moves the parameters by ``-lr * sum_s p_s g_s``; to first order task ``t``'s loss
changes by ``-lr * total_t`` with

    total_t = self_t + others_t,   self_t = p_t |g_t|^2,   others_t = sum_{s != t} p_s <g_s, g_t>.

``total_t > 0``: the step lowers t's loss. ``others_t < 0``: the other tasks' gradients push t's
loss up (they overwrite t); ``total_t < 0``: the mixture step as a whole undoes t's progress.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from smolmix.core.errors import SmolmixError
from smolmix.core.rundir import checkpoint_step
from smolmix.diagnose.batches import (
    TaskBatches,
    batch_loss,
    check_tasks,
    eval_mode,
    model_device,
    target_tokens,
)


def task_gradients(model: torch.nn.Module, batches: TaskBatches, max_batches: int | None = None,
                   params: Iterable[torch.nn.Parameter] | None = None) -> dict[str, torch.Tensor]:
    """Per task, the gradient of its mean target-token loss, as one flat float32 vector.

    Each batch's ``model(**batch).loss`` (a mean over its target tokens) is weighted by its
    share of the task's target tokens, so the result is the gradient of the mean token loss over
    all of the task's tokens. The vector concatenates the flattened gradients of ``params``
    (default: the model's trainable parameters, shared ones once) in that order; a parameter the
    loss does not reach contributes zeros. Measured in eval mode (no dropout); the model's
    ``.grad`` fields (used as views into the vector while measuring) and train/eval flags are
    restored. Memory: one float32 vector per task (4 bytes a parameter) plus a backward pass.
    """
    tasks = check_tasks(batches, max_batches)
    chosen = list({id(p): p for p in (model.parameters() if params is None else params)
                   if params is not None or p.requires_grad}.values())
    if not chosen:
        raise SmolmixError("no trainable parameters to take gradients of", "params")
    if not all(p.requires_grad for p in chosen):
        raise SmolmixError("every parameter in params must require grad", "params")
    device = model_device(model)
    size = sum(p.numel() for p in chosen)
    # Fast path: each parameter's .grad is a view into the task's vector, so backward adds into
    # it in place (no per-batch gradient buffers); needs float32 parameters on one device.
    in_place = all(p.dtype == torch.float32 and p.device == chosen[0].device for p in chosen)
    saved = [p.grad for p in chosen]
    grads: dict[str, torch.Tensor] = {}
    try:
        with eval_mode(model), torch.enable_grad():
            for task, task_batches in tasks.items():
                vector = torch.zeros(size, dtype=torch.float32, device=chosen[0].device)
                if in_place:
                    for p, view in zip(chosen, _views(vector, chosen)):
                        p.grad = view
                counts = [target_tokens(b) for b in task_batches]
                for i, (batch, count) in enumerate(zip(task_batches, counts)):
                    if count == 0:
                        continue
                    loss = batch_loss(model, batch, device, f"batch {i} of task {task!r}")
                    _add_gradient(loss * (count / sum(counts)), chosen, vector, in_place)
                if in_place and any(p.grad is None or p.grad.data_ptr() != v.data_ptr()
                                    for p, v in zip(chosen, _views(vector, chosen))):
                    raise RuntimeError("a parameter's .grad was replaced during backward")
                grads[task] = vector
    finally:
        for p, grad in zip(chosen, saved):
            p.grad = grad
    return grads


def _views(vector: torch.Tensor, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    """``vector`` cut into one view per parameter, shaped like it."""
    return [chunk.view_as(p) for chunk, p in
            zip(vector.split([p.numel() for p in params]), params)]


def _add_gradient(loss: torch.Tensor, params: list[torch.nn.Parameter], vector: torch.Tensor,
                  in_place: bool) -> None:
    """``vector += d loss / d params`` (flattened in order)."""
    if in_place:
        torch.autograd.backward(loss, inputs=params)
        return
    parts = torch.autograd.grad(loss, params, allow_unused=True)
    for view, g in zip(_views(vector, params), parts):
        if g is not None:
            view.add_(g.to(view.device, torch.float32))


@dataclass(frozen=True)
class Interference:
    """First-order interference between tasks under one mixture (see the module docstring).

    ``tasks`` is sorted; ``cosine`` and ``gram`` (``<g_s, g_t>``) are indexed in that order.
    ``shares`` are the given shares normalised to sum 1 over ``tasks``. Per task t:
    ``self_part = p_t |g_t|^2``, ``others_part = sum_{s != t} p_s <g_s, g_t>``,
    ``total = self_part + others_part`` (``-lr * total`` = first-order change of t's loss from
    one mixture SGD step of rate ``lr``). Scale-free versions, comparable across model sizes:
    ``others_normalised = others_part / |g_t|^2`` -- the share the other tasks add to (negative:
    take from) t's own, so ``total / |g_t|^2 = p_t + others_normalised`` and the mixture step
    raises t's loss when ``others_normalised < -p_t``; ``others_cosine`` -- the cosine between
    ``g_t`` and ``sum_{s != t} p_s g_s`` (negative: the others' descent climbs t's loss).
    Undefined values (a zero gradient) are NaN, and ``None`` in :meth:`to_dict`.
    """

    tasks: list[str]
    shares: dict[str, float]
    norms: dict[str, float]
    gram: list[list[float]]
    cosine: list[list[float]]
    self_part: dict[str, float]
    others_part: dict[str, float]
    total: dict[str, float]
    others_normalised: dict[str, float]
    others_cosine: dict[str, float]

    def reweighted(self, shares: Mapping[str, float]) -> Interference:
        """The same gradients under other shares (e.g. the target task's share raised)."""
        return _split(self.tasks, self.gram, shares)

    def to_dict(self) -> dict:
        """JSON-ready (NaN becomes ``None``)."""
        return {f.name: _json_safe(getattr(self, f.name)) for f in fields(self)}


def interference(grads: Mapping[str, torch.Tensor], shares: Mapping[str, float]) -> Interference:
    """The interference split of per-task gradients (from :func:`task_gradients`) under
    ``shares`` (task -> mixture share of target tokens; normalised over the tasks in ``grads``,
    extra tasks ignored). Every task in ``grads`` needs a share; a share may be 0.
    """
    if not grads:
        raise SmolmixError("no task gradients given", "grads")
    tasks = sorted(grads)
    sizes = {grads[t].numel() for t in tasks}
    if len(sizes) > 1:
        raise SmolmixError(f"task gradients differ in length: {sorted(sizes)}", "grads")
    gram = [[0.0] * len(tasks) for _ in tasks]
    for i, a in enumerate(tasks):
        for j in range(i, len(tasks)):
            dot = float(torch.dot(grads[a].reshape(-1).float(),
                                  grads[tasks[j]].reshape(-1).float()))
            gram[i][j] = gram[j][i] = dot
    return _split(tasks, gram, shares)


def _split(tasks: list[str], gram: list[list[float]], shares: Mapping[str, float],
           ) -> Interference:
    missing = [t for t in tasks if t not in shares]
    if missing:
        raise SmolmixError(f"no share for task(s) {', '.join(map(repr, missing))}", "shares")
    raw = [float(shares[t]) for t in tasks]
    if any(not math.isfinite(s) or s < 0 for s in raw) or sum(raw) <= 0:
        raise SmolmixError("shares must be finite, non-negative and not all zero", "shares")
    p = [s / sum(raw) for s in raw]
    n = len(tasks)
    norms = [math.sqrt(max(gram[i][i], 0.0)) for i in range(n)]
    cosine = [[_ratio(gram[i][j], norms[i] * norms[j], clamp=True) for j in range(n)]
              for i in range(n)]
    self_part, others_part, others_norm, others_cos = [], [], [], []
    for t in range(n):
        rest = [p[s] if s != t else 0.0 for s in range(n)]
        others = sum(rest[s] * gram[s][t] for s in range(n))
        combined_sq = sum(rest[s] * rest[r] * gram[s][r] for s in range(n) for r in range(n))
        self_part.append(p[t] * gram[t][t])
        others_part.append(others)
        others_norm.append(_ratio(others, gram[t][t]))
        others_cos.append(_ratio(others, norms[t] * math.sqrt(max(combined_sq, 0.0)), clamp=True))
    by_task = lambda values: dict(zip(tasks, values))  # noqa: E731
    return Interference(
        tasks=list(tasks), shares=by_task(p), norms=by_task(norms),
        gram=[list(row) for row in gram], cosine=cosine, self_part=by_task(self_part),
        others_part=by_task(others_part),
        total=by_task([a + b for a, b in zip(self_part, others_part)]),
        others_normalised=by_task(others_norm), others_cosine=by_task(others_cos),
    )


def _ratio(num: float, den: float, clamp: bool = False) -> float:
    if den <= 0 or not math.isfinite(den):
        return math.nan
    value = num / den
    return max(-1.0, min(1.0, value)) if clamp else value


def _json_safe(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


SERIES = ("norms", "self_part", "others_part", "total", "others_normalised", "others_cosine")


@dataclass(frozen=True)
class InterferenceCurve:
    """:class:`Interference` at several training steps (ascending)."""

    steps: list[int]
    points: list[Interference]

    def series(self, name: str) -> dict[str, list[float]]:
        """Task -> values over ``steps`` of one per-task field (one of ``SERIES``)."""
        if name not in SERIES:
            raise SmolmixError(f"unknown series {name!r}; known: {', '.join(SERIES)}", "series")
        tasks = self.points[0].tasks if self.points else []
        return {t: [getattr(p, name)[t] for p in self.points] for t in tasks}

    def to_dict(self) -> dict:
        """JSON-ready: ``steps``, ``tasks``, ``series`` (name -> task -> values), ``points``."""
        return {
            "steps": list(self.steps),
            "tasks": self.points[0].tasks if self.points else [],
            "series": _json_safe({name: self.series(name) for name in SERIES}),
            "points": [p.to_dict() for p in self.points],
        }


def interference_over_checkpoints(
    checkpoints: Sequence[str | Path], batches: TaskBatches, shares: Mapping[str, float],
    max_batches: int | None = None, steps: Sequence[int] | None = None,
    device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
    quiet: bool = False,
) -> InterferenceCurve:
    """:func:`interference` at each checkpoint folder (loaded with ``AutoModelForCausalLM`` in
    ``dtype``, one at a time), ordered by step. ``steps`` defaults to :func:`checkpoint_step` of
    each; ``device`` to CUDA when available, else CPU.
    """
    paths = [Path(c) for c in checkpoints]
    if not paths:
        raise SmolmixError("no checkpoints given", "checkpoints")
    for path in paths:
        if not (path / "config.json").is_file():
            raise SmolmixError("not a model checkpoint: no config.json", str(path))
    if steps is None:
        steps = [checkpoint_step(p) for p in paths]
    elif len(steps) != len(paths):
        raise SmolmixError(f"{len(steps)} steps for {len(paths)} checkpoints", "steps")
    check_tasks(batches, max_batches)  # fail before loading anything
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    order = sorted(range(len(paths)), key=lambda i: steps[i])
    points = []
    for n, i in enumerate(order, 1):
        if not quiet:
            print(f"interference {n}/{len(paths)}: step {steps[i]} ({paths[i]})",
                  file=sys.stderr, flush=True)
        model = AutoModelForCausalLM.from_pretrained(paths[i], use_safetensors=True,
                                                     dtype=dtype).to(device)
        grads = task_gradients(model, batches, max_batches)
        del model
        points.append(interference(grads, shares))
        del grads
    return InterferenceCurve(steps=[int(steps[i]) for i in order], points=points)
