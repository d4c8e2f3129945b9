"""The ladder of tiny Llama-style models and a locally built word-level tokenizer.

Everything here is built offline. Checkpoints and tokenizers are saved as standard Hugging Face
files (safetensors weights, ``tokenizer.json``) so that ``AutoModelForCausalLM.from_pretrained``
and ``AutoTokenizer.from_pretrained`` load them with nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from smolmix.core.errors import lookup

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]


@dataclass(frozen=True)
class LadderSize:
    """One rung of the model ladder (a Llama-style decoder, as SmolLM2 uses)."""

    name: str
    hidden: int
    layers: int
    heads: int
    intermediate: int

    def config(self, vocab_size: int, max_positions: int,
               tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=self.hidden,
            intermediate_size=self.intermediate,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.heads,
            max_position_embeddings=max_positions,
            tie_word_embeddings=True,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )


# Width at fixed depth (2 layers), head dimension 12 (xxs: 8), MLP 3x the width: xs to xl span
# 12x in width, to xxl 16x (docs/lab-rare-tasks-design.md). Depth is held fixed because it
# changes what a model can compute, not only how much.
LADDER: dict[str, LadderSize] = {
    s.name: s
    for s in [
        LadderSize("xxs", hidden=8, layers=2, heads=1, intermediate=24),
        LadderSize("xs", hidden=12, layers=2, heads=1, intermediate=36),
        LadderSize("s", hidden=24, layers=2, heads=2, intermediate=72),
        LadderSize("m", hidden=48, layers=2, heads=4, intermediate=144),
        LadderSize("l", hidden=96, layers=2, heads=8, intermediate=288),
        LadderSize("xl", hidden=144, layers=2, heads=12, intermediate=432),
        LadderSize("xxl", hidden=192, layers=2, heads=16, intermediate=576),  # the full preset
    ]
}

# µP's width rule for Adam: a hidden matrix's rate scales as 1/width, so the change of a
# layer's output per step does not grow with width. BASE_WIDTH is the width at which the rate
# is the configured one.
BASE_WIDTH = 48


def scaled_learning_rate(size: LadderSize, base_lr: float, base_width: int = BASE_WIDTH
                         ) -> float:
    """The learning rate of ``size``: ``base_lr * base_width / size.hidden`` (µP-style,
    applied to every parameter; see docs/lab-rare-tasks-design.md)."""
    return base_lr * base_width / size.hidden


def get_size(name: str) -> LadderSize:
    """The ladder size called ``name``; an unknown name is a user error listing the known ones."""
    return lookup(LADDER, name, "size", "--sizes")


def build_tokenizer(symbols: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over whitespace-separated ``symbols`` plus the special tokens."""
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys([*SPECIAL_TOKENS, *symbols]))}
    core = Tokenizer(WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK
    )


def build_model(size: LadderSize, tokenizer: PreTrainedTokenizerFast, seed: int,
                max_positions: int = 64) -> LlamaForCausalLM:
    """A freshly initialised ladder model; the same ``seed`` gives the same weights."""
    torch.manual_seed(seed)
    return LlamaForCausalLM(size.config(len(tokenizer), max_positions, tokenizer))


def parameter_count(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def save_checkpoint(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, path: Path) -> None:
    """Save weights (safetensors), config and tokenizer as standard HF files."""
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
