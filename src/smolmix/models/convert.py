"""``smolmix convert``: a GGUF model written out as a standard checkpoint folder.

The folder holds safetensors weights (dequantised), the config, the generation config and
the tokenizer with its chat template: it loads with ``AutoModelForCausalLM.from_pretrained``
and ``AutoTokenizer.from_pretrained`` alone, and ``smolmix train`` / ``eval`` take it like any
model folder (faster than reading the GGUF again).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from smolmix.core.errors import SmolmixError
from smolmix.core.inputs import file_sha256
from smolmix.core.output import atomic_output, check_output_dir
from smolmix.core.rundir import write_manifest
from smolmix.models.gguf_file import check_gguf
from smolmix.models.loading import DTYPES, is_gguf, load_model, load_tokenizer

# Texts whose token ids the saved tokenizer must reproduce: prose, digits, code, accents,
# whitespace runs and the special tokens of a chat.
SAMPLE_TEXTS = (
    "The quick brown fox jumps over the lazy dog. 1234567 + 89 = 1234656",
    "def f(x):\n    return x ** 2  # squares\n\n\tdone",
    "Café, naïve, Zürich — «quotes» and emoji 🙂",
)
SAMPLE_CHAT = [{"role": "user", "content": "What is 12 + 30?"},
               {"role": "assistant", "content": "42"}]


def tokenizer_differences(original: PreTrainedTokenizerBase,
                          saved: PreTrainedTokenizerBase) -> list[str]:
    """What the saved tokenizer does differently from the original (empty when nothing):
    the chat template, special tokens, ids of the sample texts and of a rendered chat."""
    differences = []
    if original.chat_template != saved.chat_template:
        differences.append("chat template")
    for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
        if getattr(original, name) != getattr(saved, name):
            differences.append(name)
    for text in SAMPLE_TEXTS:
        if original(text)["input_ids"] != saved(text)["input_ids"]:
            differences.append(f"token ids of {text[:20]!r}...")
    if original.chat_template is not None:
        rendered = [tok.apply_chat_template(SAMPLE_CHAT, tokenize=True, return_dict=True)
                    ["input_ids"] for tok in (original, saved)]
        if rendered[0] != rendered[1]:
            differences.append("token ids of a rendered chat")
    return differences


def convert_gguf(gguf: str | Path, out: str | Path, dtype: str = "float32",
                 quiet: bool = False) -> dict:
    """Write the GGUF model ``gguf`` as a checkpoint folder ``out`` (weights dequantised to
    ``dtype``) and return the manifest's summary; the tokenizer saved must encode the sample
    texts and a chat exactly as the GGUF's does."""
    gguf, out = Path(gguf), Path(out)
    if not is_gguf(gguf):
        raise SmolmixError(f"{str(gguf)!r} is not a .gguf file", "FILE")
    if dtype not in DTYPES:
        raise SmolmixError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}", "--dtype")
    check_output_dir(out, inputs=[gguf])
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    start = time.perf_counter()
    if not gguf.is_file():
        raise SmolmixError(f"GGUF file {str(gguf)!r} does not exist", "FILE")
    architecture = check_gguf(gguf, "FILE")  # the header alone, in milliseconds
    tokenizer = load_tokenizer(gguf, "FILE")  # checks the file (the model takes longer)
    say(f"reading {gguf.name} ({architecture}) and dequantising to {dtype}")
    model = load_model(gguf, dtype, "FILE")
    with atomic_output(out, inputs=[gguf]) as partial:
        model.save_pretrained(partial, safe_serialization=True)
        tokenizer.save_pretrained(partial)
        differences = tokenizer_differences(tokenizer, AutoTokenizer.from_pretrained(partial))
        if differences:
            raise SmolmixError("the saved tokenizer differs from the GGUF's in: "
                               + ", ".join(differences), "FILE")
        summary = {"architecture": architecture, "model_type": model.config.model_type,
                   "parameters": sum(p.numel() for p in model.parameters()), "dtype": dtype,
                   "source": {"path": str(gguf.resolve()), "bytes": gguf.stat().st_size,
                              "sha256": file_sha256(gguf)},
                   "chat_template": tokenizer.chat_template is not None,
                   "seconds": round(time.perf_counter() - start, 2)}
        write_manifest(partial, "convert", {"gguf": str(gguf), "out": str(out),
                                            "dtype": dtype}, seed=None, extra=summary)
    return summary
