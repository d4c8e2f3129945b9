"""Needle-in-a-haystack: can the model retrieve one fact planted at a given depth of a long prompt?

SmolLM2 checked its long-context extension this way. A prompt is filler text ("haystack") of a
given total length in the model's own tokens, with a needle (``The secret number is 4821.``)
inserted at a relative depth (0 = first, 1 = just before the question), followed by a question
whose answer continues the prompt (``... What is the secret number? The secret number is``).
The model answers greedily (:func:`smolmix.inference.hf.generate`) and a sample counts as
retrieved when the first number in the answer is exactly the needle's value.

The text comes from a :class:`NeedleSpec`:

- ``english``: plain English filler sentences, for real tokenizers (SmolLM2, Qwen, ...);
- ``symbols``: for word-level tokenizers that only know a few symbols, like the lab's: the
  filler is the tokenizer's own alphabetic words (the lab's task names), the needle
  ``= 4 8 2 1 =`` and the question ``? =``;
- ``auto`` (the default): ``english`` when the tokenizer encodes it without its unknown token,
  else ``symbols``.

Every text the probe builds is checked for ``tokenizer.unk_token_id``: a needle the tokenizer
cannot spell is a user error, not a zero score.

How exact the construction is (checked by ``tests/test_needle.py``):

- length: the prompt (haystack + question, no special tokens) has at most ``length`` tokens and
  at least ``length`` minus the tokens of one filler word (exactly ``length`` on a word-level
  tokenizer whose filler words are one token each). ``length`` plus the answer's
  ``max_new_tokens`` must fit the model's ``max_position_embeddings``.
- depth: the needle goes in between two filler units (sentences of an English filler, single
  symbols of a symbol filler), at the unit boundary whose filler-token position is nearest
  ``depth`` x the filler's tokens; so it is off by at most half a unit plus one token. Each
  sample records the depth actually obtained.

Randomness: each (length, depth, trial) draws its needle value and the order of the filler
units from its own stream seeded by ``seed``, so the same seed gives the same prompts whatever
the grid.
"""

from __future__ import annotations

import bisect
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from smolmix.core.errors import SmolmixError
from smolmix.core.figures import new_figure, save_png
from smolmix.inference.hf import generate

DEFAULT_FILLER = (
    "The morning market opened slowly as the fog lifted from the river. "
    "Farmers stacked baskets of apples and pears beside the old stone bridge. "
    "A baker carried warm bread through the narrow street and greeted every neighbour. "
    "Children ran along the path to the school, counting the boats on the water. "
    "The library on the hill kept its windows open to let in the cool air. "
    "An old clock in the square struck the hour, and pigeons rose from the roofs. "
    "In the afternoon the wind turned, and clouds gathered over the western fields. "
    "A painter set up an easel near the harbour and studied the colour of the waves. "
    "The ferry crossed the bay twice each day, carrying letters, tools and travellers. "
    "Gardeners trimmed the hedges in the park and raked the leaves into neat piles. "
    "At the station a young man waited with a suitcase and a map of the mountains. "
    "The shopkeeper wrote the prices on a small board and placed it by the door. "
    "Rain began to fall in the evening, soft at first and then heavy on the tiles. "
    "Lamps were lit one by one along the quay, and the streets grew quiet. "
    "A cat slept on a warm step while music drifted from an open window. "
    "Far away on the hills, shepherds brought their flocks down before the night. "
    "The river rose a little with the rain, and the mill wheel turned faster. "
    "Travellers at the inn told stories of distant cities and long roads. "
    "By midnight the town was asleep, and only the sound of the water remained. "
    "When the sun came back, the whole valley smelled of wet grass and pine."
)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class NeedleSpec:
    """The probe's text: filler, needle template, question, and how values are written."""

    name: str
    filler: str
    needle: str  # contains "{value}"
    question: str  # appended to the haystack as is (include its leading separator)
    digits: int = 4
    digit_sep: str = ""  # between the value's digits: "" -> 4821, " " -> 4 8 2 1
    max_new_tokens: int = 8
    stop: tuple[str, ...] = ()

    def value_text(self, value: str) -> str:
        return self.digit_sep.join(value)

    def needle_text(self, value: str) -> str:
        return self.needle.format(value=self.value_text(value))


ENGLISH = NeedleSpec(
    name="english",
    filler=DEFAULT_FILLER,
    needle="The secret number is {value}.",
    question="\n\nWhat is the secret number? The secret number is",
    stop=("\n",),
)


def symbol_spec(tokenizer: PreTrainedTokenizerBase, filler: str | None = None) -> NeedleSpec:
    """The spec for a word-level tokenizer: needle ``= d d d d =``, question ``? =``, and by
    default the tokenizer's own alphabetic, non-special words as filler."""
    if filler is None:
        special = set(tokenizer.all_special_tokens)
        words = sorted(w for w in tokenizer.get_vocab()
                       if w not in special and re.fullmatch(r"[A-Za-z_]+", w))
        filler = " ".join(words)
    return NeedleSpec(name="symbols", filler=filler, needle="= {value} =", question=" ? =",
                      digit_sep=" ", max_new_tokens=6)


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class NeedleSample:
    """One prompt and its answer."""

    length: int  # requested prompt length in tokens
    depth: float  # requested depth
    trial: int
    value: str  # the needle's digits
    prompt_tokens: int  # actual prompt length
    needle_token: int  # index of the needle's first token in the prompt
    actual_depth: float  # filler tokens before the needle / all filler tokens
    answer: str
    extracted: str | None  # the first number in the answer (digits only)
    exact: bool  # extracted == value
    contains: bool  # the value (as written in the needle) appears in the answer


@dataclass(frozen=True)
class NeedleResult:
    """Retrieval accuracy per (length, depth) cell, and every sample."""

    lengths: list[int]
    depths: list[float]
    trials: int
    seed: int
    spec: NeedleSpec
    accuracy: list[list[float]]  # [length][depth]: mean exact retrieval
    contains: list[list[float]]  # [length][depth]: mean "value appears in the answer"
    samples: list[NeedleSample] = field(repr=False)

    def to_dict(self) -> dict:
        """A JSON-ready dict (results files)."""
        return asdict(self)


@dataclass(frozen=True)
class Haystack:
    """One built prompt and where its parts are."""

    prompt: str
    prompt_tokens: int
    needle_token: int
    needle_tokens: int
    haystack_tokens: int  # tokens before the question

    @property
    def actual_depth(self) -> float:
        filler = self.haystack_tokens - self.needle_tokens
        return self.needle_token / filler if filler > 0 else 0.0


# ---------------------------------------------------------------- building prompts


def resolve_spec(tokenizer: PreTrainedTokenizerBase, spec: NeedleSpec | str = "auto",
                 filler: str | None = None) -> NeedleSpec:
    """The spec to use (``"auto"``, ``"english"``, ``"symbols"`` or a :class:`NeedleSpec`), with
    ``filler`` replacing its filler; checked to encode without unknown tokens."""
    if isinstance(spec, NeedleSpec):
        chosen = spec
    elif spec == "english":
        chosen = ENGLISH
    elif spec == "symbols":
        chosen = symbol_spec(tokenizer, filler)
    elif spec == "auto":
        chosen = ENGLISH if _unknown(tokenizer, ENGLISH) is None else symbol_spec(tokenizer, filler)
    else:
        raise SmolmixError(f"unknown needle text {spec!r}; known: auto, english, symbols",
                           "--needle-text")
    if filler is not None:
        chosen = replace(chosen, filler=filler)
    if not _units(chosen.filler):
        raise SmolmixError("the needle probe's filler is empty", "--filler")
    bad = _unknown(tokenizer, chosen)
    if bad is not None:
        raise SmolmixError(f"the tokenizer cannot encode the needle probe's {bad} "
                           f"(unknown token); pass a filler made of words it knows", "--filler")
    return chosen


def _unknown(tokenizer: PreTrainedTokenizerBase, spec: NeedleSpec) -> str | None:
    """Which part of ``spec`` the tokenizer maps to its unknown token, if any."""
    unk = tokenizer.unk_token_id
    parts = {"filler": spec.filler, "needle": spec.needle_text("0123456789"[: spec.digits]),
             "question": spec.question}
    for name, text in parts.items():
        ids = _encode(tokenizer, text)
        if not ids or (unk is not None and unk in ids):
            return name
    return None


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _units(filler: str) -> list[str]:
    """Sentences when the filler has sentence ends, else single words."""
    text = " ".join(filler.split())
    if not text:
        return []
    sentences = [s for s in _SENTENCE_END.split(text) if s]
    return sentences if len(sentences) > 1 else text.split()


def _word_stream(units: list[str], rng: random.Random, min_words: int,
                 words: list[str], starts: list[int]) -> None:
    """Extend ``words`` (and the indices where a unit starts) with shuffled rounds of units."""
    while len(words) < min_words:
        order = list(units)
        rng.shuffle(order)
        for unit in order:
            starts.append(len(words))
            words.extend(unit.split())


def build_haystack(tokenizer: PreTrainedTokenizerBase, spec: NeedleSpec, length: int,
                   depth: float, value: str, rng: random.Random) -> Haystack:
    """The prompt of ``length`` tokens with the needle for ``value`` at ``depth``."""
    needle = spec.needle_text(value)
    units = _units(spec.filler)
    fixed = len(_encode(tokenizer, needle + spec.question))
    words: list[str] = []
    starts: list[int] = []
    per_word = max(1.0, len(_encode(tokenizer, " ".join(spec.filler.split())))
                   / len(spec.filler.split()))
    want = math.ceil(max(length - fixed, 0) / per_word) + 8

    def text(n: int, k: int) -> tuple[str, int]:
        """The prompt with ``n`` filler words, the needle before word ``k``; needle char."""
        before, after = " ".join(words[:k]), " ".join(words[k:n])
        head = f"{before} " if before else ""
        body = head + needle + (f" {after}" if after else "")
        return body + spec.question, len(head)

    def rough_k(n: int) -> int:
        candidates = [s for s in starts if s <= n] + [n]
        return min(candidates, key=lambda s: abs(s - depth * n))

    def count(n: int) -> int:
        return len(_encode(tokenizer, text(n, rough_k(n))[0]))

    while True:
        _word_stream(units, rng, want, words, starts)
        n = _largest_fitting(count, length, len(words), estimate=max(0, want - 8))
        if n < len(words):
            break
        want *= 2  # the stream ran out before the prompt was full
    k = _place(tokenizer, words, starts, n, depth)
    while True:
        prompt, needle_char = text(n, k)
        enc = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
        if len(enc["input_ids"]) <= length or n == 0:
            break
        n -= 1  # moving the needle changed a token boundary: one word less
        k = min(k, n)
    ends = [end for _, end in enc["offset_mapping"]]
    needle_token = bisect.bisect_right(ends, needle_char)
    needle_end = bisect.bisect_left(ends, needle_char + len(needle))
    question_char = len(prompt) - len(spec.question)
    haystack_tokens = bisect.bisect_left(ends, question_char + 1)
    return Haystack(prompt=prompt, prompt_tokens=len(enc["input_ids"]),
                    needle_token=needle_token, needle_tokens=needle_end + 1 - needle_token,
                    haystack_tokens=haystack_tokens)


def _largest_fitting(count: Callable[[int], int], limit: int, n_max: int, estimate: int) -> int:
    """The largest ``n`` in [0, n_max] with ``count(n) <= limit`` (``count`` increasing),
    searched outwards from ``estimate`` and then by bisection: few calls near a good guess."""
    n = min(max(estimate, 0), n_max)
    if count(n) <= limit:
        lo, step = n, 1
        while lo + step <= n_max and count(lo + step) <= limit:
            lo, step = lo + step, step * 2
        hi = min(lo + step, n_max + 1)
    else:
        hi, step = n, 1
        while hi - step >= 0 and count(hi - step) > limit:
            hi, step = hi - step, step * 2
        lo = max(hi - step, 0)
        if count(lo) > limit:
            return 0
    while hi - lo > 1:  # count(lo) <= limit < count(hi), or hi == n_max + 1
        mid = (lo + hi) // 2
        if count(mid) <= limit:
            lo = mid
        else:
            hi = mid
    return lo


def _place(tokenizer: PreTrainedTokenizerBase, words: list[str], starts: list[int], n: int,
           depth: float) -> int:
    """The unit boundary (word index) whose filler-token position is nearest ``depth``."""
    filler = " ".join(words[:n])
    enc = tokenizer(filler, add_special_tokens=False, return_offsets_mapping=True)
    ends = [end for _, end in enc["offset_mapping"]]
    total = len(enc["input_ids"])
    char_starts = []
    pos = 0
    for word in words[:n]:
        char_starts.append(pos)
        pos += len(word) + 1
    candidates = [s for s in starts if s < n] + [n]

    def token_pos(k: int) -> int:
        return total if k >= n else bisect.bisect_right(ends, char_starts[k])

    return min(candidates, key=lambda k: (abs(token_pos(k) - depth * total), k))


def extract_value(answer: str, spec: NeedleSpec) -> str | None:
    """The first number in ``answer`` (digits joined by the spec's separator), digits only."""
    sep = re.escape(spec.digit_sep)
    found = re.search(rf"\d(?:{sep}\d)*" if sep else r"\d+", answer)
    return re.sub(r"\D", "", found.group()) if found else None


# ---------------------------------------------------------------- the probe


def shortest_length(tokenizer: PreTrainedTokenizerBase, spec: NeedleSpec | str = "auto",
                    filler: str | None = None) -> int:
    """The shortest length the probe accepts: the needle and the question plus one token."""
    spec = resolve_spec(tokenizer, spec, filler)
    return len(_encode(tokenizer, spec.needle_text("9" * spec.digits) + spec.question)) + 1


def _check_grid(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, spec: NeedleSpec,
                lengths: Sequence[int], depths: Sequence[float], trials: int) -> None:
    if not lengths:
        raise SmolmixError("no lengths given", "--lengths")
    if not depths:
        raise SmolmixError("no depths given", "--depths")
    if trials <= 0:
        raise SmolmixError(f"trials must be positive, got {trials}", "--trials")
    for d in depths:
        if not 0.0 <= d <= 1.0:
            raise SmolmixError(f"depths must be between 0 and 1, got {d}", "--depths")
    max_pos = getattr(model.config, "max_position_embeddings", None)
    shortest = shortest_length(tokenizer, spec)
    for length in lengths:
        if max_pos is not None and length + spec.max_new_tokens > max_pos:
            raise SmolmixError(
                f"length {length} plus {spec.max_new_tokens} answer tokens exceeds the model's "
                f"{max_pos} positions (max_position_embeddings); use lengths up to "
                f"{max_pos - spec.max_new_tokens}", "--lengths")
        if length < shortest:
            raise SmolmixError(f"length {length} is shorter than the needle and question "
                               f"({shortest} tokens)", "--lengths")


def needle_probe(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 lengths: Sequence[int], depths: Sequence[float], trials: int, seed: int,
                 filler: str | None = None, *, spec: NeedleSpec | str = "auto",
                 batch_size: int = 8, progress: Callable[[int], None] | None = None
                 ) -> NeedleResult:
    """Retrieval accuracy for every (length, depth) cell, ``trials`` prompts each.

    ``filler`` replaces the spec's filler text; ``spec`` picks the text (see the module doc).
    ``progress`` is passed to :func:`generate` (called with prompts done per batch).
    """
    spec = resolve_spec(tokenizer, spec, filler)
    lengths, depths = [int(n) for n in lengths], [float(d) for d in depths]
    _check_grid(model, tokenizer, spec, lengths, depths, trials)
    cells, stacks, values = [], [], []
    for length in lengths:
        for depth in depths:
            for trial in range(trials):
                rng = random.Random(f"needle:{seed}:{length}:{depth!r}:{trial}")
                value = str(rng.randint(1, 9)) + "".join(
                    str(rng.randint(0, 9)) for _ in range(spec.digits - 1))
                cells.append((length, depth, trial))
                values.append(value)
                stacks.append(build_haystack(tokenizer, spec, length, depth, value, rng))
    answers = generate(model, tokenizer, [s.prompt for s in stacks], spec.max_new_tokens,
                       batch_size=batch_size, stop=spec.stop, progress=progress)
    samples = []
    for (length, depth, trial), value, stack, answer in zip(cells, values, stacks, answers,
                                                            strict=True):
        extracted = extract_value(answer, spec)
        samples.append(NeedleSample(
            length=length, depth=depth, trial=trial, value=value,
            prompt_tokens=stack.prompt_tokens, needle_token=stack.needle_token,
            actual_depth=round(stack.actual_depth, 4), answer=answer, extracted=extracted,
            exact=extracted == value, contains=spec.value_text(value) in answer))
    per_cell = len(depths) * trials

    def grid(key: str) -> list[list[float]]:
        return [[sum(getattr(s, key) for s in samples[i * per_cell + j * trials:
                                                      i * per_cell + (j + 1) * trials]) / trials
                 for j in range(len(depths))] for i in range(len(lengths))]

    return NeedleResult(lengths=lengths, depths=depths, trials=trials, seed=seed, spec=spec,
                        accuracy=grid("exact"), contains=grid("contains"), samples=samples)


# ---------------------------------------------------------------- the heatmap


def write_heatmap(result: NeedleResult, path: Path) -> Path:
    """A PNG heatmap: context length (x) by needle depth (y), retrieval accuracy in each cell."""
    grid = np.array(result.accuracy, dtype=float).T  # rows: depths, columns: lengths
    fig = new_figure(max(4.8, 2.4 + 0.9 * len(result.lengths)),
                     max(3.2, 1.4 + 0.42 * len(result.depths)))
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(result.lengths)), [f"{n:,}" for n in result.lengths])
    ax.set_yticks(range(len(result.depths)), [f"{d:.0%}" for d in result.depths])
    ax.tick_params(length=0)
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, f"{value * 100:.0f}", ha="center", va="center",
                color="black" if value > 0.6 else "white", fontsize=9)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth")
    fig.colorbar(image, ax=ax, label="retrieval accuracy", shrink=0.8, pad=0.02)
    ax.set_title(f"Needle in a haystack: retrieved (%), {result.trials} trial"
                 f"{'s' * (result.trials > 1)} per cell ({result.spec.name} text)", fontsize=10)
    return save_png(fig, path)
