"""One loader for any causal LM checkpoint: a local folder, a hub id or a ``.gguf`` file.

Folder and hub weights come from safetensors only; a GGUF file (llama.cpp's format) is read by
transformers with the ``gguf`` package and dequantised to the requested dtype. Remote code is
never run. The tokenizer comes with a pad token.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

import torch
import transformers.modeling_gguf_pytorch_utils as gguf_utils
from huggingface_hub import constants, try_to_load_from_cache
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import is_gguf_available
from transformers.utils.logging import is_progress_bar_enabled

from smolmix.core.errors import SmolmixError
from smolmix.core.inputs import read_json_object, reading
from smolmix.models.gguf_file import check_gguf

try:  # transformers >= 5.x with the GGUF quantizer: ask for plain dense weights explicitly
    from transformers import GgufConfig
except ImportError:  # older 5.x always dequantises GGUF weights
    GgufConfig = None

DTYPES = ("float32", "bfloat16", "float16")
# what a tokenizer folder holds (one of these at least)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json",
                   "vocab.txt", "spiece.model", "sentencepiece.bpe.model")
GGUF_SUFFIX = ".gguf"
GGUF_INSTALL = "pip install 'smolmix[smollm2]'"


def is_gguf(name: str | Path) -> bool:
    """Whether ``name`` names a GGUF file (by its suffix)."""
    return str(name).lower().endswith(GGUF_SUFFIX)


def check_model_path(name: str | Path, flag: str = "model") -> None:
    """A local model must exist: a folder with a config.json (a JSON object) and safetensors
    weights whose headers read (a truncated file is caught here, before any work), or a
    ``.gguf`` file with a model's metadata (and the ``gguf`` package installed to read it);
    anything else is a hub id."""
    name = str(name)
    path = Path(name)
    if is_gguf(name):
        path = path.expanduser()
        if not path.is_file():
            raise SmolmixError(f"GGUF file {name!r} does not exist", flag)
        if not is_gguf_available():
            raise SmolmixError(f"reading {path.name!r} needs the gguf package (>= 0.10): "
                               f"{GGUF_INSTALL}", flag)
        check_gguf(path, flag)
        return
    if path.exists() or name.startswith((".", "/", "~")):
        if not path.exists():
            raise SmolmixError(f"model path {name!r} does not exist", flag)
        if not (path / "config.json").is_file():
            raise SmolmixError(f"{name!r} is not a model folder: no config.json", flag)
        read_json_object(path / "config.json", "config.json")
        check_weights(path, flag)
        return
    check_hub_id(name, flag)


def check_weights(folder: Path, flag: str = "model") -> None:
    """The folder has safetensors weights and each file's header reads and covers the file
    (cheap: the tensors themselves are not read)."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise SmolmixError(f"{str(folder)!r} has no safetensors weights (*.safetensors)", flag)
    for file in files:
        with reading(file, "safetensors file"), safe_open(str(file), framework="pt"):
            pass


def check_hub_id(name: str, flag: str = "model") -> None:
    """A hub id must be in the local hub cache, or the hub must be reachable: offline, say so
    in one line at once (instead of the hub client's retries and a traceback)."""
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    if constants.HF_HUB_OFFLINE:
        raise SmolmixError(f"{name!r} is neither a local folder nor in the hub cache, and "
                           "HF_HUB_OFFLINE is set", flag)
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError:
        raise SmolmixError(f"{name!r} is not a local folder and the hub ({host}) cannot be "
                           "reached from this machine: download it where the network allows, "
                           "or give a local folder or .gguf file", flag) from None


def _gguf_source(name: str | Path, flag: str) -> dict:
    """``from_pretrained`` arguments for a GGUF file: its folder and ``gguf_file``."""
    check_model_path(name, flag)  # the file and the gguf package
    path = Path(name).expanduser().resolve()
    return {"pretrained_model_name_or_path": str(path.parent), "gguf_file": path.name}


@contextmanager
def _gguf_progress() -> Iterator[None]:
    """transformers' GGUF reader shows a plain tqdm bar; silence it with the others (--quiet)."""
    bar = getattr(gguf_utils, "tqdm", None)
    if bar is None or is_progress_bar_enabled():
        yield
        return
    gguf_utils.tqdm = partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def load_model(name: str | Path, dtype: str = "float32", flag: str = "model") -> PreTrainedModel:
    """A causal LM from a local folder or a hub id (safetensors only) or a GGUF file
    (dequantised), in ``dtype``."""
    if is_gguf(name):
        source = _gguf_source(name, flag)
        if GgufConfig is not None:
            source["quantization_config"] = GgufConfig(dequantize=True)
    else:
        check_model_path(name, flag)
        source = {"pretrained_model_name_or_path": str(name), "use_safetensors": True}
    try:
        with _gguf_progress(), reading(name, "model"):
            return AutoModelForCausalLM.from_pretrained(**source, dtype=getattr(torch, dtype))
    except SmolmixError as exc:
        raise SmolmixError(f"cannot load model {str(name)!r}: {exc.what}", flag) from None


def load_tokenizer(name: str | Path, flag: str = "tokenizer") -> PreTrainedTokenizerBase:
    """The tokenizer of a local folder, hub id or GGUF file; a missing pad token becomes EOS."""
    source = (_gguf_source(name, flag) if is_gguf(name)
              else {"pretrained_model_name_or_path": str(name)})
    if not is_gguf(name) and Path(name).is_dir() \
            and not any((Path(name) / f).is_file() for f in TOKENIZER_FILES):
        raise SmolmixError(f"{str(name)!r} has no tokenizer (no tokenizer.json or "
                           "tokenizer_config.json)", flag)
    try:
        with reading(name, "tokenizer"):
            tokenizer = AutoTokenizer.from_pretrained(**source)
    except SmolmixError as exc:
        raise SmolmixError(f"cannot load tokenizer {str(name)!r}: {exc.what}", flag) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise SmolmixError(f"tokenizer {str(name)!r} has no EOS token", flag)
    return tokenizer


def load_checkpoint(path: str | Path, dtype: str = "float32", flag: str = "model"
                    ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A checkpoint's model and tokenizer (see :func:`load_model`, :func:`load_tokenizer`);
    the tokenizer is loaded first (it is quick, and a broken one fails before the weights
    load)."""
    tokenizer = load_tokenizer(path, flag)
    return load_model(path, dtype, flag), tokenizer


def check_vocabulary(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                     flag: str = "tokenizer") -> None:
    """Every token id the tokenizer can produce must have a row in the model's embeddings."""
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise SmolmixError(f"tokenizer has {len(tokenizer)} tokens but the model's embeddings "
                           f"have {rows} rows (tokenizer and model do not match)", flag)
