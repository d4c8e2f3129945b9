"""Regenerate this example's task data (deterministic) with reasoning-gym's procedural,
verifiable task generators.

    pip install reasoning-gym          # pure Python; no network needed once installed
    python examples/smollm2/make_data.py

Writes, beside this script:

- ``data/<task>.jsonl``: training sources, chat records (``task``, ``messages`` with the
  question as the user's turn, ``completion`` = the answer), one file per task, sizes from
  frequent to rare (``recipe.yaml`` mixes them);
- ``data/heldout.jsonl``: held-out records in the same form, for the per-task curves
  (``train.yaml``'s ``eval.data``) and ``smolmix diagnose``;
- ``data/eval/<task>.jsonl``: the same held-out questions as ``prompt`` / ``answer`` rows,
  for ``smolmix eval`` (``eval_tasks.yaml``).

No held-out question appears in the training sources; every answer is checked with the
task's own verifier (``score_answer``) before it is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import reasoning_gym

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SEED = 0
HELD_OUT = 50  # per task

# task -> (training examples, generator settings); small sizes keep answers short
# (at most ~20 tokens) and prompts under ~100 tokens.
TASKS: dict[str, tuple[int, dict]] = {
    "chain_sum": (600, {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2}),
    "spell_backward": (400, {"min_word_len": 3, "max_word_len": 6}),
    "letter_counting": (300, {"min_words": 3, "max_words": 6}),
    "word_sorting": (100, {"min_words": 3, "max_words": 5, "max_word_length": 8}),
}


def generate(task: str, count: int, settings: dict, seed: int) -> list[dict]:
    """``count`` distinct questions of ``task`` with verified answers."""
    dataset = reasoning_gym.create_dataset(task, size=count * 3, seed=seed, **settings)
    rows, seen = [], set()
    for entry in dataset:
        question, answer = entry["question"].strip(), str(entry["answer"]).strip()
        if question in seen:
            continue
        if dataset.score_answer(answer, entry) != 1.0:
            raise SystemExit(f"{task}: the reference answer {answer!r} does not verify")
        seen.add(question)
        rows.append({"question": question, "answer": answer})
        if len(rows) == count:
            return rows
    raise SystemExit(f"{task}: only {len(rows)} distinct questions, {count} wanted")


def record(task: str, row: dict) -> dict:
    return {"task": task, "messages": [{"role": "user", "content": row["question"]}],
            "completion": row["answer"]}


def write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)


def main() -> None:
    held_out = []
    for index, (task, (count, settings)) in enumerate(TASKS.items()):
        rows = generate(task, count + HELD_OUT, settings, SEED + index)
        train, test = rows[:count], rows[count:]
        write(DATA / f"{task}.jsonl", [record(task, r) for r in train])
        write(DATA / "eval" / f"{task}.jsonl",
              [{"prompt": r["question"], "answer": r["answer"]} for r in test])
        held_out += [record(task, r) for r in test]
        print(f"{task:<16} {len(train)} training, {len(test)} held-out")
    write(DATA / "heldout.jsonl", held_out)


if __name__ == "__main__":
    main()
