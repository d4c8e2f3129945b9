"""One prompt rule for training and evaluation: BOS where the tokenizer adds one, the chat
template for chat models, the format recorded in the run and used again by ``smolmix eval``."""

import json
import random
import shutil

import pytest
import torch
import yaml
from helpers import one_line_error
from tokenizers.processors import TemplateProcessing
from transformers import AutoTokenizer

from smolmix.cli import main
from smolmix.core.records import Record, write_jsonl
from smolmix.evaluate.tasks import TaskSpec, load_task
from smolmix.lab.tasks import TASKS
from smolmix.mix.command import build_mixture
from smolmix.models.prompting import CHAT, PLAIN, choose_format, prompt_ids, special_prefix
from smolmix.train.encoding import IGNORE_INDEX, encode_records

# A template in the style of Llama 3's: it writes the BOS itself.
BOS_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}= "
                "{{ m['content'] }} {% else %}{{ m['content'] }} {% endif %}{% endfor %}"
                "{% if add_generation_prompt %}= {% endif %}")
TEMPLATE = BOS_TEMPLATE.removeprefix("{{ bos_token }}")


@pytest.fixture()
def bos_tokenizer(tokenizer, tmp_path):
    """The lab tokenizer made to add a BOS in front of every text, as Llama's and Gemma's
    tokenizers do."""
    tokenizer.save_pretrained(tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{tok.bos_token} $A", special_tokens=[(tok.bos_token, tok.bos_token_id)])
    return tok


def test_bos_is_present_where_the_tokenizer_adds_one(bos_tokenizer, tokenizer):
    bos = bos_tokenizer.bos_token_id
    assert special_prefix(bos_tokenizer) == [bos] and special_prefix(tokenizer) == []
    record = Record(task="copy", prompt="copy 1 2", completion="= 1 2")
    text = bos_tokenizer("copy 1 2 = 1 2", add_special_tokens=False)["input_ids"]
    enc = encode_records(bos_tokenizer, [record])
    assert enc["input_ids"][0] == [bos, *text, bos_tokenizer.eos_token_id]
    assert enc["labels"][0][:4] == [IGNORE_INDEX] * 4
    # generation gets the same prompt tokens as training
    assert prompt_ids(bos_tokenizer, ["copy 1 2"], PLAIN)[0] == enc["input_ids"][0][:4]
    # a tokenizer without one gets none
    assert encode_records(tokenizer, [record])["input_ids"][0][0] != tokenizer.bos_token_id
    # a chat template that writes the BOS itself: exactly one, in training and generation
    bos_tokenizer.chat_template = BOS_TEMPLATE
    chat = encode_records(bos_tokenizer, [record], prompt_format=CHAT)["input_ids"][0]
    assert chat.count(bos) == 1 and chat[0] == bos
    assert prompt_ids(bos_tokenizer, ["copy 1 2"], CHAT)[0].count(bos) == 1


def test_prompt_completion_data_is_a_chat_exchange_on_template_tokenizers(tokenizer):
    record = Record(task="copy", prompt="copy 1 2", completion="1 2")
    tokenizer.chat_template = TEMPLATE
    try:
        assert choose_format("auto", tokenizer) == CHAT
        enc = encode_records(tokenizer, [record], prompt_format=CHAT)
        ids = tokenizer("copy 1 2 = 1 2", add_special_tokens=False)["input_ids"]
        assert enc["input_ids"][0] == [*ids, tokenizer.eos_token_id]
        assert enc["labels"][0] == [IGNORE_INDEX] * 4 + ids[4:] + [tokenizer.eos_token_id]
        assert choose_format("off", tokenizer) == PLAIN
        assert choose_format("auto", tokenizer, trained=PLAIN) == PLAIN
    finally:
        tokenizer.chat_template = None
    assert choose_format("auto", tokenizer) == PLAIN
    with pytest.raises(Exception, match="no chat template"):
        choose_format("on", tokenizer)


def test_few_shot_prompts_plain_and_chat(tmp_path):
    (tmp_path / "t.jsonl").write_text("".join(
        json.dumps({"question": f"q{i}", "answer": f"a{i}"}) + "\n" for i in range(5)))
    spec = TaskSpec(name="t", path=str(tmp_path / "t.jsonl"), prompt_field="question",
                    num_fewshot=2, prompt_template="Q: {question}\nA:")
    task = load_task(spec)
    assert task.references == ["a2", "a3", "a4"]  # the shots are not scored
    assert task.inputs(PLAIN)[0] == "Q: q0\nA: a0\n\nQ: q1\nA: a1\n\nQ: q2\nA:"
    assert task.inputs(CHAT)[0] == [
        {"role": "user", "content": "Q: q0\nA:"}, {"role": "assistant", "content": "a0"},
        {"role": "user", "content": "Q: q1\nA:"}, {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "Q: q2\nA:"}]
    with pytest.raises(Exception, match="num_fewshot 9"):
        load_task(spec.model_copy(update={"num_fewshot": 9}))


def test_chat_trained_model_evaluates_like_its_teacher_forced_score(tmp_path, tiny_checkpoint,
                                                                    capsys):
    # A tiny model trained on copy through a chat template; `smolmix eval` with
    # --chat-template auto (read back from the run) must score its held-out examples as the
    # teacher-forced exact match did during training (the EOS is part of the target, so the
    # two are the same measurement when the prompt tokens are the same).
    model = tmp_path / "chat-model"
    shutil.copytree(tiny_checkpoint, model)
    tok = AutoTokenizer.from_pretrained(model)
    tok.chat_template = TEMPLATE
    tok.save_pretrained(model)
    rng = random.Random(0)
    task = TASKS["copy"]
    train = [task.make(rng, 3) for _ in range(1200)]
    held = [task.make(random.Random(100 + i), 3) for i in range(40)]
    # "copy 6 6 0 =" / " 6 6 0" as a user message and a reply: the template writes the "="
    held, train = ([Record(task="copy", prompt=r.prompt.removesuffix(" ="),
                           completion=r.completion.strip()) for r in rows]
                   for rows in (held, train))
    write_jsonl(train, tmp_path / "copy.jsonl")
    write_jsonl(held, tmp_path / "held.jsonl")
    (tmp_path / "recipe.yaml").write_text("seed: 0\nbudget: {examples: 1200}\n"
                                          "sources: [{name: copy, path: copy.jsonl}]\n"
                                          "hygiene: {dedup: none}\n")
    build_mixture(tmp_path / "recipe.yaml", tmp_path / "mix", quiet=True)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump({
        "model": str(model), "mixture": str(tmp_path / "mix"), "steps": 60, "batch_size": 16,
        "learning_rate": 0.01, "warmup_steps": 5, "save_checkpoints": False,
        "eval": {"data": str(tmp_path / "held.jsonl"), "every": 60}}))
    assert main(["train", str(tmp_path / "train.yaml"), "--out", str(tmp_path / "run"),
                 "--quiet"]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["prompt_format"] == CHAT
    teacher_forced = manifest["final"]["copy"]["exact_match"]
    (tmp_path / "task.yaml").write_text(yaml.safe_dump({
        "name": "copy", "path": "held.jsonl", "reference_field": "completion",
        "answer_format": "exact", "max_new_tokens": 16}))
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run" / "model"), "--tasks",
                 str(tmp_path / "task.yaml"), "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    scores = json.loads((tmp_path / "eval" / "scores.json").read_text())["tasks"]["copy"]
    eval_manifest = json.loads((tmp_path / "eval" / "manifest.json").read_text())
    assert eval_manifest["prompt_format"] == CHAT
    assert 0 < teacher_forced < 1, teacher_forced  # partly learned: a real comparison
    assert scores["low"] <= teacher_forced <= scores["high"]
    assert scores["mean"] == pytest.approx(teacher_forced, abs=1 / 40 + 1e-9)
    # the same model prompted without its template scores differently (the format matters)
    assert main(["eval", str(tmp_path / "run" / "model"), "--tasks",
                 str(tmp_path / "task.yaml"), "--out", str(tmp_path / "plain"), "--quiet",
                 "--chat-template", "off"]) == 0
    plain = json.loads((tmp_path / "plain" / "scores.json").read_text())["tasks"]["copy"]
    assert plain["mean"] < scores["mean"]


def test_chat_template_on_without_a_template_is_one_line(tmp_path, tiny_checkpoint, capsys):
    assert main(["eval", str(tiny_checkpoint), "--tasks", "lab:copy", "--chat-template", "on",
                 "--out", str(tmp_path / "e"), "--quiet"]) == 2
    assert "--chat-template" in one_line_error(capsys)
    assert not (tmp_path / "e").exists() and not (tmp_path / "e.partial").exists()


def test_what_a_template_writes_after_the_eos_is_not_learned(tokenizer):
    # ChatML writes "<|im_end|>\n" after a reply: the target stops at the EOS (generation
    # stops there too), and no second EOS is appended. Here "=" plays the newline.
    tokenizer.chat_template = ("{% for m in messages %}{% if m['role'] == 'assistant' %}= "
                               "{{ m['content'] }} {{ eos_token }} = {% else %}{{ m['content'] }} "
                               "{% endif %}{% endfor %}{% if add_generation_prompt %}= {% endif %}")
    try:
        convo = [{"role": "user", "content": "copy 1 2"}, {"role": "assistant", "content": "1 2"}]
        enc = encode_records(tokenizer, [Record(task="t", prompt=None, completion=None,
                                                messages=convo)])
        ids, labels = enc["input_ids"][0], enc["labels"][0]
        eos, no = tokenizer.eos_token_id, IGNORE_INDEX
        words = tokenizer("copy 1 2 = 1 2", add_special_tokens=False)["input_ids"]
        assert ids == [*words, eos, words[3]]  # ... EOS "=": nothing appended
        assert labels == [no] * 4 + words[4:] + [eos, no]
    finally:
        tokenizer.chat_template = None


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_device_cuda_without_a_gpu_is_one_line(tmp_path, tiny_checkpoint, capsys):
    assert main(["eval", str(tiny_checkpoint), "--tasks", "lab:copy", "--device", "cuda",
                 "--out", str(tmp_path / "e"), "--quiet"]) == 2
    assert "--device" in one_line_error(capsys)
    assert not (tmp_path / "e").exists() and not (tmp_path / "e.partial").exists()


def test_token_ids_equal_the_tokenizer_call_and_honour_truncation(tokenizer, bos_tokenizer):
    """The fast path gives exactly the ids of ``tokenizer(texts, add_special_tokens=False)``;
    a backend with truncation set takes the tokenizer's own call (which resets it)."""
    from smolmix.models.prompting import token_ids

    rng = random.Random(0)
    texts = [" ".join(rng.choice(["copy", "1", "2", "=", "?", "sort", "zzz"])
                      for _ in range(rng.randint(0, 12))) for _ in range(200)]
    for tok in (tokenizer, bos_tokenizer):
        assert token_ids(tok, texts) == tok(texts, add_special_tokens=False)["input_ids"]
    truncating = bos_tokenizer.__class__(
        tokenizer_object=bos_tokenizer.backend_tokenizer.__class__.from_str(
            bos_tokenizer.backend_tokenizer.to_str()))
    truncating.backend_tokenizer.enable_truncation(2)
    assert token_ids(truncating, texts) == bos_tokenizer(texts,
                                                         add_special_tokens=False)["input_ids"]
    assert max(map(len, token_ids(truncating, texts))) > 2
