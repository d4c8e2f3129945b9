"""Numbers as the report writes them: shares, parameter counts, metrics, intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence

MISSING = "—"


def is_missing(x: float | None) -> bool:
    """True for a value the run did not produce (``None`` or NaN)."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_params(n: float) -> str:
    """A parameter count as ``512``, ``7.7k``, ``363k`` or ``1.2M``."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            v = n / div
            return f"{v:.1f}{unit}" if v < 9.95 else f"{v:.0f}{unit}"
    return f"{n:.0f}"


def fmt_share(share: float | None) -> str:
    """A mixture share as a percentage: ``64%``, ``3%``, ``0.38%`` (``—`` when missing)."""
    if is_missing(share):
        return MISSING
    p = share * 100
    return f"{p:.0f}%" if p >= 9.5 else f"{p:.2g}%"


def fmt_number(x: float | int | None, digits: int = 3) -> str:
    """A metric with ``digits`` decimals (integers as they are; ``—`` when missing)."""
    if is_missing(x):
        return MISSING
    if isinstance(x, bool) or isinstance(x, int):
        return str(x)
    return f"{x:.{digits}f}"


def fmt_signed(x: float | None, digits: int = 3) -> str:
    """A signed metric such as an interference or a gap: ``+0.120``."""
    return MISSING if is_missing(x) else f"{x:+.{digits}f}"


def fmt_interval(low: float | None, high: float | None, digits: int = 3) -> str:
    """A confidence interval: ``[0.410, 0.530]``."""
    if is_missing(low) or is_missing(high):
        return MISSING
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def fmt_seconds(seconds: float | None) -> str:
    """``42 s``, or ``301 s (5.0 min)`` from two minutes on."""
    if is_missing(seconds):
        return "unknown"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds:.0f} s ({seconds / 60:.1f} min)"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """An aligned plain-text table for the terminal: the first ``left`` columns flush left,
    the rest flush right, a rule under the header."""
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if k < left else c.rjust(w)
                         for k, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])
