"""Regenerate the small example sources in examples/data/ (deterministic).

    python examples/make_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from smolmix.lab.tasks import TASKS

DATA = Path(__file__).parent / "data"


def write(name: str, rows: list[dict]) -> None:
    with open(DATA / name, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, sort_keys=True) + "\n" for r in rows)


def arithmetic(rng: random.Random, long: bool) -> dict:
    a, b, c = rng.randint(10, 99), rng.randint(10, 99), rng.randint(2, 9)
    total = (a + b) * c
    if long:
        steps = (f"First add {a} and {b}: the tens give {a // 10 * 10 + b // 10 * 10}, the units "
                 f"give {a % 10 + b % 10}, so {a} + {b} = {a + b}. Then multiply by {c}: "
                 f"{a + b} x {c} = {total}. Let me double-check: {total} / {c} = {a + b}, and "
                 f"{a + b} - {a} = {b}. ")
    else:
        steps = f"{a} + {b} = {a + b}; {a + b} x {c} = {total}. "
    return {"question": f"What is ({a} + {b}) x {c}?", "solution": f"{steps}#### {total}",
            "final": str(total)}


def main() -> None:
    DATA.mkdir(exist_ok=True)
    rng = random.Random(0)
    write("math_long.jsonl", [arithmetic(rng, long=True) for _ in range(300)])
    short = [arithmetic(rng, long=False) for _ in range(600)]
    write("math_short.jsonl", short)
    # A held-out set; 10 of its items leaked into the training data, for decontamination.
    seen = {r["question"] for r in short}
    candidates = (arithmetic(rng, long=False) for _ in range(200))
    fresh = [r for r in candidates if r["question"] not in seen]
    write("arithmetic_eval.jsonl", fresh[:90] + short[:10])
    zipf = {name: round(2000 / (rank + 1) ** 1.5) for rank, name in enumerate(TASKS)}
    rows = []
    for name, count in zipf.items():
        for _ in range(count):
            rec = TASKS[name].make(rng)
            rows.append({"task": rec.task, "prompt": rec.prompt, "completion": rec.completion})
    write("lab_tasks.jsonl", rows)
    chat = [{"messages": [{"role": "user", "content": f"Name a colour number {i}."}],
             "completion": rng.choice(["Red.", "Blue.", "Green.", "Teal.", "Amber."]),
             "task": "chat"} for i in range(400)]
    write("chat.jsonl", chat)


if __name__ == "__main__":
    main()
