"""Is smolmix's batched greedy ``generate`` at least 8x faster than one prompt at a time?

Both sides decode the same prompts greedily with the same ladder model, in one process:

- model: a ladder model (``--size``, default ``m``) over the lab tokenizer, trained for
  ``--train-steps`` steps (batch 32, AdamW 3e-3) on all lab tasks mixed evenly, so its
  continuations are partly right and stop at EOS the way a real eval's do (``--train-steps 0``
  keeps the random initialisation).
- prompts: ``make_eval_set`` of every lab task at its default complexity, ``--per-task`` each
  (13 tasks x 40 = 520 prompts by default, 4 to 12 tokens long), in task order.
- ``max_new_tokens``: the longest reference completion in tokens + 1 (room for EOS).
- ``baseline``: a loop calling ``model.generate(ids, max_new_tokens, do_sample=False,
  pad_token_id)`` on one prompt at a time (batch size 1, KV cache on), continuation cut at EOS.
- ``smolmix``: ``smolmix.inference.hf.generate`` for each of ``--batch-sizes``.

Every repeat checks that the smolmix texts equal the baseline texts, prompt for prompt. Time is
the wall time of the whole call (tokenization and decoding included), median of ``--repeats``
repeats, the sides interleaved within each repeat so machine noise hits both. Tokens/s counts
the generated text's tokens (EOS not counted), the same number for both sides. Each
``--threads`` setting (``torch.set_num_threads``) is measured separately; the ratio is taken at
the same thread count
in the table, and the headline compares each side at its fastest setting.

Usage: python benchmarks/eval_generate.py [--size m] [--per-task 40] [--repeats 3]
                                           [--batch-sizes 16,64,256] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from smolmix.inference.hf import generate  # noqa: E402
from smolmix.lab.tasks import TASKS, make_eval_set, vocabulary  # noqa: E402
from smolmix.models.ladder import build_model, build_tokenizer, get_size, parameter_count  # noqa: E402
from smolmix.train.data import pad_batch  # noqa: E402
from smolmix.train.encoding import encode_prompt_completion  # noqa: E402

TARGET = 8.0


def trained_model(size: str, steps: int, tokenizer):
    model = build_model(get_size(size), tokenizer, seed=0)
    rng = random.Random(0)
    tasks = list(TASKS.values())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        recs = [rng.choice(tasks).make(rng) for _ in range(32)]
        enc = encode_prompt_completion(tokenizer, [r.prompt for r in recs],
                                       [r.completion for r in recs])
        loss = model(**pad_batch(enc["input_ids"], enc["labels"], tokenizer.pad_token_id)).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


def baseline(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    eos = tokenizer.eos_token_id
    texts = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
            out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            new = out[0, ids.shape[1]:].tolist()
            if eos in new:
                new = new[: new.index(eos)]
            texts.append(tokenizer.decode(new, skip_special_tokens=True))
    return texts


def timed(call):
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="m", help="ladder size (default m)")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--per-task", type=int, default=40, help="prompts per lab task")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", default="16,64,256")
    parser.add_argument("--threads", default="1,2", help="torch thread counts to measure")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]

    torch.set_num_threads(max(thread_counts))
    tokenizer = build_tokenizer(vocabulary())
    start = time.perf_counter()
    model = trained_model(args.size, args.train_steps, tokenizer)
    records = [r for task in TASKS.values() for r in make_eval_set(task, args.per_task, seed=0)]
    prompts = [r.prompt for r in records]
    max_new = 1 + max(len(ids) for ids in tokenizer([r.completion for r in records],
                                                    add_special_tokens=False)["input_ids"])
    print(f"model {args.size} ({parameter_count(model):,} params, {args.train_steps} training "
          f"steps, {time.perf_counter() - start:.1f} s); {len(prompts)} prompts, "
          f"max_new_tokens {max_new}; torch {torch.__version__}, {os.cpu_count()} CPUs")

    reference = baseline(model, tokenizer, prompts, max_new)  # warm-up, and the reference
    right = sum(TASKS[r.task].check(r.prompt, t) for r, t in zip(records, reference, strict=True))
    gen_tokens = sum(len(ids) for ids in tokenizer(reference, add_special_tokens=False)
                     ["input_ids"])
    print(f"reference: {right}/{len(prompts)} continuations right, {gen_tokens} generated "
          f"tokens (EOS not counted)")

    best: dict[str, tuple[float, str]] = {}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        times: dict[str, list[float]] = {"baseline": []} | {f"bs={b}": [] for b in batch_sizes}
        for _ in range(args.repeats):
            seconds, texts = timed(lambda: baseline(model, tokenizer, prompts, max_new))
            assert texts == reference, "baseline is not deterministic"
            times["baseline"].append(seconds)
            for b in batch_sizes:
                seconds, texts = timed(
                    lambda b=b: generate(model, tokenizer, prompts, max_new, batch_size=b))
                mismatches = sum(a != c for a, c in zip(texts, reference, strict=True))
                if mismatches:
                    raise SystemExit(f"bs={b}: {mismatches} texts differ from the baseline")
                times[f"bs={b}"].append(seconds)
        base = statistics.median(times["baseline"])
        print(f"\ntorch threads {threads} (median of {args.repeats}; all texts identical):")
        for name, values in times.items():
            med = statistics.median(values)
            print(f"  {name:9s} {med:7.3f} s  {len(prompts) / med:8.0f} prompts/s  "
                  f"{gen_tokens / med:8.0f} tokens/s  x{base / med:5.1f}  "
                  f"[{', '.join(f'{v:.3f}' for v in values)}]")
            side = "baseline" if name == "baseline" else "smolmix"
            if side not in best or med < best[side][0]:
                best[side] = (med, f"{name}, {threads} thread{'s' * (threads > 1)}")
    (base, base_config), (ours, our_config) = best["baseline"], best["smolmix"]
    print(f"\nsmolmix at its fastest ({our_config}: {len(prompts) / ours:.0f} prompts/s) vs "
          f"baseline at its fastest ({base_config}: {len(prompts) / base:.0f} prompts/s): "
          f"{base / ours:.1f}x (target >= {TARGET:g}x)")


if __name__ == "__main__":
    main()
