"""Neuron allocation: which task each MLP neuron works for (activation x gradient importance).

A neuron is an input feature of a layer's MLP down projection (``mlp.down_proj`` in
Llama/Qwen/SmolLM2). Its importance for a task is ``|a * dL/da|`` summed over token positions,
where ``L`` is the task's summed target-token loss, divided by the task's number of target
tokens (so tasks with more batches do not weigh more).

An attention head is a ``head_dim`` slice of the input of a layer's attention output projection
(``self_attn.o_proj``). Its importance for a task is ``|sum_{d in head} a_d * dL/da_d|`` summed
over token positions, divided the same way: per position, the first-order change of ``L`` when
the head's output there is zeroed. Neurons and heads come from the same backward pass.

Hard ownership (:meth:`Neurons.counts`) is brittle and a count is not comparable across widths,
so :meth:`Neurons.shares` also gives, separately for neurons and heads, with ``I_t(j)`` task
``t``'s importance of unit ``j`` (all layers pooled, ``N`` units):

- ``soft_share[t] = mean_j I_t(j) / sum_s I_s(j)`` over the units some task uses (importance
  not 0 for every task). The tasks' soft shares sum to 1; ``N * soft_share`` is a soft number of
  units owned.
- ``effective_fraction[t] = exp(H(q_t)) / N`` with ``q_t(j) = I_t(j) / sum_j I_t(j)``: how
  spread the task's use is, as a fraction of width (1: every unit equally; ``1/N``: one unit).

Caveat: a task the model has already mastered has small gradients, hence small importance, so
gradient attribution favours tasks that are still being learned (``objective="logit"`` eases
this).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
ATTN_OUT_NAMES = ("o_proj", "out_proj", "dense", "c_proj")  # only inside an attention module
ATTN_PARENTS = ("self_attn", "attn", "attention", "self_attention")
Importance = dict[str, list[torch.Tensor]]


def down_projections(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The MLP down projections of ``model``, in module order (outermost match only)."""
    return _find(model, lambda last, parents: last in DOWN_NAMES
                 or (last in MLP_DOWN_NAMES and bool(parents & set(MLP_PARENTS))))


def attention_projections(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The attention output projections of ``model``, in module order (outermost match only)."""
    return _find(model, lambda last, parents: last in ATTN_OUT_NAMES
                 and bool(parents & set(ATTN_PARENTS)))


def _find(model: torch.nn.Module, match: Callable[[str, set[str]], bool],
          ) -> list[tuple[str, torch.nn.Module]]:
    found: list[tuple[str, torch.nn.Module]] = []
    for name, module in model.named_modules():
        parts = name.split(".")
        if match(parts[-1], {part.lower() for part in parts[:-1]}):
            if not any(name.startswith(f"{outer}.") for outer, _ in found):
                found.append((name, module))
    return found


def attention_head_dim(model: torch.nn.Module) -> int | None:
    """Features per attention head from the model's config (``head_dim`` or hidden/heads)."""
    config = getattr(model, "config", None)
    size = getattr(config, "head_dim", None)
    if not size:
        hidden = getattr(config, "hidden_size", None)
        heads = getattr(config, "num_attention_heads", None)
        size = hidden // heads if hidden and heads else None
    return int(size) if size else None


def unit_shares(tasks: list[str], importance: Importance) -> dict:
    """Soft share and effective fraction per task over all units pooled (module docstring).

    Undefined values are ``None``: every share when no unit is used, the effective fraction of a
    task whose importance is 0 everywhere.
    """
    matrix = torch.stack([torch.cat([v.reshape(-1) for v in importance[t]]) for t in tasks])
    matrix = matrix.double()
    units = matrix.shape[1]
    total = matrix.sum(dim=0)
    used = total > 0
    share = (matrix[:, used] / total[used]).mean(dim=1).tolist() if used.any() else None
    task_total = matrix.sum(dim=1, keepdim=True)
    q = matrix / task_total.clamp(min=torch.finfo(matrix.dtype).tiny)
    entropy = -torch.special.xlogy(q, q).sum(dim=1)
    spread = [float(torch.exp(h)) / units if s > 0 else None
              for h, s in zip(entropy, task_total[:, 0].tolist())]
    return {"soft_share": {t: share[i] if share else None for i, t in enumerate(tasks)},
            "effective_fraction": dict(zip(tasks, spread)), "units": units}


@dataclass(frozen=True)
class Neurons:
    """Per-neuron task attribution.

    ``labels`` = ``tasks`` + ``["shared", "unused"]``; ``owner[l][j]`` indexes ``labels`` for
    neuron ``j`` of layer ``layers[l]``: the task whose importance is at least ``dominance``
    times every other task's, else ``shared``; ``unused`` when its largest importance is below
    ``unused`` times the layer's mean largest importance. ``importance[task][l]`` is the
    per-neuron importance vector (see the module docstring). ``head_importance[task][l]`` is
    the per-head importance vector of attention output projection ``head_layers[l]`` (heads of
    ``head_dim`` features); all three are ``None`` when the model has no such projection.
    """

    tasks: list[str]
    layers: list[str]
    importance: Importance
    owner: list[torch.Tensor]
    dominance: float
    unused: float
    positions: str
    head_layers: list[str] | None = None
    head_importance: Importance | None = None
    head_dim: int | None = None

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

    def shares(self) -> dict[str, dict | None]:
        """``{"neurons": ..., "heads": ...}``, each :func:`unit_shares` (heads ``None`` when
        absent): ``soft_share`` and ``effective_fraction`` per task and ``units``."""
        heads = self.head_importance
        return {"neurons": unit_shares(self.tasks, self.importance),
                "heads": unit_shares(self.tasks, heads) if heads is not None else None}

    def to_dict(self, per_neuron: bool = False) -> dict:
        """JSON-ready counts, shares and importance summary (per-head importance included);
        ``per_neuron`` adds every owner label."""
        heads = self.head_importance
        out = {
            "tasks": self.tasks, "layers": self.layers, "sizes": self.sizes,
            "dominance": self.dominance, "unused": self.unused, "positions": self.positions,
            "counts": self.counts(), "counts_per_layer": self.counts_per_layer(),
            "importance_per_layer": self.importance_per_layer(),
            "importance_total": {t: sum(v) for t, v in self.importance_per_layer().items()},
            "shares": self.shares(), "head_layers": self.head_layers, "head_dim": self.head_dim,
            "head_importance": None if heads is None else
            {t: [v.tolist() for v in heads[t]] for t in self.tasks},
        }
        if per_neuron:
            out["owner"] = [[self.labels[i] for i in o.tolist()] for o in self.owner]
        return out


def neuron_allocation(model: torch.nn.Module, batches: TaskBatches,
                      max_batches: int | None = None, dominance: float = 2.0,
                      unused: float = 0.01,
                      positions: Literal["all", "targets"] = "all",
                      objective: Literal["loss", "logit"] = "loss") -> Neurons:
    """Attribute every MLP neuron to a task, ``shared`` or ``unused``, and measure every
    attention head's importance per task (see :class:`Neurons`).

    ``objective="loss"`` attributes the summed target-token loss; its gradient vanishes on a
    task the model has mastered, so such a task looks as if it held no neurons.
    ``"logit"`` attributes the summed margin of the correct token's logit over the mean logit,
    whose gradient does not vanish when the task is learned.

    ``positions="all"`` sums importance over every token position (the prompt's activations
    feed the targets through attention); ``"targets"`` only over the positions that predict a
    target token. Eval mode, ``torch.autograd.grad``: no ``.grad`` is left on the model and its
    train/eval flags are restored.
    """
    _check_settings(dominance, positions, objective)
    tasks = check_tasks(batches, max_batches)
    down = down_projections(model)
    if not down:
        raise SmolmixError("no MLP down projection found (looked for modules named "
                           f"{', '.join(DOWN_NAMES)}, or {', '.join(MLP_DOWN_NAMES)} inside an "
                           "MLP)", type(model).__name__)
    size = attention_head_dim(model)
    attn = attention_projections(model) if size else []
    units = [(name, m, 1) for name, m in down] + [(name, m, size) for name, m in attn]
    importance = _attribute(model, tasks, units, positions, objective)
    layers = [name for name, _ in down]
    neurons = {t: v[:len(down)] for t, v in importance.items()}
    owner = [_assign(torch.stack([neurons[t][layer] for t in tasks]), dominance, unused)
             for layer in range(len(layers))]
    return Neurons(tasks=list(tasks), layers=layers, importance=neurons, owner=owner,
                   dominance=dominance, unused=unused, positions=positions,
                   head_layers=[name for name, _ in attn] if attn else None,
                   head_importance={t: v[len(down):] for t, v in importance.items()}
                   if attn else None, head_dim=size if attn else None)


def _check_settings(dominance: float, positions: str, objective: str) -> None:
    if dominance < 1:
        raise SmolmixError(f"dominance must be at least 1, got {dominance}", "dominance")
    if objective not in ("loss", "logit"):
        raise SmolmixError(f"objective must be 'loss' or 'logit', got {objective!r}",
                           "objective")
    if positions not in ("all", "targets"):
        raise SmolmixError(f"positions must be 'all' or 'targets', got {positions!r}",
                           "positions")


def _attribute(model: torch.nn.Module, tasks: dict[str, list],
               units: list[tuple[str, torch.nn.Module, int]], positions: str,
               objective: str) -> Importance:
    """Task -> per unit module, the importance of each group of ``group`` input features."""
    device = model_device(model)
    groups = [group for _, _, group in units]
    importance: Importance = {}
    with (_captured(model, [m for _, m, _ in units]) as captured, eval_mode(model),
          torch.enable_grad()):
        for task, task_batches in tasks.items():
            sums: list[torch.Tensor | None] = [None] * len(units)
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
                _accumulate(loss, captured, groups, sums, _position_mask(batch, positions), where)
            importance[task] = [s.cpu() / tokens if s is not None else None for s in sums]
    for task, vectors in importance.items():
        idle = [name for (name, _, _), v in zip(units, vectors) if v is None]
        if idle:
            raise SmolmixError(f"task {task!r} never ran the projection(s) {', '.join(idle)}",
                               type(model).__name__)
    return importance


def _target_margin(model: torch.nn.Module, batch, device: torch.device) -> torch.Tensor:
    """Sum over target tokens of (correct-token logit − mean logit)."""
    inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits[:, :-1].float()
    target = batch["labels"][:, 1:].to(device)
    mask = target != IGNORE_INDEX
    correct = logits.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return ((correct - logits.mean(-1)) * mask).sum()


@contextmanager
def _captured(model: torch.nn.Module, modules: list[torch.nn.Module],
              ) -> Iterator[list[list[torch.Tensor]]]:
    """Per module, the inputs its forward passes receive (hooks removed on exit); the input
    embeddings are made to require grad so the inputs do even with frozen weights."""
    captured: list[list[torch.Tensor]] = [[] for _ in modules]
    handles = [m.register_forward_pre_hook(_capture(store))
               for m, store in zip(modules, captured)]
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if isinstance(embed, torch.nn.Module):
        handles.append(embed.register_forward_hook(_require_grad))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()
        for c in captured:
            c.clear()


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


def _accumulate(loss: torch.Tensor, captured: list[list[torch.Tensor]], groups: list[int],
                sums: list[torch.Tensor | None], mask: torch.Tensor | None, where: str) -> None:
    """Add one batch's per-unit importance: ``|sum over a group of a * dL/da|`` per position."""
    flat = [(layer, a) for layer, acts in enumerate(captured) for a in acts]
    if not flat:
        raise SmolmixError("the forward pass never reached an MLP down projection", where)
    if not all(a.requires_grad for _, a in flat):
        raise SmolmixError("MLP or attention activations do not require grad; cannot attribute",
                           where)
    grads = torch.autograd.grad(loss, [a for _, a in flat], allow_unused=True)
    for (layer, a), g in zip(flat, grads):
        g = torch.zeros_like(a) if g is None else g  # the loss does not reach this activation
        contrib = _grouped(a.detach().float() * g.float(), groups[layer], where)
        if mask is not None:
            weights = mask.to(contrib.device).reshape(-1)
            if weights.numel() != contrib.shape[0]:
                raise SmolmixError("activations are not laid out per token; use positions='all'",
                                   where)
            contrib = contrib * weights[:, None]
        total = contrib.sum(dim=0).double()
        sums[layer] = total if sums[layer] is None else sums[layer] + total


def _grouped(product: torch.Tensor, group: int, where: str) -> torch.Tensor:
    """(positions x units) ``|sum over each unit's group of features|`` of ``a * dL/da``."""
    width = product.shape[-1]
    if width % group:
        raise SmolmixError(f"an attention output projection's input width {width} is not a "
                           f"multiple of head_dim {group}", where)
    return product.reshape(-1, width // group, group).sum(dim=-1).abs()


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
