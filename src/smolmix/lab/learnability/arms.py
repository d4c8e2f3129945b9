"""The study's arms and held-out groups by name, shared by the study, its summary and report."""

from __future__ import annotations

# Each axis: the tag the mix strategy splits on, its high style and its low style; an axis's
# ratio is the share of the high style (0: the low style alone, 1: the high style alone).
AXES: dict[str, tuple[str, str, str]] = {"long": ("cot", "long", "short"),
                                         "large": ("teacher", "large", "small")}
BASE = "base"  # the untrained model: the no-SFT baseline


def arm_name(axis: str, ratio: float) -> str:
    """``short``/``long``/``small``/``large`` for a single source, ``mix-long-0.2`` for a mix."""
    _, high, low = AXES[axis]
    return low if ratio == 0 else high if ratio == 1 else f"mix-{axis}-{ratio:g}"


def group_name(task: str, level: int) -> str:
    """A held-out set's name: the task and its difficulty, ``add-2``."""
    return f"{task}-{level}"
