"""The HTML report, the terminal summary table and the plain-language reading of a lab run.

Every sentence of the reading is built from the run's numbers, and each conclusion is phrased
both ways: a run that shows no gap, or whose small model also fails alone, says so.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from smolmix.report.plots import (
    boost_target,
    fmt_params,
    fmt_share,
    is_missing,
    learn_threshold,
    task_share,
)

REPORT_FILE = "report.html"
GAP_POINTS = 10  # a rare-task gap between sizes under this many points counts as no gap

PLOT_CAPTIONS = {
    "heatmap": "Final exact match of every task (rows, most frequent on top; rare tasks in red) "
               "for every model size (columns), trained on the natural mixture.",
    "curves": "Exact match on each task during training on the natural mixture, one line per "
              "model size.",
    "boost": "Accuracy on {target} as its share of the mixture is raised; the hollow point is "
             "the natural mixture, the dashed line the learning threshold.",
    "rare_vs_size": "Mean exact match on the rare tasks (in the mixture and trained alone) and "
                    "on the frequent tasks, against the number of parameters.",
    "mechanism": "The mechanism in the natural mixture: interference from the other tasks on "
                 "the rare tasks during training (negative undoes them), interference and "
                 "retention against size, and MLP neurons held per task group.",
}

PLOT_FILES = {
    "heatmap": "exact match of every task × size on the natural mixture.",
    "curves": "per-task learning curves on the natural mixture, one line per size.",
    "boost": "accuracy on the boost target against its share of the mixture.",
    "rare_vs_size": "rare (mixture and alone) and frequent accuracy against model size.",
    "mechanism": "interference, retention and neurons per task group against size.",
}

FILES = (
    ("results.json", "every number in this report: preset, tasks, sizes, per-cell final "
                     "scores and curves, and the summary."),
    ("report.html", "this page."),
    ("data/s<seed>/<task>.jsonl", "the generated training examples of each task: the sources "
                                  "every cell's mixture is built from."),
    ("cells/<id>/recipe.yaml", "the smolmix mix recipe of that cell's training mixture."),
    ("cells/<id>/curves.jsonl", "one cell's held-out loss and exact match per task at every "
                                "evaluation step; a cell is one training run, named "
                                "<kind>[-<boost share>]-<size>-s<seed>."),
    ("cells/<id>/checkpoint/", "the cell's trained model, a Hugging Face checkpoint: load it "
                               "with AutoModelForCausalLM.from_pretrained and "
                               "AutoTokenizer.from_pretrained."),
    ("manifest.json", "what made this directory: command, arguments, seeds, versions, time."),
)

CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
.meta, .note { color: #666; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; }
.rare { color: #b22222; font-weight: bold; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""


# ---------------------------------------------------------------- numbers


def _pct(x: float) -> int:
    return round(x * 100)


def _fmt_acc(mean: float | None, std: float | None = None) -> str:
    """``43%``, or ``43 ± 5%`` when a spread over seeds is given."""
    if is_missing(mean):
        return "—"
    if is_missing(std):
        return f"{_pct(mean)}%"
    return f"{_pct(mean)} ± {_pct(std)}%"


def _fmt_seconds(seconds: float | None) -> str:
    if is_missing(seconds):
        return "unknown"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds:.0f} s ({seconds / 60:.1f} min)"


def _at(values: list | None, i: int) -> float | None:
    """``values[i]``, or ``None`` when the list is absent or too short."""
    return values[i] if values and i < len(values) else None


def _n_seeds(results: dict) -> int:
    return len({c["seed"] for c in results["cells"] if c["kind"] == "natural"})


# ---------------------------------------------------------------- summary table


def _table(results: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table, one row per size."""
    s = results["summary"]
    target = boost_target(results)
    min_share = s.get("min_share_to_learn") or {}
    spread = _n_seeds(results) > 1
    header = ["size", "params", "rare acc", "frequent acc", "rare alone (isolation)",
              f"min share to learn {target}" if target else "min share to learn"]
    rows = []
    for i, (name, params) in enumerate(zip(s["size_names"], s["sizes"], strict=True)):
        rows.append([
            name,
            fmt_params(params),
            *(_fmt_acc(_at(s.get(f"{key}_by_size"), i),
                       _at(s.get(f"{key}_std_by_size"), i) if spread else None)
              for key in ("rare_acc", "frequent_acc", "isolation_acc")),
            _fmt_min_share(min_share, name),
        ])
    return header, rows


def _fmt_min_share(min_share: dict, size: str) -> str:
    if size not in min_share:
        return "—"
    return "never" if min_share[size] is None else fmt_share(min_share[size])


def _table_note(results: dict) -> str:
    n = _n_seeds(results)
    spread = f"mean ± std over {n} seeds" if n > 1 else "one seed"
    return (f"Exact match, {spread}; rare/frequent acc: natural mixture; min share: smallest "
            f"boost share reaching {learn_threshold(results):.0%} (— not boosted).")


def summary_table(results: dict) -> str:
    """The summary as an aligned plain-text table for the terminal, with the wall time."""
    header, rows = _table(results)
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if k < 2 else c.rjust(w)
                         for k, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    wall = results["summary"].get("wall_seconds")
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows),
                      _table_note(results), f"wall time: {_fmt_seconds(wall)}"])


# ---------------------------------------------------------------- the reading


def reading(results: dict) -> list[str]:
    """Plain-language sentences that read the result from the run's numbers."""
    from smolmix.report.mechanism import mechanism_sentences

    sentences = [_size_sentence(results), _frequent_sentence(results),
                 _isolation_sentence(results), _boost_sentence(results),
                 *mechanism_sentences(results)]
    return [s for s in sentences if s]


def _subject(results: dict) -> str:
    return "the smallest model" if len(results["summary"]["size_names"]) > 1 else "the model"


def _size_sentence(results: dict) -> str:
    s = results["summary"]
    names, params, rare = s["size_names"], s["sizes"], s["rare_acc_by_size"]
    if len(names) == 1:
        return (f"Only one model size was trained ({names[0]}, {fmt_params(params[0])} params), "
                f"so this run cannot compare sizes; it reaches {_fmt_acc(rare[0])} on the rare "
                f"tasks in the natural mixture.")
    lo, hi = _pct(rare[0]), _pct(rare[-1])
    gap = hi - lo
    head = (f"The largest model ({names[-1]}, {fmt_params(params[-1])} params) reaches {hi}% "
            f"on the rare tasks in the natural mixture, the smallest ({names[0]}, "
            f"{fmt_params(params[0])}) {lo}%")
    return head + _gap_verdict(gap, lo, hi, _pct(learn_threshold(results))) + _noise_note(s, gap)


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
    spread = _pct(stds[0]) + _pct(stds[-1])
    if spread < abs(gap):
        return ""
    return (f" The seeds spread by ±{_pct(stds[0])} and ±{_pct(stds[-1])} points, as much as the "
            f"gap, so treat it with caution.")


def _frequent_sentence(results: dict) -> str | None:
    s = results["summary"]
    freq, rare = _at(s.get("frequent_acc_by_size"), 0), _at(s.get("rare_acc_by_size"), 0)
    if is_missing(freq) or is_missing(rare):
        return None
    threshold, who = learn_threshold(results), _subject(results)
    if freq < threshold:
        return (f"On the frequent tasks {who} reaches only {_fmt_acc(freq)}, so it is weak across "
                f"the mixture, not only on its rare tasks.")
    if rare < threshold:
        return (f"On the frequent tasks {who} reaches {_fmt_acc(freq)}: it learns the common part "
                f"of the mixture and fails on the rare part.")
    return f"On the frequent tasks {who} reaches {_fmt_acc(freq)}."


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
                if not is_missing(_at(v, i))}
    natural = _at(s.get("rare_acc_by_size"), i)
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
        return _and_join([f"{t} ({_fmt_acc(per_task[t])})" for t in tasks])

    if learned and missed:
        return (f" learns {listed(learned)} but not {listed(missed)}: it can express the former, "
                f"so failing them in the mixture would not be a capacity limit, while the latter "
                f"may be beyond this size.")
    detail = ", ".join(f"{t} {_fmt_acc(v)}" for t, v in per_task.items())
    detail = f" ({detail})" if detail else ""
    if missed or (not per_task and iso < threshold):
        return (f" reaches only {_fmt_acc(iso)}{detail}, so it may lack the capacity to express "
                f"them: the isolation control does not rule out a capacity limit.")
    if not is_missing(natural) and natural >= threshold:
        return f" reaches {_fmt_acc(iso)}{detail}, as it does in the mixture."
    return (f" reaches {_fmt_acc(iso)}{detail}, so it can express them: its {_fmt_acc(natural)} "
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


# ---------------------------------------------------------------- the HTML page


def _esc(x: object) -> str:
    return html.escape(str(x))


def _html_table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{_esc(c)}</td>' if k >= numeric_from
                         else f"<td>{_esc(c)}</td>" for k, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figures(results: dict, plots: dict[str, str]) -> str:
    target = boost_target(results) or "the boost target"
    out = []
    for key, name in plots.items():
        caption = PLOT_CAPTIONS.get(key, key).format(target=target)
        out.append(f'<figure><img src="{_esc(name)}" alt="{_esc(key)}">'
                   f"<figcaption>{_esc(caption)}</figcaption></figure>")
    return "\n".join(out) or "<p>No plots were written.</p>"


def _tasks_table(results: dict) -> str:
    rows = []
    for t in results["tasks"]:
        cls = ' class="rare"' if t.get("group") == "rare" else ""
        rows.append(f"<tr><td{cls}>{_esc(t['name'])}</td><td>{_esc(t.get('group', ''))}</td>"
                    f'<td class="num">{_esc(fmt_share(t["share"]))}</td></tr>')
    return ("<table><thead><tr><th>task</th><th>group</th><th>natural share</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _preset_table(results: dict) -> str:
    preset = results.get("preset") or {}
    rows = [[k, v if isinstance(v, str) else json.dumps(v)] for k, v in preset.items()]
    return _html_table(["parameter", "value"], rows, numeric_from=2)


def _files_list(plots: dict[str, str]) -> str:
    pngs = [(name, PLOT_FILES.get(key, "a plot of the run.")) for key, name in plots.items()]
    files = [*FILES[:2], *pngs, *FILES[2:]]
    items = "".join(f"<li><code>{_esc(name)}</code>: {_esc(what)}</li>" for name, what in files)
    return f"<ul>{items}</ul>"


def _meta_line(results: dict) -> str:
    preset, summary = results.get("preset") or {}, results["summary"]
    version = (results.get("smolmix") or {}).get("version", "?")
    wall = _fmt_seconds(summary.get("wall_seconds"))
    seeds = _n_seeds(results)
    parts = [f"preset {preset.get('name', '?')}", f"{len(results['sizes'])} sizes",
             f"{len(results['tasks'])} tasks", f"{seeds} seed{'s' if seeds != 1 else ''}",
             f"{preset.get('steps', '?')} steps", f"wall time {wall}", f"smolmix {version}"]
    return " · ".join(parts)


def render_report(results: dict, plots: dict[str, str]) -> str:
    """The report page as an HTML string (see :func:`write_report`)."""
    from smolmix.report.mechanism import verdict_table_html

    header, rows = _table(results)
    sentences = "".join(f"<li>{_esc(s)}</li>" for s in reading(results))
    title = "smolmix lab: rare tasks"
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{_esc(title)}</title><style>{CSS}</style></head>
<body>
<h1>{_esc(title)}</h1>
<p class="meta">{_esc(_meta_line(results))}</p>
<h2>What this run shows</h2>
<ul>{sentences}</ul>
<h2>Summary</h2>
{_html_table(header, rows)}
<p class="note">{_esc(_table_note(results))}</p>
<h2>Plots</h2>
{_figures(results, plots)}
<h2>Verdicts per rare task</h2>
{verdict_table_html(results)}
<h2>Tasks</h2>
{_tasks_table(results)}
<h2>Preset</h2>
{_preset_table(results)}
<h2>Files in this directory</h2>
{_files_list(plots)}
</body>
</html>
"""


def write_report(results: dict, plots: dict[str, str], out_dir: Path) -> Path:
    """Write ``out_dir/report.html``, a self-contained page that shows ``plots`` by file name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REPORT_FILE
    path.write_text(render_report(results, plots), encoding="utf-8")
    return path
