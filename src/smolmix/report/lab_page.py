"""What every lab's report shares: its preset as a table, and its registration with
``smolmix report`` (the page drawn from ``results.json``, plots made anew)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from smolmix.report.assets import Assets
from smolmix.report.page import Page, Section, Table, write_page
from smolmix.report.registry import register_sections
from smolmix.report.views import Run

RESULTS_FILE = "results.json"

Sections = Callable[[dict, dict[str, str]], list[Section]]
Plots = Callable[[dict, Path], dict[str, str]]


def preset_table(preset: Mapping) -> Table:
    """Every field of a lab's preset, as written in ``results.json``."""
    return Table(["parameter", "value"],
                 [[k, v if isinstance(v, str) else json.dumps(v)] for k, v in preset.items()],
                 numeric_from=2)


def register_lab(kind: str, title: str, sections: Sections, plots: Plots
                 ) -> Callable[[dict, Path], Path]:
    """Register a lab's sections for its runs (kind ``lab.<study>``); return the function
    that writes ``report.html`` and its plots into a run folder."""

    def write_report(results: dict, out_dir: Path) -> Path:
        return write_page(Page(title, sections(results, plots(results, Path(out_dir)))),
                          Path(out_dir))

    def report_sections(runs: Sequence[Run], assets: Assets) -> list[Section]:
        (run,) = runs
        results = run.json(RESULTS_FILE)
        return sections(results, plots(results, assets.folder))

    register_sections(kind, report_sections, title=title, side_by_side=False)
    return write_report
