"""The report page: sections made of blocks (text, bullets, tables, images, file lists),
rendered by one jinja2 template into a self-contained ``report.html``.

Sections are data, not HTML: every kind of run, and every lab, describes what it shows with
these blocks, and the template alone decides how they look (with autoescaping, so no value
from a run can inject markup).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

REPORT_FILE = "report.html"


@dataclass(frozen=True)
class Text:
    """A paragraph; ``css`` ``note`` or ``meta`` sets it in small grey type."""

    text: str
    css: str = ""
    kind: ClassVar[str] = "text"


@dataclass(frozen=True)
class Bullets:
    """A bulleted list of sentences."""

    items: Sequence[str]
    kind: ClassVar[str] = "bullets"


@dataclass(frozen=True)
class Table:
    """A table: cells from column ``numeric_from`` on, except ``text_columns``, are
    right-aligned numbers; ``row_css`` gives each row a class (e.g. ``rare``)."""

    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    numeric_from: int = 1
    text_columns: Sequence[int] = ()
    caption: str = ""
    note: str = ""
    row_css: Sequence[str] = ()
    kind: ClassVar[str] = "table"


@dataclass(frozen=True)
class Image:
    """A figure: an image file beside ``report.html`` (``src`` is its relative name)."""

    src: str
    caption: str
    alt: str = ""
    kind: ClassVar[str] = "image"


@dataclass(frozen=True)
class FileList:
    """What each file of a run folder holds: ``(name, description)`` pairs."""

    files: Sequence[tuple[str, str]]
    kind: ClassVar[str] = "files"


@dataclass(frozen=True)
class Details:
    """Blocks behind a summary line the reader opens (long lists such as samples)."""

    summary: str
    blocks: Sequence[Block]
    kind: ClassVar[str] = "details"


Block = Text | Bullets | Table | Image | FileList | Details


@dataclass(frozen=True)
class Section:
    """A titled part of the page (an untitled one sits right under the page's title)."""

    title: str | None
    blocks: Sequence[Block] = field(default_factory=list)


@dataclass(frozen=True)
class Page:
    title: str
    sections: Sequence[Section]
    meta: str = ""


def breakable(text: object) -> Markup:
    """``text`` escaped, with a line-break opportunity after each ``/``: long paths wrap in
    narrow table columns while names such as ``running_max`` stay whole."""
    return Markup("/<wbr>").join(escape(str(text)).split("/"))


_ENV = Environment(loader=PackageLoader("smolmix.report", "templates"), autoescape=True,
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                   keep_trailing_newline=True)
_ENV.filters["breakable"] = breakable


def render_page(page: Page) -> str:
    """The page as one HTML document."""
    return _ENV.get_template("page.html.j2").render(page=page)


def write_page(page: Page, folder: Path) -> Path:
    """Write ``folder/report.html``; the images it names must be in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REPORT_FILE
    path.write_text(render_page(page), encoding="utf-8")
    return path
