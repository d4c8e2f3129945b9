"""Is ``smolmix mix`` at least 2x faster than the plain ``datasets`` way, in at most 2 GiB?

Builds one mixture two ways, each in its own process (so peak RSS is per side), and prints
records/s, peak RSS and the ratio:

- data: 5 JSONL sources (one task each; 30/25/20/15/10 % of ``--records``), prompts of 20-60
  and completions of 20-120 Zipf-distributed words from a 4,000-word vocabulary; about 2 %
  of the records repeat an earlier record (any source) with case/whitespace changes, and
  about 0.1 % contain an example of the 10,000-example eval set (whole, or a 15-word run of
  it). Generated once per size under ``--data`` (seeded) and reused.
- the mixture: every record in source order s1..s5, minus exact duplicates (normalised text
  seen earlier, first kept, across sources) and minus records sharing a 13-gram with the eval
  set; all remaining records once (N of them), mixed in natural shares.
- ``baseline``: ``datasets.load_dataset("json")`` per source -> ``filter`` (batched; the
  duplicate check uses ``hygiene.normalise`` + BLAKE2b and the contamination check uses
  ``hygiene.Decontaminator``, so both sides remove exactly the same records) ->
  ``interleave_datasets(probabilities=natural shares, seed=0,
  stopping_strategy="all_exhausted")`` -> ``select(range(N))`` -> ``save_to_disk``.
  The oversampling strategy means the first N rows can repeat a few rows of a source that
  ran out early and miss a few of another's last rows: same count and shares, not the
  identical multiset.
- ``smolmix``: ``build_mixture`` on a recipe with ``budget: {examples: N}``, ``strategy:
  [natural]``, ``max_repeats: 1``, exact dedup and 13-gram decontamination (every kept
  record once) -> ``save_to_disk`` format.

Time is each side's process from start to finish, imports included; N (from the hygiene
functions) is computed once when the data are generated, with their timings printed.

Usage: python benchmarks/mix_build.py [--records 1000000] [--data /tmp/smolmix-mix-bench]
       python benchmarks/mix_build.py --only baseline      (one side)
       python benchmarks/mix_build.py --hygiene             (time the hygiene functions only)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARES = (0.30, 0.25, 0.20, 0.15, 0.10)
TASKS = ("qa", "summarise", "math", "code", "chat")
EVAL_SIZE = 10_000
VOCAB_SIZE = 4_000
DUPLICATE_RATE = 0.02
PLANTED_RATE = 0.001
NGRAM = 13
SEED = 0


# ---------------------------------------------------------------- data


def _vocabulary(rng: random.Random) -> list[str]:
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "ch", "st"]
    words: set[str] = set()
    while len(words) < VOCAB_SIZE:
        words.add("".join(rng.choice(syllables) for _ in range(rng.choice((1, 2, 2, 3, 3, 4)))))
    return sorted(words)


class _Writer:
    """Random prompts and completions of Zipf-distributed words."""

    def __init__(self, seed: int) -> None:
        import numpy as np

        self.rng = random.Random(seed)
        self.words = _vocabulary(self.rng)
        self.np_rng = np.random.default_rng(seed)
        weights = 1.0 / np.arange(1, VOCAB_SIZE + 1)
        self.p = weights / weights.sum()
        self.pool: list[int] = []

    def _draw(self, count: int) -> list[str]:
        if len(self.pool) < count:
            self.pool.extend(self.np_rng.choice(VOCAB_SIZE, size=1_000_000, p=self.p).tolist())
        ids = self.pool[-count:]
        del self.pool[-count:]
        return [self.words[i] for i in ids]

    def sentence(self, low: int, high: int, end: str) -> str:
        words = self._draw(self.rng.randint(low, high))
        words[0] = words[0].capitalize()
        return " ".join(words) + end

    def example(self, task: str) -> dict:
        return {"task": task, "prompt": self.sentence(20, 60, "?"),
                "completion": self.sentence(20, 120, ".")}


def _variant(rng: random.Random, text: str) -> str:
    """The same text after normalisation: other case, other whitespace."""
    style = rng.randrange(4)
    if style == 0:
        return text.upper()
    if style == 1:
        return "  " + text.replace(" ", "  ") + " "
    if style == 2:
        return text.title().replace(" ", "\t", 3)
    return text.lower().replace(" ", " \n", 2)


def _plant(rng: random.Random, record: dict, ev: dict) -> dict:
    """Put an eval example into a training record: whole, or a 15-word run of it."""
    if rng.random() < 0.5:
        return {**record, "prompt": ev["prompt"], "completion": ev["completion"]}
    words = (ev["prompt"] + " " + ev["completion"]).split()
    start = rng.randrange(len(words) - 15)
    run = " ".join(words[start:start + 15])
    return {**record, "completion": record["completion"] + " " + _variant(rng, run)}


def source_sizes(records: int) -> list[int]:
    sizes = [int(records * s) for s in SHARES]
    sizes[0] += records - sum(sizes)
    return sizes


def generate(root: Path, records: int) -> None:
    """Write s1..s5.jsonl and eval.jsonl under ``root``."""
    writer = _Writer(SEED)
    rng = random.Random(SEED + 1)
    evals = [writer.example("eval") for _ in range(EVAL_SIZE)]
    with open(root / "eval.jsonl", "w") as fh:
        fh.writelines(json.dumps(e) + "\n" for e in evals)
    earlier: list[dict] = []
    for k, (task, size) in enumerate(zip(TASKS, source_sizes(records)), start=1):
        with open(root / f"s{k}.jsonl", "w") as fh:
            for _ in range(size):
                roll = rng.random()
                if roll < DUPLICATE_RATE and earlier:
                    copy = rng.choice(earlier)
                    record = {"task": task, "prompt": _variant(rng, copy["prompt"]),
                              "completion": _variant(rng, copy["completion"])}
                else:
                    record = writer.example(task)
                    if roll > 1 - PLANTED_RATE:
                        record = _plant(rng, record, rng.choice(evals))
                    if len(earlier) < 50_000 and rng.random() < 0.05:
                        earlier.append(record)  # duplicates copy from a bounded sample
                fh.write(json.dumps(record) + "\n")


def read_texts(paths: list[Path]) -> list[str]:
    texts = []
    for path in paths:
        with open(path) as fh:
            for line in fh:
                row = json.loads(line)
                texts.append(row["prompt"] + "\n" + row["completion"])
    return texts


def time_hygiene(root: Path) -> dict:
    """Time the hygiene functions on all training texts; count the removals."""
    from smolmix.mix.hygiene import Decontaminator, exact_duplicates, scan

    texts = read_texts(source_paths(root))
    evals = read_texts([root / "eval.jsonl"])
    seconds = {}

    def timed(name, call):
        start = time.perf_counter()
        result = call()
        seconds[name] = round(time.perf_counter() - start, 2)
        return result

    dups = timed("exact_dedup_s", lambda: exact_duplicates(texts))
    decon = timed("decon_index_s", lambda: Decontaminator(evals, n=NGRAM))
    dirty = timed("decon_s", lambda: decon.contaminated(texts))
    both = timed("scan_s", lambda: scan(texts, decon))
    if both != (dups, dirty):
        raise SystemExit("hygiene.scan disagrees with exact_duplicates + contaminated")
    removed = len(set(dups) | set(dirty))
    return {"records": len(texts), "duplicates": len(dups), "contaminated": len(dirty),
            "kept": len(texts) - removed, **seconds}


def source_paths(root: Path) -> list[Path]:
    return [root / f"s{k}.jsonl" for k in range(1, len(TASKS) + 1)]


def prepare(data: Path, records: int, retime: bool = False) -> tuple[Path, dict]:
    """The data directory for this size (generated if missing) and its counts and timings."""
    root = data / f"n{records}"
    args = ["--data", str(data), "--records", str(records)]
    if not (root / "complete").exists():
        root.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        _child(["--side", "generate", *args])
        (root / "complete").touch()
        print(f"generated {records} records in {time.perf_counter() - start:.0f} s under {root}")
    meta_path = root / "meta.json"
    if retime or not meta_path.exists():
        meta_path.write_text(json.dumps(_child(["--side", "hygiene", *args]), indent=1))
    return root, json.loads(meta_path.read_text())


# ---------------------------------------------------------------- the two sides


def baseline(root: Path, kept: int, out: Path) -> int:
    import hashlib

    import datasets

    from smolmix.mix.hygiene import Decontaminator, normalise

    datasets.disable_progress_bars()
    decon = Decontaminator(read_texts([root / "eval.jsonl"]), n=NGRAM)
    seen: set[bytes] = set()

    def clean(batch: dict) -> list[bool]:
        texts = [p + "\n" + c for p, c in zip(batch["prompt"], batch["completion"])]
        dirty = set(decon.contaminated(texts))
        keep = []
        for i, text in enumerate(texts):
            key = hashlib.blake2b(normalise(text).encode(), digest_size=16).digest()
            keep.append(key not in seen and i not in dirty)
            seen.add(key)
        return keep

    cache = out.parent / "hf-cache"
    parts = [datasets.load_dataset("json", data_files=str(p), split="train", cache_dir=str(cache))
             for p in source_paths(root)]
    parts = [part.filter(clean, batched=True, batch_size=10_000) for part in parts]
    sizes = [len(part) for part in parts]
    mixed = datasets.interleave_datasets(parts, probabilities=[s / sum(sizes) for s in sizes],
                                         seed=0, stopping_strategy="all_exhausted")
    mixed.select(range(kept)).save_to_disk(str(out))
    return sum(sizes)


def write_recipe(root: Path, kept: int, path: Path) -> None:
    sources = "\n".join(f"  - {{name: s{k}, path: {json.dumps(str(p.resolve()))}}}"
                        for k, p in enumerate(source_paths(root), start=1))
    path.write_text(
        f"seed: 0\nbudget: {{examples: {kept}}}\nmax_repeats: 1\nsources:\n{sources}\n"
        "strategy: [natural]\n"
        f"hygiene: {{dedup: exact, decontaminate: [{{name: eval, path: "
        f"{json.dumps(str((root / 'eval.jsonl').resolve()))}}}], ngram: {NGRAM}}}\n")


def smolmix(root: Path, kept: int, out: Path) -> int:
    try:
        from smolmix.mix.command import build_mixture
    except ImportError as exc:
        raise SystemExit(f"smolmix side unavailable: cannot import "
                         f"smolmix.mix.command.build_mixture ({exc})") from None
    recipe = out.parent / "recipe.yaml"
    write_recipe(root, kept, recipe)
    build_mixture(recipe, out, quiet=True)
    return kept


def run_side(side: str, data: Path, records: int) -> dict:
    """Body of a side's process: build, then report time and peak RSS as JSON."""
    start = time.perf_counter()
    root = data / f"n{records}"
    if side == "generate":
        generate(root, records)
        return {}
    if side == "hygiene":
        return time_hygiene(root)
    kept = json.loads((root / "meta.json").read_text())["kept"]
    with tempfile.TemporaryDirectory(dir=data) as tmp:
        out = Path(tmp) / "mixture"
        {"baseline": baseline, "smolmix": smolmix}[side](root, kept, out)
        seconds = time.perf_counter() - start
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        from datasets import load_from_disk

        written = len(load_from_disk(str(out)))
    return {"side": side, "records": written, "expected": kept, "seconds": round(seconds, 2),
            "records_per_s": round(written / seconds), "peak_rss_mib": round(rss_kib / 1024)}


def _child(args: list[str]) -> dict:
    """Run this script in a fresh process; its last stdout line is a JSON report."""
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    done = subprocess.run([sys.executable, __file__, *args], env=env, text=True,
                          stdout=subprocess.PIPE)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path,
                        default=Path(tempfile.gettempdir()) / "smolmix-mix-bench")
    parser.add_argument("--only", choices=("baseline", "smolmix"), help="run one side")
    parser.add_argument("--hygiene", action="store_true", help="time the hygiene functions")
    parser.add_argument("--side", choices=("generate", "hygiene", "baseline", "smolmix"),
                        help=argparse.SUPPRESS)  # internal: the body of one child process
    args = parser.parse_args()
    if args.side:
        print(json.dumps(run_side(args.side, args.data, args.records)))
        return
    root, meta = prepare(args.data, args.records, retime=args.hygiene)
    print(f"data {root}: {meta['records']} records, {meta['duplicates']} duplicates, "
          f"{meta['contaminated']} contaminated, {meta['kept']} kept")
    print(f"hygiene alone: exact_duplicates {meta['exact_dedup_s']} s, Decontaminator() "
          f"{meta['decon_index_s']} s, contaminated {meta['decon_s']} s, both in one "
          f"scan() {meta['scan_s']} s")
    if args.hygiene:
        return
    results = {}
    for side in [args.only] if args.only else ["baseline", "smolmix"]:
        results[side] = _child(["--side", side, "--data", str(args.data), "--records",
                                str(args.records)])
        r = results[side]
        print(f"{side:9s} {r['records']:>9d} records  {r['seconds']:8.1f} s  "
              f"{r['records_per_s']:>8d} records/s  peak RSS {r['peak_rss_mib']:>6d} MiB")
        if r["records"] != r["expected"]:
            print(f"  warning: wrote {r['records']} records, expected {r['expected']}")
    if len(results) == 2:
        ratio = results["smolmix"]["records_per_s"] / results["baseline"]["records_per_s"]
        print(f"smolmix vs baseline: {ratio:.2f}x records/s (target >= 2x), peak RSS "
              f"{results['smolmix']['peak_rss_mib']} MiB (target <= 2048 MiB)")


if __name__ == "__main__":
    main()
