"""How a prompt becomes token ids, one rule for training and for generation.

Two formats:

- ``chat``: the prompt is a user message (or a list of messages) rendered by the tokenizer's
  chat template with the generation prompt; the template's tokens are used exactly as they
  are (a template that starts with ``bos_token`` has its BOS; nothing is added twice);
- ``plain``: the prompt text, after the special tokens the tokenizer itself puts in front of
  a text (the BOS of Llama-3.2 or Gemma tokenizers; nothing for GPT-2 or SmolLM2).

A run records the format it trained with (:func:`write_prompt_format` beside the model), and
``smolmix eval --chat-template auto`` reads it back (:func:`read_prompt_format`), so a model is
prompted the way it was trained.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from smolmix.core.errors import SmolmixError
from smolmix.core.inputs import read_json_object

CHAT, PLAIN = "chat", "plain"
SETTINGS = ("auto", "on", "off")
PROMPT_FORMAT_FILE = "smolmix.json"

Prompt = str | Sequence[dict]


def has_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer has a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def choose_format(setting: str, tokenizer: PreTrainedTokenizerBase, trained: str | None = None,
                  flag: str = "--chat-template") -> str:
    """``on``: chat (the tokenizer must have a template); ``off``: plain; ``auto``: the format
    the model was trained with when known, else chat for tokenizers with a template."""
    if setting not in SETTINGS:
        raise SmolmixError(f"must be one of {', '.join(SETTINGS)}, got {setting!r}", flag)
    if setting == "on" or (setting == "auto" and trained == CHAT):
        if not has_chat_template(tokenizer):
            raise SmolmixError("the tokenizer has no chat template (use off, or a tokenizer "
                               "with one)", flag)
        return CHAT
    if setting == "off":
        return PLAIN
    if trained in (CHAT, PLAIN):
        return trained
    return CHAT if has_chat_template(tokenizer) else PLAIN


def special_prefix(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The special tokens the tokenizer puts in front of a text (its BOS, if it adds one)."""
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    for start in range(len(with_special) - len(bare) + 1):
        if with_special[start:start + len(bare)] == bare:
            return list(with_special[:start])
    return []


def as_messages(prompt: Prompt) -> list[dict]:
    """A prompt as chat messages (a text is one user message)."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def template_ids(tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict],
                 add_generation_prompt: bool) -> list[int]:
    """The chat template's token ids for ``messages``."""
    ids = tokenizer.apply_chat_template(list(messages), tokenize=True,
                                        add_generation_prompt=add_generation_prompt)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # BatchEncoding in newer transformers
        ids = ids["input_ids"]
    return list(ids)


def token_ids(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    """Each text's token ids without special tokens: ``tokenizer(texts,
    add_special_tokens=False)["input_ids"]``, through the Rust tokenizer directly when the
    tokenizer is a fast one with no truncation or padding set (the same ids, without converting
    every encoding into a ``BatchEncoding``, which dominated encoding short lab examples)."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if tokenizer.is_fast else None
    if backend is None or backend.truncation is not None or backend.padding is not None:
        return tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [e.ids for e in backend.encode_batch(list(texts), add_special_tokens=False)]


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Prompt],
               fmt: str) -> list[list[int]]:
    """Each prompt's token ids in format ``fmt`` (a list of messages is always chat)."""
    if fmt not in (CHAT, PLAIN):
        raise SmolmixError(f"prompt format must be chat or plain, got {fmt!r}", "prompt_format")
    out: list[list[int] | None] = [None] * len(prompts)
    texts = [i for i, p in enumerate(prompts) if isinstance(p, str) and fmt == PLAIN]
    if texts:
        prefix = special_prefix(tokenizer)
        encoded = token_ids(tokenizer, [prompts[i] for i in texts])
        for i, ids in zip(texts, encoded):
            out[i] = [*prefix, *ids]
    chats = [i for i, p in enumerate(prompts) if out[i] is None]
    if chats and not has_chat_template(tokenizer):
        raise SmolmixError("chat prompts need a chat template; the tokenizer has none",
                           "tokenizer")
    for i in chats:
        out[i] = template_ids(tokenizer, as_messages(prompts[i]), add_generation_prompt=True)
    return out  # type: ignore[return-value]


def write_prompt_format(folder: Path, fmt: str) -> None:
    """Record beside a model (or checkpoint) the prompt format it was trained with."""
    (Path(folder) / PROMPT_FORMAT_FILE).write_text(json.dumps({"prompt_format": fmt}) + "\n")


def read_prompt_format(folder: str | Path) -> str | None:
    """The prompt format a model folder was trained with, from the record ``smolmix train``
    writes into its final model and each checkpoint; None when unknown (a model not trained by
    smolmix, a ``.gguf`` file, a hub id). A record that is there but unreadable is an error,
    not a guess."""
    path = Path(folder) / PROMPT_FORMAT_FILE
    if not path.is_file():
        return None
    fmt = read_json_object(path, PROMPT_FORMAT_FILE).get("prompt_format")
    if fmt not in (CHAT, PLAIN):
        raise SmolmixError(f"prompt_format must be {CHAT!r} or {PLAIN!r}, got "
                           f"{json.dumps(fmt)[:40]}", str(path))
    return fmt
