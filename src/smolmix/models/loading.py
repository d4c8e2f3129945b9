"""One loader for any causal LM checkpoint: a local folder or a hub id, weights from
safetensors only (never remote code), its tokenizer with a pad token."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from smolmix.core.errors import SmolmixError, first_line

DTYPES = ("float32", "bfloat16", "float16")


def check_model_path(name: str | Path, flag: str = "model") -> None:
    """A local model folder must exist and hold a config.json (anything else is a hub id)."""
    name = str(name)
    path = Path(name)
    if path.exists() or name.startswith((".", "/", "~")):
        if not path.exists():
            raise SmolmixError(f"model path {name!r} does not exist", flag)
        if not (path / "config.json").is_file():
            raise SmolmixError(f"{name!r} is not a model folder: no config.json", flag)


def load_model(name: str | Path, dtype: str = "float32", flag: str = "model") -> PreTrainedModel:
    """A causal LM from a local folder or a hub id, weights from safetensors only."""
    check_model_path(name, flag)
    try:
        return AutoModelForCausalLM.from_pretrained(str(name), dtype=getattr(torch, dtype),
                                                    use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise SmolmixError(f"cannot load model {str(name)!r}: {first_line(exc, 200)}",
                           flag) from None


def load_tokenizer(name: str | Path, flag: str = "tokenizer") -> PreTrainedTokenizerBase:
    """The tokenizer of a local folder or hub id; a missing pad token becomes EOS."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name))
    except (OSError, ValueError) as exc:
        raise SmolmixError(f"cannot load tokenizer {str(name)!r}: {first_line(exc, 200)}",
                           flag) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise SmolmixError(f"tokenizer {str(name)!r} has no EOS token", flag)
    return tokenizer


def load_checkpoint(path: str | Path, dtype: str = "float32", flag: str = "model"
                    ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A checkpoint's model and tokenizer (see :func:`load_model`, :func:`load_tokenizer`)."""
    return load_model(path, dtype, flag), load_tokenizer(path, flag)


def check_vocabulary(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                     flag: str = "tokenizer") -> None:
    """Every token id the tokenizer can produce must have a row in the model's embeddings."""
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise SmolmixError(f"tokenizer has {len(tokenizer)} tokens but the model's embeddings "
                           f"have {rows} rows (tokenizer and model do not match)", flag)
