"""``smolmix train``: SFT of any Hugging Face causal LM on a mixture from ``smolmix mix``.

The run directory gets ``model/`` (the final weights, LoRA merged in; it loads with
``AutoModelForCausalLM.from_pretrained``), ``adapter/`` (LoRA runs), ``checkpoints/``
(resumable Trainer checkpoints), ``curves.jsonl`` (per-task held-out metrics over training),
``train_log.jsonl`` (training loss and learning rate every ``logging_steps``),
``train_config.yaml`` (the resolved config) and ``manifest.json`` (with the prompt format,
chat or plain, that ``model/smolmix.json`` also records for ``smolmix eval``). The run is
written into ``<out>.partial/``; an interrupted run keeps it there so ``--resume`` can
continue it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from accelerate import PartialState
from datasets import Dataset
from transformers import TrainerCallback
from transformers.integrations import INTEGRATION_TO_CALLBACK
from transformers.utils import logging as hf_logging

from smolmix.core.errors import SmolmixError, lookup
from smolmix.core.output import (
    PartialClaim,
    check_output_dir,
    claim_partial,
    partial_path,
)
from smolmix.core.records import Record, by_task
from smolmix.core.rundir import CHECKPOINTS_DIR, checkpoint_step, list_checkpoints, write_manifest
from smolmix.grading.extract import EXTRACTORS
from smolmix.models.loading import check_model_path, check_vocabulary, load_model, load_tokenizer
from smolmix.models.prompting import choose_format, write_prompt_format
from smolmix.train.config import MAX_STEPS, TrainConfig, check_passthrough, save_train_config
from smolmix.train.curves import Scorer, TeacherForcedEvaluator, final_scores, generation_scorer
from smolmix.train.data import load_mixture, read_records, split_holdout
from smolmix.train.encoding import (
    IGNORE_INDEX,
    drop_untrainable,
    encode_records,
    pack,
    truncate,
)
from smolmix.train.guards import FiniteGuard, NonFiniteTraining
from smolmix.train.lora import apply_lora
from smolmix.train.trainer import check_training_arguments, fit

FINGERPRINT_FILE = "smolmix_train.json"


def held_out(config: TrainConfig, records: list[Record]
             ) -> tuple[list[Record], dict[str, list[Record]]]:
    """The training records and each task's held-out records, as the config's ``eval`` says
    (a file or mixture, or examples carved out of the mixture)."""
    if config.eval.data is not None:
        return records, by_task(read_records(config.eval.data))
    if config.eval.holdout_per_task:
        return split_holdout(records, config.eval.holdout_per_task)
    return records, {}


def check_resumable(checkpoint: Path, config: TrainConfig) -> None:
    """The checkpoint must come from this model and config."""
    try:
        saved = json.loads((checkpoint / FINGERPRINT_FILE).read_text())["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        raise SmolmixError("not a smolmix training checkpoint (no smolmix_train.json)",
                           str(checkpoint)) from None
    if saved != config.fingerprint():
        raise SmolmixError(f"checkpoint is from another model or config (fingerprint {saved}, "
                           f"this run {config.fingerprint()})", str(checkpoint))


class _Fingerprint(TrainerCallback):
    """Marks each checkpoint with the config it belongs to and the prompt format it trains
    with."""

    def __init__(self, config: TrainConfig, prompt_format: str) -> None:
        self.fingerprint = config.fingerprint()
        self.prompt_format = prompt_format

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            write_prompt_format(folder, self.prompt_format)
            # Written last and renamed into place: the mark of a complete checkpoint (a kill
            # while the Trainer saves leaves a folder without it, which --resume skips).
            tmp = folder / (FINGERPRINT_FILE + ".tmp")
            tmp.write_text(json.dumps({"fingerprint": self.fingerprint,
                                       "step": state.global_step}))
            tmp.replace(folder / FINGERPRINT_FILE)


def train(config: TrainConfig, out: Path, resume: bool | Path = False, quiet: bool = False,
          scorers: Sequence[Scorer] = (), callbacks: Sequence[TrainerCallback] = ()
          ) -> dict | None:
    """Train as ``config`` says into ``out``; return the manifest's summary (None in the
    other processes of a multi-process launch).

    ``resume``: True continues ``<out>.partial`` from its latest checkpoint, a path continues
    from that checkpoint. ``scorers`` add per-task metrics to the curves; ``callbacks`` are
    more Trainer callbacks (the lab's mechanism probe, for one).
    """
    # The process group as the Trainer will set it up (on a CPU only with cpu=True), before
    # any process decides whether it is the main one (the one that claims <out>.partial).
    state = PartialState(cpu=not torch.cuda.is_available())
    if quiet or not state.is_main_process:
        hf_logging.disable_progress_bar()
    say = (lambda msg: None) if quiet or not state.is_main_process else (
        lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out)
    check_output_dir(out, inputs=_local_inputs(config))
    claim = claim_partial(out) if state.is_main_process else None
    try:
        return _train(config, out, claim, state, resume, quiet, scorers, callbacks, say)
    except BaseException as exc:
        if claim is not None:
            diverged = isinstance(exc, NonFiniteTraining) and resume is False
            if not _complete_checkpoints(claim.path) or diverged:
                claim.discard()  # nothing worth keeping: no trace of this run
            else:
                claim.release()  # checkpoints for --resume stay in <out>.partial
        raise


def _local_inputs(config: TrainConfig) -> list[Path]:
    """The config's files and folders that exist here (a hub id is not one)."""
    named = [config.model, config.mixture, config.tokenizer, config.eval.data]
    return [Path(p) for p in named if p is not None and Path(str(p)).exists()]


def _train(config: TrainConfig, out: Path, claim: PartialClaim | None, state: PartialState,
           resume: bool | Path, quiet: bool, scorers: Sequence[Scorer],
           callbacks: Sequence[TrainerCallback], say) -> dict | None:
    partial = partial_path(out)
    resume_from = _resume_point(partial, resume, config)
    start_step = 0
    if config.continue_from is not None:  # checked before any model or data is loaded
        start_step = _continue_point(Path(config.continue_from))
        resume_from = resume_from or Path(config.continue_from)
    start = time.perf_counter()

    check_report_to(config.report_to)
    check_sharding()
    check_passthrough(config)
    check_training_arguments(config)
    check_model_path(config.model)
    tokenizer = load_tokenizer(config.tokenizer or config.model,
                               "tokenizer" if config.tokenizer else "model")
    model = load_model(config.model, config.dtype)
    check_vocabulary(model, tokenizer)
    records, held = held_out(config, load_mixture(config.mixture))
    if not records:
        raise SmolmixError("no training examples left", "mixture")
    if config.eval.generate is not None:
        lookup(EXTRACTORS, config.eval.generate.answer_format, "answer format",
               "eval.generate.answer_format")
    prompt_format = choose_format(config.chat_template, tokenizer, flag="chat_template")
    encoded = encode_records(tokenizer, records, config.assistant_turns, prompt_format)
    cut = truncate(encoded, config.max_length)
    dropped = len(drop_untrainable(encoded))
    if not encoded["input_ids"]:
        raise SmolmixError(f"every training example loses its whole completion at max_length "
                           f"{config.max_length}", "max_length")
    tokens = sum(1 for row in encoded["labels"] for t in row[1:] if t != IGNORE_INDEX)
    if config.packing:
        encoded = pack(encoded, config.max_length)
    dataset = Dataset.from_dict(encoded)
    per_step = config.batch_size * config.grad_accum * state.num_processes
    steps = config.steps or max(1, math.floor(config.epochs * len(dataset) / per_step))
    if steps > MAX_STEPS:
        raise SmolmixError(f"epochs {config.epochs:g} over {len(dataset)} sequences make "
                           f"{steps:,} steps, more than {MAX_STEPS:,}", "epochs")
    if config.lora is not None:
        model = apply_lora(model, config.lora)
    held, held_encoded, held_dropped = _held_out_encoded(tokenizer, held, config.max_length,
                                                         config.assistant_turns, prompt_format)
    evaluator = TeacherForcedEvaluator(tokenizer.pad_token_id, held_encoded,
                                       config.eval.batch_size)
    scorers = list(scorers)
    if config.eval.generate is not None and held:
        spec = config.eval.generate
        scorers.append(generation_scorer(tokenizer, held, spec.max_new_tokens,
                                         spec.answer_format, spec.examples, spec.batch_size,
                                         prompt_format))
    if claim is not None:
        if resume_from is None:
            claim.clear()  # a stale interrupted run: start over cleanly
        save_train_config(config, partial)
    state.wait_for_everyone()
    for what, count in (("training", dropped),
                        *((f"held-out {task}", n) for task, n in held_dropped.items())):
        if count:
            say(f"dropped {count} {what} examples whose completion max_length "
                f"{config.max_length} cuts away entirely")
    say(f"training {type(model).__name__} on {len(dataset)} sequences for {steps} steps"
        + (f", resuming from {resume_from.name}" if resume_from else ""))
    try:
        curves = fit(model, tokenizer, dataset, evaluator, config, start_step + steps, partial,
                     scorers=scorers, resume_from=resume_from,
                     callbacks=[_Fingerprint(config, prompt_format), FiniteGuard(),
                                *callbacks],
                     progress=not quiet and state.is_main_process, save_to=partial)
    except KeyboardInterrupt:
        if state.is_main_process and _complete_checkpoints(partial):
            # the CLI prints it after "interrupted: "
            raise KeyboardInterrupt(f"checkpoints kept in {partial}; continue with "
                                    "--resume") from None
        raise
    # Every process must be done writing (each saves its RNG state into the checkpoints)
    # before the main one renames the run folder.
    state.wait_for_everyone()
    summary = {"steps": steps, "start_step": start_step, "sequences": len(dataset),
               "examples": len(records),
               "target_tokens": tokens, "truncated": cut,
               "dropped_no_target": {"train": dropped, "held_out": held_dropped},
               "packing": config.packing, "prompt_format": prompt_format,
               "processes": state.num_processes, "fingerprint": config.fingerprint(),
               "final": final_scores(curves),
               "train_seconds": round(time.perf_counter() - start, 2)}
    if state.is_main_process:
        write_prompt_format(partial / "model", prompt_format)
        empty = partial / CHECKPOINTS_DIR
        if empty.is_dir() and not any(empty.iterdir()):
            empty.rmdir()  # the Trainer makes its output folder even when it saves nothing
        write_manifest(partial, "train", {"out": str(out), "resume": str(resume)},
                       seed=config.seed, extra=summary)
        claim.finish(out)
    state.wait_for_everyone()
    return summary if state.is_main_process else None


def check_sharding() -> None:
    """FSDP and DeepSpeed (``accelerate launch`` with such a config) need GPUs; on a CPU
    accelerate would quietly run plain DDP instead, so that is refused."""
    for variable, engine in (("ACCELERATE_USE_FSDP", "FSDP"),
                             ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(variable, "").lower() in ("1", "true") \
                and not torch.cuda.is_available():
            raise SmolmixError(f"{engine} needs GPUs; on a CPU accelerate would run plain DDP "
                               "instead (launch without it)", "accelerate config")


def check_report_to(report_to: str | list[str]) -> None:
    """Every ``report_to`` name must be an integration transformers knows (or none/all)."""
    for name in [report_to] if isinstance(report_to, str) else report_to:
        if name not in ("none", "all") and name not in INTEGRATION_TO_CALLBACK:
            raise SmolmixError(f"unknown report_to {name!r}; known: none, all, "
                               f"{', '.join(INTEGRATION_TO_CALLBACK)}", "report_to")


def _held_out_encoded(tokenizer, held: dict[str, list[Record]], max_length: int, turns: str,
                      prompt_format: str
                      ) -> tuple[dict[str, list[Record]], dict[str, dict], dict[str, int]]:
    """Each task's held-out examples encoded and cut to ``max_length``; examples left with no
    target token are dropped (never scored) and counted per task, and so is a task left empty.
    Returns the kept records, their encodings and the counts."""
    kept, encoded, dropped = {}, {}, {}
    for task, rows in held.items():
        enc = encode_records(tokenizer, rows, turns, prompt_format)
        truncate(enc, max_length)
        gone = set(drop_untrainable(enc))
        if gone:
            dropped[task] = len(gone)
        if enc["input_ids"]:
            kept[task] = [r for i, r in enumerate(rows) if i not in gone]
            encoded[task] = enc
    return kept, encoded, dropped


def _complete_checkpoints(partial: Path) -> list[Path]:
    """The checkpoints in ``partial`` that were saved whole (their fingerprint written last)."""
    found = list_checkpoints(partial) if partial.is_dir() else []
    return [c for c in found if _is_complete(c)]


def _is_complete(checkpoint: Path) -> bool:
    """A checkpoint saved whole: its fingerprint is written last."""
    return (checkpoint / FINGERPRINT_FILE).is_file()


def _continue_point(checkpoint: Path) -> int:
    """The step a continued run starts at: ``continue_from`` must be a complete smolmix
    checkpoint (weights, optimizer, scheduler) of any config."""
    where = "continue_from"
    if not _is_complete(checkpoint):
        raise SmolmixError(f"{str(checkpoint)!r} is not a complete smolmix training checkpoint "
                           f"(no {FINGERPRINT_FILE})", where)
    for name in ("optimizer.pt", "scheduler.pt"):
        if not (checkpoint / name).is_file():
            raise SmolmixError(f"checkpoint {str(checkpoint)!r} has no {name}", where)
    return checkpoint_step(checkpoint)


def _resume_point(partial: Path, resume: bool | Path, config: TrainConfig) -> Path | None:
    if resume is False or resume is None:
        return None
    if resume is True:
        complete = _complete_checkpoints(partial)
        checkpoint = complete[-1] if complete else None
        if checkpoint is None:
            raise SmolmixError(f"nothing to resume: no checkpoint in {str(partial)!r}",
                               "--resume")
    else:
        checkpoint = Path(resume)
        if not checkpoint.is_dir():
            raise SmolmixError(f"checkpoint {str(checkpoint)!r} does not exist", "--resume")
    check_resumable(checkpoint, config)
    return checkpoint
