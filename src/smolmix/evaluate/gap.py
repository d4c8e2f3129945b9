"""``smolmix gap``: the Small Model Learnability Gap from eval runs tagged by training data.

Each eval run (``smolmix eval --tag student=... --tag cot=long``) carries tags. Per student:
Long-CoT gap = P(cot=long) − P(cot=short) and Large-teacher gap = P(teacher=large) −
P(teacher=small), where P is accuracy over all of the run's samples, with a 95% bootstrap
interval (paired over the same questions when both runs answered the same ones). A negative
gap means the student learns better from short traces / the small teacher.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from smolmix.core.errors import SmolmixError
from smolmix.core.figures import new_figure, save_png
from smolmix.core.inputs import iter_json_objects
from smolmix.core.output import atomic_output, check_output_dir
from smolmix.core.rundir import read_manifest, write_manifest
from smolmix.evaluate.metrics import bootstrap_difference

GAPS_FILE = "gaps.json"
SAMPLES_FILE = "samples.jsonl"
GAPS_PLOT = "gaps.png"
GAPS = (("long_cot", "cot", "long", "short"), ("large_teacher", "teacher", "large", "small"))


@dataclass(frozen=True)
class EvalRun:
    path: Path
    tags: dict[str, str]
    correct: dict[tuple[str, int], float]  # (task, index) -> verdict (1.0 right, 0.0 wrong)

    @property
    def student(self) -> str:
        return self.tags.get("student", "student")


def read_run(path: Path) -> EvalRun:
    """An eval run folder: its tags and per-sample verdicts, checked (tags a mapping, every
    sample a JSON object with a task name, an integer index and a 0/1 or numeric verdict)."""
    path = Path(path)
    try:
        manifest = read_manifest(path, kinds=("eval",))
    except SmolmixError:
        raise SmolmixError("not an eval run (no manifest.json from smolmix eval)",
                           str(path)) from None
    tags = manifest.get("tags") or {}
    if not isinstance(tags, dict) or not all(
            isinstance(v, str | int | float | bool) for v in tags.values()):
        raise SmolmixError("'tags' must be an object {key: value} (as smolmix eval --tag "
                           "KEY=VALUE writes it)", str(path / "manifest.json"))
    samples = path / SAMPLES_FILE
    if not samples.is_file():
        raise SmolmixError(f"eval run has no {SAMPLES_FILE}", str(path))
    correct: dict[tuple[str, int], float] = {}
    for where, row in iter_json_objects(samples, SAMPLES_FILE):
        task, index, verdict = row.get("task"), row.get("index"), row.get("correct")
        if not isinstance(task, str):
            raise SmolmixError("sample has no task name ('task')", where)
        if not isinstance(index, int) or isinstance(index, bool):
            raise SmolmixError("sample has no integer 'index'", where)
        if not isinstance(verdict, int | float) or not math.isfinite(verdict):
            raise SmolmixError("sample has no verdict ('correct': true, false or a number)",
                               where)
        if (task, index) in correct:
            raise SmolmixError(f"sample {task!r} #{index} appears twice", where)
        correct[(task, index)] = float(verdict)
    if not correct:
        raise SmolmixError(f"eval run has no samples (empty {SAMPLES_FILE})", str(samples))
    return EvalRun(path, {str(k): str(v) for k, v in tags.items()}, correct)


def _pair(a: EvalRun, b: EvalRun) -> tuple[list[float], list[float], bool]:
    shared = sorted(set(a.correct) & set(b.correct))
    if shared and len(shared) == len(a.correct) == len(b.correct):
        return ([float(a.correct[k]) for k in shared], [float(b.correct[k]) for k in shared],
                True)
    return [float(v) for v in a.correct.values()], [float(v) for v in b.correct.values()], False


def gaps(runs: Sequence[EvalRun], seed: int = 0) -> list[dict]:
    """Every gap that the runs' tags allow, per student."""
    rows = []
    students = sorted({r.student for r in runs})
    for student in students:
        mine = [r for r in runs if r.student == student]
        for gap, key, high, low in GAPS:
            ups = [r for r in mine if r.tags.get(key) == high]
            downs = [r for r in mine if r.tags.get(key) == low]
            if not ups or not downs:
                continue
            if len(ups) > 1 or len(downs) > 1:
                raise SmolmixError(f"student {student!r} has several runs tagged {key}={high} "
                                   f"or {key}={low}; tag each run once", "RUN")
            a, b, paired = _pair(ups[0], downs[0])
            diff = bootstrap_difference(a, b, paired, seed)
            rows.append({"student": student, "gap": gap, "high_tag": f"{key}={high}",
                         "low_tag": f"{key}={low}", "p_high": sum(a) / len(a),
                         "p_low": sum(b) / len(b), "paired": paired, **diff,
                         "runs": [str(ups[0].path), str(downs[0].path)]})
    if not rows:
        raise SmolmixError("no gap can be computed: tag runs of the same student with "
                           "cot=long and cot=short, or teacher=large and teacher=small", "RUN")
    return rows


def gap_table(rows: Sequence[dict]) -> str:
    lines = [f"{'student':<20} {'gap':<14} {'P(high)':>8} {'P(low)':>8} {'gap':>8}  95% CI"]
    for r in rows:
        lines.append(f"{r['student']:<20} {r['gap']:<14} {r['p_high']:>8.3f} {r['p_low']:>8.3f} "
                     f"{r['diff']:>+8.3f}  [{r['low']:+.3f}, {r['high']:+.3f}]")
    return "\n".join(lines)


def write_gap_plot(rows: Sequence[dict], path: Path) -> None:
    """Bars of each gap per student, with the interval as error bars."""
    labels = [f"{r['student']}\n{r['gap']}" for r in rows]
    values = [r["diff"] for r in rows]
    errors = [[r["diff"] - r["low"] for r in rows], [r["high"] - r["diff"] for r in rows]]
    fig = new_figure(max(4, 1.2 * len(rows) + 2), 3.5)
    ax = fig.add_subplot()
    ax.bar(range(len(rows)), values, yerr=errors, capsize=4,
           color=["#c0504d" if v < 0 else "#4f81bd" for v in values])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("accuracy gap (high − low)")
    ax.set_title("Learnability gaps (95% bootstrap CI)")
    save_png(fig, path)


def run_gap(paths: Sequence[Path], out: Path | None = None, seed: int = 0) -> list[dict]:
    """Read the runs, compute the gaps, and (with ``out``) write ``gaps.json`` and
    ``gaps.png`` atomically."""
    rule = {"replace": True, "kind": "gap", "inputs": list(paths)}
    if out is not None:
        check_output_dir(Path(out), **rule)
    rows = gaps([read_run(Path(p)) for p in paths], seed)
    if out is not None:
        with atomic_output(Path(out), **rule) as work:
            (work / GAPS_FILE).write_text(json.dumps(rows, indent=2) + "\n")
            write_gap_plot(rows, work / GAPS_PLOT)
            write_manifest(work, "gap", {"runs": [str(p) for p in paths]}, seed=seed)
    return rows
