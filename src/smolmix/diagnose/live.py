"""The mechanism measured during training, from the live model and optimizer state.

Three measures, each a function of (model, optimizer) so that a Trainer callback
(:class:`MechanismProbe`, on the live state) and ``smolmix diagnose`` (on a run's saved
checkpoints: weights plus ``optimizer.pt``) take the same numbers:

- :func:`measure_update`: per task, the held-out gradient and the first-order change of each
  task's held-out loss under the optimizer's actual next update, split into the task's own part,
  the other tasks' part, the momentum history and weight decay
  (:mod:`smolmix.diagnose.update_interference`); the SGD split beside it
  (:mod:`smolmix.diagnose.interference`); the share-weighted gradient norm of each named group
  of tasks and its update per unit learning rate.
- :func:`measure_retention`: the retention curve of a one-step gain on each probed task against
  a control branch, and its half-life (:mod:`smolmix.diagnose.retention_curve`).
- :func:`measure_units`: soft shares of MLP neurons and attention heads per task
  (:mod:`smolmix.diagnose.neurons`).

The probe never changes training: gradients are taken in eval mode with the model's ``.grad``
restored, and the retention branches run on copies.
"""

from __future__ import annotations

import json
import pickle
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback

from smolmix.core.errors import SmolmixError, first_line
from smolmix.core.inputs import iter_json_objects
from smolmix.diagnose.batches import Batch, TaskBatches
from smolmix.diagnose.interference import _json_safe, _ratio, interference, task_gradients
from smolmix.diagnose.neurons import neuron_allocation
from smolmix.diagnose.retention_curve import retention_curves
from smolmix.diagnose.update_interference import group_strength, update_interference
from smolmix.train.curves import rows_up_to

MECHANISM_FILE = "mechanism.jsonl"


def unwrap_optimizer(optimizer) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's ``AcceleratedOptimizer`` (what a Trainer
    callback is given), or ``optimizer`` itself."""
    inner = getattr(optimizer, "optimizer", None)
    return inner if isinstance(inner, torch.optim.Optimizer) else optimizer


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate of the next step (the largest when param groups differ)."""
    return max(float(g["lr"]) for g in unwrap_optimizer(optimizer).param_groups)


def measure_update(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   held: TaskBatches, shares: Mapping[str, float],
                   groups: Mapping[str, Sequence[str]], max_grad_norm: float | None) -> dict:
    """Adam-aware and SGD interference on every task of ``held``, and each group's strength."""
    opt = unwrap_optimizer(optimizer)
    weights = {t: float(shares.get(t, 0.0)) for t in held}
    grads = task_gradients(model, held)
    adam = update_interference(model, opt, grads, weights, max_grad_norm)
    sgd = interference(grads, weights)
    strength = {name: group_strength(model, opt, grads, weights, tasks, max_grad_norm)
                for name, tasks in groups.items()}
    return {"lr": current_lr(opt), "update": adam.to_dict(),
            "sgd": {key: sgd.to_dict()[key] for key in
                    ("norms", "self_part", "others_part", "total", "others_normalised")},
            "sgd_others_over_self": _json_safe({t: _ratio(sgd.others_part[t], sgd.self_part[t])
                                                for t in sgd.tasks}),
            "groups": strength}


def measure_retention(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      task_batches: Mapping[str, Sequence[Batch]],
                      mixture_batches: Sequence[Batch], held: TaskBatches, k: int, n_max: int,
                      min_gain: float) -> dict:
    """Per probed task, its retention curve (a dict; see :class:`RetentionCurve`)."""
    curves = retention_curves(model, unwrap_optimizer(optimizer), task_batches,
                              mixture_batches, {t: held[t] for t in task_batches}, k=k,
                              n_max=n_max, min_gain=min_gain)
    return {task: curve.to_dict() for task, curve in curves.items()}


def measure_units(model: torch.nn.Module, held: TaskBatches) -> dict:
    """Soft shares of MLP neurons and attention heads per task (logit-margin importance)."""
    return neuron_allocation(model, held, objective="logit").shares()


@dataclass(frozen=True)
class ProbePlan:
    """When and what the probe measures.

    ``update_every``: steps between update-interference measures (0: none). ``retention_at``:
    the steps of the retention probe and the neuron shares. ``probed``: the tasks whose
    retention is probed; ``groups``: named task groups whose strength is measured (e.g.
    ``{"frequent": [...]}``); ``k``/``n_max``/``min_gain``: the retention probe's task steps,
    mixture steps and smallest gain (nats).
    """

    update_every: int
    retention_at: tuple[int, ...]
    probed: tuple[str, ...]
    groups: Mapping[str, tuple[str, ...]]
    k: int = 1
    n_max: int = 32
    min_gain: float = 1e-4

    def __post_init__(self) -> None:
        if self.update_every < 0 or any(s < 1 for s in self.retention_at):
            raise SmolmixError("probe steps must be positive", "probe plan")


class MechanismProbe(TrainerCallback):
    """Measures the mechanism at the plan's steps during training and appends one JSON row
    per measure (``{"step", "measure": "update"|"retention"|"units", ...}``) to
    ``mechanism.jsonl`` in the run folder the Trainer writes (a resumed run first drops the
    rows after its checkpoint).

    ``held``: each task's held-out batches; ``shares``: the mixture's task shares;
    ``task_batches``: training batches of each probed task (its one-step gain);
    ``mixture_batches``: the mixture without the probed tasks (what follows the gain).
    """

    def __init__(self, plan: ProbePlan, held: TaskBatches, shares: Mapping[str, float],
                 task_batches: Mapping[str, Sequence[Batch]], mixture_batches: Sequence[Batch],
                 max_grad_norm: float | None) -> None:
        self.plan = plan
        self.held = dict(held)
        self.shares = dict(shares)
        self.task_batches = {t: list(task_batches[t]) for t in plan.probed}
        self.mixture_batches = list(mixture_batches)
        self.max_grad_norm = max_grad_norm
        self.path: Path | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        # args.output_dir is the run folder's checkpoints/ (smolmix.train.trainer)
        self.path = Path(args.output_dir).parent / MECHANISM_FILE
        if self.path.exists():
            kept = rows_up_to(self.path, state.global_step)
            self.path.write_text("".join(line + "\n" for line in kept))

    def _write(self, row: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, allow_nan=False) + "\n")

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        step = state.global_step
        plan = self.plan
        if plan.update_every and step % plan.update_every == 0:
            self._write({"step": step, "measure": "update",
                         **measure_update(model, optimizer, self.held, self.shares,
                                          plan.groups, self.max_grad_norm)})
        if step in plan.retention_at:
            self._write({"step": step, "measure": "retention", "lr": current_lr(optimizer),
                         "k": plan.k, "n_max": plan.n_max,
                         "curves": measure_retention(model, optimizer, self.task_batches,
                                                     self.mixture_batches, self.held, plan.k,
                                                     plan.n_max, plan.min_gain)})
            self._write({"step": step, "measure": "units", **measure_units(model, self.held)})


OPTIMIZER_FILE = "optimizer.pt"  # what the HF Trainer saves into each checkpoint


def trainer_optimizer(model: torch.nn.Module, checkpoint: Path) -> torch.optim.Optimizer:
    """The AdamW a ``smolmix train`` run trained ``model`` with (the Trainer's two parameter
    groups: decayed weights, then biases and norms), in the state saved at ``checkpoint``
    (moments, step count and each group's learning rate at that step)."""
    path = Path(checkpoint) / OPTIMIZER_FILE
    if not path.is_file():
        raise SmolmixError("the checkpoint has no optimizer state (optimizer.pt)", str(checkpoint))
    decay = set(Trainer.get_decay_parameter_names(None, model))
    named = [(n, q) for n, q in model.named_parameters() if q.requires_grad]
    groups = [{"params": [q for n, q in named if n in decay]},
              {"params": [q for n, q in named if n not in decay]}]
    optimizer = torch.optim.AdamW(groups)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError, pickle.UnpicklingError) as exc:
        raise SmolmixError(f"cannot read the optimizer state as the Trainer's AdamW "
                           f"({first_line(exc, 160)}); the live measures need a run trained "
                           "with the default optimizer", str(path)) from None
    return optimizer


def measure_checkpoint(model: torch.nn.Module, checkpoint: Path, held: TaskBatches,
                       shares: Mapping[str, float], groups: Mapping[str, Sequence[str]],
                       task_batches: Mapping[str, Sequence[Batch]],
                       mixture_batches: Sequence[Batch], max_grad_norm: float | None,
                       n_max: int, min_gain: float = 1e-4) -> dict:
    """The three measures at one saved checkpoint (``model`` loaded from it), as the probe
    takes them during training: one row with ``update``, ``retention`` and ``units``."""
    optimizer = trainer_optimizer(model, checkpoint)
    return {**measure_update(model, optimizer, held, shares, groups, max_grad_norm),
            "retention": measure_retention(model, optimizer, task_batches, mixture_batches,
                                           held, 1, n_max, min_gain),
            "units": measure_units(model, held)}


def _weighted(values: Sequence[float | None], weights: Sequence[float]) -> float | None:
    pairs = [(v, w) for v, w in zip(values, weights) if v is not None and w > 0]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else None


def median(values: Sequence[float | None]) -> float | None:
    """The median of the known values (None when there are none)."""
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def mean(values: Sequence[float | None]) -> float | None:
    """The mean of the known values (None when there are none)."""
    kept = [v for v in values if v is not None]
    return statistics.fmean(kept) if kept else None


def summarize_rows(rows: Sequence[dict], total_steps: int) -> dict:
    """Probe rows (or checkpoint rows) condensed per task and per group.

    Over training: the learning-rate-weighted mean over the first half of training (where
    learning happens; the last steps have a rate near 0) of each task's ``delta_others``,
    ``delta_self`` and each group's ``grad_norm`` / ``update_norm``; the median of the ratios
    ``others_over_self`` (Adam) and ``sgd_others_over_self``. Retention: per task the median
    half-life over the probe points (a censored one counts as the probe's length,
    ``censored`` says how often), the mean share left at the end (``retention_end``). Units: per
    task the mean soft share of MLP neurons and of attention heads.
    """
    update = [r for r in rows if r.get("update")]
    early = [r for r in update if r["step"] <= total_steps / 2]
    lr = [r["lr"] for r in early]
    tasks = sorted({t for r in update for t in r["update"]["delta_total"]})
    per_task: dict[str, dict] = {}
    for t in tasks:
        per_task[t] = {
            "delta_others": _weighted([r["update"]["delta_others"].get(t) for r in early], lr),
            "delta_self": _weighted([r["update"]["delta_self"].get(t) for r in early], lr),
            "others_over_self": median([r["update"]["others_over_self"].get(t)
                                        for r in early]),
            "sgd_others_over_self": median([r["sgd_others_over_self"].get(t) for r in early]),
        }
    for r in rows:
        for t, curve in (r.get("retention") or {}).items():
            entry = per_task.setdefault(t, {}).setdefault("_retention", [])
            if not curve.get("reason"):
                entry.append((curve["half_life"], curve["censored_at"], curve["retention"][-1]))
        for kind in ("neurons", "heads"):
            for t, share in ((r.get("units") or {}).get(kind) or {}).get("soft_share",
                                                                         {}).items():
                per_task.setdefault(t, {}).setdefault(f"_{kind}", []).append(share)
    for values in per_task.values():
        probes = values.pop("_retention", [])
        values["half_life"] = median([c if h is None else h for h, c, _ in probes])
        values["censored"] = (sum(h is None for h, _, _ in probes) / len(probes)
                              if probes else None)
        values["retention_end"] = mean([end for _, _, end in probes])
        values["neuron_share"] = mean(values.pop("_neurons", []))
        values["head_share"] = mean(values.pop("_heads", []))
    groups = sorted({g for r in update for g in r.get("groups", {})})
    return {"tasks": per_task,
            "groups": {g: {key: _weighted([r["groups"][g][key] for r in early], lr)
                           for key in ("grad_norm", "update_norm")} for g in groups}}


def as_rows(probe_rows: Sequence[dict]) -> list[dict]:
    """A probe's ``mechanism.jsonl`` rows (one per measure) merged into one row per step
    (``update``/``sgd_others_over_self``/``groups``/``lr``, ``retention``, ``units``), the
    shape :func:`measure_checkpoint` gives."""
    merged: dict[int, dict] = {}
    for r in probe_rows:
        row = merged.setdefault(r["step"], {"step": r["step"]})
        if r["measure"] == "update":
            row.update({k: r[k] for k in ("lr", "update", "sgd_others_over_self", "groups")})
        elif r["measure"] == "retention":
            row["retention"] = r["curves"]
        else:
            row["units"] = {k: r[k] for k in ("neurons", "heads")}
    return [merged[s] for s in sorted(merged)]


def read_mechanism(path: Path) -> list[dict]:
    """The rows a :class:`MechanismProbe` wrote (empty when the run has none)."""
    path = Path(path)
    if not path.exists():
        return []
    return [row for _, row in iter_json_objects(path, MECHANISM_FILE)]
