"""Output directories that appear only when complete, each with a ``manifest.json``.

A command writes into ``<out>.partial/`` and renames it to ``<out>`` at the end; an interrupted
command removes its partial directory, so nothing half-written ever looks complete.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from smolmix.errors import SmolmixError

MANIFEST = "manifest.json"
VERSIONED_PACKAGES = ("smolmix", "torch", "transformers", "datasets", "accelerate", "tokenizers")


def is_smolmix_dir(path: Path) -> bool:
    """True when ``path`` holds a manifest written by smolmix."""
    try:
        data = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "smolmix" in data


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
