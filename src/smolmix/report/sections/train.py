"""Sections of ``smolmix train`` runs: settings, final scores per task, the per-task curves
(one line per run), and the controls a run carries (``controls.json``)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from smolmix.report.assets import Assets
from smolmix.report.formats import MISSING, fmt_number, fmt_seconds, fmt_share, fmt_signed
from smolmix.report.page import Image, Section
from smolmix.report.plots import small_multiples
from smolmix.report.registry import register_sections
from smolmix.report.sections.tables import facts_table, metric_tables
from smolmix.report.views import Run, TrainView

# Curve metrics, in the order the report shows them: (key, name, bounded in [0, 1])
METRICS = (
    ("exact_match", "exact match", True),
    ("generation_accuracy", "generation accuracy", True),
    ("loss", "loss", False),
    ("interference_others", "interference from the other tasks", False),
    ("grad_norm", "gradient norm", False),
)
SHARE = "share of the mixture"


def _name(metric: str) -> str:
    return next((name for key, name, _ in METRICS if key == metric), metric.replace("_", " "))


def _bounded(metric: str) -> bool:
    return any(key == metric and bounded for key, _, bounded in METRICS)


def _ordered(metrics: set[str]) -> list[str]:
    known = [key for key, _, _ in METRICS if key in metrics]
    return known + sorted(metrics - set(known))


def _label(view: TrainView) -> str:
    return view.run.label


def _fmt_metric(metric: str, value: float | None) -> str:
    if metric == "loss":
        return fmt_number(value, 4)
    if metric == "interference_others":
        return fmt_signed(value)
    return fmt_number(value)


def _tasks(views: Sequence[TrainView]) -> list[str]:
    found: dict[str, None] = {}
    for view in views:
        found.update(dict.fromkeys(view.final))
        found.update(dict.fromkeys(r["task"] for r in view.curves))
    return list(found)


def _training(view: TrainView) -> str:
    lora = view.config.lora
    return f"LoRA r={lora.r}, alpha={lora.alpha:g}" if lora else "full fine-tuning"


def settings_section(views: Sequence[TrainView]) -> Section:
    facts = [
        ("model", lambda v: os.path.normpath(v.config.model)),
        ("mixture", lambda v: os.path.normpath(v.config.mixture)),
        ("training", _training),
        ("steps", lambda v: str(v.run.manifest.get("steps", v.config.steps or MISSING))),
        ("batch size", lambda v: str(v.config.batch_size * v.config.grad_accum)),
        ("learning rate", lambda v: f"{v.config.learning_rate:g}"),
        ("warmup steps", lambda v: str(v.config.warmup_steps)),
        ("order", lambda v: v.config.order),
        ("seed", lambda v: str(v.config.seed)),
        ("examples", lambda v: str(v.run.manifest.get("examples", MISSING))),
        ("train time", lambda v: fmt_seconds(v.run.manifest.get("train_seconds"))),
    ]
    return Section("Training", [facts_table(views, _label, facts)])


def final_section(views: Sequence[TrainView], tasks: Sequence[str]) -> Section:
    """Each task's metrics at the last evaluated step (and its share of the mixture)."""
    metrics = _ordered({k for v in views for scores in v.final.values() for k in scores
                        if k != "count"})
    shares = [SHARE] if any(v.shares for v in views) else []
    names = {_name(m): m for m in metrics}

    def cell(view: TrainView, task: str, column: str) -> str:
        if column == SHARE:
            return fmt_share(view.shares.get(task))
        return _fmt_metric(names[column], view.final.get(task, {}).get(names[column]))

    return Section("Final scores", [*metric_tables("task", tasks, views, _label,
                                                   [*shares, *names], cell)])


def curves_section(views: Sequence[TrainView], tasks: Sequence[str],
                   assets: Assets) -> Section:
    """One figure per metric: a panel per task, a line per run."""
    metrics = _ordered({m for v in views for m in v.metrics()})
    several = len(views) > 1
    blocks = []
    for metric in metrics:
        panels = {}
        for task in tasks:
            lines = {v.run.label: v.curve(task, metric) for v in views}
            if lines := {label: c for label, c in lines.items() if c[0]}:
                panels[task] = lines
        if not panels:
            continue
        name = _name(metric)
        fig = small_multiples(panels, name, title=f"{name} on held-out examples during training",
                              ylim=(-0.05, 1.05) if _bounded(metric) else None)
        src = assets.figure(fig, f"train-{metric}")
        layout = "one line per run" if several else "one panel per task"
        blocks.append(Image(src, f"{name.capitalize()} of each task on its held-out examples "
                                 f"over training steps, {layout}.", alt=f"{name} curves"))
    return Section("Curves", blocks)


def controls_section(views: Sequence[TrainView]) -> list[Section]:
    """The isolation accuracy and measured min share a run carries, if any."""
    with_controls = [v for v in views if v.controls]
    if not with_controls:
        return []
    columns = {"accuracy trained alone": "isolation", "min share to learn": "min_share"}
    tasks = list(dict.fromkeys(t for v in with_controls for key in columns.values()
                               for t in v.controls.get(key) or {}))

    def cell(view: TrainView, task: str, column: str) -> str:
        value = (view.controls.get(columns[column]) or {}).get(task)
        return fmt_share(value) if columns[column] == "min_share" else fmt_number(value)

    return [Section("Controls", [*metric_tables("task", tasks, with_controls, _label,
                                                list(columns), cell)])]


def train_sections(runs: Sequence[Run], assets: Assets) -> list[Section]:
    views = [TrainView.read(r) for r in runs]
    tasks = _tasks(views)
    return [settings_section(views), final_section(views, tasks),
            curves_section(views, tasks, assets), *controls_section(views)]


register_sections("train", train_sections, title="smolmix report: training run")
