"""Batched greedy generation with any transformers causal LM (the ``hf`` backend).

:func:`generate` gives, for every prompt, exactly the text that a batch-size-1 greedy
``model.generate`` would give, only faster:

- prompts are tokenized once, sorted by token length (longest first) and cut into batches of
  ``batch_size``, so each batch carries little padding; results come back in input order;
- batches are LEFT-padded with an attention mask; ``model.generate`` derives the position ids
  from that mask (so a padded row sees the same positions as when it runs alone: verified
  token for token against batch-size-1 generation in ``tests/test_generate.py``) and decodes
  with the KV cache;
- each row stops at EOS (any of the model's EOS ids) and, when ``stop`` strings are given, as
  soon as its continuation ends with one of them (``GenerationConfig.stop_strings``, which
  matches a stop string however the tokenizer splits it); the text is cut before the earliest
  stop string.

Decoding is plain greedy whatever the checkpoint's own generation defaults are (sampling,
repetition penalties, minimum lengths are switched off; see :func:`greedy_config`).

A hand-written cached decoding loop was measured against ``model.generate`` on the lab's ladder
models on a 2-core CPU and was not measurably faster (within 5-10 %, the run-to-run noise), so
this module uses ``model.generate``: it also handles every architecture's cache and masks.

Prompts become token ids by :func:`smolmix.models.prompting.prompt_ids`, the rule training
uses too (``plain``: the text after the tokenizer's own special prefix; ``chat``: the chat
template with the generation prompt), so a prompt is scored on the token ids it trained on.

Torch's thread count is left alone: the caller (the CLI, a benchmark) decides it. On the lab
models ``benchmarks/eval_generate.py`` measures one thread against two.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StopStringCriteria,
)

from smolmix.core.errors import SmolmixError
from smolmix.inference.base import DEFAULT_BATCH_SIZE, Backend, Progress, truncate_at_stop
from smolmix.models.loading import load_checkpoint
from smolmix.models.prompting import PLAIN, Prompt, prompt_ids


def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
             prompts: Sequence[Prompt], max_new_tokens: int,
             batch_size: int = DEFAULT_BATCH_SIZE, stop: Sequence[str] = (),
             progress: Progress | None = None, prompt_format: str = PLAIN) -> list[str]:
    """Greedy continuations of ``prompts`` (texts, or message lists for chat models; the
    generated text only), in input order, prompted in ``prompt_format``.

    ``progress``, when given, is called with the number of prompts finished after each batch
    (``tqdm.update`` fits). The model is put in eval mode for the call and restored after.
    """
    if max_new_tokens <= 0:
        raise SmolmixError(f"max_new_tokens must be positive, got {max_new_tokens}",
                           "--max-new-tokens")
    if batch_size <= 0:
        raise SmolmixError(f"batch size must be positive, got {batch_size}", "--batch-size")
    if not prompts:
        return []
    encoded = prompt_ids(tokenizer, prompts, prompt_format)
    for i, ids in enumerate(encoded):
        if not ids:
            raise SmolmixError(f"prompt {i} is empty after tokenization", "prompts")
    eos_ids = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (
        eos_ids[0] if eos_ids else 0)
    stop = [s for s in stop if s]
    native = native_stop_strings(tokenizer, stop)
    config = greedy_config(max_new_tokens, eos_ids, pad_id, stop if native else ())
    # Longest first: the largest batch comes first, so a memory error shows at once.
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    device = model.device
    texts: list[str | None] = [None] * len(encoded)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                ids, mask = left_pad([encoded[i] for i in rows], pad_id)
                stopping = ({"tokenizer": tokenizer} if native else {"stopping_criteria": [
                    StopStrings(tokenizer, stop, ids.shape[1])]} if stop else {})
                out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                     generation_config=config, **stopping)
                new = out[:, ids.shape[1]:].tolist()
                for i, tokens in zip(rows, new, strict=True):
                    texts[i] = truncate_at_stop(
                        tokenizer.decode(cut_at_eos(tokens, eos_ids), skip_special_tokens=True),
                        stop)
                if progress is not None:
                    progress(len(rows))
    finally:
        if was_training:
            model.train()
    return texts  # type: ignore[return-value]


def greedy_config(max_new_tokens: int, eos_ids: Sequence[int], pad_id: int,
                  stop: Sequence[str] = ()) -> GenerationConfig:
    """Plain greedy decoding: argmax at every step, whatever the model's own defaults say.

    ``model.generate`` fills every field left unset from the model's ``generation_config``;
    the fields that would change the argmax (a repetition penalty, n-gram blocking, a minimum
    length) or the decoding mode are set here, so a checkpoint shipped with sampling defaults
    (many instruct models are) is still decoded greedily, as vLLM's ``temperature=0`` does.
    """
    return GenerationConfig(
        do_sample=False, num_beams=1, temperature=1.0, top_p=1.0, top_k=50,
        repetition_penalty=1.0, no_repeat_ngram_size=0, min_new_tokens=0,
        max_new_tokens=max_new_tokens, eos_token_id=list(eos_ids) or None, pad_token_id=pad_id,
        use_cache=True, stop_strings=list(stop) or None,
    )


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` of ``rows`` padded on the left to the longest."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row):] = 1
    return ids, mask


def cut_at_eos(tokens: Sequence[int], eos_ids: Sequence[int]) -> list[int]:
    """``tokens`` up to (not including) the first EOS token."""
    eos = set(eos_ids)
    for k, tok in enumerate(tokens):
        if tok in eos:
            return list(tokens[:k])
    return list(tokens)


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The model's EOS ids (its generation config may list several), else the tokenizer's."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in eos] if isinstance(eos, (list, tuple)) else [int(eos)]


def native_stop_strings(tokenizer: PreTrainedTokenizerBase, stop: Sequence[str]) -> bool:
    """Whether transformers' own ``GenerationConfig.stop_strings`` can serve ``stop``: it
    indexes the tokenizer's vocabulary, which fails for word-level tokenizers (the lab's);
    those get :class:`StopStrings`, which matches on the decoded text."""
    if not stop:
        return False
    try:
        StopStringCriteria(tokenizer, list(stop))
    except (ValueError, KeyError, AttributeError, TypeError):
        return False
    return True


class StopStrings(StoppingCriteria):
    """Per row: stop once the decoded continuation contains one of ``stop``."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop: Sequence[str],
                 prompt_width: int) -> None:
        self.tokenizer = tokenizer
        self.stop = list(stop)
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_width:],
                                            skip_special_tokens=True)
        hit = [any(s in t for s in self.stop) for t in texts]
        return torch.tensor(hit, dtype=torch.bool, device=input_ids.device)


class HFBackend(Backend):
    """:func:`generate` on an in-memory transformers model."""

    name = "hf"

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 batch_size: int = DEFAULT_BATCH_SIZE, prompt_format: str = PLAIN) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.prompt_format = prompt_format

    @classmethod
    def from_checkpoint(cls, path: Path, dtype: str = "auto", device: str = "auto",
                        **options) -> HFBackend:
        """Load ``path`` in ``dtype`` on ``device`` (auto: a GPU in bf16 when there is one,
        else the CPU in fp32)."""
        device, dtype = placement(device, dtype)
        model, tokenizer = load_checkpoint(Path(path), dtype)
        return cls(model.to(device), tokenizer, **options)

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int,
                 stop: Sequence[str] = (), progress: Progress | None = None) -> list[str]:
        return generate(self.model, self.tokenizer, prompts, max_new_tokens,
                        batch_size=self.batch_size, stop=stop, progress=progress,
                        prompt_format=self.prompt_format)


def placement(device: str = "auto", dtype: str = "auto") -> tuple[str, str]:
    """Where and in what precision to run a model: ``auto`` is a CUDA GPU in bfloat16 (float16
    without bf16 support) when there is one, else the CPU in float32."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SmolmixError(f"device {device!r} asked for, but torch sees no CUDA GPU", "--device")
    if dtype == "auto":
        dtype = "float32" if device == "cpu" else (
            "bfloat16" if torch.cuda.is_bf16_supported() else "float16")
    return device, dtype
