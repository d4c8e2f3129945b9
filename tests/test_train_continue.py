"""``continue_from`` and ``schedule_steps``: a run that continues an earlier one (a loop's next
stage) carries its optimizer state and step count, and both follow one learning-rate schedule
over all their steps, as one run of that length would."""

from __future__ import annotations

import json

import pytest
import torch

from smolmix.core.errors import SmolmixError
from smolmix.train.command import train
from smolmix.train.config import TrainConfig


def _rates(run) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return {r["step"]: r["learning_rate"] for r in rows if "learning_rate" in r}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_checkpoint, lab_mixture):
    tmp = tmp_path_factory.mktemp("continue")
    base = {"model": str(tiny_checkpoint), "mixture": str(lab_mixture), "batch_size": 4,
            "learning_rate": 1e-3, "warmup_steps": 2, "lr_scheduler": "cosine",
            "logging_steps": 1, "save_every": 6, "order": "shuffle"}
    train(TrainConfig(**base, steps=12), tmp / "whole", quiet=True)
    train(TrainConfig(**base, steps=6, schedule_steps=12), tmp / "first", quiet=True)
    checkpoint = tmp / "first" / "checkpoints" / "checkpoint-6"
    summary = train(TrainConfig(**{**base, "model": str(tmp / "first" / "model")}, steps=6,
                                schedule_steps=12, continue_from=str(checkpoint)),
                    tmp / "second", quiet=True)
    return tmp, summary, base


def test_the_stages_follow_one_schedule(runs):
    tmp, summary, _ = runs
    whole = _rates(tmp / "whole")
    assert sorted(whole) == list(range(1, 13))
    assert _rates(tmp / "first") == {s: r for s, r in whole.items() if s <= 6}
    assert _rates(tmp / "second") == pytest.approx({s: r for s, r in whole.items() if s > 6})
    assert summary["start_step"] == 6 and summary["steps"] == 6


def test_the_optimizer_state_carries_on(runs):
    tmp, _, _ = runs
    state = torch.load(tmp / "second" / "checkpoints" / "checkpoint-12" / "optimizer.pt",
                       weights_only=True)["state"]
    assert {int(v["step"]) for v in state.values()} == {12}


def test_continuing_from_something_that_is_not_a_checkpoint_is_a_user_error(runs):
    tmp, _, base = runs
    with pytest.raises(SmolmixError, match="not a complete smolmix training checkpoint"):
        train(TrainConfig(**base, steps=2, continue_from=str(tmp / "first" / "model")),
              tmp / "bad", quiet=True)
    assert not (tmp / "bad").exists()
