"""``smolmix train``: SFT of any Hugging Face causal LM on a mixture from ``smolmix mix``.

The run directory gets ``model/`` (the final weights, LoRA merged in; it loads with
``AutoModelForCausalLM.from_pretrained``), ``adapter/`` (LoRA runs), ``checkpoints/``
(resumable Trainer checkpoints), ``curves.jsonl`` (per-task held-out metrics over training),
``train_config.yaml`` (the resolved config) and ``manifest.json``. The run is written into
``<out>.partial/``; an interrupted run keeps it there so ``--resume`` can continue it.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from smolmix.encoding import encode_conversations, encode_prompt_completion, pack, truncate
from smolmix.errors import SmolmixError, first_line
from smolmix.train_config import RunConfig, save_run_config

FINGERPRINT_FILE = "smolmix_train.json"


def load_model(name: str, dtype: str = "float32", flag: str = "model"):
    """A causal LM from a local folder or a hub id, weights from safetensors only."""
    import torch
    from transformers import AutoModelForCausalLM

    check_model_path(name, flag)
    try:
        return AutoModelForCausalLM.from_pretrained(name, dtype=getattr(torch, dtype),
                                                    use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise SmolmixError(f"cannot load model {name!r}: {first_line(exc, 200)}", flag) from None


def check_model_path(name: str, flag: str = "model") -> None:
    """A local model folder must exist and hold a config.json (anything else is a hub id)."""
    path = Path(name)
    if path.exists() or name.startswith((".", "/", "~")):
        if not path.exists():
            raise SmolmixError(f"model path {name!r} does not exist", flag)
        if not (path / "config.json").is_file():
            raise SmolmixError(f"{name!r} is not a model folder: no config.json", flag)


def load_tokenizer(name: str, flag: str = "tokenizer"):
    """The tokenizer of a local folder or hub id; a missing pad token becomes EOS."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise SmolmixError(f"cannot load tokenizer {name!r}: {first_line(exc, 200)}",
                           flag) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise SmolmixError(f"tokenizer {name!r} has no EOS token", flag)
    return tokenizer


def check_vocabulary(model, tokenizer, flag: str = "tokenizer") -> None:
    """Every token id the tokenizer can produce must have a row in the model's embeddings."""
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise SmolmixError(f"tokenizer has {len(tokenizer)} tokens but the model's embeddings "
                           f"have {rows} rows (tokenizer and model do not match)", flag)


# --- data -------------------------------------------------------------------------------------


def load_mixture(path: str, flag: str = "mixture"):
    """A mixture folder from ``smolmix mix`` as a ``datasets.Dataset``."""
    from datasets import load_from_disk

    from smolmix.rundir import MANIFEST

    folder = Path(path)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        kind = manifest["smolmix"]["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        kind = None
    if kind != "mixture":
        raise SmolmixError(f"{path!r} is not a mixture folder (no manifest.json from "
                           "smolmix mix)", flag)
    return load_from_disk(str(folder))


def rows_of(dataset) -> list[dict]:
    """The fields training and evaluation need, one dict per example."""
    cols = [c for c in ("task", "prompt", "messages", "completion", "answer")
            if c in dataset.column_names]
    data = dataset.select_columns(cols).to_dict()
    n = len(dataset)
    return [{c: data[c][i] if c in data else None
             for c in ("task", "prompt", "messages", "completion", "answer")} for i in range(n)]


def read_eval_rows(path: str, flag: str = "eval.data") -> list[dict]:
    """Held-out examples: a mixture folder, or a JSONL file of records."""
    from smolmix.records import read_jsonl

    if Path(path).is_dir():
        return rows_of(load_mixture(path, flag))
    if not Path(path).is_file():
        raise SmolmixError(f"eval data {path!r} does not exist", flag)
    return [{"task": r.task, "prompt": r.prompt, "messages": None, "completion": r.completion,
             "answer": r.answer} for r in read_jsonl(Path(path))]


def encode_rows(tokenizer, rows: Sequence[dict]) -> dict[str, list[list[int]]]:
    """Prompt/completion rows as text, conversation rows through the chat template."""
    chats = [i for i, r in enumerate(rows) if r.get("messages")]
    plain = [i for i, r in enumerate(rows) if not r.get("messages")]
    if chats and not getattr(tokenizer, "chat_template", None):
        raise SmolmixError("the data has conversations (messages) but the tokenizer has no "
                           "chat template", "tokenizer")
    out: dict[str, list] = {"input_ids": [None] * len(rows), "labels": [None] * len(rows)}
    parts = []
    if plain:
        parts.append((plain, encode_prompt_completion(
            tokenizer, [rows[i]["prompt"] for i in plain],
            [rows[i]["completion"] for i in plain])))
    if chats:
        parts.append((chats, encode_conversations(tokenizer, [rows[i]["messages"]
                                                              for i in chats])))
    for indices, enc in parts:
        for j, i in enumerate(indices):
            out["input_ids"][i] = enc["input_ids"][j]
            out["labels"][i] = enc["labels"][j]
    return out


def split_holdout(rows: list[dict], per_task: int) -> tuple[list[dict], dict[str, list[dict]]]:
    """The first ``per_task`` distinct examples of each task held out; every training row
    equal to one of them (a repetition) is removed too."""
    held: dict[str, list[dict]] = {}
    keys: set[str] = set()
    for row in rows:
        key = _row_key(row)
        bucket = held.setdefault(row["task"], [])
        if len(bucket) < per_task and key not in keys:
            bucket.append(row)
            keys.add(key)
    return [r for r in rows if _row_key(r) not in keys], held


def _row_key(row: dict) -> str:
    return json.dumps([row.get("prompt"), row.get("messages"), row.get("completion")])


def by_task(rows: Sequence[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["task"], []).append(row)
    return dict(sorted(groups.items()))


def generation_scorer(tokenizer, held: dict[str, list[dict]], spec):
    """A curve scorer: greedy generation on each task's held-out prompts, graded against the
    answer (or the completion) with ``spec.answer_format``."""
    from smolmix.evaluate.generate import generate
    from smolmix.evaluate.grading import grade_many

    tasks = {}
    for task, rows in held.items():
        rows = rows[:spec.examples] if spec.examples else rows
        prompts = [_prompt_text(tokenizer, r) for r in rows]
        references = [r.get("answer") or _reply(r) for r in rows]
        tasks[task] = (prompts, references)

    def score(model) -> dict[str, dict[str, float]]:
        out = {}
        for task, (prompts, references) in tasks.items():
            texts = generate(model, tokenizer, prompts, spec.max_new_tokens,
                             batch_size=spec.batch_size)
            verdicts = grade_many(texts, references, spec.answer_format)
            out[task] = {"generation_accuracy": sum(v.correct for v in verdicts) / len(verdicts)}
        return out

    return score


def _prompt_text(tokenizer, row: dict) -> str:
    if row.get("messages"):
        return tokenizer.apply_chat_template(row["messages"][:-1], tokenize=False,
                                             add_generation_prompt=True)
    return row["prompt"]


def _reply(row: dict) -> str:
    return row["messages"][-1]["content"] if row.get("messages") else row["completion"]


# --- LoRA -------------------------------------------------------------------------------------


def apply_lora(model, spec):
    """Wrap ``model`` with LoRA adapters; target modules that match nothing are an error."""
    from peft import LoraConfig, get_peft_model

    targets = spec.target_modules
    if targets != "all-linear":
        names = [name for name, _ in model.named_modules()]
        for target in targets:
            if not any(name == target or name.endswith("." + target) for name in names):
                raise SmolmixError(f"LoRA target module {target!r} matches no module of the "
                                   "model", "lora.target_modules")
    config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                        target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


# --- the run ----------------------------------------------------------------------------------


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint with the highest step under ``folder/checkpoints``."""
    from smolmix.train import CHECKPOINTS_DIR

    found = [(int(p.name.rsplit("-", 1)[1]), p)
             for p in (folder / CHECKPOINTS_DIR).glob("checkpoint-*")
             if p.name.rsplit("-", 1)[1].isdigit()]
    return max(found)[1] if found else None


def check_resumable(checkpoint: Path, config: RunConfig) -> None:
    """The checkpoint must come from this model and config."""
    try:
        saved = json.loads((checkpoint / FINGERPRINT_FILE).read_text())["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        raise SmolmixError("not a smolmix training checkpoint (no smolmix_train.json)",
                           str(checkpoint)) from None
    if saved != config.fingerprint():
        raise SmolmixError(f"checkpoint is from another model or config (fingerprint {saved}, "
                           f"this run {config.fingerprint()})", str(checkpoint))


def _fingerprint_callback(config: RunConfig):
    from transformers import TrainerCallback

    class Fingerprint(TrainerCallback):
        """Marks each checkpoint with the config it belongs to."""

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                (folder / FINGERPRINT_FILE).write_text(json.dumps(
                    {"fingerprint": config.fingerprint(), "step": state.global_step}))

    return Fingerprint()


def run_training(config: RunConfig, out: Path, resume: bool | Path = False, quiet: bool = False,
                 scorer_factory: Callable | None = None) -> dict | None:
    """Train as ``config`` says into ``out``; return the manifest's summary (None in the
    other processes of a multi-process launch).

    ``resume``: True continues ``<out>.partial`` from its latest checkpoint, a path continues
    from that checkpoint. ``scorer_factory(tokenizer, eval_rows)`` may add generation scorers.
    """
    from accelerate import PartialState

    from smolmix.evaluate.teacher_forced import TeacherForcedEvaluator
    from smolmix.rundir import write_manifest
    from smolmix.train import TokenDataset, TrainConfig, fit

    state = PartialState()
    if quiet or not state.is_main_process:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    say = (lambda msg: None) if quiet or not state.is_main_process else (
        lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    if out.exists():
        raise SmolmixError(f"output path {str(out)!r} already exists", "--out")
    resume_from = _resume_point(partial, resume, config)
    start = time.perf_counter()

    check_model_path(config.model)
    tokenizer = load_tokenizer(config.tokenizer or config.model,
                               "tokenizer" if config.tokenizer else "model")
    model = load_model(config.model, config.dtype)
    check_vocabulary(model, tokenizer)
    rows = rows_of(load_mixture(config.mixture))
    if config.eval.data is not None:
        held = by_task(read_eval_rows(config.eval.data))
    elif config.eval.holdout_per_task:
        rows, held = split_holdout(rows, config.eval.holdout_per_task)
    else:
        held = {}
    if not rows:
        raise SmolmixError("no training examples left", "mixture")
    encoded = encode_rows(tokenizer, rows)
    tokens = sum(1 for row in encoded["labels"] for t in row if t != -100)
    cut = truncate(encoded, config.max_length)
    if config.packing:
        encoded = pack(encoded, config.max_length)
    dataset = TokenDataset(encoded)
    per_step = config.batch_size * config.grad_accum * state.num_processes
    steps = config.steps or max(1, math.floor(config.epochs * len(dataset) / per_step))
    if config.lora is not None:
        model = apply_lora(model, config.lora)
    held_encoded = {task: encode_rows(tokenizer, task_rows) for task, task_rows in held.items()}
    for enc in held_encoded.values():
        truncate(enc, config.max_length)
    evaluator = TeacherForcedEvaluator.from_encoded(tokenizer.pad_token_id, held_encoded,
                                                    config.eval.batch_size)
    scorers = scorer_factory(tokenizer, held) if scorer_factory and held else []
    if config.eval.generate is not None and held:
        from smolmix.errors import lookup
        from smolmix.evaluate.extract import EXTRACTORS

        lookup(EXTRACTORS, config.eval.generate.answer_format, "answer format",
               "eval.generate.answer_format")
        scorers.append(generation_scorer(tokenizer, held, config.eval.generate))
    train_config = TrainConfig(
        steps=steps, batch_size=config.batch_size, learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps, weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm, eval_every=config.eval.every,
        eval_batch_size=config.eval.batch_size, seed=config.seed, grad_accum=config.grad_accum,
        lr_scheduler=config.lr_scheduler, shuffle=config.order == "shuffle",
        save_every=config.save_every or config.eval.every,
        save_total_limit=config.save_total_limit,
        gradient_checkpointing=config.gradient_checkpointing)
    if state.is_main_process:
        if resume_from is None and partial.exists():
            shutil.rmtree(partial)  # a stale interrupted run: start over cleanly
        partial.mkdir(parents=True, exist_ok=True)
        save_run_config(config, partial)
    state.wait_for_everyone()
    say(f"training {type(model).__name__} on {len(dataset)} sequences for {steps} steps"
        + (f", resuming from {resume_from.name}" if resume_from else ""))
    try:
        curves = fit(model, tokenizer.pad_token_id, dataset, evaluator, train_config, partial,
                     scorers=scorers, resume_from=resume_from,
                     callbacks=[_fingerprint_callback(config)])
    except KeyboardInterrupt:
        if state.is_main_process:
            print(f"interrupted: checkpoints kept in {partial}; continue with --resume",
                  file=sys.stderr)
        raise
    # Every process must be done writing (each saves its RNG state into the checkpoints)
    # before the main one renames the run folder.
    state.wait_for_everyone()
    summary = {"steps": steps, "sequences": len(dataset), "examples": len(rows),
               "target_tokens": tokens, "truncated": cut, "packing": config.packing,
               "processes": state.num_processes, "fingerprint": config.fingerprint(),
               "final": _final(curves), "train_seconds": round(time.perf_counter() - start, 2)}
    if state.is_main_process:
        _save_final(model, tokenizer, partial, config.lora is not None)
        write_manifest(partial, "train", {"out": str(out), "resume": str(resume)},
                       seed=config.seed, extra=summary)
        partial.rename(out)
    state.wait_for_everyone()
    return summary if state.is_main_process else None


def _resume_point(partial: Path, resume: bool | Path, config: RunConfig) -> Path | None:
    if resume is False or resume is None:
        return None
    if resume is True:
        checkpoint = latest_checkpoint(partial) if partial.exists() else None
        if checkpoint is None:
            raise SmolmixError(f"nothing to resume: no checkpoint in {str(partial)!r}",
                               "--resume")
    else:
        checkpoint = Path(resume)
        if not checkpoint.is_dir():
            raise SmolmixError(f"checkpoint {str(checkpoint)!r} does not exist", "--resume")
    check_resumable(checkpoint, config)
    return checkpoint


def _final(curves: list[dict]) -> dict:
    if not curves:
        return {}
    last = max(r["step"] for r in curves)
    return {r["task"]: {k: v for k, v in r.items() if k not in ("step", "task")}
            for r in curves if r["step"] == last}


def _save_final(model, tokenizer, folder: Path, lora: bool) -> None:
    if lora:
        model.save_pretrained(folder / "adapter")
        model = model.merge_and_unload()
    model.save_pretrained(folder / "model", safe_serialization=True)
    tokenizer.save_pretrained(folder / "model")
