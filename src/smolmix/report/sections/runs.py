"""The section every report opens with: which run folders it shows and what made them."""

from __future__ import annotations

from collections.abc import Sequence

from smolmix.report.page import Section
from smolmix.report.sections.tables import facts_table
from smolmix.report.views import Run


def _version(run: Run) -> str:
    return str((run.manifest.get("smolmix") or {}).get("version", "?"))


def runs_section(runs: Sequence[Run]) -> Section:
    """A column per run: kind, folder, time, seed, smolmix version and the command line."""
    return Section("Runs", [facts_table(runs, lambda r: r.label, [
        ("kind", lambda r: r.kind),
        ("folder", lambda r: str(r.folder)),
        ("created", lambda r: r.manifest.created or "?"),
        ("seed", lambda r: "—" if r.manifest.seed is None else str(r.manifest.seed)),
        ("smolmix", _version),
        ("command", lambda r: str(r.manifest.get("command", "?"))),
    ])])
