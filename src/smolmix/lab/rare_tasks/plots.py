"""PNG plots of a rare-tasks lab run, drawn from its ``results.json`` dict with matplotlib's
object API (through :mod:`smolmix.core.figures`): headless, no figure registry, and the same
bytes for the same results."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from textwrap import fill

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from smolmix.core.figures import new_figure, save_png
from smolmix.lab.rare_tasks.reading import agreement, directional, measure_name
from smolmix.lab.rare_tasks.results import (
    boost_points,
    boost_target,
    boosted_sizes,
    floats,
    learn_threshold,
    mean_curve,
    natural_acc,
    seed_note,
    size_names,
    task_share,
)
from smolmix.report.formats import fmt_params, fmt_share

RARE_COLOR = "firebrick"


# ---------------------------------------------------------------- drawing helpers


def _size_colors(n: int) -> list:
    """One colour per size along a sequential map, so the ladder reads dark to light."""
    return list(colormaps["viridis"](np.linspace(0.0, 0.8, n) if n > 1 else [0.35]))


def _size_label(size: dict) -> str:
    return f"{size['name']} ({fmt_params(size['params'])})"


def _log_ticks(ax: Axes, ticks: list[float], labels: list[str]) -> None:
    """Put exactly ``ticks`` on a log x axis, without matplotlib's minor tick labels."""
    ax.set_xscale("log")
    ax.set_xticks(ticks, labels)
    ax.set_xticks([], minor=True)


# ---------------------------------------------------------------- the plots


def _heatmap(results: dict) -> Figure:
    tasks, sizes = results["tasks"], results["sizes"]
    grid = np.array([[natural_acc(results, s["name"], t["name"])[0] for s in sizes]
                     for t in tasks])
    fig = new_figure(max(6.0, 4.2 + 1.0 * len(sizes)), 1.3 + 0.36 * len(tasks))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(sizes)), [f"{s['name']}\n{fmt_params(s['params'])} params"
                                      for s in sizes])
    ax.set_yticks(range(len(tasks)), [f"{t['name']} ({fmt_share(t['share'])})" for t in tasks])
    ax.tick_params(length=0)
    for label, task in zip(ax.get_yticklabels(), tasks, strict=True):
        if task.get("group") == "rare":
            label.set_fontweight("bold")
            label.set_color(RARE_COLOR)
    for (i, j), value in np.ndenumerate(grid):
        text = "–" if math.isnan(value) else f"{value * 100:.0f}"
        color = "black" if not math.isnan(value) and value > 0.6 else "white"
        ax.text(j, i, text, ha="center", va="center", color=color, fontsize=9)
    _mark_groups(ax, [t.get("group", "") for t in tasks])
    fig.colorbar(image, ax=ax, label="exact match", shrink=0.8, pad=0.02)
    ax.set_title(f"Exact match (%) on the natural mixture, {seed_note(results, spread=False)}",
                 fontsize=10)
    return fig


def _mark_groups(ax: Axes, groups: list[str]) -> None:
    """White lines between task groups, and each group's name on the right-hand axis."""
    starts = [i for i, g in enumerate(groups) if i == 0 or g != groups[i - 1]]
    for i in starts[1:]:
        ax.axhline(i - 0.5, color="white", linewidth=3)
    ends = [*starts[1:], len(groups)]
    right = ax.secondary_yaxis("right")
    right.set_yticks([(a + b - 1) / 2 for a, b in zip(starts, ends, strict=True)],
                     [groups[a] for a in starts])
    right.tick_params(length=0)
    for label, start in zip(right.get_yticklabels(), starts, strict=True):
        label.set_color(RARE_COLOR if groups[start] == "rare" else "dimgray")


def _curves(results: dict) -> Figure:
    tasks, sizes = results["tasks"], results["sizes"]
    ncols = min(4, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig = new_figure(2.6 * ncols + 0.4, 1.9 * nrows + 0.9)
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    colors = _size_colors(len(sizes))
    for ax, task in zip(axes.flat, tasks, strict=False):  # spare panels stay empty
        for size, color in zip(sizes, colors, strict=True):
            _draw_curve(ax, mean_curve(results, size["name"], task["name"]), color)
        rare = task.get("group") == "rare"
        ax.set_title(f"{task['name']} ({fmt_share(task['share'])})", fontsize=9,
                     fontweight="bold" if rare else "normal", color=RARE_COLOR if rare else "black")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    _finish_grid(axes, len(tasks))
    _size_legend(fig, sizes, colors)
    fig.suptitle(f"Learning curves on the natural mixture ({seed_note(results)})", fontsize=11)
    return fig


def _draw_curve(ax: Axes, curve: tuple[np.ndarray, ...] | None, color) -> None:
    if curve is None:
        return
    steps, mean, std = curve
    ax.plot(steps, mean, color=color, linewidth=1.5)
    if np.any(std > 0):
        ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)


def _finish_grid(axes: np.ndarray, used: int) -> None:
    """Hide unused panels; label the lowest panel of each column and the first column."""
    nrows, ncols = axes.shape
    for k, ax in enumerate(axes.flat):
        ax.set_visible(k < used)
    for col in range(ncols):
        bottom = max(r for r in range(nrows) if r * ncols + col < used)
        axes[bottom, col].xaxis.set_tick_params(labelbottom=True)
        axes[bottom, col].set_xlabel("step")
    for row in axes[:, 0]:
        row.set_ylabel("exact match")


def _size_legend(fig: Figure, sizes: list[dict], colors: list) -> None:
    handles = [Line2D([], [], color=c, linewidth=2, label=_size_label(s))
               for s, c in zip(sizes, colors, strict=True)]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(sizes), 6),
               title="model size (parameters)", fontsize=9, title_fontsize=9, frameon=False)


def _boost(results: dict) -> Figure | None:
    target, boosted = boost_target(results), boosted_sizes(results)
    if not target or not boosted:
        return None
    natural_share = task_share(results, target)
    threshold = learn_threshold(results)
    min_share = results.get("summary", {}).get("min_share_to_learn") or {}
    names = size_names(results)
    colors = dict(zip(names, _size_colors(len(names)), strict=True))
    fig = new_figure(7.6, 4.3)
    ax = fig.add_subplot()
    shares: set[float] = set()
    for size in boosted:
        points = boost_points(results, size, target)
        shares.update(p[0] for p in points)
        if natural_share is not None:
            points = [(natural_share, *natural_acc(results, size, target)), *points]
        _draw_boost_line(ax, points, colors[size], _boost_label(size, min_share))
        if natural_share is not None:  # hollow marker: the natural mixture, not a boost cell
            ax.plot(points[0][0], points[0][1], "o", color=colors[size], markerfacecolor="white",
                    markersize=7, zorder=3)
    ax.axhline(threshold, linestyle="--", color="gray", linewidth=1,
               label=f"learned (≥ {threshold:.0%})")
    _boost_axes(ax, sorted(shares), natural_share, target)
    fig.legend(loc="outside right upper", fontsize=9, frameon=False)
    ax.set_title(f"Boost sweep: minimum share to learn {target}", fontsize=11)
    return fig


def _boost_label(size: str, min_share: dict) -> str:
    """``xs: learns from 10%``; the minimum share comes from the summary."""
    if size not in min_share:
        return size
    share = min_share[size]
    return f"{size}: learns from {fmt_share(share)}" if share is not None else f"{size}: never"


def _draw_boost_line(ax: Axes, points: list[tuple[float, float, float]], color,
                     label: str) -> None:
    x, mean, std = (np.array(v, dtype=float) for v in zip(*points, strict=True))
    ax.errorbar(x, mean, yerr=np.nan_to_num(std), color=color, marker="o", capsize=3,
                linewidth=1.5, label=label)


def _boost_axes(ax: Axes, shares: list[float], natural: float | None, target: str) -> None:
    ticks = list(shares)
    if natural is not None:
        ax.axvline(natural, linestyle=":", color="gray", linewidth=1)
        ax.annotate("natural\nshare", (natural, 0.5), xytext=(4, 0), textcoords="offset points",
                    fontsize=8, color="dimgray", va="center")
        if all(abs(math.log(natural / s)) > 0.4 for s in shares):
            ticks.append(natural)
    ticks.sort()
    _log_ticks(ax, ticks, [fmt_share(t) for t in ticks])
    ax.set_xlim(min(ticks) / 1.6, max(ticks) * 1.6)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel(f"share of {target} in the training mixture (log scale)")
    ax.set_ylabel(f"exact match on {target}")
    ax.grid(alpha=0.3)


SERIES = (  # the rare_vs_size lines: label, summary key, colour, marker, style
    ("rare tasks, natural mixture", "rare_acc", RARE_COLOR, "o", "-"),
    ("rare tasks alone (isolation)", "isolation_acc", "darkorange", "s", "--"),
    ("frequent tasks, natural mixture", "frequent_acc", "steelblue", "^", "-"),
)


def _rare_vs_size(results: dict) -> Figure:
    summary = results["summary"]
    params = np.asarray(summary["sizes"], dtype=float)
    fig = new_figure(6.4, 4.6)
    ax = fig.add_subplot()
    offsets = (0.97, 1.0, 1.03)  # nudge the series apart so error bars do not overlap
    for (label, key, color, marker, style), nudge in zip(SERIES, offsets, strict=True):
        mean = floats(summary.get(f"{key}_by_size"), len(params))
        if np.all(np.isnan(mean)):
            continue
        std = np.nan_to_num(floats(summary.get(f"{key}_std_by_size"), len(params)))
        ax.errorbar(params * nudge, mean, yerr=std, color=color, marker=marker, linestyle=style,
                    capsize=3, linewidth=1.5, label=label)
    labels = [f"{n}\n{fmt_params(p)}" for n, p in zip(summary["size_names"], params, strict=True)]
    _log_ticks(ax, list(params), labels)
    ax.set_xlim(params.min() / 2, params.max() * 2)
    ax.set_ylim(-0.05, 1.05)
    threshold = learn_threshold(results)
    ax.axhline(threshold, linestyle=":", color="gray", linewidth=1,
               label=f"learned (≥ {threshold:.0%})")
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("exact match (mean over the group's tasks)")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    ax.set_title(f"Accuracy against model size ({seed_note(results)})", fontsize=11)
    return fig


AGREEMENT_COLORS = {"agrees": "darkgreen", "ends agree": "darkorange", "does not": RARE_COLOR}
OVER_TRAINING = (  # the mechanism figure's top row: series key, y label, title, log y
    ("frequent_grad_norm", "share-weighted gradient norm (log scale)",
     "Frequent-task gradient norm over training", True),
    ("rare_delta_others", "nats per step (+ raises the rare tasks' loss)",
     "Interference on the rare tasks over training", False),
)


def _mechanism(results: dict) -> Figure | None:
    """Top: the frequent-task gradient norm and the interference on the rare tasks over
    training, one line per size; bottom: each measure with a direction in the paper against
    size, titled with that direction and whether this run agrees."""
    mech = results["summary"].get("mechanism")
    measures = directional(mech)
    if not mech or not mech.get("sizes") or not measures:
        return None
    sizes = [s for s in results["sizes"] if s["name"] in mech["sizes"]]
    colors = dict(zip(size_names(results), _size_colors(len(results["sizes"])), strict=True))
    n = len(measures)
    fig = new_figure(max(11.0, 2.7 * n), 7.8)
    grid = fig.add_gridspec(2, 2 * n, height_ratios=(1.15, 1))
    for k, (key, ylabel, title, log) in enumerate(OVER_TRAINING):
        ax = fig.add_subplot(grid[0, k * n:(k + 1) * n])
        for size in sizes:
            _draw_series(ax, mech.get("series", {}).get(size["name"]) or [], key,
                         colors[size["name"]], log)
        ax.set(xlabel="training step", ylabel=ylabel, yscale="log" if log else "linear")
        if not log:
            ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    params = np.asarray([s["params"] for s in sizes], dtype=float)
    for k, (name, entry) in enumerate(measures.items()):
        ax = fig.add_subplot(grid[1, 2 * k:2 * k + 2])
        _draw_measure(ax, params, entry)
        _log_ticks(ax, list(params), [s["name"] for s in sizes])  # parameters in the legend
        ax.tick_params(labelsize=7)
        ax.set_xlim(params.min() / 2, params.max() * 2)
        what, unit = measure_name(name)
        agrees = agreement(entry)
        ax.set_xlabel("size (parameters, log scale)", fontsize=7)
        ax.set_ylabel(unit, fontsize=8)
        ax.set_title(f"{fill(what, 30, break_on_hyphens=False)}\n"
                     f"paper: {entry['direction']} — this run: {agrees}",
                     fontsize=8, color=AGREEMENT_COLORS[agrees])
        ax.grid(alpha=0.3)
    _size_legend(fig, sizes, [colors[s["name"]] for s in sizes])
    fig.suptitle(f"The mechanism on the natural mixture ({seed_note(results)})", fontsize=11)
    return fig


def _draw_series(ax: Axes, runs: list[dict], key: str, color, positive: bool) -> None:
    """One size's series ``key`` over training, mean over seeds (``positive``: values <= 0
    left out, for a log axis)."""
    runs = [r for r in runs if r.get(key) and r.get("steps")]
    if not runs:
        return
    n = min(len(r[key]) for r in runs)
    values = np.ma.masked_invalid([floats(r[key][:n], n) for r in runs])
    if positive:
        values = np.ma.masked_less_equal(values, 0)
    mean = values.mean(axis=0).filled(np.nan)
    ax.plot(floats(runs[0]["steps"][:n], n), mean, color=color, marker="o", markersize=3,
            linewidth=1.5)


def _draw_measure(ax: Axes, params: np.ndarray, entry: dict) -> None:
    """A measure against size: mean ± std over seeds, each seed a faint dot."""
    mean = floats(entry.get("by_size"), len(params))
    if np.all(np.isnan(mean)):
        ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", color="gray")
        return
    for values in (entry.get("by_seed") or {}).values():
        ax.plot(params, floats(values, len(params)), "o", color="gray", alpha=0.35,
                markersize=4, linestyle="none")
    std = np.nan_to_num(floats(entry.get("std_by_size"), len(params)))
    ax.errorbar(params, mean, yerr=std, color="black", marker="o", capsize=3, linewidth=1.5)


PLOTS: dict[str, Callable[[dict], Figure | None]] = {
    "heatmap": _heatmap,
    "curves": _curves,
    "boost": _boost,
    "rare_vs_size": _rare_vs_size,
    "mechanism": _mechanism,
}


def write_plots(results: dict, out_dir: Path) -> dict[str, str]:
    """Draw the run's plots into ``out_dir``; return ``{key: file name}`` of those written.

    ``boost`` is left out when the run has no boost cells, ``mechanism`` when it has no
    mechanism measures.
    """
    written: dict[str, str] = {}
    for key, draw in PLOTS.items():
        fig = draw(results)
        if fig is not None:
            written[key] = save_png(fig, Path(out_dir) / f"{key}.png").name
    return written
