"""Prompt/completion → token ids with completion-only labels (the prompt is masked with -100)."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

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
