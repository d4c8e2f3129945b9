"""Resumable progress: every finished sample is one line of ``journal.jsonl`` in the run's
``<out>.partial`` folder, written and flushed to disk before the next is counted done.

``run.json`` beside it holds the run's fingerprint (the arguments that shape the output and a
digest of the problems file). A run restarted on that folder with the same fingerprint
continues: samples already in the journal are not asked for again. Different arguments are
refused, naming the first that differs. A kill can leave the journal's last line half written;
that line is dropped (its sample is asked for again), so no sample appears twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from smolmix.core.errors import SmolmixError
from smolmix.core.inputs import read_json_object
from smolmix.core.output import write_whole

JOURNAL = "journal.jsonl"
RUN_FILE = "run.json"

Key = tuple[str, int]  # (problem id, sample index)


def first_difference(old: dict, new: dict) -> str | None:
    """The first key (sorted) whose value differs between two fingerprints."""
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return key
    return None


def refuse_other_arguments(old: dict, new: dict, where: str) -> None:
    """A one-line error when ``new`` is not the fingerprint ``old`` recorded at ``where``."""
    key = first_difference(old, new)
    if key is not None:
        raise SmolmixError(f"{where} was made with other arguments ({key}: "
                           f"{old.get(key)!r} there, {new.get(key)!r} now); use another "
                           "--out, or the same arguments to continue it", "--out")


class Journal:
    """The finished samples of a run, kept in a folder; append as samples finish."""

    def __init__(self, folder: Path, fingerprint: dict) -> None:
        self.folder = Path(folder)
        self.path = self.folder / JOURNAL
        run_file = self.folder / RUN_FILE
        if run_file.is_file():
            recorded = read_json_object(run_file, RUN_FILE).get("fingerprint") or {}
            refuse_other_arguments(recorded, fingerprint, str(self.folder))
        else:
            write_whole(run_file, json.dumps({"fingerprint": fingerprint}, indent=2,
                                             sort_keys=True) + "\n")
        self.done: dict[Key, dict] = self._read()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def _read(self) -> dict[Key, dict]:
        """The journal's entries; a torn last line is cut off the file."""
        if not self.path.exists():
            return {}
        raw = self.path.read_bytes()
        good = raw.rfind(b"\n") + 1
        entries: dict[Key, dict] = {}
        for line in raw[:good].splitlines():
            entry = json.loads(line)
            entries[(entry["problem"], entry["sample"])] = entry
        if good != len(raw):
            with open(self.path, "r+b") as fh:
                fh.truncate(good)
        return entries

    def append(self, entry: dict) -> None:
        """Record one finished sample, durably."""
        key = (entry["problem"], entry["sample"])
        if key in self.done:
            raise RuntimeError(f"sample {key} recorded twice")
        self._fh.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.done[key] = entry

    def close(self) -> None:
        self._fh.close()
