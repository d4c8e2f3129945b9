"""``smolmix report``: one self-contained HTML page (``report.html`` and its PNG images) for
any run folder smolmix writes, or for several runs of one kind side by side.

Runs of one kind share the page (their curves overlaid, their scores in a column each) unless
the kind's registration says otherwise; a diagnosis can come with the train run it diagnoses.
Any other mix of kinds is refused. The output folder appears only when complete.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import smolmix.report.sections  # noqa: F401  (registers smolmix's own kinds)
from smolmix.core.errors import SmolmixError
from smolmix.core.output import atomic_output, check_output_dir
from smolmix.core.rundir import versions
from smolmix.report.assets import Assets
from smolmix.report.page import REPORT_FILE, Page, Section, write_page
from smolmix.report.registry import KindReport, kind_report
from smolmix.report.sections.runs import runs_section
from smolmix.report.views import DiagnosisView, Run, read_runs

# A kind whose runs may join runs of another kind: diagnoses, beside the train runs they are of.
COMPANIONS = {"diagnose": "train"}


def _diagnosed_by(diagnosis: Run, runs: Sequence[Run]) -> Run:
    """The run among ``runs`` that ``diagnosis`` is of (same folder, else the same name when
    only one run has it); anything else is a user error naming the diagnosis."""
    named = DiagnosisView.read(diagnosis).diagnosed
    if named is not None:
        for run in runs:
            if run.folder.resolve() == named.resolve():
                return run
        same_name = [run for run in runs if run.folder.name == named.name]
        if len(same_name) == 1 and not named.exists():
            return same_name[0]
    raise SmolmixError(f"this diagnosis is of {str(named)!r}, which is not one of the train "
                       f"runs given", str(diagnosis.folder))


def plan(runs: Sequence[Run]) -> list[tuple[KindReport, list[Run]]]:
    """The page's parts in order: each kind's registration with its runs."""
    kinds = list(dict.fromkeys(r.kind for r in runs))
    main = next((k for k in kinds if k not in COMPANIONS), kinds[0])
    for run in runs:
        if run.kind != main and COMPANIONS.get(run.kind) != main:
            raise SmolmixError(f"cannot put this {run.kind} run beside {main} runs in one "
                               f"report; report them separately", str(run.folder))
    parts = []
    for kind in [main, *(k for k in kinds if k != main)]:
        report = kind_report(kind, str(next(r.folder for r in runs if r.kind == kind)))
        mine = [r for r in runs if r.kind == kind]
        if len(mine) > 1 and not report.side_by_side:
            raise SmolmixError(f"runs of kind {kind} cannot be put side by side; report one "
                               f"at a time", str(mine[1].folder))
        if kind != main:  # a companion takes the label of the run it belongs to
            subjects = [r for r in runs if r.kind == main]
            mine = [replace(r, label=_diagnosed_by(r, subjects).label) for r in mine]
        parts.append((report, mine))
    return parts


def _title(parts: Sequence[tuple[KindReport, list[Run]]]) -> str:
    (first, runs), *rest = parts
    title = first.title + (f" ({len(runs)} runs side by side)" if len(runs) > 1 else "")
    return title + "".join(f" and {other.title.removeprefix('smolmix report: ')}"
                           for other, _ in rest)


def build_page(runs: Sequence[Run], assets: Assets) -> Page:
    """The page for ``runs``; images are written through ``assets``."""
    parts = plan(runs)
    sections: list[Section] = [runs_section(runs)]
    for report, mine in parts:
        sections += report.sections(mine, assets)
    meta = " · ".join([", ".join(r.label for r in runs), f"smolmix {versions()['smolmix']}"])
    return Page(_title(parts), sections, meta)


def report(runs: Sequence[Path], out: Path, quiet: bool = False) -> Path:
    """Write ``out/report.html`` (and its images) for ``runs``; return the page's path.

    ``out`` must not exist; on any error nothing is written.
    """
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out)
    if not runs:
        raise SmolmixError("give at least one run folder", "RUN")
    check_output_dir(out, inputs=runs)  # never over, or around, a run it reads
    found = read_runs(runs)
    plan(found)  # refuse a bad mix of runs before anything is written
    say(f"reporting {len(found)} run{'s' * (len(found) > 1)}: "
        + ", ".join(f"{r.label} ({r.kind})" for r in found))
    with atomic_output(out, inputs=runs) as work:
        write_page(build_page(found, Assets(work)), work)
    return out / REPORT_FILE
