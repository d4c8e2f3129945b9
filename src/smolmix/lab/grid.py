"""What every lab study shares: the checks of the CLI's size, seed and step overrides, the
students' initial weights per size and seed, and how a run folder is finished."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from transformers.utils import logging as hf_logging

from smolmix.core.errors import SmolmixError
from smolmix.core.pool import available_cores
from smolmix.core.rundir import write_manifest
from smolmix.models.ladder import (
    LADDER,
    build_model,
    build_tokenizer,
    get_size,
    parameter_count,
    save_checkpoint,
)
from smolmix.train.config import MAX_SEED, MAX_STEPS


def check_jobs(jobs: int | None) -> int:
    """The worker count: the machine's usable cores by default, else a positive number."""
    jobs = available_cores() if jobs is None else jobs
    if jobs <= 0:
        raise SmolmixError(f"jobs must be positive, got {jobs}", "--jobs")
    return jobs


def check_steps(steps: int | None) -> None:
    if steps is not None and not 0 < steps <= MAX_STEPS:
        raise SmolmixError(f"steps must be between 1 and {MAX_STEPS:,}, got {steps}", "--steps")


def check_sizes(sizes: Sequence[str] | None) -> tuple[str, ...] | None:
    """Known ladder sizes, distinct, smallest first (None stays None)."""
    if sizes is None:
        return None
    for name in sizes:
        get_size(name)
    if not sizes or len(set(sizes)) != len(sizes):
        raise SmolmixError(f"sizes must be distinct and non-empty, got {list(sizes)}", "--sizes")
    return tuple(sorted(sizes, key=list(LADDER).index))


def check_seeds(seeds: Sequence[int] | None) -> tuple[int, ...] | None:
    if seeds is not None and (not seeds or len(set(seeds)) != len(seeds)
                              or not 0 <= min(seeds) <= max(seeds) <= MAX_SEED):
        raise SmolmixError(f"seeds must be distinct integers from 0 to {MAX_SEED:,}, got "
                           f"{list(seeds)}", "--seeds")
    return None if seeds is None else tuple(seeds)


def write_models(sizes: Sequence[str], seeds: Sequence[int], symbols: list[str],
                 models_dir: Path, max_positions: int = 64) -> dict[str, int]:
    """Save each size's initial weights per seed (``models/<size>-s<seed>``, the ``model`` of
    its cells' train configs) with the tokenizer over ``symbols``; return each size's
    parameter count."""
    tokenizer = build_tokenizer(symbols)
    params = {}
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the lab's own bar is the one to watch
    try:
        for size in sizes:
            for seed in seeds:
                model = build_model(get_size(size), tokenizer, seed=seed,
                                    max_positions=max_positions)
                save_checkpoint(model, tokenizer, models_dir / f"{size}-s{seed}")
                params[size] = parameter_count(model)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    return params


def finish_run(work: Path, kind: str, results: dict, preset, jobs: int, started: float,
               write_report: Callable[[dict, Path], Path]) -> None:
    """The run's wall time into its summary, then ``results.json``, the report and the
    manifest (the study's preset and worker count)."""
    results["summary"]["wall_seconds"] = round(time.perf_counter() - started, 1)
    (work / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    write_report(results, work)
    write_manifest(work, kind, {"preset": asdict(preset), "jobs": jobs}, seed=preset.seeds[0])
