"""The optional vLLM backend (offline ``LLM.generate``), used when vLLM is installed."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from smolmix.core.errors import SmolmixError
from smolmix.inference.base import Backend, Progress, truncate_at_stop
from smolmix.models.prompting import PLAIN, Prompt, prompt_ids


class VLLMBackend(Backend):
    """vLLM's offline ``LLM.generate`` with ``SamplingParams(temperature=0)`` (greedy).

    Prompts become token ids here by :func:`smolmix.models.prompting.prompt_ids`, the rule of
    the hf backend and of training, so both backends feed the model the same tokens. vLLM
    schedules its own batches (continuous batching), so there is no batch size.
    """

    name = "vllm"

    def __init__(self, llm, prompt_format: str = PLAIN) -> None:
        self.llm = llm
        self.prompt_format = prompt_format

    @classmethod
    def from_checkpoint(cls, path: Path, prompt_format: str = PLAIN, dtype: str = "auto",
                        device: str = "auto", **engine_options) -> VLLMBackend:
        require_vllm()
        from vllm import LLM  # optional, heavy: imported only when this backend is used

        return cls(LLM(model=str(path), dtype=dtype, **engine_options), prompt_format)

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int,
                 stop: Sequence[str] = (), progress: Progress | None = None) -> list[str]:
        from vllm import SamplingParams  # optional (see above)

        if not prompts:
            return []
        tokenizer = self.llm.get_tokenizer()
        encoded = prompt_ids(tokenizer, prompts, self.prompt_format)
        stop = [s for s in stop if s]
        params = SamplingParams(temperature=0, max_tokens=max_new_tokens, stop=stop or None)
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in encoded], params,
                                    use_tqdm=progress is not None)
        if progress is not None:
            progress(len(prompts))
        # vLLM already drops the stop string; cutting again keeps the rule identical to hf's.
        return [truncate_at_stop(out.outputs[0].text, stop) for out in outputs]


def vllm_available() -> bool:
    """Whether the optional ``vllm`` package is installed."""
    return importlib.util.find_spec("vllm") is not None


def require_vllm() -> None:
    if not vllm_available():
        raise SmolmixError("backend 'vllm' needs the vllm package (pip install vllm)",
                           "--backend")
