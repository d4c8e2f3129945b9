"""Peak memory of ``smolmix eval`` and ``smolmix train --lora`` on a SmolLM2-135M-sized model.

Builds a Llama model with SmolLM2-135M's configuration (30 layers, hidden 576, 9 heads / 3
KV heads, intermediate 1536, vocabulary 49,152, tied embeddings; random weights, saved as
safetensors) with the lab's tokenizer, and a lab mixture; then runs each command in its own
process and reports that process's peak RSS (``wait4``) and wall time. Target (issue 4):
each at most 8 GiB on this CPU.

Usage: python benchmarks/smollm2_memory.py [--work DIR] [--steps 5] [--max-length 512]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                    num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                    max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
                    tie_word_embeddings=True, hidden_act="silu")


def build(work: Path) -> tuple[Path, Path]:
    """The model folder and a mixture folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from smolmix.core.records import write_jsonl
    from smolmix.lab.tasks import TrainStream, get_task, vocabulary
    from smolmix.mix.command import build_mixture
    from smolmix.models.ladder import build_tokenizer

    tokenizer = build_tokenizer(vocabulary())
    torch.manual_seed(0)
    config = LlamaConfig(**SMOLLM2_135M, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    model_dir = work / "smollm2-135m-random"
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    print(f"model: {params / 1e6:.1f}M parameters (SmolLM2-135M configuration, random weights)")
    del model
    stream = TrainStream(get_task("reverse"), 0, set())
    write_jsonl((stream.draw() for _ in range(2000)), work / "reverse.jsonl")
    (work / "recipe.yaml").write_text("seed: 0\nbudget: {examples: 1900}\nsources:\n"
                                      "  - {name: reverse, path: reverse.jsonl}\n"
                                      "strategy: [natural]\n")
    build_mixture(work / "recipe.yaml", work / "mixture", quiet=True)
    return model_dir, work / "mixture"


def measure(argv: list[str]) -> tuple[float, float]:
    """Peak RSS (GiB) and wall seconds of one command in its own process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv[2:5])} failed:\n{err[-2000:]}")
    return usage.ru_maxrss / 2**20, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model, mixture = build(work)
        smolmix = [sys.executable, "-m", "smolmix.cli"]
        rss, secs = measure([*smolmix, "eval", str(model), "--tasks", "lab:reverse,lab:sort",
                             "--out", str(work / "eval"), "--batch-size", "64",
                             "--max-new-tokens", "32", "--quiet"])
        print(f"smolmix eval (2 lab tasks × 200 prompts, 32 new tokens, batch 64): "
              f"peak RSS {rss:.2f} GiB, {secs:.0f} s (target <= 8 GiB)")
        for checkpointing in (False, True):
            out = work / f"train-gc{int(checkpointing)}"
            rss, secs = measure([*smolmix, "train", "--model", str(model), "--mixture",
                                 str(mixture), "--out", str(out), "--set", "lora.r=8",
                                 "--set", f"steps={args.steps}", "--set",
                                 f"batch_size={args.batch_size}", "--set", "packing=true",
                                 "--set", f"max_length={args.max_length}", "--set",
                                 f"gradient_checkpointing={str(checkpointing).lower()}",
                                 "--set", "eval.holdout_per_task=16", "--set",
                                 f"eval.every={args.steps}", "--quiet"])
            print(f"smolmix train --lora (r=8, {args.steps} steps, batch {args.batch_size} "
                  f"packed rows of {args.max_length} tokens, gradient checkpointing "
                  f"{'on' if checkpointing else 'off'}): peak RSS {rss:.2f} GiB, {secs:.0f} s "
                  "(target <= 8 GiB)")

if __name__ == "__main__":
    main()
