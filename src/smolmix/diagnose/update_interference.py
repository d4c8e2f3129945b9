"""Interference under the optimizer's actual next update (Adam/AdamW/SGD), not a plain SGD step.

:mod:`smolmix.diagnose.interference` takes the SGD view. Here the next step of a live optimizer
is fed the held-out expected mixture gradient (not a minibatch's)

    g_mix = c * G,   G = sum_s p_s g_s,   c = min(1, max_grad_norm / (|G| + 1e-6))

(``c`` = 1 without ``max_grad_norm``; the 1e-6 is ``torch.nn.utils.clip_grad_norm_``'s, as the
HF Trainer clips), with ``g_s`` the per-task gradients of :func:`task_gradients` and ``p_s`` the
shares normalised over the measured tasks (a share may be 0: measured, adds nothing to G).

Adam / AdamW at state step ``k`` (moments ``m``, ``v``; none yet = step 0, zero moments):
``v' = b2 v + (1 - b2) g^2`` (``max(max_exp_avg_sq, v')`` with amsgrad), ``bc1 = 1 - b1^(k+1)``,
``bc2 = 1 - b2^(k+1)``, ``D = sqrt(v') / sqrt(bc2) + eps`` (torch's denominator). ``D`` is fixed
once ``g`` is, so the update is exactly linear in the numerator ``b1 m + (1 - b1) g``:

    u = u_history + u_self(t) + u_others(t) + u_decay
    u_history = -lr b1 m / (bc1 D)
    u_self(t) = -lr (1 - b1) c p_t g_t / (bc1 D)
    u_others(t) = -lr (1 - b1) c sum_{s != t} p_s g_s / (bc1 D)
    u_decay = -lr wd theta                       (AdamW: decoupled)
    u_decay = -lr (1 - b1) wd theta / (bc1 D)    (Adam: wd theta added to g, also inside D)

SGD (momentum ``mu``, dampening ``d``, buffer ``b``, gradient ``g + wd theta``):
``u = -lr (a (g + wd theta) + h)`` with ``a = 1, h = 0`` without momentum or buffer
(``a = 1 + mu`` with nesterov and no buffer yet), else ``a = 1 - d, h = mu b``, or with nesterov
``a = 1 + mu (1 - d), h = mu^2 b``; the parts split as for Adam (``u_history = -lr h``).

Task t's first-order loss change from part X is ``delta_X(t) = <g_t, u_X>`` (positive: raises
t's loss), ``delta_total = delta_self + delta_others + delta_history + delta_decay`` (the change
under the whole update), ``others_over_self = delta_others / -delta_self`` (-1: the other tasks
exactly cancel t's own pull; undefined when ``delta_self`` is 0). Exact identities:
``delta_total(t) = <g_t, u>`` and ``sum_t p_t delta_total(t) = <G, u>``.

Assumes the optimizer steps every measured parameter (the Trainer gives each a gradient);
parameters the optimizer holds beyond ``params`` are not measured and not in the clip norm.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import partial

import torch

from smolmix.core.errors import SmolmixError
from smolmix.diagnose.interference import _json_safe, _ratio, _split

CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_: max_norm / (total_norm + 1e-6)


@dataclass(frozen=True)
class UpdateInterference:
    """Per task (sorted ``tasks``), the first-order loss changes from each part of the
    optimizer's next update; see the module docstring. ``lr``: the measured parameters' learning
    rate (the largest when param groups differ); ``clip_factor``: ``c``; ``grad_norm``: ``|G|``
    before clipping; ``optimizer``: its class name. Undefined ratios are NaN (``None`` in
    :meth:`to_dict`)."""

    tasks: list[str]
    shares: dict[str, float]
    lr: float
    clip_factor: float
    grad_norm: float
    optimizer: str
    delta_self: dict[str, float]
    delta_others: dict[str, float]
    delta_history: dict[str, float]
    delta_decay: dict[str, float]
    delta_total: dict[str, float]
    others_over_self: dict[str, float]

    def to_dict(self) -> dict:
        """JSON-ready (NaN becomes ``None``)."""
        return {f.name: _json_safe(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class _Piece:
    """One parameter's next update per unit learning rate, ``gain * g_mix + history + decay``
    (float64, flat), with its slice of the flat gradient vector and its group's ``lr``."""

    where: slice
    lr: float
    gain: torch.Tensor | float
    history: torch.Tensor | float
    decay: torch.Tensor | float


@dataclass(frozen=True)
class _Setup:
    """Checked inputs: tasks, normalised shares, clip factor, ``|G|`` and ``g_mix = c G``."""

    tasks: list[str]
    shares: dict[str, float]
    clip: float
    grad_norm: float
    mix: torch.Tensor


def update_interference(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        grads: Mapping[str, torch.Tensor], shares: Mapping[str, float],
                        max_grad_norm: float | None = None,
                        params: Sequence[torch.nn.Parameter] | None = None,
                        ) -> UpdateInterference:
    """The split of each task's first-order loss change under ``optimizer``'s next step fed
    ``g_mix`` (see the module docstring). ``grads``: per-task flat gradients over ``params``
    (default: the model's trainable parameters, shared ones once, as :func:`task_gradients`
    takes them); ``shares``: normalised over the tasks in ``grads``. Reads only: neither the
    model nor the optimizer changes.
    """
    setup = _setup(grads, shares, max_grad_norm)
    sums = {k: dict.fromkeys(setup.tasks, 0.0) for k in ("self", "grad", "history", "decay")}
    lrs = set()
    for piece in _pieces(model, optimizer, setup.mix, params):  # one parameter in memory at once
        lrs.add(piece.lr)
        mix = setup.mix[piece.where]
        for t in setup.tasks:
            g = grads[t][piece.where].to(torch.float64)
            weight = piece.lr * setup.clip * setup.shares[t]
            sums["self"][t] += weight * _dot(g, piece.gain * g)
            sums["grad"][t] += piece.lr * _dot(g, piece.gain * mix)
            sums["history"][t] += piece.lr * _dot(g, piece.history)
            sums["decay"][t] += piece.lr * _dot(g, piece.decay)
    own, history, decay = sums["self"], sums["history"], sums["decay"]
    others = {t: sums["grad"][t] - own[t] for t in setup.tasks}
    return UpdateInterference(
        tasks=setup.tasks, shares=setup.shares, lr=max(lrs),
        clip_factor=setup.clip, grad_norm=setup.grad_norm, optimizer=type(optimizer).__name__,
        delta_self=own, delta_others=others, delta_history=history, delta_decay=decay,
        delta_total={t: own[t] + others[t] + history[t] + decay[t] for t in setup.tasks},
        others_over_self={t: _ratio(others[t], -own[t]) for t in setup.tasks},
    )


def group_strength(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   grads: Mapping[str, torch.Tensor], shares: Mapping[str, float],
                   group: Sequence[str], max_grad_norm: float | None = None,
                   params: Sequence[torch.nn.Parameter] | None = None) -> dict[str, float]:
    """How hard a group of tasks pulls: ``grad_norm = |sum_{s in group} p_s g_s|`` (raw, not
    clipped) and ``update_norm`` = the norm of that sum's part of the next update (clipped,
    preconditioned: ``|(1 - b1) c sum_{s in group} p_s g_s / (bc1 D)|`` for Adam) per unit
    learning rate. Arguments as for :func:`update_interference`."""
    setup = _setup(grads, shares, max_grad_norm)
    chosen = _check_group(group, setup.tasks)
    part = torch.zeros_like(setup.mix)
    for t in chosen:
        part.add_(grads[t], alpha=setup.shares[t])
    update_sq = 0.0
    for piece in _pieces(model, optimizer, setup.mix, params):
        update_sq += float((piece.gain * setup.clip * part[piece.where]).square().sum())
    return {"grad_norm": float(part.norm()), "update_norm": math.sqrt(update_sq)}


def _dot(a: torch.Tensor, b: torch.Tensor | float) -> float:
    """``<a, b>``; ``b`` may be the float 0.0 (a part the rule does not have)."""
    return float(torch.dot(a, b)) if isinstance(b, torch.Tensor) else 0.0


def _check_group(group: Sequence[str], tasks: list[str]) -> list[str]:
    chosen = list(dict.fromkeys(group))
    if not chosen:
        raise SmolmixError("the group has no tasks", "group")
    unknown = [t for t in chosen if t not in tasks]
    if unknown:
        raise SmolmixError(f"no gradient for group task(s) {', '.join(map(repr, unknown))}",
                           "group")
    return chosen


def _setup(grads: Mapping[str, torch.Tensor], shares: Mapping[str, float],
           max_grad_norm: float | None) -> _Setup:
    if not grads:
        raise SmolmixError("no task gradients given", "grads")
    if max_grad_norm is not None and not max_grad_norm > 0:
        raise SmolmixError(f"max_grad_norm must be positive, got {max_grad_norm}",
                           "max_grad_norm")
    tasks = sorted(grads)
    sizes = {grads[t].numel() for t in tasks}
    if len(sizes) > 1:
        raise SmolmixError(f"task gradients differ in length: {sorted(sizes)}", "grads")
    # interference's own share checks and normalisation (the zero Gram matrix is not used).
    normalised = _split(tasks, [[0.0] * len(tasks) for _ in tasks], shares).shares
    mix = torch.zeros(sizes.pop(), dtype=torch.float64, device=grads[tasks[0]].device)
    for t in tasks:
        mix.add_(grads[t].reshape(-1), alpha=normalised[t])
    norm = float(mix.norm())
    clip = 1.0 if max_grad_norm is None else min(1.0, max_grad_norm / (norm + CLIP_EPS))
    return _Setup(tasks=tasks, shares=normalised, clip=clip, grad_norm=norm, mix=mix.mul_(clip))


def _pieces(model: torch.nn.Module, optimizer: torch.optim.Optimizer, mix: torch.Tensor,
            params: Sequence[torch.nn.Parameter] | None) -> Iterator[_Piece]:
    """Each measured parameter's update rule, in the flat vector's order."""
    rule = _rule(optimizer)
    chosen = (list(dict.fromkeys(params)) if params is not None
              else [p for p in dict.fromkeys(model.parameters()) if p.requires_grad])
    if not chosen:
        raise SmolmixError("no trainable parameters to measure", "params")
    if sum(p.numel() for p in chosen) != mix.numel():
        raise SmolmixError(f"the task gradients have {mix.numel()} entries but the parameters "
                           f"{sum(p.numel() for p in chosen)}", "grads")
    groups = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    start = 0
    for i, p in enumerate(chosen):
        group = groups.get(id(p))
        if group is None:
            raise SmolmixError(f"parameter {names.get(id(p), f'#{i}')!r} is not held by the "
                               "optimizer", "optimizer")
        if group.get("maximize", False):
            raise SmolmixError("maximize=True is not supported", "optimizer")
        where = slice(start, start + p.numel())
        start = where.stop
        theta = p.detach().reshape(-1).to(mix.device, torch.float64)
        state = optimizer.state.get(p, {})  # .get: the state is a defaultdict, keep it as it is
        yield _Piece(where, float(group["lr"]), *rule(group, state, mix[where], theta))


Terms = tuple[torch.Tensor | float, torch.Tensor | float, torch.Tensor | float]


def _rule(optimizer: torch.optim.Optimizer,
          ) -> Callable[[dict, dict, torch.Tensor, torch.Tensor], Terms]:
    rules = {torch.optim.Adam: partial(_adam, decoupled=False),
             torch.optim.AdamW: partial(_adam, decoupled=True), torch.optim.SGD: _sgd}
    rule = rules.get(type(optimizer))
    if rule is None:
        raise SmolmixError(f"unsupported optimizer {type(optimizer).__name__}; supported: "
                           "Adam, AdamW, SGD", "optimizer")
    return rule


def _moment(state: dict, key: str, like: torch.Tensor) -> torch.Tensor:
    value = state.get(key)
    if value is None:
        return torch.zeros_like(like)
    return value.detach().reshape(-1).to(like.device, torch.float64)


def _adam(group: dict, state: dict, g: torch.Tensor, theta: torch.Tensor,
          decoupled: bool) -> Terms:
    """Adam(W)'s gain, history and decay per unit lr (torch's single-tensor formula)."""
    b1, b2 = (float(b) for b in group["betas"])
    wd, eps = float(group["weight_decay"]), float(group["eps"])
    decoupled = decoupled or bool(group.get("decoupled_weight_decay", False))
    step = float(state.get("step", 0)) + 1
    coupled = wd * theta if wd and not decoupled else 0.0
    v = b2 * _moment(state, "exp_avg_sq", g) + (1 - b2) * (g + coupled).square()
    if group.get("amsgrad", False):
        v = torch.maximum(v, _moment(state, "max_exp_avg_sq", g))
    scale = 1 / ((1 - b1**step) * (v.sqrt() / math.sqrt(1 - b2**step) + eps))
    gain = -(1 - b1) * scale
    history = -b1 * _moment(state, "exp_avg", g) * scale if b1 else 0.0
    if not wd:
        return gain, history, 0.0
    return gain, history, -wd * theta if decoupled else gain * wd * theta


def _sgd(group: dict, state: dict, g: torch.Tensor, theta: torch.Tensor) -> Terms:
    """SGD's gain, history and decay per unit lr (momentum, dampening, nesterov)."""
    mu, damp, wd = (float(group[k]) for k in ("momentum", "dampening", "weight_decay"))
    buffer = state.get("momentum_buffer") if mu else None
    nesterov = bool(group.get("nesterov", False))
    if buffer is None:
        a, history = (1 + mu if nesterov else 1.0), 0.0
    else:
        a = 1 + mu * (1 - damp) if nesterov else 1 - damp
        history = -(mu * mu if nesterov else mu) * _moment(state, "momentum_buffer", g)
    return -a, history, -a * wd * theta if wd else 0.0
