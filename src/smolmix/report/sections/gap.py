"""Sections of ``smolmix gap --out`` folders: each learnability gap with its interval, and the
plot the command drew."""

from __future__ import annotations

from collections.abc import Sequence

from smolmix.report.assets import Assets
from smolmix.report.formats import fmt_interval, fmt_number, fmt_signed
from smolmix.report.page import Image, Section, Table, Text
from smolmix.report.registry import register_sections
from smolmix.report.views import GapView, Run

NOTE = ("Long-CoT gap = P(cot=long) − P(cot=short); large-teacher gap = P(teacher=large) − "
        "P(teacher=small), each on the same student. Negative: the student learns better from "
        "short traces or the small teacher. Interval: 95% bootstrap (paired when both runs "
        "answered the same questions).")


def gaps_section(views: Sequence[GapView], assets: Assets) -> Section:
    several = len(views) > 1
    header = [*(["gap run"] if several else []), "student", "gap", "P(high)", "P(low)",
              "difference", "95% interval", "paired"]
    rows = [[*([v.run.label] if several else []), r["student"], r["gap"].replace("_", " "),
             fmt_number(r["p_high"]), fmt_number(r["p_low"]), fmt_signed(r["diff"]),
             fmt_interval(r["low"], r["high"]), "yes" if r.get("paired") else "no"]
            for v in views for r in v.rows]
    blocks = [Table(header, rows, numeric_from=3 if several else 2,
                    text_columns=[len(header) - 1]), Text(NOTE, css="note")]
    blocks += [Image(assets.copy(v.plot, f"gaps-{v.run.label}"),
                     f"Each gap with its 95% interval ({v.run.label}).")
               for v in views if v.plot is not None]
    return Section("Learnability gaps", blocks)


def gap_sections(runs: Sequence[Run], assets: Assets) -> list[Section]:
    return [gaps_section([GapView.read(r) for r in runs], assets)]


register_sections("gap", gap_sections, title="smolmix report: learnability gaps")
