"""The learnability-gap lab's report: plots, the plain-language reading, the summary table and
the sections ``smolmix report`` shows for runs of kind ``lab.learnability-gap``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from smolmix.core.figures import new_figure, save_png
from smolmix.lab.learnability.arms import AXES, arm_name
from smolmix.report.formats import MISSING, fmt_params, fmt_seconds, text_table
from smolmix.report.lab_page import preset_table, register_lab
from smolmix.report.page import Bullets, FileList, Image, Section, Table, Text

KIND = "lab.learnability-gap"
TITLE = "smolmix lab: learnability gap"
RESULTS_FILE = "results.json"
PAPER = ("Li et al. 2025 (arXiv 2502.12143): the Long-CoT gap P(long) − P(short) is negative "
         "for Qwen2.5-0.5B to 3B (−4.7, −7.1, −3.1 points) and positive from 7B; the "
         "Large-teacher gap is −3.5 / −0.8 / +0.3 for 0.5B / 1.5B / 3B; mixing long:short or "
         "large:small at 1:4 beats either source alone for small students.")
AXIS_WORDS = {"long": ("Long-CoT gap", "P(long) − P(short)"),
              "large": ("Large-teacher gap", "P(large) − P(small)")}
FILES = (
    (RESULTS_FILE, "every number in this report: preset, sizes, every cell's per-problem "
                   "verdicts and tokens, and the summary."),
    ("report.html", "this page."),
    ("gaps.png", "both gaps against student size, with their intervals."),
    ("ratios.png", "accuracy against the mix ratio, one line per size."),
    ("data/s<seed>/<style>.jsonl", "each style's training traces: the sources every mixture "
                                   "is built from."),
    ("data/heldout/<task>-<difficulty>.jsonl", "the held-out problems, every cell's eval."),
    ("models/<size>-s<seed>/", "the initial weights and tokenizer (the base arm's model)."),
    ("recipes/<arm>-<size>-s<seed>.yaml", "the smolmix mix recipe of a cell."),
    ("mixtures/<id>/", "the mixture smolmix mix built from it."),
    ("cells/<id>/", "the smolmix train run of a cell (its model in model/)."),
    ("evals/<id>/", "the smolmix eval run of a cell: samples, scores; smolmix gap reads these "
                    "(tags student, arm, cot / teacher)."),
    ("manifest.json", "what made this directory."),
)


def _pct(x: float | None) -> str:
    return MISSING if x is None else f"{100 * x:.1f}"


def _gap(entry: dict | None) -> str:
    if entry is None:
        return MISSING
    return f"{100 * entry['gap']:+.1f} [{100 * entry['low']:+.1f}, {100 * entry['high']:+.1f}]"


def _axes(results: dict) -> list[str]:
    return list(results["preset"]["ratios"])


def write_plots(results: dict, folder: Path) -> dict[str, str]:
    """``gaps.png`` and ``ratios.png`` into ``folder``; return {key: file name}."""
    s = results["summary"]
    names, params = s["size_names"], s["sizes"]
    axes = [a for a in _axes(results) if f"{a}_gap_detail_by_size" in s]
    plots = {}
    if axes:
        fig = new_figure(4.2 * len(axes), 3.4)
        for k, axis in enumerate(axes):
            ax = fig.add_subplot(1, len(axes), k + 1)
            detail = s[f"{axis}_gap_detail_by_size"]
            y = [100 * g["gap"] for g in detail]
            err = [[100 * (g["gap"] - g["low"]) for g in detail],
                   [100 * (g["high"] - g["gap"]) for g in detail]]
            ax.errorbar(params, y, yerr=err, marker="o", capsize=4, color="#4f81bd")
            for x, g in zip(params, detail, strict=True):
                ax.scatter([x] * len(g["by_seed"]), [100 * v for v in g["by_seed"]], s=8,
                           color="#999999", zorder=3)
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set_xscale("log")
            ax.set_xticks(params, [f"{n}\n{fmt_params(p)}" for n, p in zip(names, params,
                                                                          strict=True)])
            ax.minorticks_off()
            word, formula = AXIS_WORDS[axis]
            ax.set_title(f"{word}: {formula}", fontsize=9)
            ax.set_ylabel("points")
        plots["gaps"] = save_png(fig, folder / "gaps.png").name
    fig = new_figure(4.2 * len(_axes(results)), 3.4)
    for k, axis in enumerate(_axes(results)):
        ax = fig.add_subplot(1, len(_axes(results)), k + 1)
        table = s[f"acc_by_{axis}_ratio"]
        ratios = [float(r) for r in table]
        for i, name in enumerate(names):
            ax.plot(ratios, [100 * table[r][i] for r in table], marker="o", label=name)
        _, high, low = AXES[axis]
        ax.set_xlabel(f"share of {high} traces ({low} the rest)")
        ax.set_ylabel("held-out accuracy (%)")
        ax.legend(fontsize=7, title="size", title_fontsize=7)
    plots["ratios"] = save_png(fig, folder / "ratios.png").name
    return plots


def _flags(direction: dict) -> str:
    def yes(key: str) -> str:
        return "yes" if direction[key] else "no"
    return (f"over {', '.join(direction['sizes'])}: negative for the smallest: "
            f"{yes('negative_at_smallest')} (interval excludes 0: "
            f"{yes('significant_at_smallest')}); largest above smallest: {yes('rises_ends')}; "
            f"rising at every step: {yes('rises_monotonic')}; sign flips: {yes('sign_flips')}")


def _relative(detail: Sequence[dict], names: Sequence[str]) -> str:
    return ", ".join(f"{n} {MISSING if d['relative'] is None else format(d['relative'], '.2f')}"
                     for n, d in zip(names, detail, strict=True))


def reading(results: dict) -> list[str]:
    """The run's findings in sentences, from its numbers (either way they came out)."""
    s = results["summary"]
    names = s["size_names"]
    lines = []
    weak = [n for n, ok in zip(names, s["learned_any_by_size"], strict=True) if not ok]
    if weak:
        lines.append(f"{', '.join(weak)}: no arm reaches {s['learned_any_threshold']:.0%} "
                     "held-out accuracy, so the arms cannot be told apart at "
                     f"{'this size' if len(weak) == 1 else 'these sizes'}; their gaps are "
                     "near 0 for that reason.")
    for axis in _axes(results):
        word, formula = AXIS_WORDS[axis]
        if f"{axis}_gap_detail_by_size" in s:
            detail = s[f"{axis}_gap_detail_by_size"]
            gaps = ", ".join(f"{n} {_gap(g)}" for n, g in zip(names, detail, strict=True))
            _, high, low = AXES[axis]
            lines.append(f"{word} {formula}, points [95% interval]: {gaps}. Against the "
                         f"paper, {_flags(s[f'{axis}_gap_direction'])}. As a ratio, "
                         f"P({high}) / P({low}): {_relative(detail, names)}.")
        best = ", ".join(f"{n} {r:g}" for n, r in
                         zip(names, s[f"best_{axis}_ratio_by_size"], strict=True))
        lines.append(f"Best share of {AXES[axis][1]} traces per size: {best}.")
        mixes = s.get(f"best_mix_{axis}_gain_detail_by_size")
        if mixes:
            gains = ", ".join(f"{n} {_gap(d)} (mix {d['best_mix']:g} vs {d['best_single']})"
                              for n, d in zip(names, mixes, strict=True))
            lines.append(f"Best mix minus best single source ({axis} axis), points: {gains}. "
                         "The best mix is chosen from several, so this gain leans high.")
    waits = s.get("long_wait_by_size") or []
    if any(waits):
        parts = ", ".join(
            f"{n} {w['wrong after breaking a right step']:.0%} of answers wrong after "
            f"breaking a right step ({w['fixed a slip']:.0%} fixed a slip of their own)"
            for n, w in zip(names, waits, strict=True) if w)
        lines.append("The long arm imitates the long traces' habit of catching a slip "
                     "(\"wait , X = A , not B\", in every training trace a real slip): "
                     f"{parts}.")
    tokens = s["tokens_by_arm"]
    for axis in _axes(results):
        _, high, low = AXES[axis]
        if high in tokens and low in tokens and tokens[low]:
            lines.append(f"At the same examples and steps, the {high} arm trained on "
                         f"{tokens[high] / tokens[low]:.2f}× the target tokens of the {low} "
                         "arm.")
    return lines


def _summary_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    s = results["summary"]
    acc = s["acc_by_arm"]
    header, rows = ["size", "params", "base"], []
    for axis in _axes(results):
        _, high, low = AXES[axis]
        header += [low, high]
        if f"{axis}_gap_detail_by_size" in s:
            header.append(f"{axis} gap [95%]")
        header += [f"best {axis} share"]
        if f"best_mix_{axis}_gain_by_size" in s:
            header.append(f"mix-{axis} gain [95%]")
    for i, (name, params) in enumerate(zip(s["size_names"], s["sizes"], strict=True)):
        row = [name, fmt_params(params), _pct(acc["base"][i])]
        for axis in _axes(results):
            _, high, low = AXES[axis]
            row += [_pct(acc[low][i]) if low in acc else MISSING,
                    _pct(acc[high][i]) if high in acc else MISSING]
            if f"{axis}_gap_detail_by_size" in s:
                row.append(_gap(s[f"{axis}_gap_detail_by_size"][i]))
            row.append(f"{s[f'best_{axis}_ratio_by_size'][i]:g}")
            if f"best_mix_{axis}_gain_by_size" in s:
                row.append(_gap(s[f"best_mix_{axis}_gain_detail_by_size"][i]))
        rows.append(row)
    return header, rows


def _note(results: dict) -> str:
    seeds = len(results["preset"]["seeds"])
    return (f"Held-out accuracy (%) by greedy generation, mean over {seeds} seed"
            f"{'s' if seeds != 1 else ''}; gaps and gains in points with paired 95% bootstrap "
            "intervals over the held-out problems.")


def summary_table(results: dict) -> str:
    """The summary as aligned plain text for the terminal, with the wall time."""
    wall = results["summary"].get("wall_seconds")
    return "\n".join([text_table(*_summary_rows(results)), _note(results),
                      f"wall time: {fmt_seconds(wall)}"])


def _ratio_table(results: dict, axis: str) -> Table:
    s = results["summary"]
    table = s[f"acc_by_{axis}_ratio"]
    rows = [[f"{float(r):g} ({arm_name(axis, float(r))})",
             *(_pct(v) for v in values)] for r, values in table.items()]
    return Table([f"share of {AXES[axis][1]}", *s["size_names"]], rows,
                 caption=f"Accuracy (%) against the share of {AXES[axis][1]} traces")


def _group_table(results: dict) -> Table:
    s = results["summary"]
    rows = [[g, arm, *(_pct(v) for v in values)]
            for g, by_arm in s["acc_by_group"].items() for arm, values in by_arm.items()]
    return Table(["held-out set", "arm", *s["size_names"]], rows, numeric_from=2)


def _wait_table(results: dict) -> list[Section]:
    s = results["summary"]
    waits = s.get("long_wait_by_size") or []
    if not any(waits):
        return []
    outcomes = next(w for w in waits if w)
    rows = [[o, *(MISSING if w is None else _pct(w[o]) for w in waits)] for o in outcomes]
    return [Section("The long arm's habits", [Table(
        ["first \"wait\" step of an answer", *s["size_names"]], rows,
        note="Share (%) of the long arm's held-out answers, all seeds. In training every "
             "long trace has one \"wait , X = A , not B\" step that corrects a real slip "
             "(B wrong, A right); a student that imitates it without slipping restates a right "
             "value or replaces it with a wrong one.")])]


def _examples(results: dict) -> list:
    blocks = []
    for ex in results.get("examples", []):
        rows = [[style, text.replace("\n", " ⏎ "), str(len(text.split()))]
                for style, text in ex["traces"].items()]
        blocks.append(Table(["style", "trace", "tokens"], rows, numeric_from=2,
                            caption=f"{ex['task']} (difficulty {ex['difficulty']}): "
                                    f"{ex['prompt']}  →  {ex['answer']}"))
    return blocks or [Text("No example traces.")]


def _meta(results: dict) -> str:
    p = results["preset"]
    groups = ", ".join(results["summary"]["groups"])
    return (f"preset {p['name']} · sizes {', '.join(p['sizes'])} · {len(p['seeds'])} seeds · "
            f"{p['steps']} steps × {p['batch_size']} examples · held-out {groups} "
            f"({p['eval_per_level']} each) · wall time "
            f"{fmt_seconds(results['summary'].get('wall_seconds'))}")


def lab_sections(results: dict, plots: dict[str, str]) -> list[Section]:
    header, rows = _summary_rows(results)
    return [
        Section(None, [Text(_meta(results), css="meta")]),
        Section("What this run shows", [Bullets(reading(results)), Text(PAPER, css="note")]),
        Section("Summary", [Table(header, rows, note=_note(results))]),
        Section("Plots", [Image(name, {"gaps": "Both gaps against student size: mean over "
                                       "seeds with the paired 95% interval; grey dots are "
                                       "the seeds.",
                                       "ratios": "Held-out accuracy against the share of the "
                                       "high style in the mixture, one line per size."}[key],
                                alt=key) for key, name in plots.items()]),
        Section("Accuracy against the mix ratio",
                [_ratio_table(results, axis) for axis in _axes(results)]),
        Section("Accuracy per held-out set", [_group_table(results)]),
        *_wait_table(results),
        Section("Example traces", _examples(results)),
        Section("Preset", [preset_table(results["preset"])]),
        Section("Files in the run directory", [FileList(FILES)]),
    ]


write_report = register_lab(KIND, TITLE, lab_sections, write_plots)
