"""Reading a rare-tasks ``results.json`` dict: sizes, tasks, cells and their statistics over
seeds, as the lab's plots, reading and report use them."""

from __future__ import annotations

import math

import numpy as np

from smolmix.diagnose.verdicts import LEARN_THRESHOLD
from smolmix.report.formats import is_missing

RESULTS_FILE = "results.json"


def seed_stats(values: list[float]) -> tuple[float, float]:
    """Mean and population std over seeds (std 0 for one seed; NaN, NaN for none)."""
    if not values:
        return math.nan, math.nan
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std())


def size_names(results: dict) -> list[str]:
    """Model size names, smallest first."""
    return [s["name"] for s in results["sizes"]]


def n_seeds(results: dict) -> int:
    """How many seeds the natural-mixture cells were run with."""
    return len({c["seed"] for c in results["cells"] if c["kind"] == "natural"})


def seed_note(results: dict, spread: bool = True) -> str:
    """``one seed``, or ``mean ± std over N seeds`` (``mean over N seeds`` without spread)."""
    n = n_seeds(results)
    if n <= 1:
        return "one seed"
    return f"mean ± std over {n} seeds" if spread else f"mean over {n} seeds"


def task_share(results: dict, task: str) -> float | None:
    """The natural share of ``task`` in the study's mixture, if it is one of its tasks."""
    return next((t["share"] for t in results["tasks"] if t["name"] == task), None)


def learn_threshold(results: dict) -> float:
    """Accuracy at which a task counts as learned."""
    return float(results.get("summary", {}).get("learn_threshold", LEARN_THRESHOLD))


def boost_target(results: dict) -> str | None:
    """The task whose share the boost sweep raises."""
    summary, preset = results.get("summary", {}), results.get("preset", {})
    return summary.get("boost_target") or preset.get("boost_target")


def cells_of(results: dict, kind: str, size: str) -> list[dict]:
    """The cells of one kind and size (one per seed, or per seed and share for boosts)."""
    return [c for c in results["cells"] if c["kind"] == kind and c["size"] == size]


def final_acc(cells: list[dict], task: str) -> tuple[float, float]:
    """Mean and std over ``cells`` of the final exact match on ``task``."""
    return seed_stats([c["final"][task]["exact_match"] for c in cells if task in c["final"]])


def natural_acc(results: dict, size: str, task: str) -> tuple[float, float]:
    """Mean and std over seeds of ``size``'s final exact match on ``task``, natural mixture."""
    return final_acc(cells_of(results, "natural", size), task)


def boosted_sizes(results: dict) -> list[str]:
    """Sizes that have boost cells, smallest first."""
    boosted = {c["size"] for c in results["cells"] if c["kind"] == "boost"}
    return [s for s in size_names(results) if s in boosted]


def boost_points(results: dict, size: str, task: str) -> list[tuple[float, float, float]]:
    """``(share, mean, std)`` of ``size``'s accuracy on ``task`` per boost share, by share."""
    by_share: dict[float, list[dict]] = {}
    for cell in cells_of(results, "boost", size):
        by_share.setdefault(float(cell["boost_share"]), []).append(cell)
    return [(share, *final_acc(cells, task)) for share, cells in sorted(by_share.items())]


def mean_curve(results: dict, size: str, task: str) -> tuple[np.ndarray, ...] | None:
    """Steps, mean and std over seeds of ``size``'s exact-match curve on ``task``."""
    curves = [c["curves"][task] for c in cells_of(results, "natural", size)
              if task in c.get("curves", {}) and c["curves"][task]["step"]]
    if not curves:
        return None
    n = min(len(c["step"]) for c in curves)
    acc = np.array([c["exact_match"][:n] for c in curves], dtype=float)
    return np.asarray(curves[0]["step"][:n], dtype=float), acc.mean(axis=0), acc.std(axis=0)


def at(values: list | None, i: int) -> float | None:
    """``values[i]``, or ``None`` when the list is absent or too short."""
    return values[i] if values and i < len(values) else None


def floats(values: list | None, n: int) -> np.ndarray:
    """``values`` as floats with NaN for missing entries; ``n`` NaNs when absent."""
    if not values:
        return np.full(n, np.nan)
    return np.array([np.nan if is_missing(v) else v for v in values], dtype=float)
