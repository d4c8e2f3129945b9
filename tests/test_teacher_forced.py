import random

import torch

from smolmix.encoding import IGNORE_INDEX, encode_prompt_completion
from smolmix.evaluate.teacher_forced import TeacherForcedEvaluator, pad_batch
from smolmix.lab.tasks import TASKS, make_eval_set
from smolmix.models import build_model, get_size
from smolmix.records import Record
from smolmix.train import TrainConfig, train


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


def test_teacher_forced_exact_match_equals_greedy_decoding(tokenizer, tmp_path):
    # A briefly trained model gets some examples right and some wrong, so the check has teeth.
    task = TASKS["copy"]
    held_out = make_eval_set(task, 40, seed=0, n=3)
    rng = random.Random(1)
    train_recs = [task.make(rng, 3) for _ in range(120 * 16)]
    model = build_model(get_size("xs"), tokenizer, seed=0)
    config = TrainConfig(steps=120, batch_size=16, eval_every=120, learning_rate=1e-2,
                         warmup_steps=5)
    train(model, tokenizer, train_recs, {"copy": held_out}, config, tmp_path)
    model.eval()
    evaluator = TeacherForcedEvaluator(tokenizer, {"copy": held_out}, batch_size=7)
    score = evaluator(model)["copy"]
    greedy = _greedy_exact_match(model, tokenizer, held_out)
    assert 0 < sum(greedy) < len(greedy), "want a partly trained model"
    assert score.exact_match == sum(greedy) / len(greedy)
    assert score.count == len(held_out)


def test_per_task_loss_matches_model_loss(tokenizer):
    model = build_model(get_size("xs"), tokenizer, seed=0).eval()
    recs = {"sort": [Record("sort", "sort 3 1 2 =", " 1 2 3")],
            "rotate": [Record("rotate", "rotate 4 5 =", " 5 4")]}
    scores = TeacherForcedEvaluator(tokenizer, recs)(model)
    for task, [rec] in recs.items():
        enc = encode_prompt_completion(tokenizer, [rec.prompt], [rec.completion])
        batch = pad_batch(enc["input_ids"], enc["labels"], tokenizer.pad_token_id)
        with torch.no_grad():
            expected = model(**batch).loss.item()
        assert abs(scores[task].loss - expected) < 1e-5


def test_training_writes_per_task_curves(tokenizer, tmp_path):
    held_out = {t: make_eval_set(TASKS[t], 8, seed=0) for t in ("copy", "sort")}
    rng = random.Random(0)
    recs = [TASKS[t].make(rng) for t in ("copy", "sort") * 40]
    model = build_model(get_size("xxs"), tokenizer, seed=0)
    curves = train(model, tokenizer, recs, held_out,
                   TrainConfig(steps=10, batch_size=8, eval_every=4, warmup_steps=1), tmp_path)
    steps = sorted({r["step"] for r in curves})
    assert steps == [0, 4, 8, 10]
    assert {r["task"] for r in curves} == {"copy", "sort"}
    lines = (tmp_path / "curves.jsonl").read_text().splitlines()
    assert len(lines) == len(curves) == 8
    first = {r["task"]: r["loss"] for r in curves if r["step"] == 0}
    last = {r["task"]: r["loss"] for r in curves if r["step"] == 10}
    assert all(last[t] < first[t] for t in first), "training must lower held-out loss"
