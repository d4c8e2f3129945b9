"""Sections of ``smolmix loop`` folders: each task's share and score stage by stage, the
decision log in plain words, and the compute; several loops side by side compare their
policies task by task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from smolmix.report.assets import Assets
from smolmix.report.formats import fmt_number, fmt_seconds, fmt_share, text_table
from smolmix.report.page import Bullets, Details, Section, Table, Text
from smolmix.report.registry import register_sections
from smolmix.report.views import Run

RESULTS = "results.json"
DECISIONS = "decisions.jsonl"


def stage_rows(results: Mapping) -> tuple[list[str], list[list[str]]]:
    """Per task: each stage's share → accuracy, and the last verdict."""
    stages = results["stages"]
    header = ["task", *(f"stage {s['stage']}: share → accuracy" for s in stages),
              "final verdict"]
    rows = [[t["name"], *(f"{fmt_share(s['shares'][t['name']])} → "
                          f"{fmt_number(s['accuracy'][t['name']], 2)}" for s in stages),
             stages[-1]["verdicts"][t["name"]]] for t in results["tasks"]]
    return header, rows


def stage_table(results: Mapping) -> str:
    """The stage table as aligned text (the terminal's)."""
    header, rows = stage_rows(results)
    return text_table(header, rows)


def compute_text(compute: Mapping) -> str:
    return (f"Training {fmt_seconds(compute['train_seconds'])} over {compute['train_steps']:,} "
            f"steps; evaluations and mixing {fmt_seconds(compute['eval_and_mix_seconds'])}, "
            f"probes {fmt_seconds(compute['probe_seconds'])} ({compute['probe_steps']:,} "
            f"steps), reference model {fmt_seconds(compute['reference_seconds'])}: overhead "
            f"{compute['overhead']:.0%} of the training time.")


def loop_section(run: Run) -> Section:
    results = run.json(RESULTS, dict)
    summary = results["summary"]
    header, rows = stage_rows(results)
    decisions = run.jsonl(DECISIONS)
    blocks = [
        Text(f"Policy {summary['policy']}: {summary['learned_count']} of "
             f"{len(results['tasks'])} tasks learned at the end "
             f"({', '.join(summary['tasks_learned']) or 'none'})."),
        Table(header, rows, numeric_from=1, text_columns=list(range(1, len(header))),
              caption="Each task's share of the stage and its held-out accuracy after it."),
        Text(compute_text(summary["compute"]), css="note"),
    ]
    if decisions:
        blocks.append(Details(f"Decision log ({len(decisions)} rows, decisions.jsonl)",
                              [Bullets([d["text"] for d in decisions])]))
    probes = [p for s in results["stages"] for p in s["probes"]]
    if probes:
        blocks.append(Bullets([_probe_words(p) for p in probes]))
    return Section(f"Loop {run.label}", blocks)


def _probe_words(probe: Mapping) -> str:
    if probe["kind"] == "isolation":
        return (f"isolation probe: {probe['task']} trained alone for {probe['steps']} steps "
                f"reached {probe['accuracy']:.2f}")
    return f"annealing probe: {probe['words']}: proposal {'kept' if probe['kept'] else 'dropped'}"


def comparison(runs: Sequence[Run]) -> Section:
    """Several loops: final accuracy per task, tasks learned and overhead, one column each."""
    results = [r.json(RESULTS, dict) for r in runs]
    tasks = [t["name"] for t in results[0]["tasks"]]
    header = ["task", *(f"{r.label} ({res['summary']['policy']})"
                        for r, res in zip(runs, results, strict=True))]
    rows = [[t, *(fmt_number(res["summary"]["final_accuracy"].get(t), 2) for res in results)]
            for t in tasks]
    rows.append(["tasks learned", *(str(res["summary"]["learned_count"]) for res in results)])
    rows.append(["overhead", *(f"{res['summary']['compute']['overhead']:.0%}"
                               for res in results)])
    return Section("Loops compared", [Table(header, rows, numeric_from=1)])


def loop_sections(runs: Sequence[Run], assets: Assets) -> list[Section]:
    sections = [comparison(runs)] if len(runs) > 1 else []
    return sections + [loop_section(r) for r in runs]


register_sections("loop", loop_sections, title="smolmix report: loop")
