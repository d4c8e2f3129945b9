"""Sections of ``smolmix eval`` runs: the model and tags, accuracy per task and frequency
bucket with its interval (a column per run), a few graded samples, and needle probes."""

from __future__ import annotations

from collections.abc import Sequence

from smolmix.report.assets import Assets
from smolmix.report.formats import MISSING, fmt_interval, fmt_number, fmt_seconds
from smolmix.report.page import Details, Image, Section, Table, Text
from smolmix.report.plots import grouped_bars
from smolmix.report.registry import register_sections
from smolmix.report.sections.tables import facts_table, metric_tables
from smolmix.report.views import EvalView, Run

SAMPLES_PER_TASK = 3
SAMPLE_CHARS = 160
OVERALL = "overall"
BUCKET = "bucket: "
WITH_INTERVAL = "accuracy [95% interval]"
NOTE = ("Accuracy of the graded generations; the interval is a 95% percentile bootstrap over "
        "the task's examples. Buckets group tasks by their share of the training mixture.")


def _label(view: EvalView) -> str:
    return view.run.label


def _tags(view: EvalView) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(view.tags.items())) or MISSING


def setup_section(views: Sequence[EvalView]) -> Section:
    return Section("Evaluation", [facts_table(views, _label, [
        ("model", lambda v: v.model),
        ("tags", _tags),
        ("what", lambda v: "needle-in-a-haystack probe" if v.needle is not None
         else f"{len(v.scores['tasks'])} tasks, {len(v.samples)} samples"),
        ("eval time", lambda v: fmt_seconds(v.run.manifest.get("eval_seconds"))),
    ])])


def _score(view: EvalView, row: str) -> dict | None:
    """The score of a task, of a bucket (``bucket: NAME``) or ``overall``."""
    scores = view.scores or {}
    if row == OVERALL:
        return scores.get("overall")
    if row.startswith(BUCKET):
        return (scores.get("buckets") or {}).get(row[len(BUCKET):])
    return (scores.get("tasks") or {}).get(row)


def _cell(view: EvalView, row: str, column: str) -> str:
    s = _score(view, row)
    if s is None:
        return MISSING
    if column == "bucket":
        return str(s.get("bucket", ""))
    if column == "n":
        return str(s["n"])
    interval = fmt_interval(s.get("low"), s.get("high"))
    if column == "95% interval":
        return interval
    mean = fmt_number(s.get("mean"))
    return mean if column == "accuracy" else f"{mean} {interval}"


def scores_section(views: Sequence[EvalView], assets: Assets) -> Section:
    tasks = list(dict.fromkeys(t for v in views for t in v.scores["tasks"]))
    buckets = list(dict.fromkeys(b for v in views for b in v.scores.get("buckets") or {}))
    rows = [*tasks, *(BUCKET + b for b in buckets), OVERALL]
    tables = metric_tables("task", rows, views, _label, ["bucket", "accuracy", "95% interval",
                                                         "n"], _cell, compare=[WITH_INTERVAL],
                           text_metrics={"bucket"})
    means = {v.run.label: [(_score(v, t) or {}).get("mean") for t in tasks] for v in views}
    errors = {v.run.label: ([(_score(v, t) or {}).get("low") for t in tasks],
                            [(_score(v, t) or {}).get("high") for t in tasks]) for v in views}
    fig = grouped_bars(tasks, means, "accuracy", "Accuracy per task (95% bootstrap interval)",
                       errors=errors, xlim=(0, 1))
    per_run = ", one bar per run" if len(views) > 1 else ""
    image = Image(assets.figure(fig, "eval-accuracy"),
                  f"Accuracy per task with its 95% interval{per_run}.")
    return Section("Scores", [*tables, Text(NOTE, css="note"), image])


def _clip(text: object) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS - 1] + "…"


def samples_section(views: Sequence[EvalView]) -> Section:
    """The first few graded samples of each task, per run, folded away."""
    blocks = []
    for view in views:
        shown: dict[str, int] = {}
        rows = []
        for s in view.samples:
            if shown.get(s["task"], 0) < SAMPLES_PER_TASK:
                shown[s["task"]] = shown.get(s["task"], 0) + 1
                rows.append([s["task"], _clip(s.get("prompt")), _clip(s.get("generation")),
                             _clip(s.get("extracted")), _clip(s.get("reference")),
                             "yes" if s.get("correct") else "no"])
        table = Table(["task", "prompt", "generation", "extracted", "reference", "correct"],
                      rows, numeric_from=6)
        blocks.append(Details(f"{view.run.label}: the first {SAMPLES_PER_TASK} of "
                              f"{len(view.samples)} samples per task (samples.jsonl)", [table]))
    return Section("Samples", blocks)


def needle_section(view: EvalView, assets: Assets) -> Section:
    needle = view.needle
    header = ["length \\ depth", *(f"{d:.0%}" for d in needle["depths"])]
    rows = [[f"{n:,}", *(fmt_number(a, 2) for a in acc)]
            for n, acc in zip(needle["lengths"], needle["accuracy"])]
    blocks = [Table(header, rows, note=f"Exact retrieval of the needle's number, "
                                       f"{needle['trials']} trials per cell.")]
    if view.needle_plot is not None:
        src = assets.copy(view.needle_plot, f"needle-{view.run.label}")
        blocks.insert(0, Image(src, "Retrieval accuracy by context length (tokens) and depth "
                                    "of the needle in the context."))
    return Section(f"Needle in a haystack: {view.run.label}", blocks)


def eval_sections(runs: Sequence[Run], assets: Assets) -> list[Section]:
    views = [EvalView.read(r) for r in runs]
    scored = [v for v in views if v.scores is not None]
    sections = [setup_section(views)]
    if scored:
        sections += [scores_section(scored, assets), samples_section(scored)]
    sections += [needle_section(v, assets) for v in views if v.needle is not None]
    return sections


register_sections("eval", eval_sections, title="smolmix report: evaluation")
