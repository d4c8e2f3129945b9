"""The rare-task mechanism in the lab's natural cells, and the lab's verdicts.

During training a :class:`smolmix.diagnose.live.MechanismProbe` writes the cell's
``mechanism.jsonl`` (the measures ``smolmix diagnose`` also takes from checkpoints);
:func:`cell_mechanism` condenses it per cell, :func:`summarize_mechanism` per size with the
seed spread, each measure beside the paper's direction (docs/lab-rare-tasks-design.md):

- ``frequent_update_strength``: the frequent tasks' share-weighted held-out gradient norm
  (``frequent_update_norm``: their part of the Adam update per unit rate) — falls with size;
- ``rare_interference``: the first-order change of a rare task's held-out loss per step from
  the other tasks' part of the optimizer's actual update (nats; positive raises the loss),
  mean over the rare tasks — falls with size; ``rare_others_over_self`` (that part over the
  task's own pull) and ``rare_sgd_others_over_self`` (the SGD view) beside it;
- ``retention_half_life``: mixture steps until half of a one-step rare-task gain is gone
  (per task the median over the probe points, censored values counting as the probe's
  length; mean over the rare tasks) — rises with size; ``retention_end``: the share left after
  the probe's last step;
- ``rare_neuron_share`` / ``rare_head_share``: the rare tasks' soft share of MLP neurons /
  attention heads (summed over the rare tasks, mean over probe points) — rises with size.

Values over training are summarised as the learning-rate-weighted mean over the first half of
training (where learning happens; the last steps have a rate near 0); ratios as medians
(:func:`smolmix.diagnose.live.summarize_rows`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

from smolmix.diagnose.live import as_rows, mean, summarize_rows
from smolmix.diagnose.verdicts import Curve, judge

# name -> the paper's direction as size grows
DIRECTIONS = {
    "frequent_update_strength": "falls",
    "rare_interference": "falls",
    "retention_half_life": "rises",
    "rare_neuron_share": "rises",
    "rare_head_share": "rises",
}
# reported beside them, with no stated direction
COMPANIONS = ("frequent_update_norm", "rare_others_over_self", "rare_sgd_others_over_self",
              "retention_end", "retention_censored")


def _num(x: float | None) -> float | None:
    if x is None or not math.isfinite(float(x)):
        return None
    return round(float(x), 8)


def cell_mechanism(probe_rows: list[dict], rare: Sequence[str], steps: int) -> dict:
    """One natural cell's probe rows condensed (:func:`smolmix.diagnose.live.summarize_rows`,
    the same condensation ``smolmix diagnose`` applies to checkpoints): the cell's value of each
    measure, a mean over the rare tasks, and the series over training."""
    rows = as_rows(probe_rows)
    found = summarize_rows(rows, steps)
    per_task = found["tasks"]

    def rare_mean(key: str) -> float | None:
        return mean([per_task.get(t, {}).get(key) for t in rare])

    def rare_sum(key: str) -> float | None:
        values = [per_task.get(t, {}).get(key) for t in rare]
        return None if any(v is None for v in values) else sum(values)

    frequent = found["groups"].get("frequent", {})
    values = {
        "frequent_update_strength": frequent.get("grad_norm"),
        "frequent_update_norm": frequent.get("update_norm"),
        "rare_interference": rare_mean("delta_others"),
        "rare_others_over_self": rare_mean("others_over_self"),
        "rare_sgd_others_over_self": rare_mean("sgd_others_over_self"),
        "retention_half_life": rare_mean("half_life"),
        "retention_end": rare_mean("retention_end"),
        "retention_censored": rare_mean("censored"),
        "rare_neuron_share": rare_sum("neuron_share"),
        "rare_head_share": rare_sum("head_share"),
    }
    update = [r for r in rows if r.get("update")]
    series = {
        "steps": [r["step"] for r in update], "lr": [r["lr"] for r in update],
        "frequent_grad_norm": [r["groups"]["frequent"]["grad_norm"] for r in update],
        "frequent_update_norm": [r["groups"]["frequent"]["update_norm"] for r in update],
        "rare_delta_others": [mean([r["update"]["delta_others"][t] for t in rare])
                              for r in update],
        "rare_delta_self": [mean([r["update"]["delta_self"][t] for t in rare]) for r in update],
    }
    return {"values": {k: _num(v) for k, v in values.items()},
            "per_task": {t: {k: _num(v) for k, v in per_task.get(t, {}).items()} for t in rare},
            "series": {k: [_num(v) for v in vs] for k, vs in series.items()},
            "retention_steps": [r["step"] for r in rows if r.get("retention")]}


def _direction(means: list[float | None], per_seed: dict[int, list[float | None]],
               direction: str) -> dict:
    sign = 1 if direction == "rises" else -1
    known = [m for m in means if m is not None]
    steps = [b - a for a, b in zip(known, known[1:])]
    ends = [v[-1] - v[0] for v in per_seed.values() if v[0] is not None and v[-1] is not None]
    return {
        "monotonic": bool(steps) and len(known) == len(means)
        and all(sign * d > 0 for d in steps),
        "ends_agree": len(known) >= 2 and sign * (known[-1] - known[0]) > 0,
        "seeds_agree": bool(ends) and all(sign * d > 0 for d in ends),
    }


def summarize_mechanism(preset, cells: Sequence[dict]) -> dict:
    """Per measure: per size the mean over seeds, the spread and each seed's value, the paper's
    direction and whether this run agrees (``monotonic``: every step between neighbouring
    sizes goes that way; ``ends_agree``: largest minus smallest has that sign;
    ``seeds_agree``: it has that sign in every seed)."""
    natural = [c for c in cells if c["kind"] == "natural" and c.get("mechanism")]
    sizes = [s for s in preset.sizes if any(c["size"] == s for c in natural)]
    out: dict = {"sizes": sizes, "measures": {}}
    for name in (*DIRECTIONS, *COMPANIONS):
        per_seed = {seed: [next((c["mechanism"]["values"][name] for c in natural
                                 if c["size"] == s and c["seed"] == seed), None)
                           for s in sizes] for seed in preset.seeds}
        columns = [[v[i] for v in per_seed.values() if v[i] is not None]
                   for i in range(len(sizes))]
        entry = {"by_size": [_num(statistics.fmean(c)) if c else None for c in columns],
                 "std_by_size": [_num(statistics.pstdev(c)) if len(c) > 1 else 0.0
                                 for c in columns],
                 "by_seed": {str(k): v for k, v in per_seed.items()}}
        if name in DIRECTIONS:
            entry["direction"] = DIRECTIONS[name]
            entry.update(_direction(entry["by_size"], per_seed, DIRECTIONS[name]))
        out["measures"][name] = entry
    out["series"] = {s: [c["mechanism"]["series"] for c in natural if c["size"] == s]
                     for s in sizes}
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
                values = c["mechanism"]["values"]
                mech = {"interference_from_others": values["rare_others_over_self"],
                        "retention_half_life": values["retention_half_life"]}
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
