"""Training and held-out data: mixture folders and JSONL files as records, held-out splits,
and padded batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from datasets import load_from_disk

from smolmix.core.errors import SmolmixError
from smolmix.core.inputs import iter_json_objects, reading
from smolmix.core.records import Record, by_task, records_from_table
from smolmix.core.rundir import read_manifest
from smolmix.train.encoding import IGNORE_INDEX


def load_mixture(path: str | Path, flag: str = "mixture") -> list[Record]:
    """The records of a mixture folder written by ``smolmix mix``, in mixture order; a
    damaged one (a truncated ``.arrow`` shard, a bad record) is a one-line error naming it."""
    try:
        read_manifest(Path(path), kinds=("mixture",))
    except SmolmixError:
        raise SmolmixError(f"{str(path)!r} is not a mixture folder (no manifest.json from "
                           "smolmix mix)", flag) from None
    with reading(path, "mixture"):
        return records_from_table(load_from_disk(str(path)))


def read_records(path: str | Path, flag: str = "eval.data") -> list[Record]:
    """Records from a mixture folder or a JSONL file (strict UTF-8, every line a record)."""
    if Path(path).is_dir():
        return load_mixture(path, flag)
    if not Path(path).is_file():
        raise SmolmixError(f"data {str(path)!r} does not exist", flag)
    records = []
    for where, data in iter_json_objects(Path(path), "data"):
        with reading(where, "record"):  # a field of the wrong type (tags as a list, ...)
            records.append(Record.from_dict(data, where))
    return records


def split_holdout(records: Sequence[Record], per_task: int
                  ) -> tuple[list[Record], dict[str, list[Record]]]:
    """The first ``per_task`` distinct examples of each task held out; every training record
    equal to one of them (a repetition) is removed too."""
    held: dict[str, list[Record]] = {}
    keys: set[str] = set()
    for record in records:
        key = record.key()
        bucket = held.setdefault(record.task, [])
        if len(bucket) < per_task and key not in keys:
            bucket.append(record)
            keys.add(key)
    return [r for r in records if r.key() not in keys], by_task(
        r for rows in held.values() for r in rows)


def collate(rows: Sequence[Mapping[str, Sequence[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch of examples (``input_ids``, ``labels``, optional ``position_ids``) to
    its longest row; padded labels are ignored. ``attention_mask`` marks the real tokens; for
    packed rows (with ``position_ids``) it is a 4-D block-diagonal causal mask instead, so each
    example attends only to itself."""
    width = max(len(r["input_ids"]) for r in rows)
    fill = {"input_ids": pad_id, "labels": IGNORE_INDEX, "position_ids": 0}
    out = {key: np.full((len(rows), width), fill[key], dtype=np.int64) for key in rows[0]}
    lengths = np.array([len(row["input_ids"]) for row in rows])
    for i, row in enumerate(rows):
        for key, values in row.items():
            out[key][i, :len(values)] = values
    real = np.arange(width)[None, :] < lengths[:, None]
    mask = (block_causal_mask(out["position_ids"], real) if "position_ids" in out
            else real.astype(np.int64))
    return {**{k: torch.from_numpy(v) for k, v in out.items()},
            "attention_mask": torch.from_numpy(mask)}


def block_causal_mask(position_ids: np.ndarray, real: np.ndarray) -> np.ndarray:
    """``(batch, 1, width, width)`` booleans: token ``q`` may attend to token ``k`` when both
    belong to the same example (an example starts where its position id is 0) and ``k <= q``.
    A padding position attends to itself only (a query with no key would give NaN)."""
    width = position_ids.shape[1]
    example = np.cumsum(position_ids == 0, axis=1)
    example = np.where(real, example, -1 - np.arange(width)[None, :])  # padding: one each
    same = example[:, :, None] == example[:, None, :]
    return (same & np.tril(np.ones((width, width), dtype=bool)))[:, None]


def pad_batch(input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]],
              pad_id: int) -> dict[str, torch.Tensor]:
    """:func:`collate` of parallel ``input_ids`` / ``labels`` lists."""
    return collate([{"input_ids": ids, "labels": lab} for ids, lab in zip(input_ids, labels)],
                   pad_id)


def padded_batches(encoded: Mapping[str, Sequence[Sequence[int]]], size: int,
                   pad_id: int) -> list[dict[str, torch.Tensor]]:
    """Encoded examples (``input_ids``/``labels``) as consecutive padded batches of ``size``."""
    ids, labels = encoded["input_ids"], encoded["labels"]
    return [pad_batch(ids[i:i + size], labels[i:i + size], pad_id)
            for i in range(0, len(ids), size)]
