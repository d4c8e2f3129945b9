"""Writing a mixture chunk by chunk: the ``datasets.save_to_disk`` layout plus exports.

The whole mixture is never held in memory: each chunk goes to the Arrow shard (through
``datasets``' own ``ArrowWriter``, as ``save_to_disk`` does) and to every export at once, and
the ``state.json`` / ``dataset_info.json`` that ``load_from_disk`` reads are written last.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import DatasetInfo, Features
from datasets.arrow_writer import ArrowWriter

MAX_SHARD_BYTES = 500 * 2**20  # datasets' default max_shard_size


def shard_sizes(rows: int, approx_bytes: int) -> list[int]:
    """Rows per shard, as ``save_to_disk`` splits them (contiguous, sizes within one)."""
    count = max(1, min(rows, int(approx_bytes / MAX_SHARD_BYTES) + 1))
    div, mod = divmod(rows, count)
    return [div + (1 if i < mod else 0) for i in range(count)]


class _Exports:
    """The optional JSONL and Parquet copies, written as chunks arrive."""

    def __init__(self, work: Path, formats: Sequence[str]) -> None:
        self.work, self.formats = work, set(formats)
        self.jsonl = open(work / "mixture.jsonl", "wb") if "jsonl" in self.formats else None
        self.parquet = None

    def write(self, chunk: pa.Table) -> None:
        if self.jsonl is not None:
            write_jsonl_rows(self.jsonl, chunk)
        if "parquet" in self.formats:
            if self.parquet is None:
                self.parquet = pq.ParquetWriter(self.work / "mixture.parquet", chunk.schema)
            self.parquet.write_table(chunk)

    def close(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()
        if self.parquet is not None:
            self.parquet.close()


def write_jsonl_rows(fh: BinaryIO, table: pa.Table, batch_rows: int = 4096) -> None:
    """Append ``table`` to a JSONL file, one compact JSON object a row (UTF-8, non-ASCII as
    is), as ``Dataset.to_json(lines=True, force_ascii=False)`` writes it but from Python:
    pandas' C writer crashes when Ctrl-C or SIGTERM lands inside it."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    for batch in table.to_batches(max_chunksize=batch_rows):
        fh.write("".join(dumps(row) + "\n" for row in batch.to_pylist()).encode("utf-8"))


def write_mixture(work: Path, chunks: Iterable[pa.Table], rows: int, approx_bytes: int,
                  fingerprint: str, formats: Sequence[str] = ()) -> None:
    """Write ``rows`` rows arriving as ``chunks`` into ``work`` (a fresh directory).

    ``approx_bytes`` (the mixture's in-memory size) sets the shard count as ``save_to_disk``
    would; ``formats`` may name ``jsonl`` and ``parquet`` exports.
    """
    sizes = shard_sizes(rows, approx_bytes)
    names = [f"data-{i:05d}-of-{len(sizes):05d}.arrow" for i in range(len(sizes))]
    exports = _Exports(work, formats)
    features = writer = None
    shard = left = 0
    written = 0
    try:
        for chunk in chunks:
            if features is None:
                features = Features.from_arrow_schema(chunk.schema)
            exports.write(chunk)
            while chunk.num_rows:
                if writer is None:
                    writer = ArrowWriter(features=features, path=str(work / names[shard]),
                                         embed_local_files=True)
                    left = sizes[shard]
                piece = chunk.slice(0, left)
                writer.write_table(piece)
                written += piece.num_rows
                left -= piece.num_rows
                chunk = chunk.slice(piece.num_rows)
                if left == 0:
                    writer.finalize()
                    writer.close()
                    writer, shard = None, shard + 1
        if written != rows or features is None:
            raise RuntimeError(f"mixture chunks gave {written} rows, expected {rows}")
        if rows == 0:  # an empty mixture: one shard with the schema and no rows
            writer = ArrowWriter(features=features, path=str(work / names[0]))
            writer.finalize()
            writer.close()
            writer = None
    finally:
        if writer is not None:
            writer.close()
        exports.close()
    _write_state(work, names, fingerprint)
    info = asdict(DatasetInfo(features=features))
    with open(work / "dataset_info.json", "w", encoding="utf-8") as fh:
        json.dump({key: info[key] for key in sorted(info)}, fh, indent=2)


def _write_state(work: Path, names: list[str], fingerprint: str) -> None:
    state = {"_data_files": [{"filename": name} for name in names],
             "_fingerprint": fingerprint, "_format_columns": None, "_format_kwargs": {},
             "_format_type": None, "_output_all_columns": False, "_split": None}
    with open(work / "state.json", "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=2, sort_keys=True)
