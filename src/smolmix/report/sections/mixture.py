"""Sections of ``smolmix mix`` folders: the recipe, requested and achieved shares per stage and
task (side by side for several mixtures), and what hygiene removed."""

from __future__ import annotations

from collections.abc import Sequence

from smolmix.mix.build import REASONS
from smolmix.report.assets import Assets
from smolmix.report.formats import MISSING, fmt_share
from smolmix.report.page import Image, Section
from smolmix.report.plots import grouped_bars
from smolmix.report.registry import register_sections
from smolmix.report.sections.tables import facts_table, metric_tables
from smolmix.report.views import MixtureView, Run

SHARES = ("requested share", "achieved share", "selected", "repetitions")
ACHIEVED_OF_REQUESTED = "achieved share (requested)"
REMOVED_OF_AVAILABLE = "removed of available"


def _label(view: MixtureView) -> str:
    return view.run.label


def _stages(view: MixtureView) -> str:
    return "; ".join(f"{s['name']}: {s['examples']} examples" for s in view.stages) or MISSING


def recipe_section(views: Sequence[MixtureView]) -> Section:
    return Section("Mixture", [facts_table(views, _label, [
        ("recipe", lambda v: str(v.run.manifest.get("recipe", MISSING))),
        ("seed", lambda v: str(v.run.manifest.get("seed", MISSING))),
        ("max repeats", lambda v: str(v.run.manifest.get("max_repeats", MISSING))),
        ("stages", _stages),
        ("tasks", lambda v: str(len({t for s in v.by_task.values() for t in s}))),
    ])])


def shares_section(views: Sequence[MixtureView], stage: str, assets: Assets,
                   titled: bool) -> Section:
    """One stage: per task the requested and achieved share, rows selected and the most
    times one example is used."""
    tasks = list(dict.fromkeys(t for v in views for t in v.by_task.get(stage, {})))

    def cell(view: MixtureView, task: str, column: str) -> str:
        stats = view.by_task.get(stage, {}).get(task)
        if stats is None:
            return MISSING
        if column == ACHIEVED_OF_REQUESTED:
            return (f"{fmt_share(stats['achieved_share'])} "
                    f"({fmt_share(stats['requested_share'])})")
        key = column.replace(" ", "_")
        return fmt_share(stats[key]) if key.endswith("share") else str(stats[key])

    tables = metric_tables("task", tasks, views, _label, SHARES, cell,
                           compare=[ACHIEVED_OF_REQUESTED, "selected"])
    achieved = {v.run.label: [v.by_task.get(stage, {}).get(t, {}).get("achieved_share")
                              for t in tasks] for v in views}
    fig = grouped_bars(tasks, achieved, "achieved share of the stage (log scale)", log=True,
                       title="Share of each task" + (f", stage {stage}" if titled else ""))
    per_run = ", one bar per mixture" if len(views) > 1 else ""
    image = Image(assets.figure(fig, f"mixture-shares-{stage}"),
                  f"Each task's achieved share of the stage{per_run} (log scale).")
    return Section(f"Shares: stage {stage}" if titled else "Shares", [*tables, image])


def hygiene_section(views: Sequence[MixtureView]) -> Section:
    """Per task: examples available in the sources and those each hygiene step removed."""
    tasks = list(dict.fromkeys(t for v in views for t in v.hygiene))
    columns = ("available", *(r.replace("_", " ") for r in REASONS))

    def cell(view: MixtureView, task: str, column: str) -> str:
        stats = view.hygiene.get(task)
        if stats is None:
            return MISSING
        if column == REMOVED_OF_AVAILABLE:
            return f"{sum(stats.get(r, 0) for r in REASONS)} of {stats.get('available', 0)}"
        return str(stats.get(column.replace(" ", "_"), 0))

    return Section("Hygiene", metric_tables("task", tasks, views, _label, columns, cell,
                                            compare=[REMOVED_OF_AVAILABLE]))


def mixture_sections(runs: Sequence[Run], assets: Assets) -> list[Section]:
    views = [MixtureView.read(r) for r in runs]
    stages = list(dict.fromkeys(s for v in views for s in v.by_task))
    return [recipe_section(views),
            *(shares_section(views, s, assets, titled=len(stages) > 1) for s in stages),
            hygiene_section(views)]


register_sections("mixture", mixture_sections, title="smolmix report: mixture")
