"""Run folders: their ``manifest.json`` (what made them) and the training checkpoints inside
them. How they are written safely is :mod:`smolmix.core.output`."""

from __future__ import annotations

import json
import platform
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from smolmix.core.errors import SmolmixError
from smolmix.core.inputs import read_json_object

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
    where = flag or str(folder)
    if not (folder / MANIFEST).is_file():
        raise SmolmixError("not a smolmix run folder (no manifest.json written by smolmix)",
                           where)
    try:
        data = read_json_object(folder / MANIFEST, MANIFEST)
    except SmolmixError as exc:
        raise SmolmixError(f"not a smolmix run folder ({exc})", where) from None
    kind = data.get("smolmix", {}).get("kind") if isinstance(data.get("smolmix"), dict) \
        else None
    if not isinstance(kind, str):
        raise SmolmixError("not a smolmix run folder (its manifest.json names no smolmix kind)",
                           where)
    if kinds is not None and kind not in kinds:
        raise SmolmixError(f"{str(folder)!r} is a {kind} folder, expected "
                           f"{' or '.join(kinds)}", flag or str(folder))
    return Manifest(folder, kind, data.get("arguments") or {}, data.get("seed"),
                    data.get("created"), data)


def checkpoint_step(path: Path) -> int:
    """The training step of a checkpoint folder: ``trainer_state.json``'s ``global_step``, else
    the number ending its name (``checkpoint-500``)."""
    path = Path(path)
    state = path / "trainer_state.json"
    if state.is_file():
        step = read_json_object(state, "trainer_state.json").get("global_step")
        if isinstance(step, int) and not isinstance(step, bool):
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
