"""The image files of a report: PNGs written beside ``report.html`` under unique names, so the
page opens from disk without a server."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from matplotlib.figure import Figure

from smolmix.core.figures import save_png


class Assets:
    """Hands out file names in ``folder`` (one per image, never twice) and writes the files."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._taken: set[str] = set()

    def name(self, stem: str, suffix: str = ".png") -> str:
        """A fresh file name made from ``stem`` (``-2``, ``-3``... when it is taken)."""
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "image"
        name, n = f"{base}{suffix}", 1
        while name in self._taken:
            n += 1
            name = f"{base}-{n}{suffix}"
        self._taken.add(name)
        return name

    def figure(self, fig: Figure, stem: str) -> str:
        """Save ``fig`` as a PNG; return its file name (the ``src`` of an image block)."""
        name = self.name(stem)
        save_png(fig, self.folder / name)
        return name

    def copy(self, path: Path, stem: str) -> str:
        """Copy an image a run wrote (e.g. ``needle.png``); return its new file name."""
        name = self.name(stem, Path(path).suffix or ".png")
        self.folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, self.folder / name)
        return name
