"""Building a mixture: recipe → sources → hygiene → shares → selection → the output rows, and
the summary that goes into the mixture's manifest (see :mod:`smolmix.mix.command`)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from smolmix.core.errors import SmolmixError
from smolmix.core.inputs import reading
from smolmix.mix import strategies as st
from smolmix.mix.hygiene import Decontaminator, near_duplicates, scan, texts_at
from smolmix.mix.recipe import (
    Boost,
    Floor,
    MixLarge,
    MixLong,
    Natural,
    Recipe,
    Stage,
    Temperature,
    Uniform,
    Weights,
)
from smolmix.mix.sample import Cursor, check_plan_memory, example_counts, seeded_rng
from smolmix.mix.sources import RecordTexts, load_source, record_text, take_rows

REMOVED_FILE = "removed.jsonl"


@dataclass
class Pool:
    """All sources after hygiene: one table, its buckets and each bucket's row indices."""

    table: pa.Table
    buckets: dict[st.Bucket, np.ndarray]
    tokens: np.ndarray | None
    available: dict[str, dict[str, int]] = field(default_factory=dict)
    removed: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    removed_rows: list[dict] = field(default_factory=list)


REASONS = ("duplicate", "near_duplicate", "contaminated")


def hygiene_drops(recipe: Recipe, texts: Sequence[str]) -> np.ndarray:
    """Per row, 0 to keep it or 1 + the index in ``REASONS`` of why it is removed."""
    hygiene = recipe.hygiene
    decon = None
    if hygiene.decontaminate:
        eval_texts = [t for spec in hygiene.decontaminate
                      for t in record_text(load_source(spec, recipe.base_dir, eval_set=True))]
        decon = Decontaminator(eval_texts, n=hygiene.ngram)
    drop = np.zeros(len(texts), dtype=np.int8)
    contaminated: list[int] = []
    if hygiene.dedup == "exact":
        duplicates, contaminated = scan(texts, decon)
        drop[duplicates] = 1 + REASONS.index("duplicate")
    else:
        if hygiene.dedup == "near":
            near = hygiene.near
            found = near_duplicates(texts, threshold=near.threshold, num_perm=near.num_perm,
                                    ngram=near.ngram, seed=recipe.seed)
            drop[found] = 1 + REASONS.index("near_duplicate")
        if decon is not None:
            contaminated = decon.contaminated(texts)
    hits = np.asarray(contaminated, dtype=np.int64)
    drop[hits[drop[hits] == 0]] = 1 + REASONS.index("contaminated")
    return drop


def load_pool(recipe: Recipe) -> Pool:
    """Load every source, drop duplicates and contaminated examples, group rows into buckets."""
    tokenizer = None
    if recipe.tokenizer_path() is not None:  # a bad tokenizer is refused before any reading
        tokenizer = load_counting_tokenizer(recipe.tokenizer_path(), recipe.where("tokenizer"))
    table = pa.concat_tables([load_source(spec, recipe.base_dir) for spec in recipe.sources])
    texts = RecordTexts(table)
    drop = hygiene_drops(recipe, texts)
    tokens = None
    if tokenizer is not None:
        tokens = count_tokens(tokenizer, texts)
    dirty = np.flatnonzero(drop == 1 + REASONS.index("contaminated"))
    picked = table.select(["source", "task"]).take(pa.array(dirty)).to_pylist()
    removed_rows = [{**row, "row": int(i), "reason": "contaminated", "text": text}
                    for i, row, text in zip(dirty, picked, texts_at(texts, dirty), strict=True)]
    del texts
    pool = Pool(table=table, buckets={}, tokens=tokens, removed_rows=removed_rows)
    # One code per (source, task, tags) combination; rows grouped by code with numpy.
    key = pc.binary_join_element_wise(table["source"], table["task"], table["tags"], "\x00")
    encoded = pc.dictionary_encode(key).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    parts = [k.split("\x00") for k in encoded.dictionary.to_pylist()]
    available = np.bincount(codes, minlength=len(parts))
    removed = {reason: np.bincount(codes[drop == r], minlength=len(parts))
               for r, reason in enumerate(REASONS, start=1)}
    for code, (source, task, _) in enumerate(parts):
        per_task = pool.available.setdefault(source, {})
        per_task[task] = per_task.get(task, 0) + int(available[code])
        for reason, counts in removed.items():
            if counts[code]:
                entry = pool.removed.setdefault(source, {}).setdefault(task, {})
                entry[reason] = entry.get(reason, 0) + int(counts[code])
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(parts) + 1))
    for code, (source, task, tag_json) in enumerate(parts):
        rows = order[bounds[code]:bounds[code + 1]]
        rows = rows[drop[rows] == 0]
        if len(rows):
            tags = tuple(sorted(json.loads(tag_json).items()))
            pool.buckets[st.Bucket(source, task, tags, len(rows))] = rows
    return pool


def load_counting_tokenizer(path: Path, where: str) -> Any:
    """The recipe's tokenizer (for token budgets); a folder that holds none, or a corrupt
    one, is an error naming it."""
    # transformers (and torch behind it) only when a recipe budgets in tokens: smolmix mix
    # does not otherwise pay their import time.
    from transformers import AutoTokenizer

    with reading(where, f"tokenizer {str(path)!r}"):
        tokenizer = AutoTokenizer.from_pretrained(path)
        tokenizer(["a check"], add_special_tokens=False)  # one that loads but cannot encode
    return tokenizer


def count_tokens(tokenizer: Any, texts: Sequence[str]) -> np.ndarray:
    """Tokens per example (prompt and completion) with the recipe's tokenizer."""
    counts = np.zeros(len(texts), dtype=np.int64)
    for start in range(0, len(texts), 10_000):
        ids = tokenizer(list(texts[start:start + 10_000]), add_special_tokens=False)["input_ids"]
        counts[start:start + len(ids)] = [len(x) for x in ids]
    return counts


def stage_shares(stage: Stage, buckets: Sequence[st.Bucket]) -> dict[st.Bucket, float]:
    """Apply the stage's strategy steps to its buckets."""
    counts = st.task_counts(buckets)
    where = f"stage {stage.name!r} strategy"
    shares = st.temperature(counts, 1.0, where)
    ratios: list[st.TagRatio] = []
    for step in stage.strategy:
        if isinstance(step, Natural):
            shares = st.temperature(counts, 1.0, where)
        elif isinstance(step, Uniform):
            shares = st.temperature(counts, 0.0, where)
        elif isinstance(step, Temperature):
            shares = st.temperature(counts, step.alpha, where)
        elif isinstance(step, Weights):
            shares = st.weights(counts, step.weights, where)
        elif isinstance(step, Boost):
            shares = st.boost(shares, step.shares, where)
        elif isinstance(step, Floor):
            shares = st.floor(shares, step.share, where)
        elif isinstance(step, MixLong):
            ratios.append(st.TagRatio(*st.MIX_LONG, step.long, step.tasks, "mix_long"))
        elif isinstance(step, MixLarge):
            ratios.append(st.TagRatio(*st.MIX_LARGE, step.large, step.tasks, "mix_large"))
        else:  # pragma: no cover - the recipe schema admits no other step
            raise TypeError(step)
    return st.split_tasks(buckets, shares, ratios)


@dataclass
class StagePlan:
    """What one stage asks for and what it draws."""

    name: str
    shares: dict[st.Bucket, float]
    rows: dict[st.Bucket, np.ndarray]


def plan(recipe: Recipe, pool: Pool) -> list[StagePlan]:
    """Draw every stage's rows; cursors persist across stages (fresh examples first).

    The whole plan is sized first: one that needs more memory than the machine has is
    refused before any row is drawn."""
    cursors = {b: Cursor(b, rows, recipe.seed, recipe.max_repeats)
               for b, rows in pool.buckets.items()}
    sized = []
    for stage in recipe.stages():
        members = [b for b in pool.buckets if b.source in stage.sources]
        if not members:
            raise SmolmixError("no examples left in its sources", f"stage {stage.name!r}")
        shares = stage_shares(stage, members)
        if stage.budget.examples is not None:
            counts = example_counts(shares, stage.budget.examples)
            draws = {b: (cursors[b].reserve(n), n) for b, n in counts.items()}
        else:
            assert pool.tokens is not None
            draws = {b: cursors[b].reserve_tokens(s * stage.budget.tokens, pool.tokens)
                     for b, s in shares.items()}
        sized.append((stage.name, shares, draws))
    where = recipe.where("budget") if recipe.budget is not None else recipe.where("stages")
    check_plan_memory(sum(n for _, _, draws in sized for _, n in draws.values()), where)
    return [StagePlan(name, shares, {b: cursors[b].rows_at(start, n)
                                     for b, (start, n) in draws.items()})
            for name, shares, draws in sized]


CHUNK_ROWS = 65_536


def mixture_chunks(recipe: Recipe, pool: Pool, plans: Sequence[StagePlan],
                   chunk_rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
    """The output rows, ``chunk_rows`` at a time: stages in order, each shuffled with the seed,
    labelled with its stage, tags as a struct (at least one chunk, empty if nothing drawn)."""
    tag_keys = sorted({key for sp in plans for b, rows in sp.rows.items() if len(rows)
                       for key, _ in b.tags})
    emitted = False
    for number, sp in enumerate(plans):
        ordered = [sp.rows[b] for b in sorted(sp.rows, key=_bucket_order)]
        rows = np.concatenate(ordered) if ordered else np.zeros(0, dtype=np.int64)
        rows = rows[seeded_rng(recipe.seed, "order", number).permutation(len(rows))]
        for start in range(0, len(rows), chunk_rows):
            part = take_rows(pool.table, rows[start:start + chunk_rows])
            yield _finish(part, sp.name, tag_keys)
            emitted = True
    if not emitted:
        yield _finish(pool.table.slice(0, 0), plans[0].name if plans else "", tag_keys)


def assemble(recipe: Recipe, pool: Pool, plans: Sequence[StagePlan]) -> pa.Table:
    """The whole output table in memory (:func:`mixture_chunks` concatenated)."""
    return pa.concat_tables(mixture_chunks(recipe, pool, plans))


def _bucket_order(b: st.Bucket) -> tuple:
    return (b.source, b.task, b.tags)


def _finish(part: pa.Table, stage: str, tag_keys: list[str]) -> pa.Table:
    """Add the ``stage`` column; turn the JSON ``tags`` into a struct of ``tag_keys``
    (dropped when there are none)."""
    part = part.append_column("stage", pa.array([stage] * part.num_rows, pa.string()))
    if not tag_keys:
        return part.drop_columns(["tags"])
    encoded = pc.dictionary_encode(part["tags"]).combine_chunks()
    distinct = [json.loads(t) for t in encoded.dictionary.to_pylist()]
    fields = [pa.array([v.get(k) for v in distinct], pa.string()).take(encoded.indices)
              for k in tag_keys]
    struct = pa.StructArray.from_arrays(fields, names=tag_keys)
    return part.set_column(part.schema.get_field_index("tags"), "tags", struct)


def _stats(plans: Sequence[StagePlan], pool: Pool, uses: np.ndarray, by: str) -> dict:
    """Per stage and per ``by`` ("task" or "source"): requested/achieved share, counts, tokens;
    ``uses`` counts how often each row was drawn over all stages."""
    result = {}
    for sp in plans:
        total = sum(len(rows) for rows in sp.rows.values())
        tokens = pool.tokens
        total_tokens = (sum(int(tokens[rows].sum()) for rows in sp.rows.values())
                        if tokens is not None else None)
        groups: dict[str, dict] = {}
        for b, rows in sp.rows.items():
            g = groups.setdefault(getattr(b, by), {"requested_share": 0.0, "selected": 0,
                                                   "tokens": 0, "repetitions": 0})
            g["requested_share"] += sp.shares[b]
            g["selected"] += len(rows)
            if len(rows):
                g["repetitions"] = max(g["repetitions"], int(uses[rows].max()))
            if tokens is not None:
                g["tokens"] += int(tokens[rows].sum())
        for g in groups.values():
            g["requested_share"] = round(g["requested_share"], 6)
            if total_tokens:
                g["achieved_share"] = round(g["tokens"] / total_tokens, 6)
            else:
                g["achieved_share"] = round(g["selected"] / total, 6) if total else 0.0
            if tokens is None:
                g.pop("tokens")
        result[sp.name] = dict(sorted(groups.items()))
    return result


def _hygiene_stats(pool: Pool, by: str) -> dict:
    out: dict[str, dict] = {}
    for source, per_task in pool.available.items():
        for task, available in per_task.items():
            name = source if by == "source" else task
            entry = out.setdefault(name, {"available": 0, **dict.fromkeys(REASONS, 0)})
            entry["available"] += available
            for reason, n in pool.removed.get(source, {}).get(task, {}).items():
                entry[reason] += n
    return dict(sorted(out.items()))


def summarize_mixture(recipe: Recipe, pool: Pool, plans: Sequence[StagePlan]) -> dict:
    """The manifest's description of the mixture."""
    drawn = [rows for sp in plans for rows in sp.rows.values()]
    uses = np.bincount(np.concatenate(drawn) if drawn else np.zeros(0, dtype=np.int64),
                       minlength=pool.table.num_rows)
    return {
        "recipe": str(recipe.path),
        "recipe_hash": recipe.hash(),
        "seed": recipe.seed,
        "max_repeats": recipe.max_repeats,
        "stages": [{"name": sp.name,
                    "examples": sum(len(r) for r in sp.rows.values())} for sp in plans],
        "hygiene": {"by_task": _hygiene_stats(pool, "task"),
                    "by_source": _hygiene_stats(pool, "source")},
        "by_task": _stats(plans, pool, uses, "task"),
        "by_source": _stats(plans, pool, uses, "source"),
    }
