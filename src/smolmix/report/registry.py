"""Which sections the report shows for each kind of run folder (the manifest's ``kind``).

smolmix's own kinds register theirs in :mod:`smolmix.report.sections`; a lab registers the
sections of its runs (kind ``lab.<study>``) the same way, from its own package::

    register_sections("lab.rare-tasks", lab_sections, title="smolmix lab: rare tasks",
                      side_by_side=False)

A sections function receives the runs of its kind (several when they are put side by side)
and the report's :class:`~smolmix.report.assets.Assets`, where it writes its images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from smolmix.core.errors import SmolmixError
from smolmix.report.assets import Assets
from smolmix.report.page import Section
from smolmix.report.views import Run

SectionsFn = Callable[[Sequence[Run], Assets], list[Section]]


@dataclass(frozen=True)
class KindReport:
    """How one kind of run is reported: its sections, the page title, and whether several
    runs of the kind can share one page."""

    kind: str
    sections: SectionsFn
    title: str
    side_by_side: bool = True


_REGISTRY: dict[str, KindReport] = {}


def register_sections(kind: str, sections: SectionsFn, *, title: str | None = None,
                      side_by_side: bool = True) -> None:
    """Report runs of ``kind`` with ``sections`` (registering a kind again replaces it)."""
    _REGISTRY[kind] = KindReport(kind, sections, title or f"smolmix report: {kind}",
                                 side_by_side)


def kind_report(kind: str, where: str) -> KindReport:
    """The registration of ``kind``; an unknown kind is a user error naming ``where``."""
    try:
        return _REGISTRY[kind]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise SmolmixError(f"no report for runs of kind {kind!r}; known kinds: {known}",
                           where) from None
