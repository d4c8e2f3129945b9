"""The lab report's mechanism section: interference, retention and neurons against size, and
the per-task verdicts with their agreement with the lab's ground truth."""

from __future__ import annotations

import html

import numpy as np
from matplotlib.figure import Figure

from smolmix.report.plots import _figure, _size_colors, _size_label, fmt_params


def _values(values: list | None) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values or []], dtype=float)


def mechanism_figure(results: dict) -> Figure | None:
    """Three panels: rare-task interference over training per size; final interference and
    retention against size; neurons held per task group against size."""
    mech = results["summary"].get("mechanism")
    if not mech or not mech.get("interference_rare"):
        return None
    sizes = [s for s in results["sizes"] if s["name"] in mech["interference_rare"]]
    params = np.asarray([s["params"] for s in sizes], dtype=float)
    fig = _figure(13.5, 4.2)
    a, b, c = fig.subplots(1, 3)
    for size, color in zip(sizes, _size_colors(len(sizes)), strict=True):
        a.plot(mech["steps"], _values(mech["interference_rare"][size["name"]]), color=color,
               marker="o", markersize=3, label=_size_label(size))
    a.axhline(0, color="black", linewidth=0.8)
    a.set_xlabel("training step")
    a.set_ylabel("others' part / own |g|² (rare tasks)")
    a.set_title("Interference on the rare tasks", fontsize=10)
    a.legend(fontsize=7)
    b.plot(params, _values(mech["interference_rare_final"]), "o-", color="firebrick",
           label="interference on rare tasks (end)")
    b.plot(params, _values(mech["interference_frequent_final"]), "^-", color="steelblue",
           label="interference on frequent tasks (end)")
    b.plot(params, _values(mech["retention_rare"]), "s--", color="darkgreen",
           label="retention of rare-task gains")
    b.axhline(0, color="black", linewidth=0.8)
    b.set_title("Interference and retention against size", fontsize=10)
    c.plot(params, _values(mech["neurons_rare"]), "o-", color="firebrick",
           label="neurons per rare task")
    c.plot(params, _values(mech["neurons_frequent"]), "^-", color="steelblue",
           label="neurons per frequent task")
    shared = ", ".join(f"{v:.0f}" for v in _values(mech["neurons_shared"]))
    c.set_title(f"MLP neurons held per task (shared: {shared})", fontsize=9)
    for ax in (b, c):
        ax.set_xscale("log")
        ax.set_xticks(params, [f"{s['name']}\n{fmt_params(p)}" for s, p in zip(sizes, params)],
                      fontsize=8)
        ax.minorticks_off()
        ax.legend(fontsize=7)
    for ax in (a, b, c):
        ax.grid(alpha=0.3)
    return fig


def mechanism_sentences(results: dict) -> list[str]:
    """What the measured mechanism says, from the numbers."""
    summary = results["summary"]
    mech, diag = summary.get("mechanism"), summary.get("diagnosis")
    out = []
    if mech and mech.get("interference_rare_final"):
        names = [n for n in summary["size_names"] if n in mech["interference_rare"]]
        inter = mech["interference_rare_final"]
        ret = mech["retention_rare"]
        out.append("Interference from the other tasks on the rare tasks at the end of training "
                   "(their part of the mixture step over the task's own squared gradient; "
                   "negative undoes the task): " + ", ".join(
                       f"{n} {v:+.2f}" if v is not None else f"{n} n/a"
                       for n, v in zip(names, inter)) + ".")
        out.append("Retention of a rare-task gain after as many mixture steps (1 = kept, 0 = "
                   "lost): " + ", ".join(f"{n} {v:.2f}" if v is not None else f"{n} n/a"
                                        for n, v in zip(names, ret)) + ".")
    if diag and diag.get("agreement_same_seed") is not None:
        same, other = diag["agreement_counts"]["same_seed"], diag["agreement_counts"]["other_seed"]
        text = (f"Verdicts agree with the lab's ground truth in {same[0]} of {same[1]} "
                f"rare-task cases on the same seed")
        if other[1]:
            text += f" and {other[0]} of {other[1]} when checked against the other seeds' runs"
        out.append(text + ".")
    return out


def verdict_table_html(results: dict) -> str:
    diag = results["summary"].get("diagnosis")
    if not diag or not diag.get("verdicts"):
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(v['size'])}</td><td>{v['seed']}</td>"
        f"<td>{html.escape(v['task'])}</td><td>{html.escape(v['verdict'])}</td>"
        f"<td>{html.escape(v['remedy'] or '')}</td></tr>" for v in diag["verdicts"])
    return ("<table><thead><tr><th>size</th><th>seed</th><th>task</th><th>verdict</th>"
            f"<th>remedy</th></tr></thead><tbody>{rows}</tbody></table>")
