"""Sections of ``smolmix diagnose --out`` folders: the verdict per task with its numbers and
remedy, the evidence, interference over the run's checkpoints and the neurons each task holds.

Shown beside the train runs they diagnose, the diagnoses carry those runs' labels.
"""

from __future__ import annotations

from collections.abc import Sequence

from smolmix.report.assets import Assets
from smolmix.report.formats import MISSING, fmt_number, fmt_share, fmt_signed
from smolmix.report.page import Bullets, Details, Image, Section, Text
from smolmix.report.plots import small_multiples
from smolmix.report.registry import register_sections
from smolmix.report.sections.tables import metric_tables
from smolmix.report.views import DiagnosisView, Run

COLUMNS = ("verdict", "final", "peak (step)", "share", "trained alone",
           "interference from others", "retention", "remedy")
TEXT = {"verdict", "remedy"}


def _label(view: DiagnosisView) -> str:
    return view.run.label


def _verdicts(view: DiagnosisView) -> dict[str, dict]:
    return {v["task"]: v for v in view.report.get("verdicts") or []}


def _cell(view: DiagnosisView, task: str, column: str) -> str:
    v = _verdicts(view).get(task)
    if v is None:
        return MISSING
    n = v.get("numbers") or {}
    if column in ("verdict", "remedy"):
        return v.get(column) or MISSING
    if column == "peak (step)":
        return f"{fmt_number(n.get('peak'))} ({n.get('peak_step', '?')})"
    if column == "share":
        return fmt_share(n.get("share"))
    if column == "trained alone":
        return fmt_number(n.get("isolation"))
    if column == "interference from others":
        return fmt_signed(n.get("interference_from_others"))
    if column == "retention":
        return fmt_signed(n.get("retention"), 2)
    return fmt_number(n.get(column))


def verdicts_section(views: Sequence[DiagnosisView]) -> Section:
    tasks = list(dict.fromkeys(t for v in views for t in _verdicts(v)))
    tables = metric_tables("task", tasks, views, _label, COLUMNS, _cell,
                           compare=["verdict", "final", "remedy"], text_metrics=TEXT)
    evidence = [Details(f"{v.run.label}: the evidence behind each verdict",
                        [Bullets([f"{task}: {'; '.join(verdict.get('evidence') or [])}"
                                  for task, verdict in _verdicts(v).items()])])
                for v in views]
    of = "; ".join(f"{v.run.folder} is a diagnosis of the train run {v.diagnosed or '?'}"
                   for v in views)
    return Section("Verdicts", [Text(of + ".", css="note"), *tables, *evidence])


def interference_section(views: Sequence[DiagnosisView], assets: Assets) -> list[Section]:
    """Interference from the other tasks over the run's checkpoints: a panel per diagnosis,
    a line per task."""
    panels = {}
    for view in views:
        curve = view.report.get("interference_over_checkpoints") or {}
        series = (curve.get("series") or {}).get("others_normalised") or {}
        if curve.get("steps") and series:
            panels[view.run.label] = {task: (curve["steps"], [float("nan") if x is None else x
                                                              for x in values])
                                      for task, values in series.items()}
    if not panels:
        return []
    fig = small_multiples(panels, "others' part / own |g|²", xlabel="checkpoint step",
                          title="Interference from the other tasks over training")
    src = assets.figure(fig, "diagnosis-interference")
    return [Section("Interference over training", [Image(
        src, "Per task, the other tasks' part of a mixture step over the task's own squared "
             "gradient, at each checkpoint (negative: the mixture undoes the task).")])]


def neurons_section(views: Sequence[DiagnosisView]) -> Section:
    owners = list(dict.fromkeys(k for v in views for k in v.report.get("neurons") or {}))

    def cell(view: DiagnosisView, owner: str, column: str) -> str:
        count = (view.report.get("neurons") or {}).get(owner)
        return MISSING if count is None else str(count)

    return Section("MLP neurons held per task", metric_tables(
        "held by", owners, views, _label, ["neurons"], cell))


def diagnosis_sections(runs: Sequence[Run], assets: Assets) -> list[Section]:
    views = [DiagnosisView.read(r) for r in runs]
    return [verdicts_section(views), *interference_section(views, assets),
            neurons_section(views)]


register_sections("diagnose", diagnosis_sections, title="smolmix report: diagnosis")
