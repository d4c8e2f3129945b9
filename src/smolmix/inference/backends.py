"""Choosing a generation backend by name: ``hf``, ``vllm`` or ``auto``."""

from __future__ import annotations

import torch

from smolmix.core.errors import lookup
from smolmix.inference.base import Backend
from smolmix.inference.hf import HFBackend
from smolmix.inference.vllm import VLLMBackend, require_vllm, vllm_available

BACKENDS: dict[str, type[Backend]] = {"hf": HFBackend, "vllm": VLLMBackend}


def get_backend(name: str = "auto") -> type[Backend]:
    """The backend class called ``name``: ``"hf"``, ``"vllm"`` or ``"auto"``.

    ``"auto"`` is vLLM when it is installed and a CUDA device is visible, else hf. Build one
    with ``Backend.from_checkpoint(path)`` (or ``HFBackend(model, tokenizer)``).
    """
    if name == "auto":
        return VLLMBackend if vllm_available() and torch.cuda.is_available() else HFBackend
    backend = lookup({**BACKENDS, "auto": HFBackend}, name, "backend", "--backend")
    if backend is VLLMBackend:
        require_vllm()
    return backend
