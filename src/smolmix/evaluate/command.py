"""``smolmix eval``: generate on each task, grade, and report accuracy with intervals; or, with
``--probe needle``, the needle-in-a-haystack probe.

The run directory gets ``samples.jsonl`` (per example: task, prompt, generation, extracted
answer, reference, verdict), ``scores.json`` (per task and per frequency bucket: accuracy and
a 95% bootstrap interval) and ``manifest.json`` (model, tasks, tags such as ``cot=long`` that
``smolmix gap`` reads). It is written into ``<out>.partial/`` and renamed at the end; a rerun
after an interruption starts over in a fresh partial folder, so samples never mix.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from smolmix.core.errors import SmolmixError
from smolmix.core.output import atomic_output, check_output_dir
from smolmix.core.rundir import read_manifest, write_manifest
from smolmix.evaluate.metrics import bootstrap_mean, bucket_of
from smolmix.evaluate.needle import needle_probe, shortest_length, write_heatmap
from smolmix.evaluate.tasks import EvalTask, TaskSpec, load_task
from smolmix.grading.grade import grade_many
from smolmix.inference.backends import get_backend
from smolmix.mix.shares import mixture_shares
from smolmix.models.loading import check_model_path, load_checkpoint, load_tokenizer
from smolmix.models.prompting import choose_format, read_prompt_format
from smolmix.train.config import MAX_BATCH, MAX_SEED, MAX_TOKENS

DEFAULT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
SAMPLES_FILE = "samples.jsonl"
NEEDLE_FILE = "needle.json"
NEEDLE_PLOT = "needle.png"
SCORES_FILE = "scores.json"


def task_buckets(tasks: Sequence[EvalTask], mixture: Path | None) -> dict[str, str]:
    """Each task's frequency bucket: its spec's ``bucket``, else from its share of the
    training mixture (``--mixture``), else ``unknown``."""
    shares: dict[str, float] = {}
    if mixture is not None:
        try:
            shares = mixture_shares(read_manifest(Path(mixture), kinds=("mixture",)).data)
        except SmolmixError:
            raise SmolmixError("not a mixture folder (no readable manifest.json)",
                               str(mixture)) from None
    return {t.name: t.spec.bucket or (bucket_of(shares[t.name]) if t.name in shares
                                      else "unknown") for t in tasks}


def score(samples: Sequence[Mapping], buckets: Mapping[str, str], seed: int = 0) -> dict:
    """Per task and per bucket: accuracy and its bootstrap interval."""
    by_task: dict[str, list[float]] = {}
    for s in samples:
        by_task.setdefault(s["task"], []).append(float(s["correct"]))
    by_bucket: dict[str, list[float]] = {}
    for task, values in by_task.items():
        by_bucket.setdefault(buckets.get(task, "unknown"), []).extend(values)
    return {"tasks": {t: {**bootstrap_mean(v, seed), "bucket": buckets.get(t, "unknown")}
                      for t, v in sorted(by_task.items())},
            "buckets": {b: bootstrap_mean(v, seed) for b, v in sorted(by_bucket.items())},
            "overall": bootstrap_mean([float(s["correct"]) for s in samples], seed)}


def eval_inputs(model: str | Path | None, mixture: Path | None = None,
                specs: Sequence[TaskSpec] = (), *others: Path | None) -> list[Path]:
    """The local files and folders an eval reads (``--out`` may be none of them)."""
    named = [model, mixture, *others, *(p for s in specs for p in (s.path, s.fewshot_path))]
    return [Path(p) for p in named if p is not None and Path(str(p)).exists()]


def check_settings(batch_size: int = 1, max_new_tokens: int | None = None, seed: int = 0,
                   device: str = "auto", dtype: str = "auto") -> None:
    """The numeric flags in range and the device one torch knows, before any work."""
    import torch

    from smolmix.inference.hf import placement

    if not 0 < batch_size <= MAX_BATCH:
        raise SmolmixError(f"must be between 1 and {MAX_BATCH:,}, got {batch_size}",
                           "--batch-size")
    if max_new_tokens is not None and not 0 < max_new_tokens <= MAX_TOKENS:
        raise SmolmixError(f"must be between 1 and {MAX_TOKENS:,}, got {max_new_tokens}",
                           "--max-new-tokens")
    if not 0 <= seed <= MAX_SEED:
        raise SmolmixError(f"must be between 0 and {MAX_SEED:,}, got {seed}", "--seed")
    if device != "auto":
        try:
            torch.device(device)
        except (RuntimeError, ValueError):
            raise SmolmixError(f"unknown device {device!r} (auto, cpu, cuda or cuda:N)",
                               "--device") from None
    placement(device, dtype)


def run_eval(model: str, specs: Sequence[TaskSpec], out: Path, backend: str = "auto",
             batch_size: int = 64, max_new_tokens: int | None = None,
             mixture: Path | None = None, tags: Mapping[str, str] | None = None,
             seed: int = 0, quiet: bool = False, chat_template: str = "auto",
             dtype: str = "auto", device: str = "auto") -> dict:
    """Evaluate ``model`` (a checkpoint folder or hub id) on ``specs`` into ``out``.

    ``chat_template``: ``auto`` prompts the model the way it was trained (its run's record,
    :func:`smolmix.models.prompting.read_prompt_format`), else through the chat template when
    its tokenizer has one; ``on`` / ``off`` force it. ``dtype`` / ``device``: ``auto`` is a
    GPU in bf16 when there is one, else the CPU in fp32."""
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out)
    inputs = eval_inputs(model, mixture, specs)
    check_output_dir(out, inputs=inputs)
    check_settings(batch_size, max_new_tokens, seed, device, dtype)
    engine_class = get_backend(backend)
    check_model_path(model, "model")
    tasks = [load_task(spec, seed) for spec in specs]
    buckets = task_buckets(tasks, mixture)
    trained = read_prompt_format(model)
    prompt_format = choose_format(chat_template, load_tokenizer(model, "model"), trained)
    say(f"prompting {model} in {prompt_format} format")
    start = time.perf_counter()
    options = {"batch_size": batch_size} if engine_class.name == "hf" else {}
    engine = engine_class.from_checkpoint(Path(model), prompt_format=prompt_format,
                                          dtype=dtype, device=device, **options)
    samples: list[dict] = []
    with atomic_output(out, inputs=inputs) as work:
        with open(work / SAMPLES_FILE, "w", encoding="utf-8") as fh:
            for task in tasks:
                say(f"{task.name}: generating for {len(task.prompts)} prompts")
                generations = engine.generate(
                    task.inputs(prompt_format), max_new_tokens or task.setting("max_new_tokens"),
                    stop=task.setting("stop") or ())
                verdicts = grade_many(generations, task.references,
                                      task.setting("answer_format"))
                for i, (prompt, gen, verdict) in enumerate(zip(task.prompts, generations,
                                                                verdicts)):
                    row = {"task": task.name, "index": i, "prompt": prompt, "generation": gen,
                           "extracted": verdict.answer, "reference": verdict.reference,
                           "correct": verdict.correct, "reason": verdict.reason}
                    samples.append(row)
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        scores = score(samples, buckets, seed)
        (work / SCORES_FILE).write_text(json.dumps(scores, indent=2) + "\n")
        write_manifest(work, "eval", {"model": model, "tasks": [s.model_dump() for s in specs],
                                      "backend": backend, "batch_size": batch_size,
                                      "chat_template": chat_template, "dtype": dtype,
                                      "device": device},
                       seed=seed, extra={"model": model, "tags": dict(tags or {}),
                                         "prompt_format": prompt_format,
                                         "scores": scores,
                                         "eval_seconds": round(time.perf_counter() - start, 2)})
    return scores


def score_table(scores: Mapping) -> str:
    """Per task and per bucket, as aligned text."""
    lines = [f"{'task':<24} {'bucket':<9} {'n':>5} {'accuracy':>8}  95% CI"]
    for task, s in scores["tasks"].items():
        lines.append(f"{task:<24} {s['bucket']:<9} {s['n']:>5} {s['mean']:>8.3f}  "
                     f"[{s['low']:.3f}, {s['high']:.3f}]")
    for bucket, s in scores["buckets"].items():
        lines.append(f"{'(bucket) ' + bucket:<24} {'':<9} {s['n']:>5} {s['mean']:>8.3f}  "
                     f"[{s['low']:.3f}, {s['high']:.3f}]")
    return "\n".join(lines)


def default_lengths(max_positions: int, shortest: int) -> list[int]:
    """Powers of two from ``shortest`` up to half the model's context, then three quarters
    of it (room is left for the answer)."""
    lengths, n = [], 16
    while n <= max_positions // 2:
        if n >= shortest:
            lengths.append(n)
        n *= 2
    return sorted({*lengths, max(shortest, max_positions * 3 // 4)})


def run_needle(model_path: str, out: Path, lengths: Sequence[int] | None,
               depths: Sequence[float] | None, trials: int = 5, seed: int = 0,
               batch_size: int = 8, tags: Mapping[str, str] | None = None,
               quiet: bool = False) -> str:
    """Run the probe on a checkpoint; return the accuracy grid as text."""
    if trials <= 0:
        raise SmolmixError(f"must be positive, got {trials}", "--trials")
    for d in depths or ():
        if not 0.0 <= d <= 1.0:
            raise SmolmixError(f"depths must be between 0 and 1, got {d}", "--depths")
    for n in lengths or ():
        if not 0 < n <= MAX_TOKENS:
            raise SmolmixError(f"lengths must be between 1 and {MAX_TOKENS:,}, got {n}",
                               "--lengths")
    check_settings(batch_size, seed=seed)
    out = Path(out)
    inputs = eval_inputs(model_path)
    check_output_dir(out, inputs=inputs)
    check_model_path(model_path, "model")
    model, tokenizer = load_checkpoint(Path(model_path))
    lengths = list(lengths or default_lengths(model.config.max_position_embeddings,
                                              shortest_length(tokenizer)))
    depths = list(depths if depths is not None else DEFAULT_DEPTHS)
    result = needle_probe(model, tokenizer, lengths, depths, trials, seed, batch_size=batch_size)
    with atomic_output(out, inputs=inputs) as work:
        (work / NEEDLE_FILE).write_text(json.dumps(result.to_dict(), indent=1) + "\n")
        write_heatmap(result, work / NEEDLE_PLOT)
        write_manifest(work, "eval", {"model": model_path, "probe": "needle",
                                      "lengths": lengths, "depths": depths, "trials": trials},
                       seed=seed, extra={"model": model_path, "tags": dict(tags or {}),
                                         "probe": "needle", "accuracy": result.accuracy})
    header = "length \\ depth " + " ".join(f"{d:>6.2f}" for d in depths)
    rows = [f"{n:>14} " + " ".join(f"{a:>6.2f}" for a in acc)
            for n, acc in zip(lengths, result.accuracy)]
    return "\n".join([header, *rows])
