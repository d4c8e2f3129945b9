"""Accuracy with percentile-bootstrap confidence intervals, and frequency buckets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
# A task's share of the training mixture decides its bucket (the rare-task finding: tasks
# under ~1% are the ones small models lose).
BUCKETS = (("rare", 0.01), ("medium", 0.10), ("frequent", 1.01))


def bootstrap_mean(values: Sequence[float], seed: int = 0, resamples: int = RESAMPLES,
                   level: float = LEVEL) -> dict[str, float]:
    """Mean of ``values`` with a percentile-bootstrap interval (``n``, ``mean``, ``low``,
    ``high``)."""
    data = np.asarray(values, dtype=float)
    if len(data) == 0:
        return {"n": 0, "mean": float("nan"), "low": float("nan"), "high": float("nan")}
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    tail = (1 - level) / 2
    return {"n": int(len(data)), "mean": float(data.mean()),
            "low": float(np.quantile(means, tail)), "high": float(np.quantile(means, 1 - tail))}


def bootstrap_difference(a: Sequence[float], b: Sequence[float], paired: bool, seed: int = 0,
                         resamples: int = RESAMPLES, level: float = LEVEL) -> dict[str, float]:
    """mean(a) − mean(b) with a bootstrap interval; ``paired`` resamples the same items of
    both (the same eval questions), otherwise each side on its own."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) == 0 or len(y) == 0:
        return {"diff": float("nan"), "low": float("nan"), "high": float("nan")}
    rng = np.random.default_rng(seed)
    if paired:
        if len(x) != len(y):
            raise ValueError("paired samples must have the same length")
        idx = rng.integers(0, len(x), size=(resamples, len(x)))
        diffs = x[idx].mean(axis=1) - y[idx].mean(axis=1)
    else:
        diffs = (x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
                 - y[rng.integers(0, len(y), size=(resamples, len(y)))].mean(axis=1))
    tail = (1 - level) / 2
    return {"diff": float(x.mean() - y.mean()), "low": float(np.quantile(diffs, tail)),
            "high": float(np.quantile(diffs, 1 - tail))}


def bucket_of(share: float) -> str:
    """The frequency bucket of a training share."""
    return next(name for name, upper in BUCKETS if share < upper)
