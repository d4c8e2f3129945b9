"""``smolmix mix``: build the mixture a recipe describes into a folder that loads with
``datasets.load_from_disk``, with its manifest (per stage, task and source: what was available,
requested and achieved) and the examples hygiene removed."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import datasets
import pyarrow as pa

from smolmix.core.errors import SmolmixError
from smolmix.core.output import atomic_output, check_output_dir
from smolmix.core.rundir import write_manifest
from smolmix.mix.build import (
    REASONS,
    REMOVED_FILE,
    load_pool,
    mixture_chunks,
    plan,
    summarize_mixture,
)
from smolmix.mix.output import write_mixture
from smolmix.mix.recipe import Recipe, load_recipe


def plan_table(summary: dict) -> str:
    """The plan as a plain-text table (``--dry-run`` and the end of a build)."""
    lines = []
    hyg = summary["hygiene"]["by_task"]
    header = (f"{'stage':<10} {'task':<22} {'available':>9} {'removed':>7} {'requested':>9} "
              f"{'selected':>8} {'achieved':>8} {'reps':>4}")
    lines.append(header)
    lines.append("-" * len(header))
    for stage, tasks in summary["by_task"].items():
        for task, g in tasks.items():
            h = hyg.get(task, {})
            removed = sum(h.get(reason, 0) for reason in REASONS)
            lines.append(f"{stage:<10} {task:<22} {h.get('available', 0):>9} {removed:>7} "
                         f"{g['requested_share']:>9.2%} {g['selected']:>8} "
                         f"{g['achieved_share']:>8.2%} {g['repetitions']:>4}")
    return "\n".join(lines)


def build_mixture(recipe_path: Path, out: Path | None, quiet: bool = False,
                  dry_run: bool = False, export: Sequence[str] | None = None) -> dict:
    """Build the mixture a recipe describes into ``out`` (atomically); return the summary.

    With ``dry_run`` nothing is written and ``out`` may be None.
    """
    if not dry_run and out is None:
        raise SmolmixError("an output directory is required", "--out")
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    recipe = load_recipe(Path(recipe_path))  # quick: no source is read yet
    inputs = recipe_inputs(recipe)
    if not dry_run:  # a place it may write, never over or around a file the recipe reads
        check_output_dir(Path(out), inputs=inputs)
    say(f"loading {len(recipe.sources)} sources and applying hygiene")
    pool = load_pool(recipe)
    plans = plan(recipe, pool)
    summary = summarize_mixture(recipe, pool, plans)
    if dry_run:
        return summary
    rows = sum(s["examples"] for s in summary["stages"])
    say(f"writing {rows} examples to {out}")
    formats = list(export if export is not None else recipe.export)
    pa.default_memory_pool().release_unused()  # what reading and hygiene left behind
    with atomic_output(Path(out), inputs=inputs) as work, _progress_bars(not quiet):
        approx = pool.table.nbytes * rows // max(1, pool.table.num_rows)
        write_mixture(work, mixture_chunks(recipe, pool, plans), rows, approx,
                      fingerprint=recipe.hash()[:16], formats=formats)
        with open(work / REMOVED_FILE, "w", encoding="utf-8") as fh:
            for row in pool.removed_rows:
                fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        write_manifest(work, "mixture", {"recipe": str(recipe_path)}, seed=recipe.seed,
                       extra=summary)
    return summary


def recipe_inputs(recipe: Recipe) -> list[Path]:
    """Every file and folder a recipe reads: itself, its sources, its evaluation sets and its
    tokenizer."""
    found = [] if recipe.path is None else [recipe.path]
    for spec in [*recipe.sources, *recipe.hygiene.decontaminate]:
        location = spec.location(recipe.base_dir)
        if location is not None:
            found.append(location)
    tokenizer = recipe.tokenizer_path()
    return found + ([tokenizer] if tokenizer is not None else [])


@contextmanager
def _progress_bars(show: bool) -> Iterator[None]:
    """Show or hide the datasets library's progress bars for the duration of a block."""
    was = datasets.is_progress_bar_enabled()
    (datasets.enable_progress_bars if show else datasets.disable_progress_bars)()
    try:
        yield
    finally:
        (datasets.enable_progress_bars if was else datasets.disable_progress_bars)()
