"""A GGUF file's header, read without loading it: the metadata keys a model needs.

transformers fills metadata a GGUF file lacks with its config class's defaults (a Llama file
with no sizes becomes a 7B model that exhausts memory), so a file missing them is refused here
first. Reading the keys skips every value but the architecture; it takes milliseconds.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from smolmix.core.errors import SmolmixError

MAGIC = b"GGUF"
# GGUF value types: the byte size of each scalar; 8 is a string, 9 an array.
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
# The sizes every GGUF language model states, as ``<architecture>.<key>``.
REQUIRED_KEYS = ("block_count", "embedding_length")


def _u32(fh: BinaryIO) -> int:
    return struct.unpack("<I", fh.read(4))[0]


def _u64(fh: BinaryIO) -> int:
    return struct.unpack("<Q", fh.read(8))[0]


def _string(fh: BinaryIO) -> bytes:
    return fh.read(_u64(fh))


def _skip(fh: BinaryIO, kind: int) -> None:
    if kind == _STRING:
        fh.seek(_u64(fh), 1)
    elif kind == _ARRAY:
        item, count = _u32(fh), _u64(fh)
        if item in _SCALAR_SIZES:
            fh.seek(_SCALAR_SIZES[item] * count, 1)
        else:
            for _ in range(count):
                _skip(fh, item)
    elif kind in _SCALAR_SIZES:
        fh.seek(_SCALAR_SIZES[kind], 1)
    else:
        raise ValueError(f"unknown GGUF value type {kind}")


def read_header(path: str | Path) -> tuple[str | None, set[str]]:
    """The file's ``general.architecture`` (None when absent) and all its metadata keys;
    a file that is not GGUF (or is cut short) is a ``ValueError``."""
    with open(path, "rb") as fh:
        if fh.read(4) != MAGIC:
            raise ValueError("no GGUF magic bytes at its start: not a GGUF file")
        try:
            version = _u32(fh)
            if version not in (2, 3):
                raise ValueError(f"unsupported GGUF version {version}")
            _u64(fh)  # tensor count
            keys, architecture = set(), None
            for _ in range(_u64(fh)):
                key = _string(fh).decode("utf-8", "replace")
                kind = _u32(fh)
                if key == "general.architecture" and kind == _STRING:
                    architecture = _string(fh).decode("utf-8", "replace")
                else:
                    _skip(fh, kind)
                keys.add(key)
        except struct.error:
            raise ValueError("the file ends inside its metadata (truncated)") from None
    return architecture, keys


def check_gguf(path: str | Path, flag: str = "model") -> str:
    """A GGUF model file's architecture; a file that is not one, or lacks the sizes a model
    needs, is a one-line :class:`SmolmixError`."""
    try:
        architecture, keys = read_header(path)
    except (OSError, ValueError) as exc:
        raise SmolmixError(f"cannot read GGUF file {str(path)!r}: {exc}", flag) from None
    if architecture is None:
        raise SmolmixError(f"GGUF file {str(path)!r} has no general.architecture", flag)
    missing = [f"{architecture}.{key}" for key in REQUIRED_KEYS
               if f"{architecture}.{key}" not in keys]
    if missing:
        raise SmolmixError(f"GGUF file {str(path)!r} is not a complete model: no "
                           f"{', '.join(missing)} in its metadata", flag)
    return architecture
