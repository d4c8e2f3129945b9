"""The plain-language reading of a rare-tasks lab run: sentences built from the run's numbers.

Each conclusion is phrased both ways: a run that shows no gap, or whose small model also fails
alone, says so.
"""

from __future__ import annotations

import math

from smolmix.lab.rare_tasks.results import at, boost_target, learn_threshold, task_share
from smolmix.report.formats import fmt_params, fmt_share, is_missing

GAP_POINTS = 10  # a rare-task gap between sizes under this many points counts as no gap


def pct(x: float) -> int:
    """An accuracy in whole percentage points."""
    return round(x * 100)


def fmt_acc(mean: float | None, std: float | None = None) -> str:
    """``43%``, or ``43 ± 5%`` when a spread over seeds is given."""
    if is_missing(mean):
        return "—"
    if is_missing(std):
        return f"{pct(mean)}%"
    return f"{pct(mean)} ± {pct(std)}%"


def reading(results: dict) -> list[str]:
    """Plain-language sentences that read the result from the run's numbers."""
    sentences = [_size_sentence(results), _frequent_sentence(results),
                 _isolation_sentence(results), _boost_sentence(results),
                 *_mechanism_sentences(results)]
    return [s for s in sentences if s]


def _subject(results: dict) -> str:
    return "the smallest model" if len(results["summary"]["size_names"]) > 1 else "the model"


def _size_sentence(results: dict) -> str:
    s = results["summary"]
    names, params, rare = s["size_names"], s["sizes"], s["rare_acc_by_size"]
    if len(names) == 1:
        return (f"Only one model size was trained ({names[0]}, {fmt_params(params[0])} params), "
                f"so this run cannot compare sizes; it reaches {fmt_acc(rare[0])} on the rare "
                f"tasks in the natural mixture.")
    lo, hi = pct(rare[0]), pct(rare[-1])
    gap = hi - lo
    head = (f"The largest model ({names[-1]}, {fmt_params(params[-1])} params) reaches {hi}% "
            f"on the rare tasks in the natural mixture, the smallest ({names[0]}, "
            f"{fmt_params(params[0])}) {lo}%")
    return head + _gap_verdict(gap, lo, hi, pct(learn_threshold(results))) + _noise_note(s, gap)


def _gap_verdict(gap: int, lo: int, hi: int, threshold: int) -> str:
    if gap >= GAP_POINTS:
        return f" — a gap of {gap} points: the larger model learns rare tasks the smaller misses."
    if gap <= -GAP_POINTS:
        return (f" — the smallest model is ahead by {-gap} points, so this run does not show "
                f"larger models doing better on rare tasks.")
    if lo >= threshold and hi >= threshold:
        what = "both learn the rare tasks, so there is no rare-task failure to explain"
    elif lo < threshold and hi < threshold:
        what = f"neither reaches the {threshold}% learning threshold on the rare tasks"
    else:
        what = "model size makes little difference on the rare tasks here"
    return f" — no real gap ({gap:+d} points): {what}."


def _noise_note(summary: dict, gap: int) -> str:
    """A warning when the seeds spread about as much as the gap between sizes."""
    stds = summary.get("rare_acc_std_by_size") or []
    if abs(gap) < GAP_POINTS or len(stds) < 2 or is_missing(stds[0]) or is_missing(stds[-1]):
        return ""
    spread = pct(stds[0]) + pct(stds[-1])
    if spread < abs(gap):
        return ""
    return (f" The seeds spread by ±{pct(stds[0])} and ±{pct(stds[-1])} points, as much as the "
            f"gap, so treat it with caution.")


def _frequent_sentence(results: dict) -> str | None:
    s = results["summary"]
    freq, rare = at(s.get("frequent_acc_by_size"), 0), at(s.get("rare_acc_by_size"), 0)
    if is_missing(freq) or is_missing(rare):
        return None
    threshold, who = learn_threshold(results), _subject(results)
    if freq < threshold:
        return (f"On the frequent tasks {who} reaches only {fmt_acc(freq)}, so it is weak across "
                f"the mixture, not only on its rare tasks.")
    if rare < threshold:
        return (f"On the frequent tasks {who} reaches {fmt_acc(freq)}: it learns the common part "
                f"of the mixture and fails on the rare part.")
    return f"On the frequent tasks {who} reaches {fmt_acc(freq)}."


def _isolation_sentence(results: dict) -> str:
    s = results["summary"]
    iso = s.get("isolation_acc_by_size") or []
    i = next((k for k, v in enumerate(iso) if not is_missing(v)), None)
    if i is None:
        return ("No isolation control was run, so this run cannot tell whether a rare-task "
                "failure is a limit of what the model can express.")
    name = s["size_names"][i]
    who = _subject(results) if i == 0 else f"the {name} model"
    per_task = {t: v[i] for t, v in (s.get("isolation_task_acc_by_size") or {}).items()
                if not is_missing(at(v, i))}
    natural = at(s.get("rare_acc_by_size"), i)
    return (f"Trained on the rare tasks alone, {who} ({name})"
            + _isolation_verdict(per_task, iso[i], natural, learn_threshold(results)))


def _and_join(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" and {items[-1]}"


def _isolation_verdict(per_task: dict[str, float], iso: float, natural: float | None,
                       threshold: float) -> str:
    """The rest of the isolation sentence: can the model express the rare tasks at all?"""
    learned = [t for t, v in per_task.items() if v >= threshold]
    missed = [t for t, v in per_task.items() if v < threshold]

    def listed(tasks: list[str]) -> str:
        return _and_join([f"{t} ({fmt_acc(per_task[t])})" for t in tasks])

    if learned and missed:
        return (f" learns {listed(learned)} but not {listed(missed)}: it can express the former, "
                f"so failing them in the mixture would not be a capacity limit, while the latter "
                f"may be beyond this size.")
    detail = ", ".join(f"{t} {fmt_acc(v)}" for t, v in per_task.items())
    detail = f" ({detail})" if detail else ""
    if missed or (not per_task and iso < threshold):
        return (f" reaches only {fmt_acc(iso)}{detail}, so it may lack the capacity to express "
                f"them: the isolation control does not rule out a capacity limit.")
    if not is_missing(natural) and natural >= threshold:
        return f" reaches {fmt_acc(iso)}{detail}, as it does in the mixture."
    return (f" reaches {fmt_acc(iso)}{detail}, so it can express them: its {fmt_acc(natural)} "
            f"in the mixture is not a capacity limit of expressing the tasks but comes from "
            f"sharing training with the frequent tasks.")


def _boost_sentence(results: dict) -> str | None:
    s, target = results["summary"], boost_target(results)
    min_share = s.get("min_share_to_learn") or {}
    sizes = [n for n in s["size_names"] if n in min_share]
    if not target or not sizes:
        return "No boost sweep was run." if target else None
    natural = task_share(results, target)
    shares = (results.get("preset") or {}).get("boost_shares") or []
    highest = f" (up to {fmt_share(max(shares))})" if shares else ""
    threshold = f"{learn_threshold(results):.0%}"
    parts = [f"{n} never reaches {threshold} at any share tried{highest}"
             if min_share[n] is None else f"{n} learns it {_from_share(min_share[n], natural)}"
             for n in sizes]
    head = f"Raising the share of {target}" + (
        f" above its natural {fmt_share(natural)}" if natural is not None else "")
    return f"{head}: {'; '.join(parts)} — {_boost_verdict(min_share, sizes, natural)}"


def _at_natural(share: float, natural: float | None) -> bool:
    return natural is not None and math.isclose(share, natural, rel_tol=1e-3)


def _from_share(share: float, natural: float | None) -> str:
    if _at_natural(share, natural):
        return "already at its natural share"
    return f"from a {fmt_share(share)} share"


def _boost_verdict(min_share: dict, sizes: list[str], natural: float | None) -> str:
    boosted = [n for n in sizes
               if min_share[n] is not None and not _at_natural(min_share[n], natural)]
    if boosted:
        return f"so a larger share, without a larger model, is enough for {boosted[0]}."
    if any(min_share[n] is not None for n in sizes):
        return "so these sizes need no boost for it."
    return "so raising the share alone does not rescue it here."


# ---------------------------------------------------------------- the mechanism

MEASURES = {  # summary["mechanism"]["measures"] name -> (what it is, its unit)
    "frequent_update_strength": ("frequent-task update strength",
                                 "share-weighted gradient norm"),
    "rare_interference": ("interference on the rare tasks", "nats per step, + raises their loss"),
    "retention_half_life": ("retention half-life of a rare-task step", "mixture steps"),
    "rare_neuron_share": ("rare tasks' share of MLP neurons", "soft share"),
    "rare_head_share": ("rare tasks' share of attention heads", "soft share"),
    "frequent_update_norm": ("frequent tasks' Adam update", "per unit rate"),
    "rare_others_over_self": ("other tasks' part over the rare task's own, Adam", "ratio"),
    "rare_sgd_others_over_self": ("other tasks' part over the rare task's own, SGD", "ratio"),
    "retention_end": ("share of a rare-task gain left at the probe's end", ""),
    "retention_censored": ("share of half-lives censored at the probe's length", ""),
}
LOWER = {"falls": "lower", "rises": "higher"}  # the paper's direction, largest vs smallest size


def measure_name(name: str) -> tuple[str, str]:
    """What a mechanism measure is and its unit (the raw name for one the report does not
    know)."""
    return MEASURES.get(name, (name.replace("_", " "), ""))


def directional(mech: dict | None) -> dict[str, dict]:
    """The mechanism measures that carry the paper's direction, in the summary's order."""
    measures = (mech or {}).get("measures") or {}
    return {k: v for k, v in measures.items() if v.get("direction")}


def agreement(entry: dict) -> str:
    """``agrees`` (monotonic in the paper's direction), ``ends agree`` (only the largest vs the
    smallest size) or ``does not``."""
    if entry.get("monotonic"):
        return "agrees"
    return "ends agree" if entry.get("ends_agree") else "does not"


def _mechanism_sentences(results: dict) -> list[str]:
    """Per measure with a direction in the paper, whether this run agrees; the censoring of the
    retention probe; how often the verdicts match the lab's ground truth."""
    summary = results["summary"]
    mech, diag = summary.get("mechanism"), summary.get("diagnosis")
    measures = directional(mech)
    out = [_agreement_count(measures)] if measures else []
    out += [_measure_sentence(name, entry, mech["sizes"]) for name, entry in measures.items()]
    out.append(_censoring_sentence(mech))
    if diag and diag.get("agreement_same_seed") is not None:
        same, other = diag["agreement_counts"]["same_seed"], diag["agreement_counts"]["other_seed"]
        text = (f"Verdicts agree with the lab's ground truth in {same[0]} of {same[1]} "
                f"rare-task cases on the same seed")
        if other[1]:
            text += f" and {other[0]} of {other[1]} when checked against the other seeds' runs"
        out.append(text + ".")
    return [s for s in out if s]


def _agreement_count(measures: dict[str, dict]) -> str:
    by = {a: [n for n, e in measures.items() if agreement(e) == a]
          for a in ("agrees", "ends agree", "does not")}
    parts = [f"{len(by['agrees'])} at every step up the ladder",
             f"{len(by['ends agree'])} only between the smallest and the largest size",
             f"{len(by['does not'])} not at all"]
    return (f"Of the {len(measures)} mechanism measures whose direction with size the paper "
            f"states, this run follows that direction for {_and_join(parts)}.")


def _measure_sentence(name: str, entry: dict, sizes: list[str]) -> str:
    """``<measure> (paper: falls with size): <value at each size> — this run agrees, ...``."""
    what = measure_name(name)[0]
    direction, lower = entry["direction"], LOWER[entry["direction"]]
    head = f"{what[0].upper()}{what[1:]} (paper: {direction} with size)"
    known = [(s, v) for s, v in zip(sizes, entry.get("by_size") or []) if not is_missing(v)]
    if len(known) < 2:
        return f"{head}: this run measured it at fewer than two sizes, so it cannot tell."
    values = ", ".join(f"{v:.3g} at {s}" for s, v in known)
    if entry.get("monotonic"):
        verdict = f"this run agrees, it {direction} at every step from the smallest size up"
    elif entry.get("ends_agree"):
        verdict = (f"this run agrees only between the ends, it is {lower} at the largest size "
                   f"than at the smallest but not at every step")
    else:
        verdict = (f"this run does not agree, it is not {lower} at the largest size than at "
                   f"the smallest")
    return f"{head}: {values} — {verdict}{_seeds_clause(entry, lower)}."


def _seeds_clause(entry: dict, lower: str) -> str:
    seeds = len(entry.get("by_seed") or {})
    if seeds < 2:
        return " (one seed)"
    if entry.get("seeds_agree"):
        return f"; in each of the {seeds} seeds it is {lower} at the largest size"
    return f"; the {seeds} seeds do not all have it {lower} at the largest size"


def _censoring_sentence(mech: dict | None) -> str | None:
    """Where some rare-task steps outlasted the retention probe, the half-life is a floor."""
    mech = mech or {}
    censored = ((mech.get("measures") or {}).get("retention_censored") or {}).get("by_size")
    shares = [(s, v) for s, v in zip(mech.get("sizes") or [], censored or [])
              if not is_missing(v) and v > 0]
    if not shares:
        return None
    listed = _and_join([f"{pct(v)}% at {s}" for s, v in shares])
    return (f"Some rare-task steps kept more than half their gain to the end of the retention "
            f"probe ({listed}); their half-life counts as the probe's length, so the measured "
            f"half-life is a lower bound there.")
