"""Records → token ids with completion-only labels (the prompt is masked with -100), truncation
and packing."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from smolmix.core.errors import SmolmixError
from smolmix.core.records import Record

IGNORE_INDEX = -100


def encode_prompt_completion(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], completions: Sequence[str]
) -> dict[str, list[list[int]]]:
    """Batch-encode examples: ``input_ids`` = prompt + completion + EOS, ``labels`` mask the prompt.

    Prompt and completion are tokenized separately, so the boundary is exact; the EOS token is
    part of the target, which makes teacher-forced exact match equal to greedy-decoding exact
    match (the model must also stop).
    """
    p_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    input_ids, labels = [], []
    for p, c in zip(p_ids, c_ids):
        target = [*c, eos]
        input_ids.append([*p, *target])
        labels.append([IGNORE_INDEX] * len(p) + target)
    return {"input_ids": input_ids, "labels": labels}


def encode_conversations(tokenizer: PreTrainedTokenizerBase,
                         conversations: Sequence[Sequence[dict]],
                         turns: str = "all") -> dict[str, list[list[int]]]:
    """Chat-template encoding with the loss on the assistant's turns: every one of them
    (``turns="all"``, TRL's assistant-only loss) or the last one only (``"last"``).

    Each turn's target is what the template adds for it: the tokens between the conversation
    before it (with the generation prompt) and the conversation up to it. The conversation must
    end with an assistant message; an EOS token ends the last target if the template does not.
    """
    if turns not in ("all", "last"):
        raise SmolmixError(f"assistant_turns must be 'all' or 'last', got {turns!r}",
                           "assistant_turns")
    input_ids, labels = [], []
    for i, messages in enumerate(conversations):
        where = f"messages of example {i}"
        if not messages or messages[-1].get("role") != "assistant":
            raise SmolmixError("a conversation must end with an assistant message", where)
        full = _template_ids(tokenizer, messages, add_generation_prompt=False)
        label = [IGNORE_INDEX] * len(full)
        replies = [k for k, m in enumerate(messages) if m.get("role") == "assistant"]
        for k in replies if turns == "all" else replies[-1:]:
            before = _template_ids(tokenizer, messages[:k], add_generation_prompt=True)
            upto = full if k == len(messages) - 1 else _template_ids(
                tokenizer, messages[:k + 1], add_generation_prompt=False)
            if full[:len(before)] != before or full[:len(upto)] != upto:
                raise SmolmixError("the chat template does not extend a conversation with its "
                                   "next message; cannot mask the prompt", where)
            label[len(before):len(upto)] = upto[len(before):]
        if full[-1] != tokenizer.eos_token_id:
            full, label = [*full, tokenizer.eos_token_id], [*label, tokenizer.eos_token_id]
        input_ids.append(full)
        labels.append(label)
    return {"input_ids": input_ids, "labels": labels}


def _template_ids(tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict],
                  add_generation_prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(list(messages), tokenize=True,
                                        add_generation_prompt=add_generation_prompt)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # BatchEncoding in newer transformers
        ids = ids["input_ids"]
    return list(ids)


def truncate(encoded: dict[str, list[list[int]]], max_length: int) -> int:
    """Cut every example to ``max_length`` tokens in place; return how many were cut."""
    cut = 0
    for key in ("input_ids", "labels"):
        for row_index, row in enumerate(encoded[key]):
            if len(row) > max_length:
                encoded[key][row_index] = row[:max_length]
                cut += key == "input_ids"
    return cut


def has_target(labels: Sequence[int]) -> bool:
    """Whether an example has a token to learn: a label after the first position (a causal LM
    predicts token ``i`` from the tokens before it, so the first label is never a target)."""
    return any(t != IGNORE_INDEX for t in labels[1:])


def drop_untrainable(encoded: dict[str, list[list[int]]]) -> list[int]:
    """Remove, in place, the examples with no target token left (a completion cut away by
    truncation); return their indices."""
    gone = [i for i, labels in enumerate(encoded["labels"]) if not has_target(labels)]
    if gone:
        dropped = set(gone)
        for key in encoded:
            encoded[key] = [row for i, row in enumerate(encoded[key]) if i not in dropped]
    return gone


def pack(encoded: dict[str, list[list[int]]], max_length: int) -> dict[str, list[list[int]]]:
    """Pack whole examples into rows of at most ``max_length`` tokens (best fit, longest
    first), each row's ``position_ids`` restarting at every example.

    The position ids mark where each example starts: :func:`smolmix.train.data.collate` turns
    them into a block-diagonal causal attention mask, so no example attends to another.
    """
    lengths = [len(row) for row in encoded["input_ids"]]
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, row), sorted
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        at = bisect.bisect_left(free, (lengths[i], -1))
        if at == len(free):
            rows.append([i])
            room, row = max_length - lengths[i], len(rows) - 1
        else:
            room, row = free.pop(at)
            rows[row].append(i)
            room -= lengths[i]
        bisect.insort(free, (room, row))
    out: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "position_ids": []}
    for members in rows:
        for key in ("input_ids", "labels"):
            out[key].append([t for i in members for t in encoded[key][i]])
        out["position_ids"].append([p for i in members for p in range(lengths[i])])
    return out


def encode_records(tokenizer: PreTrainedTokenizerBase, records: Sequence[Record],
                   turns: str = "all") -> dict[str, list[list[int]]]:
    """Prompt/completion records as text; conversations through the chat template, the loss
    on the assistant's ``turns`` (a conversation with a separate completion is its prompt,
    the completion the reply to learn). Encodings come back in the order given."""
    chats = [i for i, r in enumerate(records) if r.messages]
    plain = [i for i, r in enumerate(records) if not r.messages]
    if chats and not getattr(tokenizer, "chat_template", None):
        raise SmolmixError("the data has conversations (messages) but the tokenizer has no "
                           "chat template", "tokenizer")
    out: dict[str, list] = {"input_ids": [None] * len(records), "labels": [None] * len(records)}
    parts = []
    if plain:
        parts.append((plain, encode_prompt_completion(
            tokenizer, [records[i].prompt for i in plain],
            [records[i].completion for i in plain])))
    if chats:
        parts.append((chats, encode_conversations(
            tokenizer, [records[i].conversation for i in chats], turns)))
    for indices, enc in parts:
        for j, i in enumerate(indices):
            out["input_ids"][i] = enc["input_ids"][j]
            out["labels"][i] = enc["labels"][j]
    return out
