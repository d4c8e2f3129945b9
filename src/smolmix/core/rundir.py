"""Run folders: output directories that appear only when complete, their ``manifest.json``
(what made them), and the training checkpoints inside them.

A command writes into ``<out>.partial/`` and renames it to ``<out>`` at the end; an interrupted
command removes its partial directory, so nothing half-written ever looks complete.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from smolmix.core.errors import SmolmixError

MANIFEST = "manifest.json"
VERSIONED_PACKAGES = ("smolmix", "torch", "transformers", "datasets", "accelerate", "tokenizers")


CHECKPOINTS_DIR = "checkpoints"


@dataclass(frozen=True)
class Manifest:
    """A run folder's ``manifest.json``: the kind of run (``mixture``, ``train``, ``eval``,
    ``diagnose``, ``gap``, ``lab.<study>``), how it was made, and the rest of its fields."""

    folder: Path
    kind: str
    arguments: dict = field(default_factory=dict)
    seed: int | None = None
    created: str | None = None
    data: dict = field(default_factory=dict)

    def get(self, key: str, default=None):
        return self.data.get(key, default)


def read_manifest(folder: Path, kinds: Sequence[str] | None = None,
                  flag: str | None = None) -> Manifest:
    """The manifest of a smolmix run folder; a folder without one, or of a kind not in
    ``kinds``, is a user error naming the folder."""
    folder = Path(folder)
    try:
        data = json.loads((folder / MANIFEST).read_text())
        kind = data["smolmix"]["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        raise SmolmixError("not a smolmix run folder (no manifest.json written by smolmix)",
                           flag or str(folder)) from None
    if kinds is not None and kind not in kinds:
        raise SmolmixError(f"{str(folder)!r} is a {kind} folder, expected "
                           f"{' or '.join(kinds)}", flag or str(folder))
    return Manifest(folder, kind, data.get("arguments") or {}, data.get("seed"),
                    data.get("created"), data)


def is_smolmix_dir(path: Path) -> bool:
    """True when ``path`` holds a manifest written by smolmix."""
    try:
        read_manifest(path)
    except SmolmixError:
        return False
    return True


def checkpoint_step(path: Path) -> int:
    """The training step of a checkpoint folder: ``trainer_state.json``'s ``global_step``, else
    the number ending its name (``checkpoint-500``)."""
    path = Path(path)
    state = path / "trainer_state.json"
    if state.is_file():
        step = json.loads(state.read_text()).get("global_step")
        if isinstance(step, int):
            return step
    match = re.search(r"(\d+)$", path.name)
    if match is None:
        raise SmolmixError("cannot tell the training step of this checkpoint (no "
                           "trainer_state.json, no step at the end of its name)", str(path))
    return int(match.group(1))


def list_checkpoints(run: Path, with_weights: bool = False) -> list[Path]:
    """The Trainer checkpoints under ``run/checkpoints`` (``checkpoint-<step>``), by step;
    ``with_weights``: only those holding a model (a ``config.json``)."""
    found = [p for p in (Path(run) / CHECKPOINTS_DIR).glob("checkpoint-*")
             if re.fullmatch(r"checkpoint-\d+", p.name)
             and (not with_weights or (p / "config.json").is_file())]
    return sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[1]))


def check_output_dir(out: Path, flag: str = "--out", replace: bool = True) -> None:
    """Refuse an existing path that is not a smolmix output (it would be overwritten), or any
    existing path when ``replace`` is False."""
    if out.exists() and not replace:
        raise SmolmixError(f"output path {str(out)!r} already exists", flag)
    if out.exists() and not (out.is_dir() and is_smolmix_dir(out)):
        raise SmolmixError(f"output path {str(out)!r} exists and is not a smolmix run", flag)


def versions() -> dict[str, str]:
    """Installed versions of the packages that shape results."""
    found = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def write_manifest(directory: Path, kind: str, arguments: dict, seed: int | None,
                   extra: dict | None = None) -> None:
    """Record what made ``directory``: command, arguments, seed, versions and time (+ ``extra``)."""
    manifest = {
        "smolmix": {"kind": kind, "version": versions()["smolmix"]},
        "command": " ".join(sys.argv),
        "arguments": arguments,
        "seed": seed,
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


@contextmanager
def atomic_output(out: Path, flag: str = "--out", replace: bool = True) -> Iterator[Path]:
    """Yield a fresh ``<out>.partial`` directory; on success it replaces ``out``.

    On any exception (Ctrl-C included) the partial directory is removed and ``out`` is left as
    it was.
    """
    out = Path(out)
    check_output_dir(out, flag, replace)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        partial.rename(out)
        shutil.rmtree(old)
    else:
        partial.rename(out)
