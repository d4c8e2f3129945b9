"""The one error type for user mistakes (bad recipe, file, flag); bugs keep their traceback."""

from __future__ import annotations


class SmolmixError(Exception):
    """A user error: the CLI prints ``error: <what> (<where>)`` and exits 2."""

    def __init__(self, what: str, where: str | None = None) -> None:
        self.what = what
        self.where = where
        super().__init__(f"{what} ({where})" if where else what)
