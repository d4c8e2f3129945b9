"""The report's generic plots: small multiples of curves (one panel per task, one line per run)
and grouped horizontal bars (one group per task, one bar per run)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from smolmix.core.figures import new_figure

Series = tuple[Sequence[float], Sequence[float]]  # x values, y values
MAX_COLUMNS = 4


def series_colors(n: int) -> list:
    """``n`` distinct colours, the same for the same position in every plot of a report."""
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def small_multiples(panels: Mapping[str, Mapping[str, Series]], ylabel: str,
                    xlabel: str = "step", title: str = "",
                    ylim: tuple[float, float] | None = None) -> Figure:
    """One panel per key of ``panels``, one line per key of its mapping (the same key, the
    same colour, in every panel), a shared legend below."""
    names = list(dict.fromkeys(name for lines in panels.values() for name in lines))
    colors = dict(zip(names, series_colors(len(names))))
    ncols = min(MAX_COLUMNS, max(1, len(panels)))
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig = new_figure(max(5.0, 2.9 * ncols + 0.6),
                     2.2 * nrows + 1.0 + 0.25 * math.ceil(len(names) / 4))
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=ylim is not None, squeeze=False)
    for ax, (panel, lines) in zip(axes.flat, panels.items()):
        for name, (x, y) in lines.items():
            marker = "o" if len(x) <= 12 else None
            ax.plot(x, y, color=colors[name], marker=marker, markersize=3, linewidth=1.5,
                    label=name)
        ax.set_title(panel, fontsize=9)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.grid(alpha=0.3)
    used = len(panels)
    for k, ax in enumerate(axes.flat):
        ax.set_visible(k < used)
    for col in range(ncols):
        rows = [r for r in range(nrows) if r * ncols + col < used]
        if rows:
            axes[rows[-1], col].xaxis.set_tick_params(labelbottom=True)
            axes[rows[-1], col].set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    handles, found = axes.flat[0].get_legend_handles_labels()
    for ax in list(axes.flat)[1:used]:  # a line missing from the first panel
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in found:
                handles.append(h)
                found.append(label)
    if handles:
        fig.legend(handles, found, loc="outside lower center", ncol=min(len(found), 4),
                   fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def grouped_bars(groups: Sequence[str], bars: Mapping[str, Sequence[float]], xlabel: str,
                 title: str = "", errors: Mapping[str, tuple[Sequence[float], Sequence[float]]]
                 | None = None, log: bool = False,
                 xlim: tuple[float, float] | None = None) -> Figure:
    """Horizontal bars: one group per entry of ``groups`` (top to bottom), one bar per key of
    ``bars`` in each; ``errors`` gives each key's (low, high) interval ends; ``log`` puts the
    values on a log axis (shares spanning several orders of magnitude)."""
    names = list(bars)
    colors = series_colors(len(names))
    height = 0.8 / max(1, len(names))
    fig = new_figure(7.5, 1.2 + 0.28 * len(groups) * max(1, len(names)) ** 0.7
                     + 0.25 * math.ceil(len(names) / 3))
    ax = fig.add_subplot()
    base = np.arange(len(groups), dtype=float)
    for k, (name, color) in enumerate(zip(names, colors)):
        values = np.array([np.nan if v is None else v for v in bars[name]], dtype=float)
        y = base + (k - (len(names) - 1) / 2) * height
        xerr = None
        if errors and name in errors:
            low, high = (np.array(v, dtype=float) for v in errors[name])
            xerr = np.nan_to_num(np.vstack([values - low, high - values]).clip(min=0))
        ax.barh(y, np.nan_to_num(values), height=height, xerr=xerr, capsize=2, color=color,
                label=name)
    ax.set_yticks(base, list(groups))
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    if len(names) > 1:
        fig.legend(loc="outside lower center", ncol=min(len(names), 3), fontsize=8,
                   frameon=False)
    if title:
        ax.set_title(title, fontsize=11)
    return fig
