"""``smolmix train`` on a locally built model and a real mixture folder."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import one_line_error as _error
from helpers import user_model_size
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from smolmix.cli import main
from smolmix.core.errors import SmolmixError
from smolmix.core.records import write_jsonl
from smolmix.lab.tasks import TASKS, TrainStream
from smolmix.mix.command import build_mixture
from smolmix.train.command import train
from smolmix.train.config import load_train_config
from smolmix.train.data import load_mixture, split_holdout
from smolmix.train.encoding import IGNORE_INDEX, encode_conversations, pack


def _config(tmp_path: Path, model: Path, mixture: Path, **extra) -> Path:
    data = {"model": str(model), "mixture": str(mixture), "steps": 8, "batch_size": 8,
            "learning_rate": 0.003, "eval": {"holdout_per_task": 16, "every": 4}, **extra}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _curves(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "curves.jsonl").read_text().splitlines()]


def test_train_writes_a_complete_run(tmp_path, tiny_checkpoint, lab_mixture, capsys):
    config = _config(tmp_path, tiny_checkpoint, lab_mixture)
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet",
                 "--set", "steps=8", "--set", "eval.generate.max_new_tokens=8",
                 "--set", "eval.generate.examples=8", "--set", "logging_steps=2"]) == 0
    run = tmp_path / "run"
    assert not (tmp_path / "run.partial").exists()
    AutoModelForCausalLM.from_pretrained(run / "model")  # HF-native output
    resolved = yaml.safe_load((run / "train_config.yaml").read_text())
    assert resolved["steps"] == 8 and resolved["packing"] is False  # defaults filled in
    rows = _curves(run)
    assert sorted({r["step"] for r in rows}) == [0, 4, 8]
    assert {r["task"] for r in rows} == {"copy", "reverse", "sort"}
    assert all(r["count"] == 16 for r in rows)
    assert all(0 <= r["generation_accuracy"] <= 1 for r in rows)  # graded generations
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["steps"] == 8 and set(manifest["final"]) == {"copy", "reverse", "sort"}
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "checkpoint-4", "checkpoint-8"]
    # the loss goes down on every task: the run really trained
    first = {r["task"]: r["loss"] for r in rows if r["step"] == 0}
    assert all(manifest["final"][t]["loss"] < first[t] for t in first)
    assert "exact match" in capsys.readouterr().out
    # the training loss and learning rate every logging_steps (linear decay from the start)
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6, 8]
    assert all(r["loss"] > 0 for r in log)
    rates = [r["learning_rate"] for r in log]
    assert rates == sorted(rates, reverse=True) and rates[0] < 0.003


def _greedy_right(model, tokenizer, records) -> list[bool]:
    """One prompt at a time with ``model.generate``, judged by the lab task's own checker."""
    right = []
    for rec in records:
        prompt = torch.tensor([tokenizer(rec.prompt, add_special_tokens=False)["input_ids"]])
        out = model.generate(prompt, max_new_tokens=8, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
        text = tokenizer.decode(out[0, prompt.shape[1]:], skip_special_tokens=True)
        right.append(TASKS[rec.task].check(rec.prompt, text))
    return right


def test_generation_accuracy_in_the_curves_is_the_graded_generations(tmp_path,
                                                                      partly_trained_copy):
    # Start from a model that copies 3 digits about half the time: the curve's generation
    # accuracy at the first and the last step must be the fraction of held-out prompts that
    # the model of that step answers right, as the task's checker judges its generations.
    base, _ = partly_trained_copy
    stream = TrainStream(TASKS["copy"], 7, set(), n=3)
    (tmp_path / "data").mkdir()
    write_jsonl((stream.draw() for _ in range(200)), tmp_path / "data" / "copy.jsonl")
    (tmp_path / "recipe.yaml").write_text("seed: 0\nbudget: {examples: 150}\nsources:\n"
                                          "  - {name: copy, path: data/copy.jsonl}\n"
                                          "strategy: [natural]\n")
    build_mixture(tmp_path / "recipe.yaml", tmp_path / "mix", quiet=True)
    config = _config(tmp_path, base, tmp_path / "mix", steps=4, learning_rate=0.01,
                     eval={"holdout_per_task": 40, "every": 4,
                           "generate": {"max_new_tokens": 8, "answer_format": "exact"}})
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    held = split_holdout(load_mixture(tmp_path / "mix"), 40)[1]["copy"]
    tokenizer = AutoTokenizer.from_pretrained(base)
    rows = {r["step"]: r for r in _curves(tmp_path / "run")}
    assert sorted(rows) == [0, 4]
    for step, model_path in ((0, base), (4, tmp_path / "run" / "model")):
        right = _greedy_right(AutoModelForCausalLM.from_pretrained(model_path).eval(),
                              tokenizer, held)
        assert 0 < sum(right) < len(right), "want a partly right model"
        assert rows[step]["generation_accuracy"] == sum(right) / len(right)


def test_held_out_examples_are_not_trained_on(tiny_checkpoint, lab_mixture):
    records = load_mixture(str(lab_mixture))
    kept, held = split_holdout(records, 10)
    held_prompts = {r.prompt for rs in held.values() for r in rs}
    assert all(len(rs) == 10 for rs in held.values())
    assert not held_prompts & {r.prompt for r in kept}


def test_resumed_run_ends_like_an_uninterrupted_one(tmp_path, tiny_checkpoint, lab_mixture):
    config = load_train_config(_config(tmp_path, tiny_checkpoint, lab_mixture, steps=12,
                                       order="shuffle"))
    whole = train(config, tmp_path / "whole", quiet=True)

    calls = {"n": 0}

    def interrupt_at_third_eval(model):
        calls["n"] += 1
        if calls["n"] == 3:  # the evaluation at step 8, before checkpoint-8 is saved
            raise KeyboardInterrupt
        return {}

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", quiet=True, scorers=[interrupt_at_third_eval])
    partial = tmp_path / "cut.partial"
    assert not (tmp_path / "cut").exists()
    assert [p.name for p in (partial / "checkpoints").iterdir()] == ["checkpoint-4"]
    resumed = train(config, tmp_path / "cut", resume=True, quiet=True)
    for task, metrics in whole["final"].items():
        assert resumed["final"][task]["loss"] == pytest.approx(metrics["loss"], rel=1e-5)
    steps = [(r["step"], r["task"]) for r in _curves(tmp_path / "cut")]
    assert len(steps) == len(set(steps))  # no step evaluated twice after the resume
    assert sorted({s for s, _ in steps}) == [0, 4, 8, 12]
    logged = [json.loads(line)["step"] for line in
              (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines()]
    assert logged == [10]  # logging_steps 10: the resumed run logs step 10 once


def test_lora_run_saves_adapter_and_merged_model(tmp_path, tiny_checkpoint, lab_mixture):
    config = _config(tmp_path, tiny_checkpoint, lab_mixture, steps=4,
                     lora={"r": 4, "target_modules": ["q_proj", "v_proj"]},
                     gradient_checkpointing=True)
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")
    assert not any("lora" in name for name, _ in model.named_parameters())
    # model/ is the base with B·A·(alpha/r) added to each target, every other weight untouched
    base = load_file(tiny_checkpoint / "model.safetensors")
    merged = load_file(tmp_path / "run" / "model" / "model.safetensors")
    adapter = load_file(tmp_path / "run" / "adapter" / "adapter_model.safetensors")
    assert set(merged) == set(base)
    scale, merged_targets = 32.0 / 4, 0
    for name, weight in merged.items():
        prefix = "base_model.model." + name.removesuffix(".weight")
        if prefix + ".lora_A.weight" not in adapter:
            assert torch.equal(weight, base[name]), name
            continue
        delta = scale * adapter[prefix + ".lora_B.weight"] @ adapter[prefix + ".lora_A.weight"]
        assert delta.abs().max() > 0, name  # B starts at zero: training moved it
        torch.testing.assert_close(weight, base[name] + delta, rtol=1e-5, atol=1e-6)
        merged_targets += 1
    layers = AutoModelForCausalLM.from_pretrained(tiny_checkpoint).config.num_hidden_layers
    assert merged_targets == 2 * layers  # q_proj and v_proj in every layer


def test_packing_fills_rows_and_keeps_positions_per_example(tmp_path, tiny_checkpoint,
                                                            lab_mixture):
    encoded = {"input_ids": [[1] * 5, [2] * 3, [3] * 4, [4] * 2],
               "labels": [[-100, 1, 1, 1, 1], [2] * 3, [3] * 4, [4] * 2]}
    packed = pack(encoded, max_length=7)
    assert sorted(len(r) for r in packed["input_ids"]) == [7, 7]
    for ids, pos in zip(packed["input_ids"], packed["position_ids"]):
        assert len(ids) == len(pos) and pos[0] == 0
    assert sorted(t for row in packed["input_ids"] for t in row) == sorted(
        t for row in encoded["input_ids"] for t in row)
    config = _config(tmp_path, tiny_checkpoint, lab_mixture, steps=4, packing=True,
                     max_length=64)
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["sequences"] < manifest["examples"]


def test_chat_template_masks_everything_but_the_reply(tokenizer):
    tokenizer.chat_template = ("{% for m in messages %}{{ m['content'] }} {% endfor %}"
                               "{% if add_generation_prompt %}= {% endif %}")
    try:
        convo = [{"role": "user", "content": "copy 1 2"},
                 {"role": "assistant", "content": "= 1 2"}]
        enc = encode_conversations(tokenizer, [convo])
        ids, labels = enc["input_ids"][0], enc["labels"][0]
        target = [t for t in labels if t != IGNORE_INDEX]
        assert tokenizer.decode(target) == tokenizer.decode(
            tokenizer("1 2", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
        assert len(ids) == len(labels)
        with pytest.raises(SmolmixError, match="assistant"):
            encode_conversations(tokenizer, [convo[:1]])
    finally:
        tokenizer.chat_template = None


TURNS_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'assistant' %}= {{ m['content'] }} "
                  "{% else %}{{ m['content'] }} {% endif %}{% endfor %}"
                  "{% if add_generation_prompt %}= {% endif %}")


def test_loss_on_every_assistant_turn_token_by_token(tokenizer):
    # "copy 1 2 = 1 2 sort 3 1 = 1 3": the template renders each reply after "="; the labels
    # are exactly the two replies' tokens (and EOS), every other position masked.
    tokenizer.chat_template = TURNS_TEMPLATE
    try:
        convo = [{"role": "user", "content": "copy 1 2"}, {"role": "assistant", "content": "1 2"},
                 {"role": "user", "content": "sort 3 1"}, {"role": "assistant", "content": "1 3"}]
        ids = tokenizer("copy 1 2 = 1 2 sort 3 1 = 1 3", add_special_tokens=False)["input_ids"]
        eos, no = tokenizer.eos_token_id, IGNORE_INDEX
        every = encode_conversations(tokenizer, [convo])
        assert every["input_ids"][0] == [*ids, eos]
        assert every["labels"][0] == [no] * 4 + ids[4:6] + [no] * 4 + ids[10:12] + [eos]
        last = encode_conversations(tokenizer, [convo], turns="last")
        assert last["labels"][0] == [no] * 10 + ids[10:12] + [eos]
    finally:
        tokenizer.chat_template = None


def test_chat_sources_build_and_train(tmp_path, tiny_checkpoint):
    # examples/two_stage.yaml has a chat source (messages + completion), and a TRL-style
    # messages file (multi-turn, no completion) builds too; both train through the template.
    chat = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, chat)
    tokenizer = AutoTokenizer.from_pretrained(chat)
    tokenizer.chat_template = TURNS_TEMPLATE
    tokenizer.save_pretrained(chat)
    examples = Path(__file__).resolve().parents[1] / "examples"
    shutil.copytree(examples, tmp_path / "examples")
    build_mixture(tmp_path / "examples" / "two_stage.yaml", tmp_path / "two", quiet=True)
    convo = [{"role": "user", "content": "copy 1 2"}, {"role": "assistant", "content": "1 2"},
             {"role": "user", "content": "sort 3 1"}, {"role": "assistant", "content": "1 3"}]
    (tmp_path / "trl.jsonl").write_text("".join(
        json.dumps({"task": "dialog", "messages": convo[:2 + 2 * (i % 2)]}) + "\n"
        for i in range(40)))
    (tmp_path / "trl.yaml").write_text("seed: 0\nbudget: {examples: 40}\nmax_repeats: 40\n"
                                       "sources: [{name: trl, path: trl.jsonl}]\n"
                                       "hygiene: {dedup: none}\n")
    build_mixture(tmp_path / "trl.yaml", tmp_path / "trl", quiet=True)
    records = load_mixture(tmp_path / "trl")
    assert all(r.completion is None and r.messages[-1]["role"] == "assistant" for r in records)
    for name in ("two", "trl"):
        config = _config(tmp_path, chat, tmp_path / name, steps=2,
                         eval={"holdout_per_task": 1, "every": 2})
        assert main(["train", str(config), "--out", str(tmp_path / f"run-{name}"),
                     "--quiet"]) == 0
        tasks = {r["task"] for r in _curves(tmp_path / f"run-{name}")}
        assert ("chat" if name == "two" else "dialog") in tasks


def test_bad_inputs_are_one_line_errors(tmp_path, tiny_checkpoint, lab_mixture, capsys):
    out = tmp_path / "run"
    args = ["--out", str(out), "--quiet"]
    config = _config(tmp_path, tiny_checkpoint, lab_mixture)
    cases = [
        (["--set", f"model={tmp_path / 'nowhere'}"], "does not exist"),
        (["--set", f"model={tmp_path}"], "no config.json"),
        (["--set", f"mixture={tiny_checkpoint}"], "not a mixture folder"),
        (["--set", "lora.target_modules=[nope_proj]"], "nope_proj"),
        (["--set", "lernrate=1"], "lernrate"),
        (["--set", "steps=-1"], "steps"),
        (["--set", "report_to=[tensorbored]"], "tensorbored"),
        (["--set", "logging_steps=0"], "logging_steps"),
        (["--set", "optimm=adamw_torch"], "optimm"),
        (["--set", "per_device_train_batch_size=4"], "batch_size"),
        (["--set", "optim=no_such_optimizer"], "no_such_optimizer"),
        (["--set", "chat_template=on"], "chat template"),
    ]
    for extra, message in cases:
        assert main(["train", str(config), *args, *extra]) == 2
        assert message in _error(capsys)
        assert not out.exists() and not (tmp_path / "run.partial").exists()


def test_tokenizer_and_model_vocabulary_mismatch(tmp_path, tokenizer, lab_mixture, capsys):
    from smolmix.models.ladder import build_model, build_tokenizer, get_size, save_checkpoint

    small = build_tokenizer(["a", "b"])
    save_checkpoint(build_model(get_size("xxs"), small, seed=0), small, tmp_path / "small")
    tokenizer.save_pretrained(tmp_path / "big-tokenizer")
    config = _config(tmp_path, tmp_path / "small", lab_mixture,
                     tokenizer=str(tmp_path / "big-tokenizer"))
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "do not match" in _error(capsys)


def test_resume_from_another_config_is_refused(tmp_path, tiny_checkpoint, lab_mixture, capsys):
    config = _config(tmp_path, tiny_checkpoint, lab_mixture, steps=4)
    assert main(["train", str(config), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    checkpoint = tmp_path / "a" / "checkpoints" / "checkpoint-4"
    assert main(["train", str(config), "--out", str(tmp_path / "b"), "--quiet",
                 "--set", "learning_rate=0.01", "--resume", str(checkpoint)]) == 2
    assert "another model or config" in _error(capsys)
    assert not (tmp_path / "b").exists()
    assert main(["train", str(config), "--out", str(tmp_path / "c"), "--quiet",
                 "--resume"]) == 2
    assert "nothing to resume" in _error(capsys)


def _free_port() -> int:
    """A loopback port nothing listens on now (accelerate's default 29500 may still be held by
    an earlier launch)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(config: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    """``smolmix train`` in 2 CPU processes through ``accelerate launch``."""
    smolmix = shutil.which("smolmix") or str(Path(sys.executable).parent / "smolmix")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", *flags, "--num_processes",
         "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "--main_process_port", str(_free_port()),
         smolmix, "train", str(config), "--out", str(out), "--quiet"],
        env=env, capture_output=True, text=True, timeout=300)


def test_fsdp_on_a_cpu_is_refused_not_run_as_ddp(tmp_path, tiny_checkpoint, lab_mixture):
    config = _config(tmp_path, tiny_checkpoint, lab_mixture, steps=2)
    done = _launch(config, tmp_path / "run", "--use_fsdp")
    assert done.returncode != 0
    assert "error: FSDP needs GPUs; on a CPU accelerate would run plain DDP" in done.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_two_cpu_processes_through_accelerate_launch(tmp_path, tiny_checkpoint, lab_mixture):
    config = _config(tmp_path, tiny_checkpoint, lab_mixture, steps=4)
    done = _launch(config, tmp_path / "run", "--multi_gpu")
    # the launcher's own traceback comes last; the failing rank's error is the useful part
    assert done.returncode == 0, "\n".join(
        line for line in done.stderr.splitlines() if "Error" in line or "error:" in line)[-3000:]
    run = tmp_path / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["processes"] == 2 and manifest["steps"] == 4
    steps = [(r["step"], r["task"]) for r in _curves(run)]
    assert len(steps) == len(set(steps)) == 6  # one process wrote: steps 0 and 4, 3 tasks
    AutoModelForCausalLM.from_pretrained(run / "model")
    assert done.stdout.count("wrote") == 1


def test_packed_examples_do_not_attend_to_each_other(tokenizer):
    # Three examples of different lengths packed into rows of 24 tokens: every example's logits
    # in its packed row are the ones it gets alone (no attention across the boundary).
    from smolmix.models.ladder import build_model
    from smolmix.train.data import collate
    from smolmix.train.encoding import encode_prompt_completion

    model = build_model(user_model_size(), tokenizer, seed=0).eval()
    prompts = ["copy 1 2 3 =", "sort 9 8 7 6 5 =", "reverse 4 5 =", "rotate 1 2 3 4 ="]
    completions = [" 1 2 3", " 5 6 7 8 9", " 5 4", " 2 3 4 1"]
    encoded = encode_prompt_completion(tokenizer, prompts, completions)
    packed = pack(encoded, max_length=24)
    assert len(packed["input_ids"]) < len(prompts)  # really packed
    batch = collate([{k: packed[k][i] for k in packed} for i in range(len(packed["input_ids"]))],
                    tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(**batch).logits
        seen = 0
        for row, ids in enumerate(packed["input_ids"]):
            starts = [i for i, p in enumerate(packed["position_ids"][row]) if p == 0]
            for start, end in zip(starts, [*starts[1:], len(ids)]):
                alone = model(input_ids=torch.tensor([ids[start:end]])).logits[0]
                assert (logits[row, start:end] - alone).abs().max().item() < 1e-5
                seen += 1
    assert seen == len(prompts)


def test_examples_truncated_to_nothing_are_dropped_and_counted(tmp_path, tiny_checkpoint,
                                                               capsys):
    # copy of 2 digits fits in 8 tokens; copy of 9 digits has an 11-token prompt: cut to 8
    # tokens it has nothing left to learn, so it is neither trained on nor scored.
    (tmp_path / "data").mkdir()
    for n in (2, 9):
        stream = TrainStream(TASKS["copy"], n, set(), n=n)
        write_jsonl((stream.draw() for _ in range(60)), tmp_path / "data" / f"copy{n}.jsonl")
    (tmp_path / "recipe.yaml").write_text(
        "seed: 0\nbudget: {examples: 100}\nsources:\n  - {name: short, path: data/copy2.jsonl}\n"
        "  - {name: long, path: data/copy9.jsonl}\nstrategy: [uniform]\n")
    build_mixture(tmp_path / "recipe.yaml", tmp_path / "mix", quiet=True)
    records = load_mixture(tmp_path / "mix")
    kept, held = split_holdout(records, 20)
    long_train = sum(len(r.prompt.split()) > 8 for r in kept)
    long_held = sum(len(r.prompt.split()) > 8 for r in held["copy"])
    assert long_train and long_held and long_held < 20  # both lengths in both parts
    config = _config(tmp_path, tiny_checkpoint, tmp_path / "mix", steps=2, max_length=8,
                     eval={"holdout_per_task": 20, "every": 2})
    assert main(["train", str(config), "--out", str(tmp_path / "run"),
                 "--set", "logging_steps=1"]) == 0
    err = capsys.readouterr().err
    assert f"dropped {long_train} training examples" in err
    assert "2/2" in err and "tokens/s" in err and "loss " in err  # the bar, not --quiet
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["dropped_no_target"] == {"train": long_train,
                                             "held_out": {"copy": long_held}}
    assert manifest["examples"] == len(kept) and manifest["sequences"] == len(kept) - long_train
    rows = _curves(tmp_path / "run")
    assert all(r["count"] == 20 - long_held and r["loss"] > 0.1 for r in rows)


def test_trl_keys_pass_through_and_tensorboard_logs(tmp_path, tiny_checkpoint, lab_mixture):
    # Keys smolmix does not define go to TRL's SFTConfig as they are (and change the run:
    # NEFTune noise changes the training loss); report_to tensorboard writes event files into
    # the run, with the same training loss as train_log.jsonl.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from smolmix.train.trainer import training_arguments

    config = load_train_config(_config(tmp_path, tiny_checkpoint, lab_mixture), [
        "optim=adamw_torch", "neftune_noise_alpha=5", "logging_steps=2",
        "report_to=[tensorboard]", "adam_beta2=0.99"])
    args = training_arguments(config, 8, tmp_path / "x")
    assert (args.optim, args.neftune_noise_alpha, args.adam_beta2) == ("adamw_torch", 5, 0.99)
    assert args.bf16 is False and args.gradient_checkpointing is False  # no TRL CPU defaults
    train(config, tmp_path / "noisy", quiet=True)
    plain = load_train_config(_config(tmp_path, tiny_checkpoint, lab_mixture),
                              ["logging_steps=2", "optim=adamw_torch", "adam_beta2=0.99"])
    train(plain, tmp_path / "plain", quiet=True)
    logged = {name: [json.loads(line) for line in
                     (tmp_path / name / "train_log.jsonl").read_text().splitlines()]
              for name in ("noisy", "plain")}
    assert [r["step"] for r in logged["noisy"]] == [2, 4, 6, 8]
    assert [r["loss"] for r in logged["noisy"]] != [r["loss"] for r in logged["plain"]]
    saved = yaml.safe_load((tmp_path / "noisy" / "train_config.yaml").read_text())
    assert saved["neftune_noise_alpha"] == 5
    events = list((tmp_path / "noisy" / "tensorboard").rglob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    losses = [e.value for e in acc.Scalars("train/loss")]
    assert losses == pytest.approx([r["loss"] for r in logged["noisy"]], rel=1e-5)
