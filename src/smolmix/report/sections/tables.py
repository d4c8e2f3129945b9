"""The two table shapes every kind's sections use: facts about each run (a column per run),
and per-row metrics that turn into a column per run when runs are side by side."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import TypeVar

from smolmix.report.page import Table

V = TypeVar("V")  # a view of one run


def facts_table(views: Sequence[V], label: Callable[[V], str],
                facts: Sequence[tuple[str, Callable[[V], str]]]) -> Table:
    """One row per fact (name, how to read it from a view), one column per run."""
    return Table(["", *(label(v) for v in views)],
                 [[name, *(read(v) for v in views)] for name, read in facts],
                 numeric_from=len(views) + 1)


def metric_tables(first: str, rows: Sequence[str], views: Sequence[V],
                  label: Callable[[V], str], metrics: Sequence[str],
                  cell: Callable[[V, str, str], str], compare: Sequence[str] | None = None,
                  text_metrics: Collection[str] = (), row_css: Sequence[str] = ()
                  ) -> list[Table]:
    """``rows`` × ``metrics`` of one run as one table (``first`` heads the row names); of
    several runs, one table per metric of ``compare`` (default: all), a column per run.
    ``cell(view, row, metric)`` formats one value; ``text_metrics`` are not numbers."""
    if len(views) == 1:
        (view,) = views
        return [Table([first, *metrics],
                      [[row, *(cell(view, row, m) for m in metrics)] for row in rows],
                      text_columns=[k + 1 for k, m in enumerate(metrics) if m in text_metrics],
                      row_css=row_css)]
    return [Table([first, *(label(v) for v in views)],
                  [[row, *(cell(v, row, metric) for v in views)] for row in rows],
                  numeric_from=len(views) + 1 if metric in text_metrics else 1,
                  caption=metric, row_css=row_css)
            for metric in (compare if compare is not None else metrics)]
