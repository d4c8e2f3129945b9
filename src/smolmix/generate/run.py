"""``smolmix generate``: traces for every problem from one teacher in one style, verified, kept
resumable, written as a source ``smolmix mix`` reads.

The output folder holds ``traces.jsonl`` (the kept traces as canonical records: the problem as
``prompt``, the trace as ``completion``, the reference as ``answer``; tags ``cot``, ``teacher``,
``style``, ``problem``, ``sample``, ``tokens`` and the user's ``--tag``s), ``rejected.jsonl``
(every other sample, with its reason) and ``manifest.json`` (arguments, acceptance rate and
length statistics). Work goes into ``<out>.partial`` and is renamed at the end; a killed or
failed run leaves its journal there, and the same command continues it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from smolmix.core.errors import SmolmixError
from smolmix.core.output import check_destination, check_not_input, claim_partial, partial_path
from smolmix.core.records import Record, write_jsonl
from smolmix.core.rundir import read_manifest, write_manifest
from smolmix.generate.endpoint import APIS, Completion, Endpoint, RetryPolicy
from smolmix.generate.journal import Journal, refuse_other_arguments
from smolmix.generate.local import LOCAL_BACKENDS, LocalTeacher, check_local_teacher
from smolmix.generate.problems import Problem, Problems, problems_digest, read_problems
from smolmix.generate.stats import group_stats
from smolmix.generate.styles import Style, resolve_style
from smolmix.generate.verify import Candidate, Filters, judge

KIND = "generate"
TRACES = "traces.jsonl"
REJECTED = "rejected.jsonl"
OPENAI_URL = "https://api.openai.com/v1"
LOCAL_BATCH = 32  # prompts per in-process generate call (and per journal flush)


@dataclass(frozen=True)
class Teacher:
    """Where traces come from: an endpoint URL, or ``hf``/``vllm`` and a checkpoint path."""

    kind: str  # "endpoint", "hf" or "vllm"
    target: str
    model: str | None = None

    @property
    def label(self) -> str:
        """The teacher's name in tags: the model name, else the checkpoint folder's name."""
        return self.model or Path(self.target.rstrip("/")).name


def parse_teacher(spec: str, model: str | None) -> Teacher:
    """``--teacher``: an OpenAI-compatible base URL, ``openai`` (``$OPENAI_BASE_URL`` or
    OpenAI's), or ``hf:PATH`` / ``vllm:PATH`` for a checkpoint run here."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in LOCAL_BACKENDS:
        if not rest:
            raise SmolmixError(f"{kind}: needs a checkpoint path, e.g. {kind}:./model",
                               "--teacher")
        if model is not None:
            raise SmolmixError("--model names a served model; a local teacher is its path",
                               "--model")
        return Teacher(kind, rest)
    if spec == "openai":
        return Teacher("endpoint", os.environ.get("OPENAI_BASE_URL") or OPENAI_URL, model)
    if spec.startswith(("http://", "https://")):
        return Teacher("endpoint", spec, model)
    raise SmolmixError(f"expected a base URL (http://host:port/v1), 'openai', hf:PATH or "
                       f"vllm:PATH, got {spec!r}", "--teacher")


@dataclass(frozen=True)
class Sampling:
    """How each problem is asked: samples, temperature, top-p, length limit, seed, API."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 1024
    seed: int = 0
    api: str | None = None  # chat or completion (endpoint default: chat)

    def check(self) -> None:
        if self.n < 1:
            raise SmolmixError(f"must be at least 1, got {self.n}", "--n")
        if not 0 <= self.temperature <= 2:
            raise SmolmixError(f"must be between 0 and 2, got {self.temperature:g}",
                               "--temperature")
        if not 0 < self.top_p <= 1:
            raise SmolmixError(f"must be in (0, 1], got {self.top_p:g}", "--top-p")
        if self.max_tokens < 1:
            raise SmolmixError(f"must be at least 1, got {self.max_tokens}", "--max-tokens")
        if self.api is not None and self.api not in APIS:
            raise SmolmixError(f"must be one of {', '.join(APIS)}, got {self.api!r}", "--api")
        if self.n > 1 and self.temperature == 0:
            raise SmolmixError(f"{self.n} samples at temperature 0 would be the same trace; "
                               "raise --temperature", "--n")


@dataclass(frozen=True)
class Transport:
    """How requests are sent (none of it changes the output)."""

    concurrency: int = 8
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float = 600.0
    key_env: str = "OPENAI_API_KEY"

    def check(self) -> None:
        if self.concurrency < 1:
            raise SmolmixError(f"must be at least 1, got {self.concurrency}", "--concurrency")
        if self.retry.budget_s < 0:
            raise SmolmixError(f"must be 0 or more, got {self.retry.budget_s:g}",
                               "--retry-budget")
        if self.timeout_s <= 0:
            raise SmolmixError(f"must be positive, got {self.timeout_s:g}", "--timeout")


def sample_seed(seed: int, problem: str, sample: int) -> int:
    """The seed sent with one sample: fixed by the run's seed, the problem and the sample
    index, so a resumed run asks for the same sample again."""
    digest = hashlib.sha256(f"{seed}:{problem}:{sample}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def fingerprint(problems_file: Path, teacher: Teacher, style: Style, sampling: Sampling,
                filters: Filters, tags: dict[str, str], task: str | None) -> dict:
    """Everything that shapes the output; a resumed run must match it."""
    return {"problems_sha256": problems_digest(problems_file), "teacher": asdict(teacher),
            "style": style.name, "style_sha256": style.digest, **asdict(sampling),
            **{f"filter_{k}": v for k, v in asdict(filters).items() if k != "grade_timeout_s"},
            "tags": dict(sorted(tags.items())), "task": task}


class Progress:
    """The bar: samples done, with kept and rejected counts and tokens per second."""

    def __init__(self, total: int, done: dict, quiet: bool) -> None:
        self.kept = sum(1 for e in done.values() if e["accepted"])
        self.rejected = len(done) - self.kept
        self.tokens = 0
        self.start = time.perf_counter()
        self.bar = tqdm(total=total, initial=len(done), desc="generate", unit="sample",
                        disable=quiet, leave=False)
        self._show()

    def _show(self) -> None:
        rate = self.tokens / max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix(kept=self.kept, rejected=self.rejected, tok_s=f"{rate:.0f}",
                             refresh=False)

    def add(self, entry: dict) -> None:
        self.kept += entry["accepted"]
        self.rejected += not entry["accepted"]
        self.tokens += entry["tokens"]
        self._show()
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _entry(problem: Problem, index: int, sample: int, seed: int | None,
           completion: Completion, filters: Filters) -> dict:
    tokens = completion.completion_tokens
    counted_by = "server" if tokens is not None else "words"
    tokens = tokens if tokens is not None else len(completion.text.split())
    verdict = judge([Candidate(completion.text, completion.finish_reason, tokens,
                               completion.refused)], [problem.answer], filters)[0]
    return {"problem": problem.id, "index": index, "sample": sample, "seed": seed,
            "text": completion.text, "finish_reason": completion.finish_reason,
            "tokens": tokens, "tokens_counted_by": counted_by,
            "prompt_tokens": completion.prompt_tokens, "attempts": completion.attempts,
            "accepted": verdict.accepted, "reason": verdict.reason, "found": verdict.answer}


def _pending(problems: Sequence[Problem], n: int, done: dict) -> list[tuple[int, Problem, int]]:
    return [(i, p, k) for i, p in enumerate(problems) for k in range(n) if (p.id, k) not in done]


async def _run_endpoint(teacher: Teacher, style: Style, sampling: Sampling,
                        transport: Transport, filters: Filters, work: list, journal: Journal,
                        start_progress: Callable[[], Progress]) -> str:
    """Every pending sample through the endpoint, ``transport.concurrency`` in flight, once
    the endpoint has answered; returns the model name used."""
    key = os.environ.get(transport.key_env) or None
    async with Endpoint(teacher.target, teacher.model, sampling.api or "chat", key,
                        f"${transport.key_env}", transport.timeout_s, transport.retry,
                        transport.concurrency, sampling.seed) as endpoint:
        served = await endpoint.served_models()
        if endpoint.model is None:
            if not served or len(served) != 1:
                offered = f"it serves {', '.join(served)}" if served else "it lists none"
                raise SmolmixError(f"name the model to ask ({offered})", "--model")
            endpoint.model = served[0]
        elif served and endpoint.model not in served:
            raise SmolmixError(f"model {endpoint.model!r} is not served at {teacher.target} "
                               f"(it serves {', '.join(served)})", "--model")
        if not work:
            return endpoint.model
        todo: Iterator = iter(work)
        progress = start_progress()

        async def worker() -> None:
            for index, problem, sample in todo:
                seed = sample_seed(sampling.seed, problem.id, sample)
                completion = await endpoint.complete(
                    style.render(problem.text), sampling.max_tokens, sampling.temperature,
                    sampling.top_p, seed)
                entry = _entry(problem, index, sample, seed, completion, filters)
                journal.append(entry)
                progress.add(entry)

        tasks = [asyncio.ensure_future(worker()) for _ in range(transport.concurrency)]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # the first failure, raised
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            progress.close()
        return endpoint.model


def _run_local(teacher: Teacher, style: Style, sampling: Sampling, filters: Filters,
               work: list, journal: Journal, start_progress: Callable[[], Progress]) -> None:
    local = LocalTeacher(teacher.kind, Path(teacher.target), sampling.api)
    progress = start_progress()
    try:
        for start in range(0, len(work), LOCAL_BATCH):
            chunk = work[start:start + LOCAL_BATCH]
            completions = local.complete_many([style.render(p.text) for _, p, _ in chunk],
                                              sampling.max_tokens)
            for (index, problem, sample), completion in zip(chunk, completions, strict=True):
                entry = _entry(problem, index, sample, None, completion, filters)
                journal.append(entry)
                progress.add(entry)
    finally:
        progress.close()


def _record(entry: dict, problem: Problem, teacher: str, style: Style,
            tags: dict[str, str]) -> Record:
    base = {"style": style.name, "teacher": teacher, "problem": problem.id,
            "sample": str(entry["sample"]), "tokens": str(entry["tokens"])}
    if style.built_in:
        base["cot"] = style.name
    return Record(task=problem.task, prompt=problem.text, completion=entry["text"],
                  answer=problem.answer, tags={**base, **tags})


def _write_outputs(folder: Path, problems: Problems, entries: dict, teacher: str,
                   style: Style, tags: dict[str, str]) -> dict:
    """traces.jsonl, rejected.jsonl, in problem then sample order; returns the statistics."""
    ordered = sorted(entries.values(), key=lambda e: (e["index"], e["sample"]))
    by_id = {p.id: p for p in problems.items}
    write_jsonl((_record(e, by_id[e["problem"]], teacher, style, tags)
                 for e in ordered if e["accepted"]), folder / TRACES)
    with open(folder / REJECTED, "w", encoding="utf-8") as fh:
        for e in ordered:
            if not e["accepted"]:
                p = by_id[e["problem"]]
                fh.write(json.dumps({"problem": p.id, "sample": e["sample"], "task": p.task,
                                     "reason": e["reason"], "found": e["found"],
                                     "answer": p.answer, "tokens": e["tokens"],
                                     "finish_reason": e["finish_reason"], "text": e["text"]},
                                    ensure_ascii=False, sort_keys=True) + "\n")
    return group_stats(ordered)


def _finished(out: Path, signature: dict) -> dict | None:
    """The summary of an existing finished output made with these arguments (None when
    ``out`` does not exist); other arguments, or another kind of folder, are refused."""
    if not os.path.lexists(out):
        return None
    try:
        manifest = read_manifest(out, [KIND], "--out")
    except SmolmixError:
        raise SmolmixError(f"output path {str(out)!r} already exists and is not a generate "
                           "output", "--out") from None
    refuse_other_arguments(manifest.get("fingerprint") or {}, signature, str(out))
    return manifest.get("summary")


def run_generate(problems_file: Path, teacher_spec: str, style_arg: str, out: Path, *,
                 model: str | None = None, sampling: Sampling = Sampling(),
                 transport: Transport = Transport(), filters: Filters = Filters(),
                 tags: dict[str, str] | None = None, task: str | None = None,
                 quiet: bool = False) -> dict:
    """Generate, verify and write (see the module doc); returns the manifest's summary."""
    tags = dict(tags or {})
    say = (lambda m: None) if quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    teacher = parse_teacher(teacher_spec, model)
    style = resolve_style(style_arg)
    sampling.check()
    transport.check()
    filters.check()
    if teacher.kind != "endpoint":
        check_local_teacher(teacher.target, sampling.n, sampling.temperature)
    problems = read_problems(problems_file, filters.verify, task)
    inputs = [problems_file] + ([Path(style_arg)] if not style.built_in else []) + (
        [Path(teacher.target)] if teacher.kind != "endpoint" else [])
    check_not_input(out, inputs)
    check_destination(out)
    signature = fingerprint(problems_file, teacher, style, sampling, filters, tags, task)
    summary = _finished(out, signature)
    if summary is not None:
        say(f"{out} is already complete with these arguments; nothing to do")
        return summary
    claim = claim_partial(out, inputs=inputs)
    journal: Journal | None = None
    try:
        journal = Journal(claim.path, signature)
        if journal.done:
            say(f"continuing {claim.path}: {len(journal.done)} samples already done")
        start = time.perf_counter()
        work = _pending(problems.items, sampling.n, journal.done)
        total, done = len(problems.items) * sampling.n, journal.done

        def start_progress() -> Progress:
            return Progress(total, done, quiet)

        if teacher.kind == "endpoint":
            served = asyncio.run(_run_endpoint(teacher, style, sampling, transport, filters,
                                               work, journal, start_progress))
            teacher = Teacher(teacher.kind, teacher.target, served)
        else:
            _run_local(teacher, style, sampling, filters, work, journal, start_progress)
        journal.close()
        stats = _write_outputs(claim.path, problems, journal.done, teacher.label, style, tags)
        summary = {**stats, "teacher": teacher.label, "style": style.name,
                   "duplicate_problems_skipped": problems.duplicates,
                   "tokens_counted_by": sorted({e["tokens_counted_by"]
                                                for e in journal.done.values()}),
                   "retries": sum(e["attempts"] - 1 for e in journal.done.values()),
                   "wall_seconds_this_session": round(time.perf_counter() - start, 1)}
        for name in ("journal.jsonl", "run.json"):
            (claim.path / name).unlink()
        write_manifest(claim.path, KIND, _arguments(problems_file, teacher, style, sampling,
                                                    transport, filters, tags, task),
                       sampling.seed, {"fingerprint": signature, "summary": summary,
                                       "template": style.template})
        claim.finish(out)
    except BaseException as exc:
        kept = len(journal.done) if journal is not None else 0
        if journal is not None:
            journal.close()
        if kept:
            claim.release()
            note = (f"{kept} finished samples are kept in {str(partial_path(out))!r}; the "
                    "same command continues")
            if isinstance(exc, SmolmixError):
                raise SmolmixError(f"{exc.what}; {note}", exc.where) from None
            if isinstance(exc, KeyboardInterrupt):
                raise KeyboardInterrupt(note) from None
        else:
            claim.discard()
        raise
    say(f"kept {summary['accepted']} of {summary['samples']} samples "
        f"({summary['problems_with_a_kept_trace']} of {summary['problems']} problems) -> {out}")
    return summary


def _arguments(problems_file: Path, teacher: Teacher, style: Style, sampling: Sampling,
               transport: Transport, filters: Filters, tags: dict, task: str | None) -> dict:
    """The manifest's record of the call (the key's variable name, never the key)."""
    return {"problems": str(problems_file), "teacher": asdict(teacher), "style": style.name,
            "sampling": asdict(sampling), "filters": asdict(filters), "tags": tags,
            "task": task, "concurrency": transport.concurrency,
            "retry_budget_s": transport.retry.budget_s, "timeout_s": transport.timeout_s,
            "api_key_env": transport.key_env}
