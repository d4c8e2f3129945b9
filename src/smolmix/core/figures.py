"""PNG figures through matplotlib's object API (``Figure`` without pyplot): headless, no global
backend, no figure registry, and the same bytes for the same data."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

DPI = 110
PNG_METADATA = {"Software": None}  # no version string in the file: same results, same bytes


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` × ``height`` inches with constrained layout."""
    return Figure(figsize=(width, height), layout="constrained")


def save_png(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata=PNG_METADATA)
    return path
