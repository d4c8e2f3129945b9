"""PNG plots of a rare-tasks lab run, drawn from its ``results.json`` dict.

Plots use matplotlib's object API (``Figure`` without pyplot): nothing touches the global
backend or pyplot's figure registry, so drawing is headless and leaks no figures. matplotlib
is imported on first use, so importing ``smolmix.report.html`` (the terminal summary) is fast.
The data helpers here (seed statistics, number formats) are shared with the HTML report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 110
PNG_METADATA = {"Software": None}  # no version string in the file: same results, same bytes
DEFAULT_THRESHOLD = 0.9
RARE_COLOR = "firebrick"


# ---------------------------------------------------------------- formats and data access


def fmt_params(n: float) -> str:
    """A parameter count as ``512``, ``7.7k``, ``363k`` or ``1.2M``."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            v = n / div
            return f"{v:.1f}{unit}" if v < 9.95 else f"{v:.0f}{unit}"
    return f"{n:.0f}"


def fmt_share(share: float) -> str:
    """A mixture share as a percentage: ``64%``, ``3%``, ``0.38%``."""
    p = share * 100
    return f"{p:.0f}%" if p >= 9.5 else f"{p:.2g}%"


def is_missing(x: float | None) -> bool:
    """True for a value the run did not produce (``None`` or NaN)."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def seed_stats(values: list[float]) -> tuple[float, float]:
    """Mean and population std over seeds (std 0 for one seed; NaN, NaN for none)."""
    if not values:
        return math.nan, math.nan
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std())


def size_names(results: dict) -> list[str]:
    """Model size names, smallest first."""
    return [s["name"] for s in results["sizes"]]


def task_share(results: dict, task: str) -> float | None:
    """The natural share of ``task`` in the study's mixture, if it is one of its tasks."""
    return next((t["share"] for t in results["tasks"] if t["name"] == task), None)


def learn_threshold(results: dict) -> float:
    """Accuracy at which a task counts as learned."""
    return float(results.get("summary", {}).get("learn_threshold", DEFAULT_THRESHOLD))


def boost_target(results: dict) -> str | None:
    """The task whose share the boost sweep raises."""
    summary, preset = results.get("summary", {}), results.get("preset", {})
    return summary.get("boost_target") or preset.get("boost_target")


def cells_of(results: dict, kind: str, size: str) -> list[dict]:
    """The cells of one kind and size (one per seed, or per seed and share for boosts)."""
    return [c for c in results["cells"] if c["kind"] == kind and c["size"] == size]


def final_acc(cells: list[dict], task: str) -> tuple[float, float]:
    """Mean and std over ``cells`` of the final exact match on ``task``."""
    return seed_stats([c["final"][task]["exact_match"] for c in cells if task in c["final"]])


def natural_acc(results: dict, size: str, task: str) -> tuple[float, float]:
    """Mean and std over seeds of ``size``'s final exact match on ``task``, natural mixture."""
    return final_acc(cells_of(results, "natural", size), task)


def boosted_sizes(results: dict) -> list[str]:
    """Sizes that have boost cells, smallest first."""
    boosted = {c["size"] for c in results["cells"] if c["kind"] == "boost"}
    return [s for s in size_names(results) if s in boosted]


def boost_points(results: dict, size: str, task: str) -> list[tuple[float, float, float]]:
    """``(share, mean, std)`` of ``size``'s accuracy on ``task`` per boost share, by share."""
    by_share: dict[float, list[dict]] = {}
    for cell in cells_of(results, "boost", size):
        by_share.setdefault(float(cell["boost_share"]), []).append(cell)
    return [(share, *final_acc(cells, task)) for share, cells in sorted(by_share.items())]


def mean_curve(results: dict, size: str, task: str) -> tuple[np.ndarray, ...] | None:
    """Steps, mean and std over seeds of ``size``'s exact-match curve on ``task``."""
    curves = [c["curves"][task] for c in cells_of(results, "natural", size)
              if task in c.get("curves", {}) and c["curves"][task]["step"]]
    if not curves:
        return None
    n = min(len(c["step"]) for c in curves)
    acc = np.array([c["exact_match"][:n] for c in curves], dtype=float)
    return np.asarray(curves[0]["step"][:n], dtype=float), acc.mean(axis=0), acc.std(axis=0)


def _floats(values: list | None, n: int) -> np.ndarray:
    """``values`` as floats with NaN for missing entries; all NaN when absent."""
    if not values:
        return np.full(n, np.nan)
    return np.array([np.nan if is_missing(v) else v for v in values], dtype=float)


# ---------------------------------------------------------------- drawing helpers


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _size_colors(n: int) -> list:
    """One colour per size along a sequential map, so the ladder reads dark to light."""
    from matplotlib import colormaps

    return list(colormaps["viridis"](np.linspace(0.0, 0.8, n) if n > 1 else [0.35]))


def _size_label(size: dict) -> str:
    return f"{size['name']} ({fmt_params(size['params'])})"


def _log_ticks(ax: Axes, ticks: list[float], labels: list[str]) -> None:
    """Put exactly ``ticks`` on a log x axis, without matplotlib's minor tick labels."""
    ax.set_xscale("log")
    ax.set_xticks(ticks, labels)
    ax.set_xticks([], minor=True)


def _seed_note(results: dict, spread: bool = True) -> str:
    seeds = {c["seed"] for c in results["cells"] if c["kind"] == "natural"}
    if len(seeds) <= 1:
        return "one seed"
    return f"mean ± std over {len(seeds)} seeds" if spread else f"mean over {len(seeds)} seeds"


# ---------------------------------------------------------------- the plots


def _heatmap(results: dict) -> Figure:
    tasks, sizes = results["tasks"], results["sizes"]
    grid = np.array([[natural_acc(results, s["name"], t["name"])[0] for s in sizes]
                     for t in tasks])
    fig = _figure(max(6.0, 4.2 + 1.0 * len(sizes)), 1.3 + 0.36 * len(tasks))
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
    ax.set_title(f"Exact match (%) on the natural mixture, {_seed_note(results, spread=False)}",
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
    fig = _figure(2.6 * ncols + 0.4, 1.9 * nrows + 0.9)
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
    fig.suptitle(f"Learning curves on the natural mixture ({_seed_note(results)})", fontsize=11)
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
    from matplotlib.lines import Line2D

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
    fig = _figure(7.6, 4.3)
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
    fig = _figure(6.4, 4.6)
    ax = fig.add_subplot()
    offsets = (0.97, 1.0, 1.03)  # nudge the series apart so error bars do not overlap
    for (label, key, color, marker, style), nudge in zip(SERIES, offsets, strict=True):
        mean = _floats(summary.get(f"{key}_by_size"), len(params))
        if np.all(np.isnan(mean)):
            continue
        std = np.nan_to_num(_floats(summary.get(f"{key}_std_by_size"), len(params)))
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
    ax.set_title(f"Accuracy against model size ({_seed_note(results)})", fontsize=11)
    return fig


PLOTS: dict[str, Callable[[dict], Figure | None]] = {
    "heatmap": _heatmap,
    "curves": _curves,
    "boost": _boost,
    "rare_vs_size": _rare_vs_size,
}


def _mechanism(results: dict) -> Figure | None:
    from smolmix.report.mechanism import mechanism_figure

    return mechanism_figure(results)


PLOTS["mechanism"] = _mechanism


def write_plots(results: dict, out_dir: Path) -> dict[str, str]:
    """Draw the run's plots into ``out_dir``; return ``{key: file name}`` of those written.

    ``boost`` is left out when the run has no boost cells.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for key, draw in PLOTS.items():
        fig = draw(results)
        if fig is None:
            continue
        name = f"{key}.png"
        fig.savefig(out_dir / name, dpi=DPI, metadata=PNG_METADATA)
        written[key] = name
    return written
