"""Chunked mixture writing: what load_from_disk and the exports read back."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, load_from_disk

from smolmix.mix import output
from smolmix.mix.output import shard_sizes, write_mixture


def _table(n: int, start: int = 0) -> pa.Table:
    tags = pa.StructArray.from_arrays([pa.array([("long" if i % 3 else None)
                                                 for i in range(start, start + n)], pa.string())],
                                      names=["cot"])
    return pa.table({"task": [f"t{i % 4}" for i in range(start, start + n)],
                     "prompt": [f"p {i}" for i in range(start, start + n)],
                     "completion": [f"c {i} ü" for i in range(start, start + n)],
                     "tags": tags})


def _chunks(sizes: list[int]) -> list[pa.Table]:
    out, start = [], 0
    for n in sizes:
        out.append(_table(n, start))
        start += n
    return out


@pytest.mark.parametrize("rows,nbytes", [(10, 0), (10, 2 * 500 * 2**20), (3, 10 * 500 * 2**20),
                                         (0, 0)])
def test_shard_sizes_split_rows_like_save_to_disk(rows: int, nbytes: int) -> None:
    sizes = shard_sizes(rows, nbytes)
    assert sum(sizes) == rows
    assert len(sizes) == max(1, min(rows, nbytes // (500 * 2**20) + 1))
    assert max(sizes) - min(sizes) <= 1


def test_chunks_across_shards_read_back_in_order(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(output, "MAX_SHARD_BYTES", 100)
    chunks = _chunks([7, 1, 12, 5])
    whole = pa.concat_tables(chunks)
    write_mixture(tmp_path, iter(chunks), whole.num_rows, approx_bytes=350,
                  fingerprint="abc", formats=["jsonl", "parquet"])
    assert len(list(tmp_path.glob("data-*.arrow"))) == 4
    ds = load_from_disk(str(tmp_path))
    assert ds.to_dict() == whole.to_pydict()
    assert json.loads((tmp_path / "state.json").read_text())["_fingerprint"] == "abc"
    assert pq.read_table(tmp_path / "mixture.parquet").equals(whole)
    lines = [json.loads(line) for line in open(tmp_path / "mixture.jsonl", encoding="utf-8")]
    assert lines == whole.to_pylist()


def test_same_dataset_as_save_to_disk(tmp_path) -> None:
    whole = _table(50)
    (tmp_path / "ours").mkdir()
    write_mixture(tmp_path / "ours", iter(_chunks([20, 30])), 50, approx_bytes=whole.nbytes,
                  fingerprint="f")
    Dataset(whole).save_to_disk(str(tmp_path / "theirs"))
    ours, theirs = load_from_disk(str(tmp_path / "ours")), load_from_disk(str(tmp_path / "theirs"))
    assert ours.features == theirs.features
    assert ours.to_dict() == theirs.to_dict()


def test_empty_mixture_is_a_loadable_empty_dataset(tmp_path) -> None:
    write_mixture(tmp_path, iter([_table(0)]), 0, approx_bytes=0, fingerprint="e")
    ds = load_from_disk(str(tmp_path))
    assert len(ds) == 0 and ds.column_names == ["task", "prompt", "completion", "tags"]


def test_row_count_mismatch_is_an_error(tmp_path) -> None:
    with pytest.raises(RuntimeError, match="expected 9"):
        write_mixture(tmp_path, iter(_chunks([4])), 9, approx_bytes=0, fingerprint="x")
