import random

import pytest
import torch
from helpers import user_model_size
from transformers import GenerationConfig

from smolmix.core.errors import SmolmixError
from smolmix.inference.backends import get_backend
from smolmix.inference.base import truncate_at_stop
from smolmix.inference.hf import HFBackend, generate, left_pad
from smolmix.inference.vllm import VLLMBackend, vllm_available
from smolmix.lab.tasks import TASKS, make_eval_set
from smolmix.models.ladder import build_model, save_checkpoint
from smolmix.train.data import pad_batch
from smolmix.train.encoding import encode_prompt_completion

MAX_NEW = 10


@pytest.fixture(scope="module")
def trained(tokenizer):
    """A ladder model trained briefly on every lab task: right on some prompts, wrong on others,
    and not always stopping, so equality checks have teeth."""
    model = build_model(user_model_size(), tokenizer, seed=0)
    rng = random.Random(0)
    tasks = list(TASKS.values())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        recs = [rng.choice(tasks).make(rng) for _ in range(32)]
        enc = encode_prompt_completion(tokenizer, [r.prompt for r in recs],
                                       [r.completion for r in recs])
        loss = model(**pad_batch(enc["input_ids"], enc["labels"], tokenizer.pad_token_id)).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


@pytest.fixture(scope="module")
def prompts():
    """Prompts of many lengths (4 to 12 tokens), shuffled so sorting has work to do."""
    out = []
    for task in TASKS.values():
        for n in {task.min_n, task.default_n, task.max_n}:
            out += [r.prompt for r in make_eval_set(task, 3, seed=0, n=n)]
    random.Random(0).shuffle(out)
    return out


def _one_at_a_time(model, tokenizer, prompts, max_new_tokens, **kwargs):
    """The reference: batch-size-1 greedy ``model.generate``, continuation cut at EOS."""
    texts = []
    for p in prompts:
        ids = torch.tensor([tokenizer(p, add_special_tokens=False)["input_ids"]])
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, **kwargs)[0, ids.shape[1]:]
        new = out.tolist()
        if tokenizer.eos_token_id in new:
            new = new[: new.index(tokenizer.eos_token_id)]
        texts.append(tokenizer.decode(new, skip_special_tokens=True))
    return texts


@pytest.fixture(scope="module")
def reference(trained, tokenizer, prompts):
    return _one_at_a_time(trained, tokenizer, prompts, MAX_NEW)


def test_reference_is_not_trivial(tokenizer, prompts, reference):
    lengths = {len(tokenizer(p)["input_ids"]) for p in prompts}
    assert len(lengths) >= 5
    assert len(set(reference)) > len(reference) // 2
    # some continuations stop at EOS, some run to max_new_tokens
    assert {len(t.split()) for t in reference} & set(range(MAX_NEW))
    assert MAX_NEW in {len(t.split()) for t in reference}


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_batched_equals_one_at_a_time(trained, tokenizer, prompts, reference, batch_size):
    assert generate(trained, tokenizer, prompts, MAX_NEW, batch_size=batch_size) == reference


def test_padding_without_mask_would_be_caught(trained, tokenizer, prompts, reference):
    # The equality test can see left-padding bugs: padding without an attention mask changes
    # some continuations.
    enc = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    ids, _ = left_pad(enc, tokenizer.pad_token_id)
    out = trained.generate(ids, max_new_tokens=MAX_NEW, do_sample=False,
                           pad_token_id=tokenizer.pad_token_id,
                           attention_mask=torch.ones_like(ids))[:, ids.shape[1]:]
    naive = [tokenizer.decode(row, skip_special_tokens=True) for row in out.tolist()]
    assert naive != reference


def test_model_sampling_defaults_do_not_leak_in(trained, tokenizer, prompts, reference):
    # Instruct checkpoints often ship sampling defaults; generate() still decodes greedily.
    saved = trained.generation_config
    trained.generation_config = GenerationConfig(
        do_sample=True, temperature=0.7, top_p=0.8, repetition_penalty=3.0,
        no_repeat_ngram_size=1, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    try:
        assert generate(trained, tokenizer, prompts, MAX_NEW, batch_size=64) == reference
    finally:
        trained.generation_config = saved


def test_stop_strings_cut_the_text(trained, tokenizer, prompts, reference):
    stop = ["5", "0 0"]
    got = generate(trained, tokenizer, prompts, MAX_NEW, batch_size=16, stop=stop)
    assert got == [truncate_at_stop(t, stop) for t in reference]
    assert got != reference  # the stop strings did occur


def test_progress_training_mode_and_edge_cases(trained, tokenizer, prompts):
    seen = []
    trained.train()
    generate(trained, tokenizer, prompts[:10], 2, batch_size=4, progress=seen.append)
    assert trained.training
    trained.eval()
    assert seen == [4, 4, 2]
    assert generate(trained, tokenizer, [], 3) == []
    with pytest.raises(SmolmixError):
        generate(trained, tokenizer, prompts[:1], 0)


def test_hf_backend_from_checkpoint(trained, tokenizer, prompts, reference, tmp_path):
    save_checkpoint(trained, tokenizer, tmp_path / "ckpt")
    backend = get_backend("hf").from_checkpoint(tmp_path / "ckpt", batch_size=8)
    assert isinstance(backend, HFBackend)
    assert backend.generate(prompts, MAX_NEW) == reference


def test_truncate_at_stop():
    assert truncate_at_stop("a b. c\nd", [".", "\n"]) == "a b"
    assert truncate_at_stop("abc", []) == "abc"
    assert truncate_at_stop("abc", ["x"]) == "abc"


@pytest.mark.skipif(vllm_available(), reason="vllm is installed")
def test_backend_selection_without_vllm():
    assert get_backend() is HFBackend
    assert get_backend("auto") is HFBackend
    with pytest.raises(SmolmixError) as err:
        get_backend("vllm")
    assert "\n" not in str(err.value) and "vllm" in str(err.value)
    assert err.value.where == "--backend"
    with pytest.raises(SmolmixError, match="unknown backend"):
        get_backend("nope")
    assert VLLMBackend.name == "vllm"
