"""The one input layer: every file smolmix reads (JSON, JSONL, YAML, CSV headers, Arrow,
Parquet, ``datasets`` folders, model files) goes through these readers, so that any problem in
it is one :class:`SmolmixError` naming the file (and line or byte offset), never a traceback.

Limits, the same for every reader:

- text is strict UTF-8 (a leading byte-order mark is accepted and dropped); a bad byte is
  named by its offset in the file;
- JSON and YAML values nest at most :data:`MAX_DEPTH` levels and integers have at most
  :data:`MAX_DIGITS` digits; a YAML document (a config, not data) holds at most
  :data:`MAX_YAML_VALUES` values, aliases counted as expanded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from smolmix.core.errors import SmolmixError, first_line

MAX_DEPTH = 64
MAX_YAML_VALUES = 1_000_000
MAX_DIGITS = 1000
BOM = b"\xef\xbb\xbf"


def decode(data: bytes, where: str, offset: int = 0) -> str:
    """``data`` as strict UTF-8 text (a leading BOM dropped); a bad byte is an error naming its
    offset (``offset`` is where ``data`` starts in its file)."""
    start = len(BOM) if offset == 0 and data.startswith(BOM) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = data[start + exc.start]
        raise SmolmixError(f"not UTF-8 text: byte 0x{byte:02x} at offset "
                           f"{offset + start + exc.start}", where) from None


def read_bytes(path: Path, what: str = "file") -> bytes:
    """A file's bytes; a missing, unreadable or non-regular file is an error naming it."""
    path = Path(path)
    with reading(path, what):
        if path.is_dir():
            raise SmolmixError(f"{what} is a folder, expected a file", str(path))
        return path.read_bytes()


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_text(path: Path, what: str = "file") -> str:
    """A UTF-8 text file (see :func:`decode`)."""
    return decode(read_bytes(path, what), str(path))


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise _TooBig(f"an integer with {digits} digits (at most {MAX_DIGITS})")
    return int(text)


class _TooBig(ValueError):
    pass


def parse_json(text: str, where: str, line: int | None = None) -> Any:
    """A JSON document; malformed, too deep or too big input is an error at ``where``
    (with the line of the problem appended when ``line`` is None)."""
    try:
        data = json.loads(text, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        at = f"{where}:{exc.lineno}" if line is None else where
        raise SmolmixError(f"malformed JSON ({exc.msg})", at) from None
    except _TooBig as exc:
        raise SmolmixError(f"JSON value too large: {exc}", where) from None
    except RecursionError:
        raise SmolmixError(f"JSON nested more than {MAX_DEPTH} levels deep", where) from None
    check_structure(data, where, "JSON")
    return data


def check_structure(data: Any, where: str, kind: str = "JSON",
                    max_values: int | None = None) -> None:
    """At most :data:`MAX_DEPTH` levels of nesting (and ``max_values`` values)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if max_values is not None and seen > max_values:
            raise SmolmixError(f"{kind} holds more than {max_values:,} values", where)
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise SmolmixError(f"{kind} nested more than {MAX_DEPTH} levels deep", where)
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)


def read_json(path: Path, what: str = "JSON file") -> Any:
    """A JSON file (see :func:`parse_json`)."""
    return parse_json(read_text(path, what), str(path))


def read_json_object(path: Path, what: str = "JSON file") -> dict:
    """A JSON file whose top level is an object."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise SmolmixError(f"{what} must hold a JSON object", str(path))
    return data


def iter_json_lines(path: Path, what: str = "JSONL file") -> Iterator[tuple[str, Any]]:
    """Each non-blank line of a JSONL file as (``file:line``, value), read strictly: a bad
    byte, a malformed line or an oversized value is an error naming the line."""
    path = Path(path)
    with reading(path, what):
        if path.is_dir():
            raise SmolmixError(f"{what} is a folder, expected a file", str(path))
        fh = open(path, "rb")  # noqa: SIM115  (closed below; errors mapped by reading())
    with fh:
        offset = 0
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path}:{lineno}"
            text = decode(raw, where, offset)
            offset += len(raw)
            if text.strip():
                yield where, parse_json(text, where, line=lineno)


def iter_json_objects(path: Path, what: str = "JSONL file") -> Iterator[tuple[str, dict]]:
    """:func:`iter_json_lines`, every line a JSON object."""
    for where, data in iter_json_lines(path, what):
        if not isinstance(data, dict):
            raise SmolmixError("line is not a JSON object", where)
        yield where, data


def parse_yaml(text: str, where: str) -> tuple[Any, yaml.Node | None]:
    """A YAML document (``safe_load``) and its node tree, for line numbers; problems name
    ``where:line``."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        at = f"{where}:{mark.line + 1}" if mark is not None else where
        raise SmolmixError(f"invalid YAML: {problem}", at) from None
    except RecursionError:
        raise SmolmixError(f"YAML nested more than {MAX_DEPTH} levels deep", where) from None
    except ValueError as exc:  # an integer beyond Python's digit limit, a bad date
        if "integer string conversion" in str(exc):
            raise SmolmixError(f"YAML value too large: an integer with more than {MAX_DIGITS}"
                               " digits", where) from None
        raise SmolmixError(f"invalid YAML value ({first_line(exc, 120)})", where) from None
    check_structure(data, where, "YAML", MAX_YAML_VALUES)
    _check_yaml_ints(data, where)
    return data, root


def _check_yaml_ints(data: Any, where: str) -> None:
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, int) and not isinstance(value, bool) \
                and value.bit_length() > MAX_DIGITS * 3.33:
            raise SmolmixError(f"YAML value too large: an integer with more than {MAX_DIGITS}"
                               " digits", where)


def read_csv_header(path: Path, what: str = "CSV file") -> list[str]:
    """The column names on a CSV file's first line (strict UTF-8, BOM accepted)."""
    import csv
    import io

    path = Path(path)
    with reading(path, what):
        with open(path, "rb") as fh:
            first = fh.readline(1 << 20)
    text = decode(first, f"{path}:1")
    try:
        return next(csv.reader(io.StringIO(text)), [])
    except csv.Error as exc:
        raise SmolmixError(f"malformed CSV header ({exc})", f"{path}:1") from None


def check_utf8_file(path: Path, what: str = "file") -> None:
    """Decode a text file strictly, line by line: a bad byte is an error naming its line and
    its offset in the file."""
    with reading(path, what), open(path, "rb") as fh:
        offset = 0
        for lineno, raw in enumerate(fh, start=1):
            decode(raw, f"{path}:{lineno}", offset)
            offset += len(raw)


def read_csv_table(path: Path, what: str = "CSV file", columns: Sequence[str] | None = None,
                   nulls: bool = False):
    """A CSV file as a pyarrow table, ``columns`` (default: every column its header names)
    as text, values may hold newlines; ``nulls``: empty values are null. A bad byte is named
    by its line and offset, as by every text reader here."""
    import pyarrow as pa
    import pyarrow.csv as pv

    names = list(columns) if columns is not None else read_csv_header(path, what)
    convert = pv.ConvertOptions(include_columns=names,
                                column_types={c: pa.string() for c in names},
                                strings_can_be_null=nulls)
    with reading(path, what):
        try:
            return pv.read_csv(path, convert_options=convert,
                               parse_options=pv.ParseOptions(newlines_in_values=True))
        except pa.ArrowInvalid as exc:
            if "UTF8" in str(exc):
                check_utf8_file(path, what)
            raise


@contextmanager
def reading(path: Path | str, what: str = "file") -> Iterator[None]:
    """Map what a reader (ours or a library's: pyarrow, datasets, safetensors, tokenizers)
    raises on a missing, unreadable or corrupt file to one error naming ``path``."""
    try:
        yield
    except SmolmixError:
        raise
    except FileNotFoundError:
        raise SmolmixError(f"{what} not found", str(path)) from None
    except IsADirectoryError:
        raise SmolmixError(f"{what} is a folder, expected a file", str(path)) from None
    except PermissionError:
        raise SmolmixError(f"{what} cannot be read (permission denied)", str(path)) from None
    except UnicodeDecodeError as exc:
        raise SmolmixError(f"{what} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                           f"at offset {exc.start} of a block)", str(path)) from None
    except RecursionError:
        raise SmolmixError(f"{what} is nested too deeply", str(path)) from None
    except MemoryError:
        raise SmolmixError(f"{what} is too large for this machine's memory",
                           str(path)) from None
    except Exception as exc:  # noqa: BLE001  (a library's parse error: the file is corrupt)
        if not _is_format_error(exc):
            raise
        raise SmolmixError(f"{what} is corrupt or unreadable ({first_line(exc, 160)})",
                           str(path)) from None


_FORMAT_ERRORS: list[Callable[[BaseException], bool]] = [
    lambda e: isinstance(e, OSError | ValueError | EOFError | KeyError | IndexError
                         | TypeError | AttributeError | AssertionError),
    lambda e: type(e).__module__.split(".")[0] in ("pyarrow", "safetensors", "tokenizers",
                                                    "datasets", "yaml", "google"),
    lambda e: type(e).__name__ in ("SafetensorError", "ArrowException", "ArrowInvalid",
                                   "HeaderTooLarge", "Exception"),
]


def _is_format_error(exc: BaseException) -> bool:
    return any(check(exc) for check in _FORMAT_ERRORS)
