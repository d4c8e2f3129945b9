"""What does ``smolmix diagnose`` cost: on a lab checkpoint (target ≤ 30 s) and on a model
with SmolLM2-135M's configuration (it must complete on this CPU; peak RSS stated)?

1. ``smolmix diagnose`` on each natural cell of a finished lab run (``--lab``, default
   ``runs/rare-tasks-quick``): all 13 tasks, the lab's held-out sets (100 examples, one batch
   of 50 × 2), interference, retention (20 + 20 steps) for each task, neurons, verdicts.
2. A SmolLM2-135M-sized model (random weights, lab tokenizer) trained 2 steps by
   ``smolmix train`` on two lab tasks, then ``smolmix diagnose --max-batches 1``.

Each command runs in its own process; wall time and peak RSS (``wait4``) per command.

Usage: python benchmarks/diagnose_cost.py [--lab runs/rare-tasks-quick] [--skip-135m]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from smollm2_memory import build, measure  # noqa: E402  (the same model, mixture, measure)


def two_task_mixture(work: Path) -> Path:
    """reverse (from :func:`build`) and sort, 900 examples each."""
    from smolmix.core.records import write_jsonl
    from smolmix.lab.tasks import TrainStream, get_task
    from smolmix.mix.command import build_mixture

    stream = TrainStream(get_task("sort"), 0, set())
    write_jsonl((stream.draw() for _ in range(1000)), work / "sort.jsonl")
    (work / "two.yaml").write_text("seed: 0\nbudget: {examples: 1800}\nsources:\n"
                                   "  - {name: reverse, path: reverse.jsonl}\n"
                                   "  - {name: sort, path: sort.jsonl}\n"
                                   "strategy: [uniform]\n")
    build_mixture(work / "two.yaml", work / "two-mixture", quiet=True)
    return work / "two-mixture"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", type=Path, default=Path("runs/rare-tasks-quick"))
    parser.add_argument("--skip-135m", action="store_true")
    args = parser.parse_args()
    smolmix = [sys.executable, "-m", "smolmix.cli"]
    cells = sorted((args.lab / "cells").glob("natural-*"))
    if not cells:
        raise SystemExit(f"no natural cells under {args.lab}/cells: run smolmix lab first")
    for cell in cells:
        rss, secs = measure([*smolmix, "diagnose", str(cell), "--batch-size", "50",
                             "--quiet"])
        print(f"diagnose {cell.name:<20} {secs:5.1f} s  peak RSS {rss:.2f} GiB "
              "(target <= 30 s)")
    if args.skip_135m:
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, _ = build(work)
        mixture = two_task_mixture(work)
        run = work / "run"
        rss, secs = measure([*smolmix, "train", "--model", str(model), "--mixture",
                             str(mixture), "--out", str(run), "--set", "steps=2", "--set",
                             "batch_size=4", "--set", "max_length=64", "--set",
                             "eval.holdout_per_task=16", "--set", "eval.every=1",
                             "--set", "learning_rate=1e-4", "--quiet"])
        print(f"train 135M (2 steps, checkpoints at 1 and 2): {secs:.0f} s, peak RSS {rss:.2f} GiB")
        rss, secs = measure([*smolmix, "diagnose", str(run), "--max-batches", "1",
                             "--batch-size", "8", "--retention-steps", "2", "--quiet"])
        print(f"diagnose 135M (--max-batches 1, batch 8, 2 checkpoints): {secs:.0f} s, "
              f"peak RSS {rss:.2f} GiB")


if __name__ == "__main__":
    main()
