"""The learnability-gap study's summary: accuracies per arm and size, both gaps with intervals,
the best ratio and the best mix's gain over the best single source, from the cells' per-problem
verdicts.

Intervals are 95% bootstrap intervals over the held-out problems, paired: each problem's
verdict is first averaged over seeds (every seed answers the same problems), so an interval
says how much the held-out sample could move the number; the seeds' own spread is given
beside it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from smolmix.evaluate.metrics import bootstrap_difference, bootstrap_mean
from smolmix.lab.learnability.arms import AXES, BASE, arm_name, group_name
from smolmix.lab.learnability.preset import Preset

GAP_KEYS = {"long": "long_gap_by_size", "large": "large_gap_by_size"}
LEARNED_ANY = 0.05  # below this best-arm accuracy a size has learned too little to compare arms


def _cells(cells: Sequence[dict], size: str, arm: str) -> list[dict]:
    return sorted((c for c in cells if c["size"] == size and c["arm"] == arm),
                  key=lambda c: c["seed"])


def _vector(cell: dict, groups: Sequence[str]) -> list[float]:
    return [v for g in groups for v in cell["verdicts"][g]]


def seed_mean_vector(cells: Sequence[dict], groups: Sequence[str]) -> list[float]:
    """Each held-out problem's verdict averaged over the cells (one per seed)."""
    vectors = [_vector(c, groups) for c in cells]
    return [statistics.fmean(col) for col in zip(*vectors, strict=True)]


def per_seed_acc(cells: Sequence[dict], groups: Sequence[str]) -> list[float]:
    return [statistics.fmean(_vector(c, groups)) for c in cells]


def _round(x: float) -> float:
    return round(float(x), 4)


def compare(cells: Sequence[dict], size: str, high: str, low: str,
            groups: Sequence[str]) -> dict:
    """``high`` minus ``low`` at ``size``: mean over seeds, paired 95% interval, per seed."""
    a, b = _cells(cells, size, high), _cells(cells, size, low)
    va, vb = seed_mean_vector(a, groups), seed_mean_vector(b, groups)
    diff = bootstrap_difference(va, vb, paired=True)
    by_seed = [x - y for x, y in zip(per_seed_acc(a, groups), per_seed_acc(b, groups),
                                     strict=True)]
    p_high, p_low = statistics.fmean(va), statistics.fmean(vb)
    return {"gap": _round(diff["diff"]), "low": _round(diff["low"]),
            "high": _round(diff["high"]), "by_seed": [_round(d) for d in by_seed],
            "p_high": _round(p_high), "p_low": _round(p_low),
            "relative": _round(p_high / p_low) if p_low > 0 else None}


def accuracy(cells: Sequence[dict], size: str, arm: str, groups: Sequence[str]) -> dict:
    """Accuracy of ``arm`` at ``size``: mean over seeds with its interval, and per seed."""
    mine = _cells(cells, size, arm)
    interval = bootstrap_mean(seed_mean_vector(mine, groups))
    seeds = per_seed_acc(mine, groups)
    return {"mean": _round(interval["mean"]), "low": _round(interval["low"]),
            "high": _round(interval["high"]), "by_seed": [_round(s) for s in seeds],
            "std": _round(statistics.pstdev(seeds)) if len(seeds) > 1 else 0.0}


def direction(gaps: Sequence[dict], names: Sequence[str], learned: Sequence[bool]) -> dict:
    """How a gap moves with size, against the paper (negative for the smallest students,
    rising with size), over the sizes that learned something from some arm (all sizes when
    fewer than two did): a size that learned nothing has a gap of about 0 whatever the arms
    teach. Each flag measured, not assumed."""
    keep = [i for i, ok in enumerate(learned) if ok]
    keep = keep if len(keep) >= 2 else list(range(len(gaps)))
    values = [gaps[i]["gap"] for i in keep]
    first = gaps[keep[0]]
    return {
        "sizes": [names[i] for i in keep],
        "negative_at_smallest": values[0] < 0,
        "significant_at_smallest": first["high"] < 0 or first["low"] > 0,
        "rises_ends": values[-1] > values[0],
        "rises_monotonic": all(b > a for a, b in zip(values, values[1:])),
        "sign_flips": values[0] < 0 < values[-1],
    }


def wait_shares(cells: Sequence[dict], size: str, arm: str) -> dict[str, float] | None:
    """Of ``arm``'s answers at ``size`` (all seeds): the share whose first ``wait`` step had
    each outcome, and ``wrong after breaking a right step``; None when no cell kept them."""
    mine = [c for c in _cells(cells, size, arm) if c.get("wait")]
    if not mine:
        return None
    total = sum(sum(n) for c in mine for n in c["wait"].values())
    shares = {o: _round(sum(sum(c["wait"][o]) for c in mine) / total) for o in mine[0]["wait"]}
    shares["wrong after breaking a right step"] = _round(
        sum(c["wait"]["broke a right step"][1] for c in mine) / total)
    return shares


def summarize(preset: Preset, cells: Sequence[dict], params: dict[str, int]) -> dict:
    """The ``summary`` object of results.json."""
    groups = [group_name(t, d) for t, d in preset.groups]
    sizes = list(preset.sizes)
    arms = [BASE, *(arm_name(axis, r) for axis, ratios in
                      preset.ratios.items() for r in ratios)]
    arms = list(dict.fromkeys(arms))
    acc = {arm: [accuracy(cells, s, arm, groups) for s in sizes] for arm in arms}
    acc_by_group = {g: {arm: [accuracy(cells, s, arm, [g])["mean"] for s in sizes]
                        for arm in arms} for g in groups}
    summary: dict = {
        "size_names": sizes,
        "sizes": [params[s] for s in sizes],
        "groups": groups,
        "arms": arms,
        "acc_by_arm": {arm: [a["mean"] for a in acc[arm]] for arm in arms},
        "acc_detail_by_arm": acc,
        "acc_by_group": acc_by_group,
        "baseline_acc_by_size": [a["mean"] for a in acc[BASE]],
        "learned_any_by_size": [max(acc[arm][i]["mean"] for arm in arms if arm != BASE)
                                >= LEARNED_ANY for i in range(len(sizes))],
        "learned_any_threshold": LEARNED_ANY,
        "long_wait_by_size": [wait_shares(cells, s, "long") for s in sizes]
        if "long" in preset.ratios and 1 in preset.ratios["long"] else None,
        "tokens_by_arm": {
            arm: round(statistics.fmean(c["target_tokens"] for c in cells if c["arm"] == arm))
            for arm in arms if arm != BASE},
    }
    for axis, ratios in preset.ratios.items():
        _, high, low = AXES[axis]
        names = {r: arm_name(axis, r) for r in ratios}
        if 0 in ratios and 1 in ratios:
            gaps = [compare(cells, s, high, low, groups) for s in sizes]
            summary[GAP_KEYS[axis]] = [g["gap"] for g in gaps]
            summary[f"{axis}_gap_detail_by_size"] = gaps
            summary[f"{axis}_gap_direction"] = direction(gaps, sizes,
                                                         summary["learned_any_by_size"])
        best_ratio, gain, gain_detail = [], [], []
        for i, size in enumerate(sizes):
            means = {r: acc[names[r]][i]["mean"] for r in ratios}
            best_ratio.append(max(ratios, key=lambda r: (means[r], -r)))
            mixes = [r for r in ratios if 0 < r < 1]
            singles = [r for r in ratios if r in (0, 1)]
            if mixes and singles:
                best_mix = max(mixes, key=lambda r: (means[r], -r))
                best_single = max(singles, key=lambda r: (means[r], -r))
                detail = compare(cells, size, names[best_mix], names[best_single], groups)
                detail.update(best_mix=best_mix, best_single=names[best_single])
                gain.append(detail["gap"])
                gain_detail.append(detail)
        summary[f"best_{axis}_ratio_by_size"] = best_ratio
        summary[f"acc_by_{axis}_ratio"] = {str(r): [acc[names[r]][i]["mean"]
                                                    for i in range(len(sizes))] for r in ratios}
        if gain:
            summary[f"best_mix_{axis}_gain_by_size"] = gain
            summary[f"best_mix_{axis}_gain_detail_by_size"] = gain_detail
    return summary
