"""The one interface every generation backend implements: prompts in, greedy continuations
out, stop strings applied the same way."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

DEFAULT_BATCH_SIZE = 64
Progress = Callable[[int], None]


class Backend:
    """Something that turns prompts into greedy continuations."""

    name: ClassVar[str]

    @classmethod
    def from_checkpoint(cls, path: Path, **options) -> Backend:
        raise NotImplementedError

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = (),
                 progress: Progress | None = None) -> list[str]:
        raise NotImplementedError


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` cut before the earliest occurrence of any stop string."""
    cut = min((k for k in (text.find(s) for s in stop if s) if k >= 0), default=len(text))
    return text[:cut]
