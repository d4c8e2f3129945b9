"""The rare-task mechanism in the lab's natural cells, and the lab's verdicts.

- During training, at every evaluation step: each task's gradient on its held-out set and
  the interference split under the cell's shares (``smolmix.diagnose.interference``); the
  per-task values go into the cell's curves (``interference_others`` is the other tasks'
  part over the task's own squared gradient norm: negative means they undo its progress).
- After training, :func:`smolmix.diagnose.command.measure` (the orchestration behind
  ``smolmix diagnose``) takes the retention probe on each rare task and the allocation of the
  MLP neurons to tasks; :func:`measured` keeps what the lab's results hold of it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

from smolmix.diagnose.command import Measured
from smolmix.diagnose.interference import interference, task_gradients
from smolmix.diagnose.verdicts import Curve, judge


def interference_scorer(held: Mapping[str, list[dict]], shares: Mapping[str, float]):
    """A curve scorer: per task, the interference split under ``shares`` at this step."""
    weights = {t: shares.get(t, 0.0) for t in held}

    def score(model) -> dict[str, dict[str, float]]:
        result = interference(task_gradients(model, held), weights)
        return {task: {"grad_norm": _num(result.norms[task]),
                       "interference_others": _num(result.others_normalised[task])}
                for task in result.tasks}

    return score


def measured(found: Measured) -> dict:
    """Retention of each rare task and the neurons each task holds, as the lab records them."""
    return {"retention": {task: {"retention": _num(r.get("retention")),
                                 "gain": _num(r.get("gain"))}
                          for task, r in found.retention.items()},
            "neurons": found.neurons.counts(), "neurons_total": int(sum(found.neurons.sizes))}


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(sum(kept) / len(kept), 4) if kept else None


def _median(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(statistics.median(kept), 4) if kept else None


def summarize_mechanism(preset, cells: Sequence[dict]) -> dict:
    """Per size, over seeds and tasks: mean interference on the rare and frequent tasks over
    training, median rare-task retention (where defined), mean neurons held per rare and per
    frequent task."""
    natural = [c for c in cells if c["kind"] == "natural" and c.get("mechanism")]
    out: dict = {"steps": [], "interference_rare": {}, "interference_frequent": {},
                 "interference_rare_final": [], "interference_frequent_final": [],
                 "retention_rare": [], "neurons_rare": [], "neurons_frequent": [],
                 "neurons_shared": [], "neurons_total": []}
    for size in preset.sizes:
        mine = [c for c in natural if c["size"] == size]
        if not mine:
            continue
        out["steps"] = mine[0]["curves"][preset.rare_tasks[0]]["step"]
        for group, tasks in (("rare", preset.rare_tasks), ("frequent", preset.frequent_tasks)):
            series = [c["curves"][t]["interference_others"] for c in mine for t in tasks]
            curve = [_mean([s[i] for s in series]) for i in range(len(series[0]))]
            out[f"interference_{group}"][size] = curve
            out[f"interference_{group}_final"].append(curve[-1])
            out[f"neurons_{group}"].append(_mean(
                [c["mechanism"]["neurons"][t] for c in mine for t in tasks]))
        out["retention_rare"].append(_median(
            [c["mechanism"]["retention"][t]["retention"] for c in mine
             for t in preset.rare_tasks]))
        out["neurons_shared"].append(_mean([c["mechanism"]["neurons"]["shared"] for c in mine]))
        out["neurons_total"].append(mine[0]["mechanism"]["neurons_total"])
    return out


CATEGORY = {"learned": "learned", "learned then overwritten": "expressible, not learned",
            "never learned": "expressible, not learned",
            "not expressible at this size": "not expressible"}


def lab_verdicts(preset, cells: Sequence[dict], min_share: Mapping[str, float | None],
                 threshold: float) -> dict:
    """A verdict for every rare task in every natural cell (from its curve, the isolation
    control of the same size and seed, and the measured min-share curve), and its agreement
    with the lab's ground truth: the same seed's outcome, and — not circular — another seed's
    runs (does the verdict on one seed predict what the other seed's runs show?)."""
    def cell(kind: str, size: str, seed: int, focus: str | None = None) -> dict | None:
        return next((c for c in cells if c["kind"] == kind and c["size"] == size
                     and c["seed"] == seed and c.get("focus") == focus), None)

    def truth(size: str, seed: int, task: str) -> str | None:
        nat, iso = cell("natural", size, seed), cell("isolation", size, seed, task)
        if nat is None or iso is None:
            return None
        if nat["final"][task]["exact_match"] >= threshold:
            return "learned"
        if iso["final"][task]["exact_match"] < threshold:
            return "not expressible"
        return "expressible, not learned"

    shares = preset.natural_shares()
    rows = []
    for c in cells:
        if c["kind"] != "natural":
            continue
        for task in preset.rare_tasks:
            iso = cell("isolation", c["size"], c["seed"], task)
            curve = Curve(c["curves"][task]["step"], c["curves"][task]["exact_match"])
            mech = {}
            if c.get("mechanism"):
                mech = {"interference_from_others": c["curves"][task]["interference_others"][-1],
                        "retention": c["mechanism"]["retention"][task]["retention"]}
                mech = {k: v for k, v in mech.items() if v is not None}
            v = judge(task, curve, iso["final"][task]["exact_match"] if iso else None,
                      shares[task], min_share.get(c["size"]) if task == preset.boost_target
                      else None, threshold, mech)
            rows.append({"size": c["size"], "seed": c["seed"], **v.to_dict()})
    same = [CATEGORY[r["verdict"]] == truth(r["size"], r["seed"], r["task"]) for r in rows]
    cross = [CATEGORY[r["verdict"]] == truth(r["size"], other, r["task"])
             for r in rows for other in preset.seeds if other != r["seed"]
             if truth(r["size"], other, r["task"]) is not None]
    return {"verdicts": rows,
            "agreement_same_seed": round(sum(same) / len(same), 4) if same else None,
            "agreement_other_seed": round(sum(cross) / len(cross), 4) if cross else None,
            "agreement_counts": {"same_seed": [sum(same), len(same)],
                                 "other_seed": [sum(cross), len(cross)]}}
