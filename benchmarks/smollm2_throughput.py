"""SmolLM2-135M-Instruct on this CPU: ``smolmix train`` (LoRA) and ``smolmix eval`` generation
throughput against hand-written PyTorch / ``model.generate`` baselines, in one run.

Training (LoRA r=16, alpha 32, dropout 0, all linear layers; fp32; batch 8; AdamW as the
Trainer builds it (fused, no weight decay), linear warmup/decay, gradient clipping at 1.0).
Every side trains a fresh copy of the model (same LoRA initialisation, seed 0) on the same
fixed batches in the same order: examples/smollm2's four training tasks, chat template,
completion-only labels, one task per batch in turn (so little padding). Sides:

- ``hand loop``: PEFT + a minimal PyTorch loop (forward with the model's own loss, backward,
  clip, step, schedule, zero_grad);
- ``smolmix``: :func:`smolmix.train.trainer.fit` as ``smolmix train`` runs it (TRL's
  ``SFTTrainer`` with smolmix's collator and ``compute_loss``);
- the same ``fit`` with the other loss: ``smolmix, model's own loss`` (``compute_loss``
  replaced by transformers' ``Trainer.compute_loss``: the model's full logits and
  cross-entropy) when smolmix uses TRL's, else ``smolmix, TRL's fused LM-head loss``
  (``SFTTrainer.compute_loss``: chunked log-probs, entropy and top-1 accuracy metrics).

Each (side, repeat) runs in its own process (peak RSS from ``wait4``); the sides alternate
and each goes first once. Inside the process only training is timed: "steady" is from the
end of step 1 (warm-up, excluded) to the end of the last step, "whole" from the start of the
loop (``fit`` call: the Trainer's construction included) to its return. Tokens are the
non-padding tokens of the batches timed. The machine's fp32 matmul rate (2048² @ 2048²,
same torch thread count) is measured in the parent between rounds; training FLOPs are
6·N·tokens (N: the base model's parameters) as the issue asks, and 4·N·tokens is shown too
(frozen base weights: no weight gradients in the backward pass).

Separate processes profile each side's steps 3..n (``--profile-steps``): wall clock per
phase, and ``torch.profiler``'s top ops over the same steps.

Generation (no LoRA, greedy, ``max_new_tokens`` 32, chat-template prompts of
examples/smollm2/eval_tasks.yaml, the first ``--prompts-per-task`` of each task): smolmix's
:func:`smolmix.inference.hf.generate` against a batch-1 ``model.generate`` loop and a plain
batched loop (tokenizer left padding, prompts in the given order). All use the same greedy
``GenerationConfig``; generated tokens are the new tokens up to and including the first EOS
(of the batch-1 loop, the reference); texts are compared with the batch-1 loop's.

Usage: python benchmarks/smollm2_throughput.py [--steps 13] [--repeats 3] [--gen-repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "smollm2"
TASKS = ("chain_sum", "letter_counting", "spell_backward", "word_sorting")
HAND, OWN, FUSED = ("hand loop", "smolmix, model's own loss",
                    "smolmix, TRL's fused LM-head loss")
WAYS = ("batch-1 model.generate loop", "plain batched model.generate", "smolmix generate")
LR, WARMUP = 5e-4, 2


# ---------------------------------------------------------------------------- shared setup

def model_folder(cache: Path) -> Path:
    """SmolLM2-135M-Instruct as a safetensors folder (converted from the GGUF once)."""
    if not (cache / "model.safetensors").is_file():
        from smolmix.models.convert import convert_gguf
        from smolmix.models.smollm2 import gguf_path

        convert_gguf(gguf_path(), cache, quiet=True)
    return cache


def load(folder: Path, lora: bool):
    from smolmix.models.loading import load_checkpoint
    from smolmix.train.config import LoraSpec
    from smolmix.train.lora import apply_lora

    model, tokenizer = load_checkpoint(folder)
    if lora:
        torch.manual_seed(0)
        model = apply_lora(model, LoraSpec(r=16, alpha=32, dropout=0.0,
                                           target_modules="all-linear"))
    return model, tokenizer


def training_examples(tokenizer, steps: int, batch_size: int) -> dict[str, list[list[int]]]:
    """The encoded examples in training order: batch k holds the next ``batch_size``
    examples of task k mod 4."""
    from smolmix.core.records import read_jsonl
    from smolmix.models.prompting import choose_format
    from smolmix.train.encoding import encode_records

    fmt = choose_format("auto", tokenizer)
    per_task = {t: encode_records(tokenizer, list(read_jsonl(EXAMPLE / "data" / f"{t}.jsonl")),
                                  prompt_format=fmt) for t in TASKS}
    out: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    for k in range(steps):
        start = (k // len(TASKS)) * batch_size
        enc = per_task[TASKS[k % len(TASKS)]]
        for key in out:
            out[key] += enc[key][start:start + batch_size]
    return out


class StepClock:
    """``perf_counter`` at the end of every optimizer step (a TrainerCallback is built on
    demand so that importing this script does not import transformers)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def callback(self):
        from transformers import TrainerCallback

        clock = self

        class _Clock(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                clock.stamps.append(time.perf_counter())

        return _Clock()


# ---------------------------------------------------------------------------- training sides

def hand_loop(model, batches: list[dict], phases: dict[str, float],
              step_end=None) -> tuple[float, list]:
    """A PEFT + PyTorch loop; returns its start time and the end time of every step, and
    adds its phases' seconds (steps after the first) to ``phases``; ``step_end(step)`` is
    called after each step (from 1)."""
    from transformers import get_linear_schedule_with_warmup

    start = time.perf_counter()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=0.0, fused=True)
    schedule = get_linear_schedule_with_warmup(optimizer, WARMUP, len(batches))
    model.train()
    stamps = []
    for step, batch in enumerate(batches):
        t0 = time.perf_counter()
        loss = model(**batch).loss
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        t3 = time.perf_counter()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        stamps.append(time.perf_counter())
        if step_end is not None:
            step_end(step + 1)
        if step:
            for name, seconds in (("forward (model + full LM head + loss)", t1 - t0),
                                  ("backward", t2 - t1), ("grad clipping", t3 - t2),
                                  ("optimizer + schedule", stamps[-1] - t3)):
                phases[name] = phases.get(name, 0.0) + seconds
    return start, stamps


def smolmix_fit(model, tokenizer, examples: dict, steps: int, batch_size: int,
                callbacks=()) -> float:
    """:func:`smolmix.train.trainer.fit` on ``examples`` in order; returns its start time."""
    from datasets import Dataset

    from smolmix.train.config import EvalSpec, TrainConfig
    from smolmix.train.curves import TeacherForcedEvaluator
    from smolmix.train.trainer import fit

    config = TrainConfig(model="in-memory", mixture="in-memory", steps=steps,
                         batch_size=batch_size, learning_rate=LR, warmup_steps=WARMUP,
                         order="mixture", save_checkpoints=False, eval=EvalSpec(every=10**9))
    dataset = Dataset.from_dict(examples)
    evaluator = TeacherForcedEvaluator(tokenizer.pad_token_id, {})
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        fit(model, tokenizer, dataset, evaluator, config, steps, Path(tmp),
            callbacks=list(callbacks))
    return start


def other_loss() -> str:
    """The side with the loss smolmix does not use now (TRL's, or the model's own)."""
    from trl import SFTTrainer

    from smolmix.train.trainer import _SFTTrainer

    return OWN if _SFTTrainer.compute_loss is SFTTrainer.compute_loss else FUSED


def set_loss(side: str) -> None:
    """smolmix's ``compute_loss`` replaced by transformers' (``OWN``) or TRL's (``FUSED``)."""
    from transformers import Trainer
    from trl import SFTTrainer

    from smolmix.train import trainer

    if side in (OWN, FUSED):
        trainer._SFTTrainer.compute_loss = (Trainer if side == OWN else SFTTrainer).compute_loss


def child_train(spec: dict) -> dict:
    from train_throughput import final_loss

    from smolmix.train.data import padded_batches

    model, tokenizer = load(Path(spec["model"]), lora=True)
    examples = training_examples(tokenizer, spec["steps"], spec["batch_size"])
    batches = padded_batches(examples, spec["batch_size"], tokenizer.pad_token_id)
    phases: dict[str, float] = {}
    if spec["side"] == HAND:
        start, stamps = hand_loop(model, batches, phases)
    else:
        set_loss(spec["side"])
        clock = StepClock()
        start = smolmix_fit(model, tokenizer, examples, spec["steps"], spec["batch_size"],
                            [clock.callback()])
        stamps = clock.stamps
    end = time.perf_counter()
    tokens = [int(b["attention_mask"].sum()) for b in batches]
    return {"whole_s": end - start, "whole_tokens": sum(tokens),
            "steady_s": stamps[-1] - stamps[0], "steady_tokens": sum(tokens[1:]),
            "steps_timed": len(stamps), "phases": phases,
            "padded_tokens": sum(int(b["input_ids"].numel()) for b in batches[1:]),
            "final_loss": final_loss(model, batches)}


# ---------------------------------------------------------------------------- profile

class PhaseTimers:
    """Wall-clock seconds spent in wrapped callables, counted while ``on``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.on = False
        self.started: dict[str, float] = {}

    def add(self, label: str, seconds: float) -> None:
        if self.on:
            self.seconds[label] = self.seconds.get(label, 0.0) + seconds

    def wrap(self, owner, attr: str, label: str, after=None) -> None:
        """Time ``owner.attr`` (``after(result)`` is called on what it returns)."""
        inner = getattr(owner, attr)
        timers = self

        def timed(*args, **kwargs):
            timers.started[label] = t0 = time.perf_counter()
            try:
                result = inner(*args, **kwargs)
            finally:
                timers.add(label, time.perf_counter() - t0)
            if after is not None:
                after(result)
            return result

        setattr(owner, attr, timed)


PHASES = ("data collation", "forward: backbone (30 layers + LoRA)",
          "forward: LM head + loss", "backward: LM head + loss", "backward: backbone + LoRA",
          "grad clipping", "optimizer + schedule", "trainer overhead (the rest)")


def child_profile(spec: dict) -> dict:
    """One side's steps 3..n by phase (wall clock) and torch.profiler's top ops over the same
    steps (step 1 is the training warm-up, step 2 the profiler's).

    Phases: the backbone's forward is timed around the ``LlamaModel``; "LM head + loss"
    forward is the rest of the PEFT model's forward; its backward runs from
    ``Tensor.backward`` until the gradient reaches the backbone's output (a hook)."""
    from torch.optim.lr_scheduler import LambdaLR
    from torch.profiler import ProfilerActivity, profile, schedule
    from transformers import TrainerCallback

    from smolmix.train import trainer as smolmix_trainer
    from smolmix.train.data import padded_batches

    model, tokenizer = load(Path(spec["model"]), lora=True)
    steps = spec["steps"]
    examples = training_examples(tokenizer, steps, spec["batch_size"])
    timers = PhaseTimers()

    def hook_output(output) -> None:
        def reached(grad):
            timers.add("backward: LM head + loss",
                       time.perf_counter() - timers.started["backward"])
        if output.last_hidden_state.requires_grad:
            output.last_hidden_state.register_hook(reached)

    timers.wrap(smolmix_trainer, "collate", "data collation")
    timers.wrap(model, "forward", "forward")
    timers.wrap(model.get_base_model().model, "forward", "forward: backbone (30 layers + LoRA)",
                after=hook_output)
    timers.wrap(torch.Tensor, "backward", "backward")
    timers.wrap(torch.nn.utils, "clip_grad_norm_", "grad clipping")
    timers.wrap(torch.optim.AdamW, "step", "optimizer step")
    timers.wrap(LambdaLR, "step", "lr schedule step")
    prof = profile(activities=[ProfilerActivity.CPU],
                   schedule=schedule(wait=0, warmup=1, active=steps - 2, repeat=1))
    stamps: list[float] = []

    def step_end(step: int) -> None:
        stamps.append(time.perf_counter())
        if step == 1:
            prof.start()
        elif step == steps:
            prof.stop()
            timers.on = False
        else:
            prof.step()
            timers.on = True

    if spec["side"] == HAND:
        hand_loop(model, padded_batches(examples, spec["batch_size"], tokenizer.pad_token_id),
                  {}, step_end)
    else:
        set_loss(spec["side"])

        class _Switch(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                step_end(state.global_step)

        smolmix_fit(model, tokenizer, examples, steps, spec["batch_size"], [_Switch()])
    wall = stamps[-1] - stamps[1]
    s = timers.seconds
    backbone_f = s.get(PHASES[1], 0.0)
    head_b = s.get(PHASES[3], 0.0)
    phases = [s.get(PHASES[0], 0.0), backbone_f, s.get("forward", 0.0) - backbone_f, head_b,
              s.get("backward", 0.0) - head_b, s.get("grad clipping", 0.0),
              s.get("optimizer step", 0.0) + s.get("lr schedule step", 0.0)]
    phases.append(wall - sum(phases))
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]
    return {"phases": dict(zip(PHASES, phases)), "steps": steps - 2, "wall_s": wall,
            "top_ops": [(e.key, e.self_cpu_time_total / 1e6, e.count,
                         e.self_cpu_time_total / total) for e in top]}


# ---------------------------------------------------------------------------- generation

def eval_prompts(per_task: int) -> list:
    from smolmix.evaluate.tasks import load_task, load_task_file
    from smolmix.models.prompting import CHAT

    return [p for spec in load_task_file(EXAMPLE / "eval_tasks.yaml")
            for p in load_task(spec).inputs(CHAT)[:per_task]]


def plain_generate(model, tokenizer, prompts, config, batch_size: int) -> list[list[int]]:
    """``model.generate`` over ``prompts`` in order, ``batch_size`` at a time, left padded by
    the tokenizer; the new tokens of each."""
    from smolmix.models.prompting import CHAT, prompt_ids

    ids = prompt_ids(tokenizer, prompts, CHAT)
    tokenizer.padding_side = "left"
    out = []
    with torch.inference_mode():
        for i in range(0, len(ids), batch_size):
            batch = tokenizer.pad({"input_ids": ids[i:i + batch_size]}, return_tensors="pt")
            new = model.generate(**batch, generation_config=config)
            out += new[:, batch["input_ids"].shape[1]:].tolist()
    return out


def child_generate(spec: dict) -> dict:
    from smolmix.inference.hf import _eos_ids, cut_at_eos, generate, greedy_config
    from smolmix.models.prompting import CHAT

    model, tokenizer = load(Path(spec["model"]), lora=False)
    model.eval()
    prompts = eval_prompts(spec["prompts_per_task"])
    eos = _eos_ids(model, tokenizer)
    config = greedy_config(spec["max_new_tokens"], eos, tokenizer.pad_token_id)
    plain_generate(model, tokenizer, prompts[:1], greedy_config(4, eos, 2), 1)  # warm-up
    results = {}
    for way in spec["order"]:
        start = time.perf_counter()
        if way == "smolmix generate":
            texts = generate(model, tokenizer, prompts, spec["max_new_tokens"],
                             batch_size=spec["batch_size"], prompt_format=CHAT)
            tokens = None
        else:
            new = plain_generate(model, tokenizer, prompts, config,
                                 1 if way.startswith("batch-1") else spec["batch_size"])
            cut = [cut_at_eos(t, eos) for t in new]
            texts = [tokenizer.decode(c, skip_special_tokens=True) for c in cut]
            tokens = sum(len(c) + (len(c) < len(t)) for c, t in zip(cut, new))
        results[way] = {"s": time.perf_counter() - start, "texts": texts, "tokens": tokens}
    return results


# ---------------------------------------------------------------------------- parent

def matmul_flops(size: int = 2048, trials: int = 3, repeats: int = 5) -> float:
    """fp32 FLOP/s of ``size``² @ ``size``² matmuls in this process: the best of ``trials``
    timings of ``repeats`` products each (after two untimed ones)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best


def spawn(kind: str, spec: dict, threads: int) -> tuple[dict, float]:
    """Run ``kind`` in a child process; its result and peak RSS (GiB)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        argv = [sys.executable, __file__, "--child", kind, "--spec", json.dumps(spec),
                "--result", str(result), "--threads", str(threads)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        err = proc.stderr.read().decode() if proc.stderr else ""
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{kind} {spec.get('side', '')} failed:\n{err[-3000:]}")
        return json.loads(result.read_text()), usage.ru_maxrss / 2**20


def rotate(items, k: int) -> list:
    return [*items[k % len(items):], *items[:k % len(items)]]


def report_training(runs: dict, flops: float, params: int) -> dict:
    rates = {side: {key: statistics.median(r[f"{key}_tokens"] / r[f"{key}_s"] for r in rs)
                    for key in ("steady", "whole")} for side, rs in runs.items()}
    base = rates[HAND]
    print("\n| side | steady tok/s (median) | ratio | whole-run tok/s | ratio | "
          "6N: % of matmul | 4N: % of matmul | peak RSS | final loss | steady runs (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for side, rs in runs.items():
        rate = rates[side]
        print(f"| {side} | {rate['steady']:,.0f} | {rate['steady'] / base['steady']:.2f}× | "
              f"{rate['whole']:,.0f} | {rate['whole'] / base['whole']:.2f}× | "
              f"{100 * 6 * params * rate['steady'] / flops:.0f}% | "
              f"{100 * 4 * params * rate['steady'] / flops:.0f}% | "
              f"{max(r['rss'] for r in rs):.2f} GiB | {rs[-1]['final_loss']:.4f} | "
              f"{', '.join(format(r['steady_s'], '.1f') for r in rs)} |")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=13, help="per side, the first a warm-up")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile-steps", type=int, default=7)
    parser.add_argument("--prompts-per-task", type=int, default=12)
    parser.add_argument("--gen-batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--gen-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) /
                        "smollm2-135m", help="the converted model folder (made if missing)")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        work = {"train": child_train, "profile": child_profile, "generate": child_generate}
        args.result.write_text(json.dumps(work[args.child](json.loads(args.spec))))
        return

    folder = str(model_folder(args.cache))
    with torch.device("meta"):
        from transformers import AutoConfig, AutoModelForCausalLM

        meta = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    params = sum(p.numel() for p in meta.parameters())  # tied embeddings counted once
    print(f"SmolLM2-135M-Instruct: N = {params:,} parameters; {args.steps} steps × batch "
          f"{args.batch_size} per side (step 1 a warm-up), {args.repeats} repeats, "
          f"{args.threads} torch threads", flush=True)
    spec = {"model": folder, "steps": args.steps, "batch_size": args.batch_size}
    sides = (HAND, "smolmix", other_loss())
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    flops = [matmul_flops()]
    for repeat in range(args.repeats):
        for side in rotate(sides, repeat):
            result, rss = spawn("train", {**spec, "side": side}, args.threads)
            runs[side].append({**result, "rss": rss})
            print(f"  repeat {repeat + 1} {side}: steady {result['steady_s']:.1f} s, whole "
                  f"{result['whole_s']:.1f} s, {rss:.2f} GiB", flush=True)
        flops.append(matmul_flops())
    peak = statistics.median(flops)
    first = runs[HAND][0]
    print(f"\nfp32 matmul 2048²: median {peak / 1e9:.1f} GFLOP/s "
          f"({', '.join(f'{f / 1e9:.1f}' for f in flops)}); timed tokens per run: steady "
          f"{first['steady_tokens']:,} (of {first['padded_tokens']:,} with padding), whole "
          f"{first['whole_tokens']:,}")
    rates = report_training(runs, peak, params)
    hand = {k: statistics.median(r["phases"][k] for r in runs[HAND])
            for k in runs[HAND][0]["phases"]}
    print(f"\nhand loop phases (median over runs, {args.steps - 1} steps): "
          + ", ".join(f"{k} {v:.1f} s" for k, v in hand.items()))

    profiles = {side: spawn("profile", {**spec, "side": side, "steps": args.profile_steps},
                            args.threads) for side in sides}
    steps = profiles[HAND][0]["steps"]
    print(f"\nstep profile: steps 3..{args.profile_steps} ({steps} steps), seconds per step, "
          "profiler on")
    print("| phase | " + " | ".join(sides) + " |")
    print("| --- | --- | --- | --- |")
    for phase in (*PHASES, "step"):
        cells = [(p["wall_s"] if phase == "step" else p["phases"][phase]) / steps
                 for p, _ in profiles.values()]
        print(f"| {phase} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    for side, (prof, rss) in profiles.items():
        print(f"\n{side} (profile run peak RSS {rss:.2f} GiB), top ops by self CPU time:")
        for name, seconds, count, share in prof["top_ops"]:
            print(f"- {name}: {seconds:.2f} s, {count} calls ({100 * share:.0f}%)")

    gen = {way: [] for way in WAYS}
    gen_spec = {"model": folder, "prompts_per_task": args.prompts_per_task,
                "batch_size": args.gen_batch_size, "max_new_tokens": args.max_new_tokens}
    for repeat in range(args.gen_repeats):
        result, rss = spawn("generate", {**gen_spec, "order": rotate(WAYS, repeat)},
                            args.threads)
        for way in WAYS:
            gen[way].append({**result[way], "rss": rss})
        print(f"  generation repeat {repeat + 1}: " + ", ".join(
            f"{w} {result[w]['s']:.1f} s" for w in WAYS) + f"; {rss:.2f} GiB", flush=True)
    reference = gen[WAYS[0]][0]
    tokens = reference["tokens"]
    base_s = statistics.median(r["s"] for r in gen[WAYS[0]])
    print(f"\ngeneration: {len(reference['texts'])} prompts, max_new_tokens "
          f"{args.max_new_tokens}, batch {args.gen_batch_size}, {tokens} generated tokens")
    print("| way | median s | tok/s | speed-up | texts differing from batch-1 (per repeat) |")
    print("| --- | --- | --- | --- | --- |")
    for way, rs in gen.items():
        seconds = statistics.median(r["s"] for r in rs)
        diff = [sum(a != b for a, b in zip(r["texts"], reference["texts"])) for r in rs]
        print(f"| {way} | {seconds:.1f} | {tokens / seconds:,.1f} | {base_s / seconds:.2f}× | "
              f"{', '.join(map(str, diff))} |")
    if args.json:
        args.json.write_text(json.dumps({"params": params, "flops": flops, "train": runs,
                                         "rates": rates, "profile": profiles,
                                         "generate": gen},
                                        indent=1))


if __name__ == "__main__":
    main()
