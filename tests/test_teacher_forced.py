import random

import pytest
import torch
from helpers import fit_in_memory
from transformers import AutoModelForCausalLM

from smolmix.core.records import Record
from smolmix.lab.tasks import TASKS, make_eval_set
from smolmix.models.ladder import build_model, get_size
from smolmix.train.curves import TeacherForcedEvaluator
from smolmix.train.data import pad_batch
from smolmix.train.encoding import IGNORE_INDEX, encode_prompt_completion


def test_labels_mask_the_prompt_and_end_with_eos(tokenizer):
    enc = encode_prompt_completion(tokenizer, ["sort 3 1 ="], [" 1 3"])
    ids, labels = enc["input_ids"][0], enc["labels"][0]
    assert tokenizer.decode(ids) == "sort 3 1 = 1 3 </s>"
    assert labels[:4] == [IGNORE_INDEX] * 4
    assert labels[4:] == ids[4:] and labels[-1] == tokenizer.eos_token_id


def _greedy_exact_match(model, tokenizer, records):
    hits = []
    for rec in records:
        prompt = torch.tensor([tokenizer(rec.prompt, add_special_tokens=False)["input_ids"]])
        target = tokenizer(rec.completion, add_special_tokens=False)["input_ids"]
        out = model.generate(prompt, max_new_tokens=len(target) + 3, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
        new = out[0, prompt.shape[1]:].tolist()
        hits.append(new[: len(target) + 1] == [*target, tokenizer.eos_token_id])
    return hits


def test_teacher_forced_exact_match_equals_greedy_decoding(tokenizer, partly_trained_copy):
    # A briefly trained model gets some examples right and some wrong, so the check has teeth.
    path, held_out = partly_trained_copy
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    evaluator = TeacherForcedEvaluator.from_records(tokenizer, {"copy": held_out}, batch_size=7)
    score = evaluator(model)["copy"]
    greedy = _greedy_exact_match(model, tokenizer, held_out)
    assert 0 < sum(greedy) < len(greedy), "want a partly trained model"
    assert score.exact_match == sum(greedy) / len(greedy)
    assert score.count == len(held_out)


def test_per_task_loss_is_the_mean_over_every_target_token(tokenizer):
    # Several examples of different lengths in padded batches of 2: the task's loss is the
    # token-weighted mean (each example's summed token loss over all target tokens), not the
    # mean of the examples' means, and padding adds nothing.
    model = build_model(get_size("xs"), tokenizer, seed=0).eval()
    recs = {"sort": [Record("sort", "sort 3 1 2 =", " 1 2 3"),
                     Record("sort", "sort 9 =", " 9"),
                     Record("sort", "sort 5 4 3 2 1 0 =", " 0 1 2 3 4 5")],
            "rotate": [Record("rotate", "rotate 4 5 =", " 5 4"),
                       Record("rotate", "rotate 1 2 3 4 5 6 7 =", " 2 3 4 5 6 7 1")]}
    scores = TeacherForcedEvaluator.from_records(tokenizer, recs, batch_size=2)(model)
    for task, task_recs in recs.items():
        summed, tokens, means = 0.0, 0, []
        for rec in task_recs:  # one example at a time: no padding at all
            enc = encode_prompt_completion(tokenizer, [rec.prompt], [rec.completion])
            count = sum(1 for t in enc["labels"][0][1:] if t != IGNORE_INDEX)
            with torch.no_grad():
                loss = model(**pad_batch(enc["input_ids"], enc["labels"],
                                         tokenizer.pad_token_id)).loss.item()
            summed, tokens = summed + loss * count, tokens + count
            means.append(loss)
        assert scores[task].loss == pytest.approx(summed / tokens, abs=1e-5)
        assert abs(scores[task].loss - sum(means) / len(means)) > 1e-3  # weighting matters
        assert scores[task].count == len(task_recs)


def test_training_writes_per_task_curves(tokenizer, tmp_path):
    held_out = {t: make_eval_set(TASKS[t], 8, seed=0) for t in ("copy", "sort")}
    rng = random.Random(0)
    recs = [TASKS[t].make(rng) for t in ("copy", "sort") * 40]
    model = build_model(get_size("xxs"), tokenizer, seed=0)
    curves = fit_in_memory(model, tokenizer, recs, held_out, tmp_path, steps=10, every=4,
                           batch_size=8, warmup_steps=1, learning_rate=3e-3)
    steps = sorted({r["step"] for r in curves})
    assert steps == [0, 4, 8, 10]
    assert {r["task"] for r in curves} == {"copy", "sort"}
    lines = (tmp_path / "curves.jsonl").read_text().splitlines()
    assert len(lines) == len(curves) == 8
    first = {r["task"]: r["loss"] for r in curves if r["step"] == 0}
    last = {r["task"]: r["loss"] for r in curves if r["step"] == 10}
    assert all(last[t] < first[t] for t in first), "training must lower held-out loss"
