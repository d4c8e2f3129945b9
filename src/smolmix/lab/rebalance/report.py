"""The rebalance lab's report: per size and policy, the tasks learned, rare- and frequent-task
accuracy with their seed spread and the compute overhead; the two claims with their numbers;
each loop's decisions (its own folder opens with ``smolmix report`` too)."""

from __future__ import annotations

from pathlib import Path

from smolmix.core.figures import new_figure, save_png
from smolmix.report.formats import fmt_params, fmt_seconds, text_table
from smolmix.report.lab_page import preset_table, register_lab
from smolmix.report.page import (
    Bullets,
    Details,
    FileList,
    Image,
    Section,
    Table,
    Text,
)

KIND = "lab.rebalance"
TITLE = "smolmix lab: rebalance"
RESULTS_FILE = "results.json"
FILES = [
    ("results.json", "preset, every cell's stages (shares, scores, verdicts) and the summary"),
    ("plans/<id>.yaml", "each cell's smolmix loop plan"),
    ("loops/<id>/", "each cell's loop: stages/<k>/{mixture,train,eval}, decisions.jsonl"),
    ("data/", "the training pools per seed and the held-out set"),
    ("models/", "the initial weights per size and seed"),
    ("rare.png", "rare-task accuracy per policy and size"),
]
METRICS = (("learned", "tasks learned", "{:.1f}"), ("rare_learned", "rare learned", "{:.1f}"),
           ("rare_acc", "rare acc", "{:.2f}"), ("frequent_acc", "frequent acc", "{:.2f}"),
           ("overhead", "overhead", "{:.0%}"))


def _cell(entry: dict, fmt: str) -> str:
    mean, std = entry["mean"], entry["std"]
    return fmt.format(mean) + (f" ± {fmt.format(std)}" if std else "")


def summary_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    s = results["summary"]
    header = ["size", "policy", *(words for _, words, _ in METRICS)]
    rows = [[size, policy, *(_cell(entry[key], fmt) for key, _, fmt in METRICS)]
            for size in s["size_names"] for policy, entry in s["by_size"][size].items()]
    return header, rows


def summary_table(results: dict) -> str:
    header, rows = summary_rows(results)
    return text_table(header, rows, left=2)


def reading(results: dict) -> list[str]:
    """The two claims in sentences, with their numbers."""
    s = results["summary"]
    seeds = ", ".join(map(str, s["seeds"]))
    lines = [f"Seeds {seeds}; mean ± spread over them. Seed 0 is the tuning seed"
             + (" and is included here." if 0 in s["seeds"] else ", not included here.")]
    for size, v in s["verdict_vs_baselines"].items():
        gains = ", ".join(f"{b} {g:+.2f}" for b, g in v["rare_acc_gain_over"].items())
        more = ", ".join(f"{b}: {'yes' if m else 'no'}"
                         for b, m in v["more_rare_learned_than"].items())
        lines.append(f"{size}: verdict learns more rare tasks than — {more}; rare-task "
                     f"accuracy against them {gains}; frequent-task accuracy "
                     f"{0.0 - v['frequent_drop_vs_static']:+.2f} against static: the claim "
                     f"{'holds' if v['holds'] else 'does not hold'} here.")
    for p in s["boost_instead_of_scale"]:
        lines.append(f"Boost instead of scale: {p['small']} with verdict reaches rare-task "
                     f"accuracy {p['verdict_small_rare_acc']:.2f}, {p['large']} "
                     f"({p['ratio']:g}× the parameters) on the natural mixture "
                     f"{p['static_large_rare_acc']:.2f}: "
                     f"{'holds' if p['holds'] else 'does not hold'}.")
    return lines


def write_plots(results: dict, folder: Path) -> dict[str, str]:
    s = results["summary"]
    sizes = s["size_names"]
    policies = list(dict.fromkeys(p for size in sizes for p in s["by_size"][size]))
    fig = new_figure(1.6 + 1.1 * len(policies) * len(sizes) / 2, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(sizes)
    for i, size in enumerate(sizes):
        here = [k for k, p in enumerate(policies) if p in s["by_size"][size]]
        xs = [k + i * width for k in here]
        entries = [s["by_size"][size][policies[k]]["rare_acc"] for k in here]
        ax.bar(xs, [100 * e["mean"] for e in entries], width, label=size,
               yerr=[100 * e["std"] for e in entries], capsize=3)
        for x, e in zip(xs, entries, strict=True):
            ax.scatter([x] * len(e["per_seed"]), [100 * v for v in e["per_seed"]], s=8,
                       color="#333333", zorder=3)
    ax.set_xticks([k + width * (len(sizes) - 1) / 2 for k in range(len(policies))], policies,
                  fontsize=8)
    ax.set_ylabel("rare-task accuracy (%)")
    ax.legend(fontsize=7, title="size", title_fontsize=7)
    return {"rare": save_png(fig, folder / "rare.png").name}


def _decisions(results: dict) -> list:
    blocks = []
    for cell in results["cells"]:
        texts = [text for stage in cell["stages"] for text in stage["decisions"]]
        if texts:
            blocks.append(Details(f"{cell['id']}: {len(texts)} decisions", [Bullets(texts)]))
    return blocks


def lab_sections(results: dict, plots: dict[str, str]) -> list[Section]:
    header, rows = summary_rows(results)
    sizes = ", ".join(f"{x['name']} ({fmt_params(x['params'])})" for x in results["sizes"])
    preset = results["preset"]
    meta = (f"preset {preset['name']}: sizes {sizes}; {preset['stages']} stages, "
            f"{preset['steps']:,} steps × {preset['batch_size']} per loop; "
            f"{fmt_seconds(results['summary'].get('wall_seconds'))}")
    return [
        Section(None, [Text(meta, css="meta")]),
        Section("What this run shows", [Bullets(reading(results))]),
        Section("Per size and policy", [Table(header, rows, numeric_from=2,
                                              note="mean ± spread over seeds; overhead: "
                                              "evaluations, mixing, probes and reference "
                                              "training over the stages' training time")]),
        Section("Plots", [Image(plots["rare"], "Rare-task accuracy per policy and size: mean "
                                "over seeds with the spread; dots are the seeds.", alt="rare")]),
        Section("Decisions of each loop", _decisions(results)),
        Section("Preset", [preset_table(preset)]),
        Section("Files in the run directory", [FileList(FILES)]),
    ]


write_report = register_lab(KIND, TITLE, lab_sections, write_plots)
