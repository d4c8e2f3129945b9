"""Is ``smolmix train``'s training loop at least 0.9x the tokens/s of a hand-written loop?

Both sides train the same freshly initialised model (same seed) on the same batches in the
same order (a lab mixture, encoded once, batch size 32, drop_last) with the same optimiser
(AdamW, linear warmup/decay, gradient clipping at 1.0):

- ``smolmix``: :func:`smolmix.train.trainer.fit` (the transformers Trainer with smolmix's
  collator and
  per-task evaluation callback, as ``smolmix train`` runs it; no held-out tasks, no
  checkpoints);
- ``baseline``: a minimal PyTorch loop (forward, backward, clip, step, zero_grad).

Tokens are the non-padding tokens of the batches trained on. Each side runs ``--repeats``
times, alternating, in this process; the script prints the median tokens/s per side, their
ratio, and both sides' final training loss (the same training should end at the same loss).

Usage: python benchmarks/train_throughput.py [--sizes xl,wide] [--steps 150] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

WIDE = dict(hidden=256, layers=4, heads=8, intermediate=688)  # ~3M parameters


def batches_for(tokenizer, steps: int, batch_size: int, seed: int = 0) -> list[dict]:
    """``steps`` fixed batches of lab examples (three tasks), right-padded."""
    from smolmix.lab.tasks import TrainStream, get_task
    from smolmix.train.data import padded_batches
    from smolmix.train.encoding import encode_prompt_completion

    streams = [TrainStream(get_task(t), seed, set()) for t in ("copy", "reverse", "sort")]
    records = [streams[i % 3].draw() for i in range(steps * batch_size)]
    enc = encode_prompt_completion(tokenizer, [r.prompt for r in records],
                                   [r.completion for r in records])
    return padded_batches(enc, batch_size, tokenizer.pad_token_id)


def make_model(size: str, tokenizer):
    from smolmix.models.ladder import LadderSize, build_model, get_size

    ladder = LadderSize("wide", **WIDE) if size == "wide" else get_size(size)
    return build_model(ladder, tokenizer, seed=0, max_positions=64)


def hand_loop(model, batches: list[dict], lr: float, warmup: int) -> float:
    """Seconds of a minimal PyTorch training loop."""
    from transformers import get_linear_schedule_with_warmup

    start = time.perf_counter()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, warmup, len(batches))
    for batch in batches:
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def smolmix_loop(model, tokenizer, batches: list[dict], lr: float, warmup: int,
                 batch_size: int) -> float:
    """Seconds of :func:`smolmix.train.trainer.fit` on the same batches."""
    from datasets import Dataset

    from smolmix.train.config import EvalSpec, TrainConfig
    from smolmix.train.curves import TeacherForcedEvaluator
    from smolmix.train.trainer import fit

    rows = {"input_ids": [], "labels": []}
    for batch in batches:
        for ids, labels, mask in zip(batch["input_ids"], batch["labels"],
                                     batch["attention_mask"]):
            n = int(mask.sum())
            rows["input_ids"].append(ids[:n].tolist())
            rows["labels"].append(labels[:n].tolist())
    dataset = Dataset.from_dict(rows)
    evaluator = TeacherForcedEvaluator(tokenizer.pad_token_id, {})
    config = TrainConfig(model="in-memory", mixture="in-memory", steps=len(batches),
                         batch_size=batch_size, learning_rate=lr, warmup_steps=warmup,
                         order="mixture", save_checkpoints=False, eval=EvalSpec(every=10**9))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        fit(model, tokenizer, dataset, evaluator, config, len(batches), Path(tmp))
        return time.perf_counter() - start


def final_loss(model, batches: list[dict]) -> float:
    """The trained model's loss on the last batch."""
    model.eval()
    with torch.no_grad():
        return float(model(**batches[-1]).loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="xl,wide", help="ladder sizes and/or 'wide'")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from smolmix.lab.tasks import vocabulary
    from smolmix.models.ladder import build_tokenizer, parameter_count

    tokenizer = build_tokenizer(vocabulary())
    batches = batches_for(tokenizer, args.steps, args.batch_size)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    lr, warmup = 3e-3, 10
    print(f"{args.steps} steps × batch {args.batch_size}, {tokens} tokens, "
          f"{args.threads} torch threads")
    for size in args.sizes.split(","):
        times: dict[str, list[float]] = {"baseline": [], "smolmix": []}
        finals: dict[str, float] = {}
        for _ in range(args.repeats):
            model = make_model(size, tokenizer)
            times["baseline"].append(hand_loop(model, batches, lr, warmup))
            finals["baseline"] = final_loss(model, batches)
            model = make_model(size, tokenizer)
            times["smolmix"].append(smolmix_loop(model, tokenizer, batches, lr, warmup,
                                                 args.batch_size))
            finals["smolmix"] = final_loss(model, batches)
        params = parameter_count(make_model(size, tokenizer))
        rates = {side: tokens / statistics.median(t) for side, t in times.items()}
        print(f"{size:5s} ({params:,} params): baseline {rates['baseline']:>9,.0f} tok/s, "
              f"smolmix {rates['smolmix']:>9,.0f} tok/s, ratio "
              f"{rates['smolmix'] / rates['baseline']:.2f}x (target >= 0.9x); final loss on "
              f"the last batch: baseline {finals['baseline']:.4f}, smolmix "
              f"{finals['smolmix']:.4f}; runs (s): baseline "
              f"{[round(t, 2) for t in times['baseline']]}, smolmix "
              f"{[round(t, 2) for t in times['smolmix']]}")


if __name__ == "__main__":
    main()
