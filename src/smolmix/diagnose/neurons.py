"""Neuron allocation: which task each MLP neuron works for (activation x gradient importance).

A neuron is an input feature of a layer's MLP down projection (``mlp.down_proj`` in
Llama/Qwen/SmolLM2). Its importance for a task is ``|a * dL/da|`` summed over token positions,
where ``L`` is the task's summed target-token loss, divided by the task's number of target
tokens (so tasks with more batches do not weigh more). Caveat: a task the model has already
mastered has small gradients, hence small importance, so gradient attribution favours tasks
that are still being learned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from smolmix.core.errors import SmolmixError
from smolmix.diagnose.batches import (
    TaskBatches,
    batch_loss,
    check_tasks,
    eval_mode,
    model_device,
    target_tokens,
)
from smolmix.train.encoding import IGNORE_INDEX

SHARED, UNUSED = "shared", "unused"
DOWN_NAMES = ("down_proj", "fc2", "dense_4h_to_h")  # MLP output projections wherever they sit
MLP_DOWN_NAMES = ("c_proj", "fc_out", "w2")  # ambiguous names: only inside an MLP module
MLP_PARENTS = ("mlp", "ffn", "feed_forward", "feedforward")


def down_projections(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The MLP down projections of ``model``, in module order (outermost match only)."""
    found: list[tuple[str, torch.nn.Module]] = []
    for name, module in model.named_modules():
        parts = name.split(".")
        in_mlp = any(part.lower() in MLP_PARENTS for part in parts[:-1])
        if parts[-1] in DOWN_NAMES or (parts[-1] in MLP_DOWN_NAMES and in_mlp):
            if not any(name.startswith(f"{outer}.") for outer, _ in found):
                found.append((name, module))
    return found


@dataclass(frozen=True)
class Neurons:
    """Per-neuron task attribution.

    ``labels`` = ``tasks`` + ``["shared", "unused"]``; ``owner[l][j]`` indexes ``labels`` for
    neuron ``j`` of layer ``layers[l]``: the task whose importance is at least ``dominance``
    times every other task's, else ``shared``; ``unused`` when its largest importance is below
    ``unused`` times the layer's mean largest importance. ``importance[task][l]`` is the
    per-neuron importance vector (see the module docstring).
    """

    tasks: list[str]
    layers: list[str]
    importance: dict[str, list[torch.Tensor]]
    owner: list[torch.Tensor]
    dominance: float
    unused: float
    positions: str

    @property
    def labels(self) -> list[str]:
        return [*self.tasks, SHARED, UNUSED]

    @property
    def sizes(self) -> list[int]:
        return [len(o) for o in self.owner]

    def counts_per_layer(self) -> list[dict[str, int]]:
        """Per layer, label -> number of neurons (every label present, 0 included)."""
        n = len(self.labels)
        return [dict(zip(self.labels, torch.bincount(o, minlength=n).tolist()))
                for o in self.owner]

    def counts(self) -> dict[str, int]:
        """Label -> number of neurons over all layers; the values sum to ``sum(sizes)``."""
        total = dict.fromkeys(self.labels, 0)
        for layer in self.counts_per_layer():
            for label, count in layer.items():
                total[label] += count
        return total

    def importance_per_layer(self) -> dict[str, list[float]]:
        """Task -> per layer, its importance summed over the layer's neurons."""
        return {t: [float(v.sum()) for v in self.importance[t]] for t in self.tasks}

    def to_dict(self, per_neuron: bool = False) -> dict:
        """JSON-ready counts and importance summary; ``per_neuron`` adds every owner label."""
        out = {
            "tasks": self.tasks, "layers": self.layers, "sizes": self.sizes,
            "dominance": self.dominance, "unused": self.unused, "positions": self.positions,
            "counts": self.counts(), "counts_per_layer": self.counts_per_layer(),
            "importance_per_layer": self.importance_per_layer(),
            "importance_total": {t: sum(v) for t, v in self.importance_per_layer().items()},
        }
        if per_neuron:
            out["owner"] = [[self.labels[i] for i in o.tolist()] for o in self.owner]
        return out


def neuron_allocation(model: torch.nn.Module, batches: TaskBatches,
                      max_batches: int | None = None, dominance: float = 2.0,
                      unused: float = 0.01,
                      positions: Literal["all", "targets"] = "all",
                      objective: Literal["loss", "logit"] = "loss") -> Neurons:
    """Attribute every MLP neuron to a task, ``shared`` or ``unused`` (see :class:`Neurons`).

    ``objective="loss"`` attributes the summed target-token loss; its gradient vanishes on a
    task the model has mastered, so such a task looks as if it held no neurons.
    ``"logit"`` attributes the summed margin of the correct token's logit over the mean logit,
    whose gradient does not vanish when the task is learned.

    ``positions="all"`` sums importance over every token position (the prompt's activations
    feed the targets through attention); ``"targets"`` only over the positions that predict a
    target token. Eval mode, ``torch.autograd.grad``: no ``.grad`` is left on the model and its
    train/eval flags are restored.
    """
    if dominance < 1:
        raise SmolmixError(f"dominance must be at least 1, got {dominance}", "dominance")
    if objective not in ("loss", "logit"):
        raise SmolmixError(f"objective must be 'loss' or 'logit', got {objective!r}",
                           "objective")
    if positions not in ("all", "targets"):
        raise SmolmixError(f"positions must be 'all' or 'targets', got {positions!r}",
                           "positions")
    tasks = check_tasks(batches, max_batches)
    modules = down_projections(model)
    if not modules:
        raise SmolmixError("no MLP down projection found (looked for modules named "
                           f"{', '.join(DOWN_NAMES)}, or {', '.join(MLP_DOWN_NAMES)} inside an "
                           "MLP)", type(model).__name__)
    device = model_device(model)
    captured: list[list[torch.Tensor]] = [[] for _ in modules]
    handles = [m.register_forward_pre_hook(_capture(captured[i]))
               for i, (_, m) in enumerate(modules)]
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if isinstance(embed, torch.nn.Module):
        handles.append(embed.register_forward_hook(_require_grad))
    importance: dict[str, list[torch.Tensor]] = {}
    try:
        with eval_mode(model), torch.enable_grad():
            for task, task_batches in tasks.items():
                sums: list[torch.Tensor | None] = [None] * len(modules)
                tokens = 0
                for i, batch in enumerate(task_batches):
                    count = target_tokens(batch)
                    if count == 0:
                        continue
                    tokens += count
                    for c in captured:
                        c.clear()
                    where = f"batch {i} of task {task!r}"
                    loss = (batch_loss(model, batch, device, where) * count
                            if objective == "loss" else _target_margin(model, batch, device))
                    _accumulate(loss, captured, sums, _position_mask(batch, positions), where)
                importance[task] = [s.cpu() / tokens if s is not None else None for s in sums]
    finally:
        for handle in handles:
            handle.remove()
        for c in captured:
            c.clear()
    layers = [name for name, _ in modules]
    for task, vectors in importance.items():
        idle = [name for name, v in zip(layers, vectors) if v is None]
        if idle:
            raise SmolmixError(f"task {task!r} never ran the down projection(s) "
                               f"{', '.join(idle)}", type(model).__name__)
    owner = [_assign(torch.stack([importance[t][layer] for t in tasks]), dominance, unused)
             for layer in range(len(layers))]
    return Neurons(tasks=list(tasks), layers=layers, importance=importance, owner=owner,
                   dominance=dominance, unused=unused, positions=positions)


def _target_margin(model: torch.nn.Module, batch, device: torch.device) -> torch.Tensor:
    """Sum over target tokens of (correct-token logit − mean logit)."""
    inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits[:, :-1].float()
    target = batch["labels"][:, 1:].to(device)
    mask = target != IGNORE_INDEX
    correct = logits.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return ((correct - logits.mean(-1)) * mask).sum()


def _capture(store: list[torch.Tensor]) -> Callable:
    def hook(module: torch.nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], torch.Tensor):
            store.append(args[0])
    return hook


def _require_grad(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
    # With frozen weights nothing downstream would need a gradient; the activations must.
    if isinstance(output, torch.Tensor) and not output.requires_grad:
        output.requires_grad_(True)


def _position_mask(batch, positions: str) -> torch.Tensor | None:
    """For ``"targets"``: 1 at positions whose next label is a target (what the loss reads)."""
    if positions == "all":
        return None
    labels = batch["labels"]
    mask = torch.zeros(labels.shape, dtype=torch.float32)
    mask[..., :-1] = (labels[..., 1:] != IGNORE_INDEX).float()
    return mask


def _accumulate(loss: torch.Tensor, captured: list[list[torch.Tensor]],
                sums: list[torch.Tensor | None], mask: torch.Tensor | None, where: str) -> None:
    flat = [(layer, a) for layer, acts in enumerate(captured) for a in acts]
    if not flat:
        raise SmolmixError("the forward pass never reached an MLP down projection", where)
    if not all(a.requires_grad for _, a in flat):
        raise SmolmixError("MLP activations do not require grad; cannot attribute", where)
    grads = torch.autograd.grad(loss, [a for _, a in flat], allow_unused=True)
    for (layer, a), g in zip(flat, grads):
        g = torch.zeros_like(a) if g is None else g  # the loss does not reach this activation
        contrib = (a.detach().float() * g.float()).abs().reshape(-1, a.shape[-1])
        if mask is not None:
            weights = mask.to(contrib.device).reshape(-1)
            if weights.numel() != contrib.shape[0]:
                raise SmolmixError("activations are not laid out per token; use positions='all'",
                                   where)
            contrib = contrib * weights[:, None]
        total = contrib.sum(dim=0).double()
        sums[layer] = total if sums[layer] is None else sums[layer] + total


def _assign(matrix: torch.Tensor, dominance: float, unused: float) -> torch.Tensor:
    """Owner index per neuron of one layer from its (tasks x neurons) importance matrix."""
    n_tasks = matrix.shape[0]
    top = torch.topk(matrix, k=min(2, n_tasks), dim=0)
    best, winner = top.values[0], top.indices[0]
    second = top.values[1] if n_tasks > 1 else torch.zeros_like(best)
    reference = best.mean()
    is_unused = best <= unused * reference if reference > 0 else torch.ones_like(best, dtype=bool)
    owner = torch.where(best >= dominance * second, winner, torch.full_like(winner, n_tasks))
    return torch.where(is_unused, torch.full_like(winner, n_tasks + 1), owner)
