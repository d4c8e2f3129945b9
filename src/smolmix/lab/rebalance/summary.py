"""The rebalance lab's summary: per size and policy, over seeds, the tasks learned, rare- and
frequent-task accuracy and the compute overhead; and the two claims the lab tests, each
decided by a rule fixed before any run (docs/lab-rebalance-design.md):

- ``verdict`` learns more rare tasks than ``static``, ``temperature`` and ``odm`` (mean over
  seeds of rare tasks at ≥ 90%, strictly more than each), without losing frequent tasks (its
  mean frequent-task accuracy at most ``FREQUENT_TOLERANCE`` below ``static``'s);
- boost instead of scale: a size with ``verdict`` reaches the rare-task accuracy of a size
  with at least ``SCALE_FACTOR`` × its parameters trained on the natural mixture (``static``).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from smolmix.diagnose.verdicts import LEARN_THRESHOLD
from smolmix.lab.rebalance.preset import Preset

FREQUENT_TOLERANCE = 0.02
SCALE_FACTOR = 4
BASELINES = ("static", "temperature", "odm")


def _all_seconds(compute: Mapping) -> float:
    return compute["train_seconds"] + compute["eval_and_mix_seconds"] + \
        compute["probe_seconds"] + compute["reference_seconds"]


def cell_metrics(preset: Preset, cell: Mapping, cells_by_id: Mapping[str, Mapping],
                 controls: Sequence[Mapping] = ()) -> dict:
    """One cell's numbers. Overhead: everything but the stages' training, over it; for
    excess-loss that includes its reference model's training (the static loop of its size and
    seed), for verdict the isolation controls of its size and seed."""
    final = cell["summary"]["final_accuracy"]
    compute = cell["summary"]["compute"]
    train = compute["train_seconds"]
    extra = compute["eval_and_mix_seconds"] + compute["probe_seconds"] + \
        compute["reference_seconds"]
    if cell["policy"] == "excess-loss":
        static = cells_by_id.get(f"static-{cell['size']}-s{cell['seed']}")
        if static is not None:
            extra += static["summary"]["compute"]["train_seconds"]
    if cell["policy"] == "verdict":
        extra += sum(_all_seconds(c["summary"]["compute"]) for c in controls
                     if c["size"] == cell["size"] and c["seed"] == cell["seed"])
    return {
        "learned": sum(final[t] >= LEARN_THRESHOLD for t in preset.tasks),
        "rare_learned": sum(final[t] >= LEARN_THRESHOLD for t in preset.rare_tasks),
        "rare_acc": statistics.fmean(final[t] for t in preset.rare_tasks),
        "frequent_acc": statistics.fmean(final[t] for t in preset.frequent_tasks),
        "overhead": extra / train if train else None,
        "probe_steps": compute["probe_steps"],
    }


def _spread(values: Sequence[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 4),
            "std": round(statistics.pstdev(values), 4) if len(values) > 1 else 0.0,
            "per_seed": [round(v, 4) for v in values]}


def summarize(preset: Preset, cells: Sequence[Mapping], params: Mapping[str, int],
              controls: Sequence[Mapping] = ()) -> dict:
    by_id = {c["id"]: c for c in cells}
    metrics = {c["id"]: cell_metrics(preset, c, by_id, controls) for c in cells}
    table: dict[str, dict[str, dict]] = {}
    for size in preset.all_sizes:
        for policy in preset.size_policies(size):
            mine = [metrics[f"{policy}-{size}-s{seed}"] for seed in preset.seeds]
            table.setdefault(size, {})[policy] = {
                key: _spread([m[key] for m in mine])
                for key in ("learned", "rare_learned", "rare_acc", "frequent_acc", "overhead")}
    return {"sizes": [params[s] for s in preset.all_sizes],
            "size_names": list(preset.all_sizes),
            "seeds": list(preset.seeds), "by_size": table,
            "verdict_vs_baselines": verdict_vs_baselines(preset, table),
            "boost_instead_of_scale": boost_instead_of_scale(preset, table, params),
            "learn_threshold": LEARN_THRESHOLD}


def verdict_vs_baselines(preset: Preset, table: Mapping) -> dict:
    """Per size: does verdict learn more rare tasks than each baseline, keeping the frequent
    ones?"""
    if "verdict" not in preset.policies:
        return {}
    out = {}
    for size, row in table.items():
        if "verdict" not in row:
            continue
        mine = row["verdict"]
        baselines = [b for b in BASELINES if b in row]
        more = {b: mine["rare_learned"]["mean"] > row[b]["rare_learned"]["mean"]
                for b in baselines}
        drop = (row["static"]["frequent_acc"]["mean"] - mine["frequent_acc"]["mean"]
                if "static" in row else None)
        out[size] = {"more_rare_learned_than": more,
                     "rare_acc_gain_over": {b: round(mine["rare_acc"]["mean"]
                                                     - row[b]["rare_acc"]["mean"], 4)
                                            for b in baselines},
                     "frequent_drop_vs_static": None if drop is None else round(drop, 4),
                     "holds": bool(baselines) and all(more.values()) and drop is not None
                     and drop <= FREQUENT_TOLERANCE}
    return out


def boost_instead_of_scale(preset: Preset, table: Mapping, params: Mapping[str, int]) -> list:
    """Each pair (small, large ≥ SCALE_FACTOR× its parameters): verdict at small against
    static at large on rare-task accuracy."""
    if "verdict" not in preset.policies or "static" not in preset.policies:
        return []
    pairs = []
    for small in preset.sizes:
        for large in preset.all_sizes:
            if params[large] >= SCALE_FACTOR * params[small]:
                mine = table[small]["verdict"]["rare_acc"]["mean"]
                theirs = table[large]["static"]["rare_acc"]["mean"]
                pairs.append({"small": small, "large": large,
                              "ratio": round(params[large] / params[small], 1),
                              "verdict_small_rare_acc": mine,
                              "static_large_rare_acc": theirs, "holds": mine >= theirs})
    return pairs
