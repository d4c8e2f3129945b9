"""The one error type for user mistakes (bad recipe, file, flag); bugs keep their traceback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


class SmolmixError(Exception):
    """A user error: the CLI prints ``error: <what> (<where>)`` and exits 2."""

    def __init__(self, what: str, where: str | None = None) -> None:
        self.what = what
        self.where = where
        super().__init__(f"{what} ({where})" if where else what)


def lookup(registry: Mapping[str, T], name: str, kind: str, where: str) -> T:
    """``registry[name]``; an unknown name is a user error that lists the known ones."""
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(registry)
        raise SmolmixError(f"unknown {kind} {name!r}; known: {known}", where) from None


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (its type name when empty), for a one-line
    error; ``limit`` caps its length."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
