import random

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from smolmix.core.errors import SmolmixError
from smolmix.evaluate.needle import (
    DEFAULT_FILLER,
    ENGLISH,
    NeedleSpec,
    build_haystack,
    extract_value,
    needle_probe,
    resolve_spec,
    shortest_length,
    symbol_spec,
    write_heatmap,
)
from smolmix.models.ladder import (
    BOS,
    EOS,
    PAD,
    SPECIAL_TOKENS,
    UNK,
    LadderSize,
    build_model,
    get_size,
)

DEPTHS = [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.fixture(scope="module")
def bpe_tokenizer():
    """A byte-level BPE tokenizer (the kind SmolLM2 and Qwen use), trained here on the default
    English filler so words split into several tokens and merges cross nothing."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator([DEFAULT_FILLER, ENGLISH.needle_text("1234"), ENGLISH.question],
                             trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, bos_token=BOS,
                                   eos_token=EOS, unk_token=UNK)


@pytest.fixture(scope="module")
def lab_model(tokenizer):
    return build_model(get_size("xs"), tokenizer, seed=0).eval()  # 64 positions


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _check_haystack(tokenizer, spec, length, depth, length_slack, depth_slack):
    value = "4821"
    stack = build_haystack(tokenizer, spec, length, depth, value, random.Random(0))
    ids = _ids(tokenizer, stack.prompt)
    assert stack.prompt_tokens == len(ids)
    assert length - length_slack <= len(ids) <= length
    # the needle's tokens are where the haystack says, and the question ends the prompt
    needle = tokenizer.decode(ids[stack.needle_token : stack.needle_token + stack.needle_tokens])
    assert needle.strip() == spec.needle_text(value)
    assert stack.prompt.endswith(spec.question)
    assert tokenizer.decode(ids[stack.haystack_tokens:]).strip() == spec.question.strip()
    filler = stack.haystack_tokens - stack.needle_tokens
    assert abs(stack.needle_token - depth * filler) <= depth_slack
    return stack


@pytest.mark.parametrize("length", [16, 37, 58])
@pytest.mark.parametrize("depth", DEPTHS)
def test_symbol_haystack_is_exact(tokenizer, length, depth):
    # Word-level tokenizer, one-token filler words: exact length, needle within one token.
    spec = resolve_spec(tokenizer)
    assert spec.name == "symbols"
    assert set(spec.filler.split()) == {"copy", "count", "dedup", "increment", "lookup",
                                        "pair_sum", "prefix_sum", "reverse", "rotate",
                                        "running_max", "sort", "square", "swap_pairs"}
    _check_haystack(tokenizer, spec, length, depth, length_slack=0, depth_slack=1)


@pytest.mark.parametrize("length", [64, 300, 1000])
@pytest.mark.parametrize("depth", DEPTHS)
def test_english_haystack_on_bpe(bpe_tokenizer, length, depth):
    # Documented tolerances: at most one filler word short of the length; the needle sits on a
    # sentence boundary, off by at most half a sentence plus one token.
    spec = resolve_spec(bpe_tokenizer)
    assert spec.name == "english"
    words = {w for w in DEFAULT_FILLER.split()}
    word_tokens = max(len(_ids(bpe_tokenizer, " " + w)) for w in words)
    sentence_tokens = max(len(_ids(bpe_tokenizer, s)) for s in DEFAULT_FILLER.split(". "))
    stack = _check_haystack(bpe_tokenizer, spec, length, depth, length_slack=word_tokens,
                            depth_slack=sentence_tokens / 2 + 1)
    if depth < 1:  # at the start or between two sentences
        before = stack.prompt[: stack.prompt.index("The secret")]
        assert before == "" or before.endswith(". ")


def test_probe_grid_heatmap_and_determinism(lab_model, tokenizer, tmp_path):
    lengths, depths = [20, 40, 58], [0.0, 0.5, 1.0]
    result = needle_probe(lab_model, tokenizer, lengths, depths, trials=3, seed=7)
    assert len(result.accuracy) == 3 and all(len(row) == 3 for row in result.accuracy)
    assert all(0.0 <= a <= 1.0 for row in result.accuracy + result.contains for a in row)
    assert len(result.samples) == 27
    assert [(s.length, s.depth) for s in result.samples[:4]] == [(20, 0.0)] * 3 + [(20, 0.5)]
    assert all(s.prompt_tokens == s.length for s in result.samples)
    assert result.to_dict()["spec"]["name"] == "symbols"
    again = needle_probe(lab_model, tokenizer, lengths, depths, trials=3, seed=7)
    assert again == result
    other = needle_probe(lab_model, tokenizer, lengths, depths, trials=3, seed=8)
    assert [s.value for s in other.samples] != [s.value for s in result.samples]
    # a cell's prompts do not depend on the rest of the grid
    alone = needle_probe(lab_model, tokenizer, [40], [0.5], trials=3, seed=7)
    assert alone.samples == result.samples[12:15]
    png = write_heatmap(result, tmp_path / "plots" / "needle.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_english_probe_runs_on_a_bpe_model(bpe_tokenizer):
    model = build_model(get_size("xs"), bpe_tokenizer, seed=0, max_positions=256).eval()
    result = needle_probe(model, bpe_tokenizer, [64, 200], [0.0, 1.0], trials=1, seed=0)
    assert result.spec.name == "english"
    assert len(result.accuracy) == 2 and len(result.accuracy[0]) == 2
    assert all(s.length - 3 <= s.prompt_tokens <= s.length for s in result.samples)


def test_too_long_is_a_one_line_error(lab_model, tokenizer):
    with pytest.raises(SmolmixError) as err:
        needle_probe(lab_model, tokenizer, [32, 64], [0.5], trials=1, seed=0)
    assert err.value.where == "--lengths"
    assert "64" in str(err.value) and "\n" not in str(err.value)
    shortest = shortest_length(tokenizer)
    assert shortest == 9  # "= 4 8 2 1 = ? =" and one filler word
    with pytest.raises(SmolmixError, match="shorter"):
        needle_probe(lab_model, tokenizer, [shortest - 1], [0.5], trials=1, seed=0)
    needle_probe(lab_model, tokenizer, [shortest], [0.5], trials=1, seed=0)
    with pytest.raises(SmolmixError):
        needle_probe(lab_model, tokenizer, [32], [1.5], trials=1, seed=0)


def test_text_the_tokenizer_cannot_spell_is_an_error(tokenizer):
    with pytest.raises(SmolmixError, match="unknown token") as err:
        resolve_spec(tokenizer, "english")
    assert err.value.where == "--filler"
    with pytest.raises(SmolmixError, match="filler"):
        resolve_spec(tokenizer, filler="copy banana sort")
    assert resolve_spec(tokenizer, filler="copy sort").filler == "copy sort"
    assert symbol_spec(tokenizer).needle_text("4821") == "= 4 8 2 1 ="


def test_extract_value():
    assert extract_value(" 4821. The", ENGLISH) == "4821"
    assert extract_value(" none", ENGLISH) is None
    spec = NeedleSpec(name="s", filler="a b", needle="= {value} =", question=" ? =",
                      digit_sep=" ")
    assert extract_value(" 4 8 2 1 = 3", spec) == "4821"
    assert extract_value(" 48 2", spec) == "4"


def _leading_digits(answer: str) -> str:
    """The digits the answer starts with, one token each (``"4 8 2 1 = 3"`` → ``"4821"``)."""
    digits = []
    for token in answer.split():
        if not (len(token) == 1 and token.isdigit()):
            break
        digits.append(token)
    return "".join(digits)


def test_a_briefly_trained_model_is_scored_sample_by_sample(tokenizer):
    # Not mocked: a ladder model trained for a few seconds on symbol-needle prompts of 12-20
    # tokens retrieves some needles and misses others (chance is 1e-4). Every sample's verdict
    # must match its answer, and every cell's accuracy the mean of its samples.
    import torch

    from smolmix.train.data import pad_batch
    from smolmix.train.encoding import encode_prompt_completion

    spec = resolve_spec(tokenizer)
    # hidden 32, 2 layers: the size this test was calibrated on (the lab's ladder moves)
    model = build_model(LadderSize("needle", hidden=32, layers=2, heads=2, intermediate=96),
                        tokenizer, seed=0)
    rng = random.Random(123)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(400):
        prompts, answers = [], []
        for _ in range(32):
            value = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(3))
            stack = build_haystack(tokenizer, spec, rng.randint(12, 20), rng.random(), value, rng)
            prompts.append(stack.prompt)
            answers.append(" " + spec.value_text(value))
        enc = encode_prompt_completion(tokenizer, prompts, answers)
        model(**pad_batch(enc["input_ids"], enc["labels"], tokenizer.pad_token_id)).loss.backward()
        opt.step()
        opt.zero_grad()
    lengths, depths, trials = [12, 20], [0.0, 0.5, 1.0], 8
    result = needle_probe(model.eval(), tokenizer, lengths, depths, trials=trials, seed=0)
    right = [s.exact for s in result.samples]
    assert 0 < sum(right) < len(right), "want some needles found and some missed"
    for s in result.samples:
        assert s.exact == (_leading_digits(s.answer) == s.value), s
        assert s.contains == (" ".join(s.value) in s.answer), s
    for i, length in enumerate(lengths):
        for j, depth in enumerate(depths):
            cell = [s for s in result.samples if s.length == length and s.depth == depth]
            assert len(cell) == trials
            assert result.accuracy[i][j] == sum(s.exact for s in cell) / trials
            assert result.contains[i][j] == sum(s.contains for s in cell) / trials
