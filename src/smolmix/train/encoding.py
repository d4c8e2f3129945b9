"""Records → token ids with completion-only labels (the prompt is masked with -100), truncation
and packing."""

from __future__ import annotations

from collections.abc import Sequence

from datasets import Dataset
from transformers import PreTrainedTokenizerBase
from trl import pack_dataset

from smolmix.core.errors import SmolmixError
from smolmix.core.records import Record
from smolmix.models.prompting import (
    CHAT,
    PLAIN,
    as_messages,
    has_chat_template,
    prompt_ids,
    template_ids,
    token_ids,
)

IGNORE_INDEX = -100


def encode_prompt_completion(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], completions: Sequence[str]
) -> dict[str, list[list[int]]]:
    """Batch-encode plain examples: ``input_ids`` = prompt + completion + EOS (the prompt
    after the tokenizer's own special prefix, its BOS if it adds one:
    :func:`smolmix.models.prompting.prompt_ids`), ``labels`` mask the prompt.

    Prompt and completion are tokenized separately, so the boundary is exact; the EOS token is
    part of the target, which makes teacher-forced exact match equal to greedy-decoding exact
    match (the model must also stop).
    """
    p_ids = prompt_ids(tokenizer, list(prompts), PLAIN)
    c_ids = token_ids(tokenizer, list(completions))
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
    before it (with the generation prompt) and the conversation up to it, up to and including
    its first EOS (what a template writes after the EOS, ChatML's newline after
    ``<|im_end|>``, is not learned: generation stops at the EOS). The conversation must end
    with an assistant message; an EOS token ends the last target if the template writes none.
    """
    if turns not in ("all", "last"):
        raise SmolmixError(f"assistant_turns must be 'all' or 'last', got {turns!r}",
                           "assistant_turns")
    input_ids, labels = [], []
    eos = tokenizer.eos_token_id
    for i, messages in enumerate(conversations):
        where = f"messages of example {i}"
        if not messages or messages[-1].get("role") != "assistant":
            raise SmolmixError("a conversation must end with an assistant message", where)
        full = template_ids(tokenizer, messages, add_generation_prompt=False)
        label = [IGNORE_INDEX] * len(full)
        replies = [k for k, m in enumerate(messages) if m.get("role") == "assistant"]
        ended = False
        for k in replies if turns == "all" else replies[-1:]:
            before = template_ids(tokenizer, messages[:k], add_generation_prompt=True)
            upto = full if k == len(messages) - 1 else template_ids(
                tokenizer, messages[:k + 1], add_generation_prompt=False)
            if full[:len(before)] != before or full[:len(upto)] != upto:
                raise SmolmixError("the chat template does not extend a conversation with its "
                                   "next message; cannot mask the prompt", where)
            target = upto[len(before):]
            ended = eos in target
            if ended:
                target = target[:target.index(eos) + 1]
            label[len(before):len(before) + len(target)] = target
        if not ended:
            full, label = [*full, eos], [*label, eos]
        input_ids.append(full)
        labels.append(label)
    return {"input_ids": input_ids, "labels": labels}


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
    """Pack whole examples into rows of at most ``max_length`` tokens with TRL's best-fit
    decreasing packing (:func:`trl.pack_dataset`, strategy ``bfd``); each row's
    ``position_ids`` restart at every example.

    The position ids mark where each example starts: :func:`smolmix.train.data.collate` turns
    them into a block-diagonal causal attention mask, so no example attends to another.
    """
    packed = pack_dataset(Dataset.from_dict({"input_ids": encoded["input_ids"],
                                             "labels": encoded["labels"]}), max_length, "bfd",
                          {"keep_in_memory": True}).to_dict()
    packed["position_ids"] = [[p for n in lengths for p in range(n)]
                              for lengths in packed.pop("seq_lengths")]
    return packed


def encode_records(tokenizer: PreTrainedTokenizerBase, records: Sequence[Record],
                   turns: str = "all", prompt_format: str = PLAIN) -> dict[str, list[list[int]]]:
    """Records as training examples. Conversations go through the chat template with the
    loss on the assistant's ``turns`` (a conversation with a separate completion is its
    prompt, the completion the reply to learn); prompt/completion records are plain text
    (``prompt_format`` plain) or a user/assistant exchange (chat). Encodings come back in the
    order given."""
    chats = [i for i, r in enumerate(records) if r.messages or prompt_format == CHAT]
    plain = [i for i, r in enumerate(records) if not (r.messages or prompt_format == CHAT)]
    if chats and not has_chat_template(tokenizer):
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
            tokenizer, [conversation(records[i]) for i in chats], turns)))
    for indices, enc in parts:
        for j, i in enumerate(indices):
            out["input_ids"][i] = enc["input_ids"][j]
            out["labels"][i] = enc["labels"][j]
    return out


def conversation(record: Record) -> list[dict]:
    """A record as a chat: its conversation, or its prompt as the user's message and its
    completion as the assistant's reply."""
    return record.conversation or [*as_messages(record.prompt),
                                   {"role": "assistant", "content": record.completion}]
