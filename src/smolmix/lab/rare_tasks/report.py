"""The rare-tasks lab's report: its sections for :mod:`smolmix.report` (registered for runs of
kind ``lab.rare-tasks``), the page ``run_study`` writes into the run, and the terminal summary.

The page is smolmix's report page with the lab's sections: the reading, the summary table, the
plots, the mechanism's measures beside the paper's directions, the verdicts, the tasks, the
preset and the files of the run.
"""

from __future__ import annotations

import math

from smolmix.lab.rare_tasks.plots import write_plots
from smolmix.lab.rare_tasks.reading import fmt_acc, measure_name, reading
from smolmix.lab.rare_tasks.results import (
    RESULTS_FILE,
    at,
    boost_target,
    learn_threshold,
    n_seeds,
    seed_note,
)
from smolmix.report.formats import (
    MISSING,
    fmt_params,
    fmt_seconds,
    fmt_share,
    is_missing,
    text_table,
)
from smolmix.report.lab_page import preset_table, register_lab
from smolmix.report.page import Bullets, FileList, Image, Section, Table, Text

KIND = "lab.rare-tasks"
TITLE = "smolmix lab: rare tasks"

PLOT_CAPTIONS = {
    "heatmap": "Final exact match of every task (rows, most frequent on top; rare tasks in red) "
               "for every model size (columns), trained on the natural mixture.",
    "curves": "Exact match on each task during training on the natural mixture, one line per "
              "model size.",
    "boost": "Accuracy on {target} as its share of the mixture is raised; the hollow point is "
             "the natural mixture, the dashed line the learning threshold.",
    "rare_vs_size": "Mean exact match on the rare tasks (in the mixture and trained alone) and "
                    "on the frequent tasks, against the number of parameters.",
    "mechanism": "The mechanism, measured during training on the natural mixture. Top: the "
                 "frequent tasks' share-weighted gradient norm (log scale) and the first-order "
                 "change of the rare tasks' held-out loss per step from the other tasks' part "
                 "of the Adam update (positive raises it), mean over seeds, one line per size. "
                 "Bottom: each measure with a direction in the paper against the number of "
                 "parameters, mean ± std over seeds with each seed as a faint dot, titled with "
                 "the paper's direction and whether this run agrees (every step between sizes "
                 "goes that way) or only its ends do.",
}

PLOT_FILES = {
    "heatmap": "exact match of every task × size on the natural mixture.",
    "curves": "per-task learning curves on the natural mixture, one line per size.",
    "boost": "accuracy on the boost target against its share of the mixture.",
    "rare_vs_size": "rare (mixture and alone) and frequent accuracy against model size.",
    "mechanism": "the mechanism over training and each of its measures against size, beside "
                 "the paper's direction.",
}

FILES = (
    (RESULTS_FILE, "every number in this report: preset, tasks, sizes, per-cell final "
                   "scores and curves, and the summary."),
    ("report.html", "this page."),
    ("data/s<seed>/<task>.jsonl", "the generated training examples of each task: the sources "
                                  "every cell's mixture is built from."),
    ("data/heldout.jsonl", "the held-out sets, every cell's eval data."),
    ("models/<size>-s<seed>/", "the initial weights and tokenizer of that size and seed."),
    ("recipes/<id>.yaml", "the smolmix mix recipe of that cell's training mixture."),
    ("mixtures/<id>/", "the mixture smolmix mix built from it (datasets.load_from_disk)."),
    ("cells/<id>/", "one cell: a smolmix train run, named <kind>[-<boost share>]-<size>-s<seed>; "
                    "smolmix diagnose, eval and report take it as any train run."),
    ("cells/<id>/curves.jsonl", "the cell's held-out loss and exact match per task at every "
                                "evaluation step."),
    ("cells/<id>/model/", "the cell's trained model, a Hugging Face checkpoint: load it "
                          "with AutoModelForCausalLM.from_pretrained and "
                          "AutoTokenizer.from_pretrained."),
    ("manifest.json", "what made this directory: command, arguments, seeds, versions, time."),
)


# ---------------------------------------------------------------- the summary table


def _summary_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table, one row per size."""
    s = results["summary"]
    target = boost_target(results)
    min_share = s.get("min_share_to_learn") or {}
    spread = n_seeds(results) > 1
    header = ["size", "params", "rare acc", "frequent acc", "rare alone (isolation)",
              f"min share to learn {target}" if target else "min share to learn"]
    rows = []
    for i, (name, params) in enumerate(zip(s["size_names"], s["sizes"], strict=True)):
        rows.append([
            name,
            fmt_params(params),
            *(fmt_acc(at(s.get(f"{key}_by_size"), i),
                      at(s.get(f"{key}_std_by_size"), i) if spread else None)
              for key in ("rare_acc", "frequent_acc", "isolation_acc")),
            _fmt_min_share(min_share, name),
        ])
    return header, rows


def _fmt_min_share(min_share: dict, size: str) -> str:
    if size not in min_share:
        return MISSING
    return "never" if min_share[size] is None else fmt_share(min_share[size])


def _summary_note(results: dict) -> str:
    return (f"Exact match, {seed_note(results)}; rare/frequent acc: natural mixture; min "
            f"share: smallest boost share reaching {learn_threshold(results):.0%} (— not "
            f"boosted).")


def summary_table(results: dict) -> str:
    """The summary as an aligned plain-text table for the terminal, with the wall time."""
    wall = results["summary"].get("wall_seconds")
    return "\n".join([text_table(*_summary_rows(results), left=2), _summary_note(results),
                      f"wall time: {fmt_seconds(wall)}"])


# ---------------------------------------------------------------- the sections


def _meta_line(results: dict) -> str:
    preset, summary = results.get("preset") or {}, results["summary"]
    version = (results.get("smolmix") or {}).get("version", "?")
    seeds = n_seeds(results)
    parts = [f"preset {preset.get('name', '?')}", f"{len(results['sizes'])} sizes",
             f"{len(results['tasks'])} tasks", f"{seeds} seed{'s' if seeds != 1 else ''}",
             f"{preset.get('steps', '?')} steps",
             f"wall time {fmt_seconds(summary.get('wall_seconds'))}", f"smolmix {version}"]
    return " · ".join(parts)


def _plots(results: dict, plots: dict[str, str]) -> list:
    target = boost_target(results) or "the boost target"
    images = [Image(name, PLOT_CAPTIONS.get(key, key).format(target=target), alt=key)
              for key, name in plots.items()]
    return images or [Text("No plots were written.")]


MECHANISM_NOTE = (
    "Each measure's value at each size: {seeds} (the sizes with natural cells). paper: its "
    "direction as size grows in Huang et al. 2026; monotonic: every step between neighbouring "
    "sizes goes that way; ends agree: the largest size minus the smallest has that sign; seeds "
    "agree: it has that sign in every seed. The measures without a direction are reported "
    "beside them. A measure taken over training is condensed to its learning-rate-weighted "
    "mean over the first half (a ratio to its median); smolmix's docs/lab-rare-tasks-design.md "
    "describes each.")
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _flag(entry: dict, key: str) -> str:
    return MISSING if key not in entry else "yes" if entry[key] else "no"


def _row_scale(means: list[float | None]) -> tuple[int, int]:
    """The power of ten a measure's row is shown in (0, or a multiple of 3 for values under 0.1
    or from 1000 on) and the decimals that give its largest value three significant digits:
    one row, one fixed format, so the table stays narrow and its columns line up."""
    known = [abs(v) for v in means if not is_missing(v) and v != 0]
    if not known:
        return 0, 3
    top = math.floor(math.log10(max(known)))
    power = 0 if -1 <= top < 3 else 3 * math.floor(top / 3)
    return power, max(0, 2 - (top - power))


def _fmt_scaled(mean: float | None, std: float | None, power: int, decimals: int) -> str:
    """``mean`` in units of ``10**power`` with ``decimals``; ``std`` to one significant digit
    (no more decimals than the mean)."""
    if is_missing(mean):
        return MISSING
    text = f"{mean / 10**power:.{decimals}f}"
    if is_missing(std):
        return text
    std /= 10**power
    digits = max(0, min(decimals, -math.floor(math.log10(std)))) if std > 0 else 0
    return f"{text} ± {std:.{digits}f}"


def _mechanism_rows(mech: dict) -> list[list[str]]:
    """One row per measure: its mean ± std per size, the paper's direction and this run's
    agreement flags (— for the measures without a direction)."""
    rows = []
    for name, entry in mech["measures"].items():
        what, unit = measure_name(name)
        means, stds = entry.get("by_size") or [], entry.get("std_by_size") or []
        spread = len(entry.get("by_seed") or {}) > 1
        power, decimals = _row_scale(means)
        if power:
            unit = f"×10{str(power).translate(SUPERSCRIPT)} {unit}".rstrip()
        rows.append([
            f"{what} ({unit})" if unit else what,
            *(_fmt_scaled(mean, at(stds, i) if spread else None, power, decimals)
              for i, mean in enumerate(means)),
            entry.get("direction", MISSING),
            *(_flag(entry, key) for key in ("monotonic", "ends_agree", "seeds_agree")),
        ])
    return rows


def _mechanism(results: dict) -> list[Section]:
    """The mechanism's measures per size beside the paper's direction (none when the run
    measured no mechanism)."""
    mech = results["summary"].get("mechanism")
    if not mech or not mech.get("measures"):
        return []
    params = dict(zip(results["summary"]["size_names"], results["summary"]["sizes"]))
    sizes = [f"{s} ({fmt_params(params[s])})" if s in params else s for s in mech["sizes"]]
    return [Section("Mechanism against the paper", [Table(
        ["measure", *sizes, "paper", "monotonic", "ends agree", "seeds agree"],
        _mechanism_rows(mech), text_columns=tuple(range(len(sizes) + 1, len(sizes) + 5)),
        note=MECHANISM_NOTE.format(seeds=seed_note(results)))])]


def _verdicts(results: dict) -> list[Section]:
    """The lab's verdict per natural cell and rare task (none when it diagnosed nothing)."""
    diag = results["summary"].get("diagnosis")
    if not diag or not diag.get("verdicts"):
        return []
    rows = [[v["size"], str(v["seed"]), v["task"], v["verdict"], v["remedy"] or ""]
            for v in diag["verdicts"]]
    return [Section("Verdicts per rare task", [
        Table(["size", "seed", "task", "verdict", "remedy"], rows, numeric_from=5)])]


def _tasks(results: dict) -> Table:
    tasks = results["tasks"]
    return Table(["task", "group", "natural share"],
                 [[t["name"], t.get("group", ""), fmt_share(t["share"])] for t in tasks],
                 numeric_from=2, row_css=[t.get("group", "") for t in tasks])


def _files(plots: dict[str, str]) -> FileList:
    pngs = [(name, PLOT_FILES.get(key, "a plot of the run.")) for key, name in plots.items()]
    return FileList([*FILES[:2], *pngs, *FILES[2:]])


def lab_sections(results: dict, plots: dict[str, str]) -> list[Section]:
    """The lab's sections of a run's page; ``plots`` are the image files beside the page."""
    header, rows = _summary_rows(results)
    return [
        Section(None, [Text(_meta_line(results), css="meta")]),
        Section("What this run shows", [Bullets(reading(results))]),
        Section("Summary", [Table(header, rows, note=_summary_note(results))]),
        Section("Plots", _plots(results, plots)),
        *_mechanism(results),
        *_verdicts(results),
        Section("Tasks", [_tasks(results)]),
        Section("Preset", [preset_table(results.get("preset") or {})]),
        Section("Files in the run directory", [_files(plots)]),
    ]


write_report = register_lab(KIND, TITLE, lab_sections, write_plots)
