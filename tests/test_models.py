import torch
from helpers import one_line_error
from transformers import AutoModelForCausalLM, AutoTokenizer

from smolmix.lab.tasks import TASKS
from smolmix.models.ladder import LADDER, build_model, get_size, parameter_count, save_checkpoint


def test_tokenizer_round_trip(tokenizer):
    import random

    rng = random.Random(0)
    for task in TASKS.values():
        rec = task.make(rng)
        text = rec.prompt + rec.completion
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert len(ids) == len(text.split())
        assert tokenizer.decode(ids) == text


def test_ladder_spans_thirty_fold(tokenizer):
    counts = [parameter_count(build_model(s, tokenizer, seed=0)) for s in LADDER.values()]
    assert len(counts) >= 5
    assert counts == sorted(counts)
    assert counts[-1] / counts[1] >= 30


def test_checkpoint_loads_with_auto_classes_alone(tokenizer, tmp_path):
    model = build_model(get_size("xs"), tokenizer, seed=3)
    save_checkpoint(model, tokenizer, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt")
    tok = AutoTokenizer.from_pretrained(tmp_path / "ckpt")
    text = "sort 3 1 2 = 1 2 3"
    assert tok(text)["input_ids"] == tokenizer(text)["input_ids"]
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
    assert tok.eos_token == tokenizer.eos_token and tok.pad_token == tokenizer.pad_token


def test_same_seed_same_weights(tokenizer):
    a = build_model(get_size("xs"), tokenizer, seed=1).state_dict()
    b = build_model(get_size("xs"), tokenizer, seed=1).state_dict()
    c = build_model(get_size("xs"), tokenizer, seed=2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_hub_id_offline_is_one_line_at_once(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    from smolmix.cli import main

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert main(["eval", "some-org/not-cached-model", "--tasks", "lab:copy", "--out",
                 str(tmp_path / "e"), "--quiet"]) == 2
    assert "HF_HUB_OFFLINE" in one_line_error(capsys)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")  # unresolvable host
    assert main(["eval", "some-org/not-cached-model", "--tasks", "lab:copy", "--out",
                 str(tmp_path / "e"), "--quiet"]) == 2
    assert "cannot be reached" in one_line_error(capsys)
    assert not (tmp_path / "e").exists()
