"""A GGUF file's header, read without loading it: the metadata keys a model needs.

transformers fills metadata a GGUF file lacks with its config class's defaults (a Llama file
with no sizes becomes a 7B model that exhausts memory), so a file missing them is refused here
first. Reading the keys skips every value but the architecture; it takes milliseconds.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO

from smolmix.core.errors import SmolmixError

MAGIC = b"GGUF"
# GGUF value types: the byte size of each scalar; 8 is a string, 9 an array.
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_INTEGERS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 10: "<Q", 11: "<q"}
# The sizes every GGUF language model states, as ``<architecture>.<key>``.
REQUIRED_KEYS = ("block_count", "embedding_length")


class _Reader:
    """Reads a GGUF header, every length checked against what is left of the file (a garbage
    or cut-short file is a ``ValueError``, never a huge allocation or an endless loop)."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh, self.size = fh, size

    def left(self) -> int:
        return self.size - self.fh.tell()

    def need(self, count: int) -> None:
        """``count`` more bytes must be there."""
        if count > self.left():
            raise ValueError("the file ends inside its metadata (truncated)")

    def read(self, count: int) -> bytes:
        self.need(count)
        return self.fh.read(count)

    def skip(self, count: int) -> None:
        self.need(count)
        self.fh.seek(count, 1)

    def u32(self) -> int:
        return struct.unpack("<I", self.read(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.read(8))[0]

    def string(self) -> bytes:
        return self.read(self.u64())

    def skip_value(self, kind: int) -> None:
        if kind == _STRING:
            self.skip(self.u64())
        elif kind == _ARRAY:
            item, count = self.u32(), self.u64()
            if item in _SCALAR_SIZES:
                self.skip(_SCALAR_SIZES[item] * count)
            elif item in (_STRING, _ARRAY):
                self.need(8 * count)  # each string or array takes 8 bytes at least
                for _ in range(count):
                    self.skip_value(item)
            else:
                raise ValueError(f"unknown GGUF value type {item}")
        elif kind in _SCALAR_SIZES:
            self.skip(_SCALAR_SIZES[kind])
        else:
            raise ValueError(f"unknown GGUF value type {kind}")


def read_header(path: str | Path) -> tuple[str | None, dict[str, int | None]]:
    """The file's ``general.architecture`` (None when absent) and all its metadata keys, each
    with its value when that is an integer (else None); a file that is not GGUF (or is cut
    short) is a ``ValueError``."""
    with open(path, "rb") as fh:
        reader = _Reader(fh, os.fstat(fh.fileno()).st_size)
        if fh.read(4) != MAGIC:
            raise ValueError("no GGUF magic bytes at its start: not a GGUF file")
        try:
            version = reader.u32()
            if version not in (2, 3):
                raise ValueError(f"unsupported GGUF version {version}")
            reader.u64()  # tensor count
            count = reader.u64()
            reader.need(12 * count)  # a key takes 12 bytes at least
            keys: dict[str, int | None] = {}
            architecture = None
            for _ in range(count):
                key = reader.string().decode("utf-8", "replace")
                kind = reader.u32()
                keys[key] = None
                if key == "general.architecture" and kind == _STRING:
                    architecture = reader.string().decode("utf-8", "replace")
                elif kind in _INTEGERS:
                    fmt = _INTEGERS[kind]
                    keys[key] = struct.unpack(fmt, reader.read(struct.calcsize(fmt)))[0]
                else:
                    reader.skip_value(kind)
        except (struct.error, RecursionError):
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
    for key in REQUIRED_KEYS:
        value = keys[f"{architecture}.{key}"]
        if value is None or value < 1:
            raise SmolmixError(f"GGUF file {str(path)!r} is not a valid model: "
                               f"{architecture}.{key} must be a positive integer", flag)
    return architecture
