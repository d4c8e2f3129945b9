"""From bucket shares to the exact examples drawn: counts, the repetition cap, token budgets.

Each bucket draws from one seeded permutation of its examples through a :class:`Cursor` that
stages share, so a later stage takes fresh examples first and an example is repeated only after
every example of its bucket has been used as often.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np

from smolmix.core.errors import SmolmixError
from smolmix.mix.shares import counts_from_shares
from smolmix.mix.strategies import Bucket


def example_counts(bucket_shares: Mapping[Bucket, float], total: int) -> dict[Bucket, int]:
    """Counts summing to ``total``: tasks are rounded first, then buckets within each task, so
    every task is within one example of its exact share."""
    task_shares: dict[str, float] = {}
    for b, s in bucket_shares.items():
        task_shares[b.task] = task_shares.get(b.task, 0.0) + s
    task_totals = counts_from_shares(task_shares, total)
    counts: dict[Bucket, int] = {}
    for task, n in task_totals.items():
        members = {b: s for b, s in bucket_shares.items() if b.task == task}
        if sum(members.values()) <= 0:
            counts.update({b: 0 for b in members})
            continue
        keyed = counts_from_shares({_key(b): s for b, s in members.items()}, n)
        counts.update({b: keyed[_key(b)] for b in members})
    return counts


def _key(b: Bucket) -> str:
    return f"{b.source}\x00{b.tags}"


def seeded_rng(*parts: object) -> np.random.Generator:
    """A numpy generator whose stream depends only on ``parts`` (stable across runs)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


class Cursor:
    """Walks a seeded permutation of one bucket's row indices, pass after pass."""

    def __init__(self, bucket: Bucket, rows: np.ndarray, seed: int, max_repeats: int) -> None:
        self.bucket = bucket
        rows = np.asarray(rows, dtype=np.int64)
        self.rows = rows[seeded_rng(seed, bucket.source, bucket.task, bucket.tags)
                         .permutation(len(rows))]
        self.max_repeats = max_repeats
        self.used = 0

    @property
    def capacity(self) -> int:
        return len(self.rows) * self.max_repeats

    def _next(self, count: int) -> np.ndarray:
        return self.rows[np.arange(self.used, self.used + count) % len(self.rows)]

    def take(self, count: int) -> np.ndarray:
        if self.used + count > self.capacity:
            raise SmolmixError(
                f"needs {self.used + count} examples of task {self.bucket.task!r} but has "
                f"{len(self.rows)} × max_repeats {self.max_repeats} = {self.capacity}",
                f"source {self.bucket.source!r}")
        picked = self._next(count)
        self.used += count
        return picked

    def take_tokens(self, target: float, lengths: np.ndarray) -> np.ndarray:
        """Examples until their token count is as close to ``target`` as a whole example allows."""
        candidates = self._next(self.capacity - self.used)
        sizes = lengths[candidates]
        ends = np.cumsum(sizes)
        count = int(np.searchsorted(ends - sizes / 2, target, side="right"))
        if count == len(candidates):
            total = int(ends[-1]) if count else 0
            if total + 0.5 * int(lengths[self.rows].max()) < target:
                raise SmolmixError(
                    f"token budget needs about {target:.0f} tokens of task "
                    f"{self.bucket.task!r} but the repetition cap allows {total} "
                    f"(max_repeats {self.max_repeats})", f"source {self.bucket.source!r}")
        self.used += count
        return candidates[:count]
