"""lm-evaluation-harness tasks as smolmix eval runs (the optional ``[lm-eval]`` extra).

Two ways in, one run format out (the one :func:`smolmix.evaluate.command.run_eval` writes:
``samples.jsonl``, ``scores.json``, ``manifest.json``, so ``smolmix gap`` and ``smolmix report``
read it), plus ``lm_eval_results.json``, lm-eval's own results without the samples:

- :func:`run_lm_eval`: ``smolmix eval MODEL --tasks lm_eval:NAME`` runs lm-eval's task
  through its Python API (``simple_evaluate`` on an ``HFLM`` around the checkpoint smolmix
  loads). ``NAME`` is a task, group or tag lm-eval knows, one from a ``--lm-eval-include``
  folder of task YAMLs, or the path of a task YAML. ``lm_eval:`` tasks cannot be mixed with
  smolmix tasks in one run (an error): run them into two folders and report them side by side.
- :func:`ingest_lm_eval`: ``smolmix eval --from-lm-eval DIR`` reads what lm-eval's own
  ``--output_path DIR --log_samples`` wrote (``samples_<task>_<date>.jsonl`` and
  ``results_<date>.json``, directly in DIR or in one model-name folder under it; the newest
  date of each task), no model needed.

Which lm-eval metric becomes a sample's ``correct``: ``exact_match`` if the task has it, else
``acc`` (multiple-choice tasks), else the task's first metric; of lm-eval's filters, the first
(``none`` unless the task lists others, e.g. gsm8k's ``strict-match``). A 0/1 value is stored
as a bool, any other per-sample value as the number; a metric without a per-sample value
(corpus BLEU, perplexity) is an error. The metric, filter and lm-eval's own value of it are in
the manifest (``lm_eval``). lm-eval keeps its own seeds (as its CLI does, so both ways agree);
``seed`` is the bootstrap's.
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from smolmix.core.errors import SmolmixError, first_line
from smolmix.core.inputs import iter_json_objects, read_json
from smolmix.core.output import atomic_output, check_output_dir
from smolmix.core.rundir import write_manifest
from smolmix.evaluate.command import (
    SAMPLES_FILE,
    SCORES_FILE,
    check_settings,
    eval_inputs,
    score,
    task_buckets,
)
from smolmix.evaluate.tasks import EvalTask, TaskSpec
from smolmix.models.loading import check_model_path, load_checkpoint
from smolmix.models.prompting import CHAT, PLAIN, choose_format, read_prompt_format

LM_EVAL_PREFIX = "lm_eval:"
INSTALL = "pip install 'smolmix[lm-eval]'"
LM_EVAL_FILE = "lm_eval_results.json"
PREFERRED_METRICS = ("exact_match", "acc")
SAMPLES_NAME = re.compile(r"^samples_(?P<task>.+)_(?P<date>\d{4}-\d{2}-\d{2}T[\d.\-]+)\.jsonl$")
YAML_SUFFIXES = (".yaml", ".yml")
# the keys of lm-eval's results file that hold one entry per task
PER_TASK_KEYS = ("results", "configs", "versions", "n-shot", "higher_is_better", "n-samples")


def is_lm_eval_task(text: str) -> bool:
    """Whether a ``--tasks`` item is an lm-eval task (``lm_eval:NAME``)."""
    return text.startswith(LM_EVAL_PREFIX)


def lm_eval_names(items: Sequence[str]) -> list[str]:
    """The lm-eval task names of ``--tasks`` items, all of which must be ``lm_eval:NAME``."""
    others = [t for t in items if not is_lm_eval_task(t)]
    if others:
        raise SmolmixError(f"lm_eval: tasks cannot be mixed with smolmix tasks ({others[0]!r}) "
                           "in one run; evaluate them into separate folders", "--tasks")
    names = [t[len(LM_EVAL_PREFIX):].strip() for t in items]
    if not names or not all(names):
        raise SmolmixError("expected lm_eval:NAME with a task name", "--tasks")
    return names


def require_lm_eval() -> Any:
    """The ``lm_eval`` package, or a user error naming the extra that installs it."""
    # lm-eval is an optional extra (and slow to import): imported here, never at module top.
    try:
        import lm_eval
    except ImportError:
        raise SmolmixError(f"lm_eval: tasks need lm-evaluation-harness: {INSTALL}",
                           "--tasks") from None
    return lm_eval


@functools.lru_cache(maxsize=4)
def _task_manager(include: tuple[str, ...]) -> Any:
    """lm-eval's task index (its own tasks plus ``include``); building it takes seconds."""
    from lm_eval.tasks import TaskManager  # optional extra, see require_lm_eval

    return TaskManager(include_path=list(include) or None)


def resolve_lm_eval_tasks(names: Sequence[str], include: Sequence[Path] = ()
                          ) -> tuple[list[str], Any]:
    """Check each name (a task, group or tag lm-eval knows, or a task YAML path); return the
    names as lm-eval takes them and its task manager."""
    require_lm_eval()
    for folder in include:
        if not Path(folder).is_dir():
            raise SmolmixError(f"{str(folder)!r} is not a folder of task YAMLs",
                               "--lm-eval-include")
    manager = _task_manager(tuple(str(Path(p).resolve()) for p in include))
    resolved = []
    for name in names:
        if name.endswith(YAML_SUFFIXES):
            if not Path(name).is_file():
                raise SmolmixError(f"lm-eval task file {name!r} does not exist", "--tasks")
            resolved.append(str(Path(name).resolve()))
        elif name in manager.all_tasks:
            resolved.append(name)
        else:
            close = difflib.get_close_matches(name, manager.all_tasks, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else \
                " (lm_eval ls tasks lists them; --lm-eval-include adds a folder of task YAMLs)"
            raise SmolmixError(f"unknown lm-eval task {name!r}{hint}", "--tasks")
    return resolved, manager


# --- lm-eval's logged samples → smolmix samples -------------------------------------------

def _plain(value: Any) -> Any:
    """Lists for lm-eval's ``{"gen_args_0": {"arg_0": ...}}`` (its samples files write
    request arguments so) and for tuples; other values as they are."""
    if isinstance(value, Mapping):
        keyed = sorted(value.items(), key=lambda kv: int(re.sub(r"\D", "", kv[0]) or 0))
        return [_plain(v) for _, v in keyed]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _ordered(value: Any) -> list:
    """A sample's arguments (or one response) as a list of lists or values."""
    value = _plain(value)
    return value if isinstance(value, list) else [value]


def _number(value: Any) -> float:
    """A log-likelihood, in memory a float, in a samples file its text."""
    return float(value)


def _first_text(value: Any) -> str:
    while isinstance(value, (list, tuple)):
        if not value:
            return ""
        value = value[0]
    return "" if value is None else str(value)


def _reference(target: Any, choices: Sequence[str] = ()) -> str:
    """The gold answer as text; a choice index (an int, or its text in a samples file) names
    its choice."""
    if isinstance(target, (list, tuple)):
        return " | ".join(_reference(t, choices) for t in target)
    if choices and not isinstance(target, bool):
        text = str(target).strip()
        if text.isdigit() and int(text) < len(choices):
            return choices[int(text)]
    return str(target)


def _metric(task: str, sample: Mapping) -> str:
    names = list(sample.get("metrics") or [])
    for preferred in PREFERRED_METRICS:
        if preferred in names:
            return preferred
    if not names:
        raise SmolmixError(f"lm-eval task {task!r} logged samples without metrics "
                           "(was it run with --predict_only?)", "--tasks")
    return names[0]


def _value(task: str, metric: str, sample: Mapping) -> bool | float:
    value = sample.get(metric)
    if isinstance(value, bool):
        return value
    if not isinstance(value, (int, float)):
        raise SmolmixError(f"lm-eval task {task!r}: metric {metric!r} has no per-sample score "
                           f"(got {type(value).__name__}); smolmix needs one per sample",
                           "--tasks")
    return bool(value) if value in (0, 1) else float(value)


def _output_type(config: Mapping | None, sample: Mapping) -> str:
    if config and config.get("output_type"):
        return str(config["output_type"])
    arguments = _ordered(sample.get("arguments"))
    if len(arguments) > 1:
        return "multiple_choice"
    resps = sample.get("filtered_resps") or []
    return "generate_until" if resps and isinstance(resps[0], str) else "loglikelihood"


def _row(task: str, sample: Mapping, output_type: str, metric: str) -> dict:
    arguments = _ordered(sample.get("arguments"))
    prompt = _first_text(arguments[0]) if arguments else ""
    filtered = list(sample.get("filtered_resps") or [])
    if output_type == "multiple_choice":
        choices = [str(a[1]).strip() if len(a) > 1 else "" for a in arguments]
        scores = [_number(_ordered(r)[0]) for r in filtered]
        picked = choices[max(range(len(scores)), key=scores.__getitem__)] if scores else ""
        generation, extracted = picked, picked
        reference = _reference(sample.get("target"), choices)
    elif output_type == "generate_until":
        generation = _first_text(sample.get("resps"))
        extracted = _first_text(filtered)
        reference = _reference(sample.get("target"))
    else:
        generation = str(arguments[0][1]) if arguments and len(arguments[0]) > 1 else ""
        extracted = _first_text(filtered)
        reference = _reference(sample.get("target"))
    return {"task": task, "index": int(sample["doc_id"]), "prompt": prompt,
            "generation": generation, "extracted": extracted, "reference": reference,
            "correct": _value(task, metric, sample), "reason": f"lm-eval {metric}"}


def convert_task(task: str, logged: Sequence[Mapping], config: Mapping | None = None,
                 reported: Mapping | None = None) -> tuple[list[dict], dict]:
    """One lm-eval task's logged samples (in memory or read from its file) as smolmix
    samples, and what was taken: metric, filter, output type, lm-eval's value of it."""
    if not logged:
        raise SmolmixError(f"lm-eval task {task!r} has no logged samples", "--tasks")
    first_filter = logged[0].get("filter", "none")
    chosen = [s for s in logged if s.get("filter", "none") == first_filter]
    metric = _metric(task, chosen[0])
    output_type = _output_type(config, chosen[0])
    rows = sorted((_row(task, s, output_type, metric) for s in chosen),
                  key=lambda r: r["index"])
    value = (reported or {}).get(f"{metric},{first_filter}")
    info = {"metric": metric, "filter": first_filter, "output_type": output_type,
            "lm_eval_value": value if isinstance(value, (int, float)) else None,
            "n": len(rows)}
    return rows, info


def convert_results(results: Mapping, samples: Mapping[str, Sequence[Mapping]]
                    ) -> tuple[list[dict], dict[str, dict]]:
    """All tasks of an lm-eval run (its results dict and per-task samples)."""
    if not samples:
        raise SmolmixError("lm-eval logged no samples for these tasks", "--tasks")
    rows: list[dict] = []
    infos: dict[str, dict] = {}
    configs, reported = results.get("configs") or {}, results.get("results") or {}
    for task in sorted(samples):
        task_rows, infos[task] = convert_task(task, samples[task], configs.get(task),
                                              reported.get(task))
        rows += task_rows
    return rows, infos


# --- writing the run ------------------------------------------------------------------------

def _write_run(out: Path, rows: Sequence[dict], infos: Mapping[str, dict], results: Mapping,
               arguments: dict, model: str, mixture: Path | None,
               tags: Mapping[str, str] | None, seed: int, seconds: float,
               inputs: Sequence[Path] = ()) -> dict:
    tasks = [EvalTask(TaskSpec(name=name), [], []) for name in infos]
    scores = score(rows, task_buckets(tasks, mixture), seed)
    lm_results = {k: v for k, v in results.items() if k != "samples"}
    with atomic_output(out, inputs=inputs) as work:
        with open(work / SAMPLES_FILE, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        (work / SCORES_FILE).write_text(json.dumps(scores, indent=2) + "\n")
        (work / LM_EVAL_FILE).write_text(json.dumps(lm_results, indent=1, default=str,
                                                    ensure_ascii=False) + "\n")
        write_manifest(work, "eval", arguments, seed=seed,
                       extra={"model": model, "tags": dict(tags or {}), "scores": scores,
                              "lm_eval": dict(infos),
                              "lm_eval_version": str(results.get("lm_eval_version", "")),
                              "eval_seconds": round(seconds, 2)})
    return scores


@contextmanager
def _quiet_lm_eval(quiet: bool) -> Iterator[None]:
    """lm-eval logs each step at INFO and warns freely; ``quiet`` keeps only its errors."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_lm_eval(model: str, tasks: Sequence[str], out: Path, include: Sequence[Path] = (),
                batch_size: int = 64, max_new_tokens: int | None = None,
                mixture: Path | None = None, tags: Mapping[str, str] | None = None,
                seed: int = 0, quiet: bool = False, chat_template: str = "auto") -> dict:
    """Run lm-eval tasks (``lm_eval:NAME`` items) on ``model`` into the eval run ``out``;
    with the chat template (lm-eval's ``apply_chat_template``, few-shot examples as turns)
    when ``chat_template`` resolves to it as for smolmix tasks."""
    out = Path(out)
    inputs = eval_inputs(model, mixture, (), *include)
    check_output_dir(out, inputs=inputs)
    check_settings(batch_size, max_new_tokens, seed)
    names, manager = resolve_lm_eval_tasks(lm_eval_names(tasks), include)
    check_model_path(model, "model")
    if mixture is not None:
        task_buckets([], mixture)  # a bad --mixture fails before the model runs
    lm_eval = require_lm_eval()
    from lm_eval.models.huggingface import HFLM  # optional extra, see require_lm_eval

    start = time.perf_counter()
    hf_model, tokenizer = load_checkpoint(Path(model))
    chat = choose_format(chat_template, tokenizer, read_prompt_format(model)) == CHAT
    if torch.cuda.is_available():
        hf_model = hf_model.to("cuda")
    if not quiet:
        print(f"lm-eval: {', '.join(names)}", file=sys.stderr, flush=True)
    with _quiet_lm_eval(quiet):
        lm = HFLM(pretrained=hf_model, tokenizer=tokenizer, batch_size=batch_size)
        try:
            results = lm_eval.simple_evaluate(
                model=lm, tasks=list(names), task_manager=manager, log_samples=True,
                apply_chat_template=chat, fewshot_as_multiturn=chat,
                bootstrap_iters=0,  # smolmix bootstraps its own intervals
                gen_kwargs={"max_gen_toks": max_new_tokens} if max_new_tokens else None)
        except (OSError, ConnectionError, ValueError) as exc:  # e.g. its data set offline
            raise SmolmixError(f"lm-eval could not run {', '.join(names)}: "
                               f"{first_line(exc, 300)}", "--tasks") from None
    rows, infos = convert_results(results, results.get("samples") or {})
    arguments = {"model": model, "tasks": [LM_EVAL_PREFIX + n for n in names],
                 "lm_eval_include": [str(p) for p in include], "backend": "lm-eval hf",
                 "batch_size": batch_size, "max_new_tokens": max_new_tokens,
                 "chat_template": chat_template, "prompt_format": CHAT if chat else PLAIN}
    return _write_run(out, rows, infos, results, arguments, model, mixture, tags, seed,
                      time.perf_counter() - start, inputs)


# --- reading lm-eval's own output folder ---------------------------------------------------

def find_lm_eval_output(folder: Path) -> tuple[Path, dict[str, Path]]:
    """The folder that holds lm-eval's samples files (``folder`` or one model folder under
    it) and each task's newest samples file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SmolmixError(f"{str(folder)!r} is not a folder", "--from-lm-eval")
    found: dict[Path, dict[str, tuple[str, Path]]] = {}
    for place in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        for path in sorted(place.glob("samples_*.jsonl")):
            match = SAMPLES_NAME.match(path.name)
            if match:
                task, date = match["task"], match["date"]
                newest = found.setdefault(place, {}).get(task)
                if newest is None or date > newest[0]:
                    found[place][task] = (date, path)
    if not found:
        raise SmolmixError(f"no lm-eval samples files (samples_<task>_<date>.jsonl) in "
                           f"{str(folder)!r}; run lm_eval with --output_path and --log_samples",
                           "--from-lm-eval")
    if len(found) > 1:
        places = ", ".join(p.name for p in found)
        raise SmolmixError(f"lm-eval output of several models ({places}); "
                           "point --from-lm-eval at one of them", "--from-lm-eval")
    place, tasks = next(iter(found.items()))
    return place, {task: path for task, (_, path) in tasks.items()}


def _results_for(samples_file: Path) -> dict:
    """lm-eval's results file of the same run as ``samples_file`` ({} when there is none)."""
    date = SAMPLES_NAME.match(samples_file.name)["date"]
    candidates = sorted(samples_file.parent.glob(f"*_{date}.json"))
    for path in candidates:
        data = read_json(path, "lm-eval results file")
        if isinstance(data, dict) and "results" in data:
            return data
    return {}


def ingest_lm_eval(folder: Path, out: Path, mixture: Path | None = None,
                   tags: Mapping[str, str] | None = None, seed: int = 0) -> dict:
    """Convert lm-eval's ``--output_path DIR --log_samples`` output into the eval run ``out``."""
    out = Path(out)
    inputs = eval_inputs(folder, mixture)
    check_output_dir(out, inputs=inputs)
    check_settings(seed=seed)
    start = time.perf_counter()
    place, files = find_lm_eval_output(Path(folder))
    rows: list[dict] = []
    infos: dict[str, dict] = {}
    merged: dict[str, Any] = {}
    for task, path in sorted(files.items()):
        results = _results_for(path)
        logged = [data for _, data in iter_json_objects(path, "lm-eval samples file")]
        task_rows, infos[task] = convert_task(task, logged,
                                              (results.get("configs") or {}).get(task),
                                              (results.get("results") or {}).get(task))
        rows += task_rows
        if not merged:
            merged = results
        for key in PER_TASK_KEYS:  # tasks from other lm-eval runs in the same folder
            if task in (results.get(key) or {}):
                merged.setdefault(key, {})[task] = results[key][task]
    model = str(merged.get("model_name") or (merged.get("config") or {}).get("model_args")
                or place.name)
    arguments = {"model": model, "from_lm_eval": str(folder),
                 "files": [str(p) for _, p in sorted(files.items())]}
    return _write_run(out, rows, infos, merged, arguments, model, mixture, tags, seed,
                      time.perf_counter() - start, inputs)
