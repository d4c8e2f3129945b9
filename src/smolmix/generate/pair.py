"""``smolmix pair``: two generate outputs restricted to the problems both kept a trace for, as
the Mix-Long / Mix-Large data of Li et al. (2025) pairs a long and a short (or a large and a
small teacher's) trace of the same problem.

Per problem and side the first kept sample (lowest sample index) is taken, so both sides have
the same problems and the same number of traces; ``all_samples`` keeps every kept sample
instead. The output folder holds ``traces.jsonl`` (each problem's trace from the first output,
then from the second: the Mix-Long / Mix-Large source), ``first.jsonl`` and ``second.jsonl``
(each side alone, on the same problems: the single-source arms) and ``manifest.json`` with
counts and each side's lengths.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from smolmix.core.errors import SmolmixError
from smolmix.core.output import atomic_output
from smolmix.core.records import Record, read_jsonl, write_jsonl
from smolmix.core.rundir import read_manifest, write_manifest
from smolmix.generate.stats import length_stats

KIND = "generate.pair"
TRACES = "traces.jsonl"


def _kept(folder: Path, flag: str) -> dict[str, list[Record]]:
    """A generate output's kept traces by problem id, in file order."""
    read_manifest(folder, ["generate"], flag)
    path = folder / TRACES
    if not path.is_file():
        raise SmolmixError(f"no {TRACES} in the generate output", flag)
    by_problem: dict[str, list[Record]] = {}
    for record in read_jsonl(path):
        pid = record.tags.get("problem")
        if pid is None:
            raise SmolmixError(f"a trace has no 'problem' tag ({TRACES} was not written by "
                               "smolmix generate)", flag)
        by_problem.setdefault(pid, []).append(record)
    return by_problem


def _side_stats(records: Sequence[Record]) -> dict:
    tokens = [int(r.tags.get("tokens", "0")) for r in records]
    return {"teachers": sorted({r.tags.get("teacher", "") for r in records}),
            "styles": sorted({r.tags.get("style", "") for r in records}),
            **length_stats(tokens, [len(r.completion or "") for r in records])}


def pair_outputs(first: Path, second: Path, out: Path, all_samples: bool = False,
                 quiet: bool = False) -> dict:
    """Write the traces of ``first`` and ``second`` on their common problems into ``out``;
    returns the manifest's summary."""
    a, b = _kept(Path(first), "FIRST"), _kept(Path(second), "SECOND")
    common = [pid for pid in a if pid in b]
    if not common:
        raise SmolmixError("the two outputs have no problem with a kept trace in common",
                           "SECOND")
    take = (lambda rs: rs) if all_samples else (lambda rs: rs[:1])
    sides = ([r for pid in common for r in take(a[pid])],
             [r for pid in common for r in take(b[pid])])
    summary = {"problems_first": len(a), "problems_second": len(b),
               "problems_in_both": len(common), "all_samples": all_samples,
               "first": _side_stats(sides[0]), "second": _side_stats(sides[1])}
    with atomic_output(out, inputs=[first, second]) as folder:
        write_jsonl((r for pid in common for r in (*take(a[pid]), *take(b[pid]))),
                    folder / TRACES)
        write_jsonl(sides[0], folder / "first.jsonl")
        write_jsonl(sides[1], folder / "second.jsonl")
        write_manifest(folder, KIND, {"first": str(first), "second": str(second),
                                      "all_samples": all_samples}, None, {"summary": summary})
    if not quiet:
        print(f"{len(common)} problems solved by both ({len(a)} and {len(b)} kept) -> {out}",
              file=sys.stderr)
    return summary
