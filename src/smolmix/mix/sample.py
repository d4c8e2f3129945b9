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
    """Walks a seeded permutation of one bucket's row indices, pass after pass.

    Drawing is in two steps, so that a whole plan can be sized before any memory is taken:
    :meth:`reserve` / :meth:`reserve_tokens` advance the cursor and say which stretch of the
    walk a draw is, :meth:`rows_at` gives that stretch's row indices.
    """

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

    def rows_at(self, start: int, count: int) -> np.ndarray:
        """The row indices of the walk from ``start``, ``count`` of them."""
        return self.rows[np.arange(start, start + count) % len(self.rows)]

    def reserve(self, count: int) -> int:
        """Advance by ``count`` examples (within the repetition cap); return where they start."""
        if self.used + count > self.capacity:
            raise SmolmixError(
                f"needs {self.used + count} examples of task {self.bucket.task!r} but has "
                f"{len(self.rows)} × max_repeats {self.max_repeats} = {self.capacity}",
                f"source {self.bucket.source!r}")
        start = self.used
        self.used += count
        return start

    def reserve_tokens(self, target: float, lengths: np.ndarray) -> tuple[int, int]:
        """Advance by examples until their token count is as close to ``target`` as a whole
        example allows; return (start, count). The walk is periodic (one pass of the bucket),
        so this takes one pass's memory, whatever the repetition cap."""
        left = self.capacity - self.used
        n = len(self.rows)
        total = 0  # tokens of the examples left under the cap, when all of them are needed
        if left <= 0 or n == 0:
            count = 0
        else:
            offset = self.used % n
            sizes = lengths[np.roll(self.rows, -offset)]  # one pass, from the cursor on
            ends = np.cumsum(sizes)
            per_pass = int(ends[-1])
            if per_pass == 0:
                count = left
            else:  # every example of the earlier passes fits; then as in one pass
                passes = max(0, int(target // per_pass))
                while passes > 0 and passes * per_pass > target:
                    passes -= 1
                within = int(np.searchsorted(passes * per_pass + ends - sizes / 2, target,
                                             side="right"))
                count = min(left, passes * n + within)
            full, rest = divmod(left, n)
            total = full * per_pass + (int(ends[rest - 1]) if rest else 0)
        if count == left and n and total + 0.5 * int(lengths[self.rows].max()) < target:
            raise SmolmixError(
                f"token budget needs about {target:.0f} tokens of task "
                f"{self.bucket.task!r} but the repetition cap allows {total} "
                f"(max_repeats {self.max_repeats})", f"source {self.bucket.source!r}")
        start = self.used
        self.used += count
        return start, count

    def take(self, count: int) -> np.ndarray:
        return self.rows_at(self.reserve(count), count)

    def take_tokens(self, target: float, lengths: np.ndarray) -> np.ndarray:
        """Examples until their token count is as close to ``target`` as a whole example allows."""
        return self.rows_at(*self.reserve_tokens(target, lengths))


# Bytes of memory a plan takes per example drawn, at its peak: the drawn row indices, a stage's
# indices gathered, permuted and reordered for writing, and the counts in the summary.
BYTES_PER_DRAWN_ROW = 48


def available_memory() -> int | None:
    """Bytes of memory this machine can give now (``MemAvailable``); None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # optional: only where /proc/meminfo is not there
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def check_plan_memory(rows: int, where: str, available: int | None = None) -> None:
    """Refuse a plan drawing ``rows`` examples whose memory this machine cannot give."""
    need = rows * BYTES_PER_DRAWN_ROW
    available = available_memory() if available is None else available
    if available is not None and need > available:
        raise SmolmixError(
            f"the plan draws {rows:,} examples and needs about {need / 2**30:.1f} GiB of "
            f"memory, more than the {available / 2**30:.1f} GiB available; lower the budget "
            "or max_repeats", where)
