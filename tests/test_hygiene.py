import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from smolmix.mix import hygiene
from smolmix.mix.hygiene import (
    Decontaminator,
    exact_duplicates,
    near_duplicates,
    normalise,
    scan,
)


def brute_contaminated(texts, eval_texts, n):
    """The plain definition: an eval gram occurs as a contiguous run of a text's words."""
    grams = set()
    for text in eval_texts:
        words = normalise(text).split()
        if 0 < len(words) < n:
            grams.add(tuple(words))
        grams.update(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    sizes = {len(g) for g in grams}
    found = []
    for index, text in enumerate(texts):
        words = normalise(text).split()
        if any(tuple(words[i:i + k]) in grams for k in sizes for i in range(len(words) - k + 1)):
            found.append(index)
    return found


def test_normalise():
    assert normalise("  Hello\t\tWORLD\n ﬁne\u00a0ℌ ") == "hello world fine h"
    assert normalise("plain words") == "plain words"
    assert normalise("") == normalise(" \n ") == ""


def test_exact_duplicates_keep_first_and_ignore_case_and_space():
    texts = ["The cat\nsat.", "the  CAT sat.", "a dog", " the cat sat. ", "A DOG", "new"]
    assert exact_duplicates(texts) == [1, 3, 4]
    assert exact_duplicates([]) == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet="aAbB \t\n\u00e9\u00c9\ufb00", max_size=6), max_size=20))
def test_exact_duplicates_match_brute_force(texts):
    seen, expected = set(), []
    for i, text in enumerate(texts):
        key = normalise(text)
        if key in seen:
            expected.append(i)
        seen.add(key)
    assert exact_duplicates(texts) == expected
    colliding = np.zeros(len(texts), dtype=np.uint64)  # every key equal: verification decides
    assert hygiene._verified_duplicates(texts, colliding) == expected


def test_exact_duplicates_survive_hash_collisions(monkeypatch):
    monkeypatch.setattr(hygiene, "hash", lambda text: 0, raising=False)
    assert exact_duplicates(["a", "b", "A", "c", "B ", "b"]) == [2, 4, 5]


def _sentence(rng, words=40):
    return " ".join(f"w{rng.randrange(5000)}" for _ in range(words))


def test_near_duplicates_catch_light_edits_only():
    rng = random.Random(0)
    original = _sentence(rng, 120)
    words = original.split()
    words[50] = "edited"
    edited = " ".join(words)
    texts = [original, _sentence(rng, 120), edited.upper(), _sentence(rng, 120)]
    assert near_duplicates(texts, threshold=0.8) == [2]
    assert near_duplicates(texts, threshold=0.8, seed=3) == near_duplicates(
        texts, threshold=0.8, seed=3)
    assert near_duplicates(["short", "short", "other"]) == [1]


def test_decontamination_short_eval_texts_and_configurable_n():
    eval_texts = ["one two three four five six", "What is 2+2?", "", "   "]
    dec = Decontaminator(eval_texts, n=4)
    texts = ["zero one two three four zero", "q: what   IS 2+2? a: 4", "two three four",
             "what is", "unrelated words here", ""]
    assert dec.contaminated(texts) == [0, 1] == brute_contaminated(texts, eval_texts, 4)
    assert Decontaminator(eval_texts, n=6).contaminated(texts) == [1]
    assert Decontaminator([]).contaminated(texts) == []


def test_decontamination_small_batches_and_odd_unicode():
    eval_texts = ["Ａｂｃ d\u00e9f ghi jkl", "bad \ud800 surrogate word"]
    dec = Decontaminator(eval_texts, n=3, batch_size=2)
    texts = ["x abc déf ghi", "déf ghi", "no", "a bad \ud800 surrogate", "bad \ud801 surrogate"]
    assert dec.contaminated(texts) == [0, 3] == brute_contaminated(texts, eval_texts, 3)


SEPARATORS = [" ", " ", "  ", "\t", "\r\n", "\x1c", "\u00a0", "\x85", "\u3000"]


@st.composite
def _joined(draw, words):
    """Words joined by assorted whitespace (ASCII and not), sometimes padded."""
    seps = draw(st.lists(st.sampled_from(SEPARATORS), min_size=len(words) + 1,
                         max_size=len(words) + 1))
    text = "".join(s + w for s, w in zip(seps, words))
    return text + seps[-1] if draw(st.booleans()) else text


@st.composite
def planted(draw):
    """Random texts over a tiny vocabulary with eval runs planted into some of them."""
    n = draw(st.integers(1, 6))
    vocab = ["a", "B", "c", "d", "é", "ﬀ"]
    words = st.lists(st.sampled_from(vocab), max_size=14)
    evals = [draw(_joined(w)) for w in draw(st.lists(words, max_size=5))]
    texts = [draw(_joined(w)) for w in draw(st.lists(words, max_size=12))]
    for i in draw(st.lists(st.integers(0, max(len(texts) - 1, 0)), max_size=4)):
        if texts and evals:
            source = normalise(draw(st.sampled_from(evals))).split()
            start = draw(st.integers(0, max(len(source) - n, 0)))
            texts[i] = texts[i] + "\n " + " ".join(source[start:start + n]).upper()
    return texts, evals, n


@settings(max_examples=150, deadline=None)
@given(planted(), st.integers(1, 4))
def test_decontamination_matches_brute_force(case, batch_size):
    texts, evals, n = case
    dec = Decontaminator(evals, n=n, batch_size=batch_size)
    assert dec.contaminated(texts) == brute_contaminated(texts, evals, n)
    assert scan(texts + texts[::-1], dec) == (exact_duplicates(texts + texts[::-1]),
                                              dec.contaminated(texts + texts[::-1]))


def test_decontamination_on_realistic_random_texts():
    rng = random.Random(1)
    evals = [_sentence(rng, rng.randrange(5, 60)) for _ in range(200)]
    texts = [_sentence(rng, rng.randrange(1, 150)) for _ in range(2000)]
    for i in rng.sample(range(len(texts)), 50):
        source = rng.choice(evals).split()
        start = rng.randrange(max(len(source) - 13, 0) + 1)
        texts[i] += " " + " ".join(source[start:start + 13])
    expected = brute_contaminated(texts, evals, 13)
    assert len(expected) >= 50
    dec = Decontaminator(evals, n=13, batch_size=300)
    assert dec.contaminated(texts) == expected
    texts += [t.upper() for t in texts[::7]]
    assert scan(texts, dec) == (exact_duplicates(texts), dec.contaminated(texts))
    assert scan(texts) == (exact_duplicates(texts), [])


def test_arrow_backed_texts_give_the_same_answers_as_lists():
    import random

    import pyarrow as pa

    from smolmix.mix.hygiene import ArrowTexts, Decontaminator, scan

    rng = random.Random(3)
    words = [f"w{i}" for i in range(40)]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 30))) for _ in range(500)]
    texts += [t.upper() for t in texts[:40]]  # duplicates by case
    evals = [" ".join(texts[i].split()[:13]) for i in range(0, 500, 50)]
    dec = Decontaminator(evals, n=13, batch_size=37)  # many slices, most at an offset
    assert scan(ArrowTexts(pa.array(texts)), dec) == scan(texts, dec)
    assert list(ArrowTexts(pa.array(texts))) == texts
