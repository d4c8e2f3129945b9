"""The whole flow offline: smolmix mix → train → eval → gap, on a locally built model."""

from __future__ import annotations

import json

from smolmix.cli import main
from smolmix.core.records import write_jsonl
from smolmix.lab.tasks import TrainStream, get_task

RECIPE = """seed: 0
budget: {{examples: 2400}}
sources:
  - {{name: copy, path: data/copy.jsonl, tags: {{cot: {cot}}}}}
  - {{name: reverse, path: data/reverse.jsonl, tags: {{cot: {cot}}}}}
strategy: [{strategy}]
"""


def test_mix_train_eval_gap_end_to_end(tmp_path, tiny_checkpoint, capsys):
    (tmp_path / "data").mkdir()
    for task in ("copy", "reverse"):
        stream = TrainStream(get_task(task), 0, set())
        write_jsonl((stream.draw() for _ in range(2000)), tmp_path / "data" / f"{task}.jsonl")
    # two students' data: the same tasks in two mixtures, tagged as two kinds of traces
    for cot, strategy in (("long", "natural"), ("short", "{weights: {copy: 3, reverse: 1}}")):
        (tmp_path / f"{cot}.yaml").write_text(RECIPE.format(cot=cot, strategy=strategy))
        assert main(["mix", str(tmp_path / f"{cot}.yaml"), "--out", str(tmp_path / f"mix-{cot}"),
                     "--quiet"]) == 0
        assert main(["train", "--model", str(tiny_checkpoint), "--mixture",
                     str(tmp_path / f"mix-{cot}"), "--out", str(tmp_path / f"run-{cot}"),
                     "--set", "steps=400", "--set", "batch_size=32", "--set",
                     "learning_rate=0.003", "--set", "warmup_steps=20", "--set",
                     "eval.holdout_per_task=50", "--set", "eval.every=200", "--quiet"]) == 0
        assert main(["eval", str(tmp_path / f"run-{cot}" / "model"), "--tasks",
                     "lab:copy,lab:reverse", "--out", str(tmp_path / f"eval-{cot}"),
                     "--mixture", str(tmp_path / f"mix-{cot}"), "--tag", "student=s",
                     "--tag", f"cot={cot}", "--quiet"]) == 0
    assert main(["gap", str(tmp_path / "eval-long"), str(tmp_path / "eval-short"), "--out",
                 str(tmp_path / "gap")]) == 0
    gap = json.loads((tmp_path / "gap" / "gaps.json").read_text())[0]
    scores = {cot: json.loads((tmp_path / f"eval-{cot}" / "scores.json").read_text())
              for cot in ("long", "short")}
    assert gap["p_high"] == scores["long"]["overall"]["mean"]
    assert gap["p_low"] == scores["short"]["overall"]["mean"]
    # training really learned something: copy is graded right by generation
    assert scores["long"]["tasks"]["copy"]["mean"] > 0.5, scores["long"]["tasks"]
    assert "long_cot" in capsys.readouterr().out
