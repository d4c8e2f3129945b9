"""A local checkpoint as a teacher, run in this process by a smolmix inference backend (``hf``
or ``vllm``): greedy decoding, prompts in batches.

The backends decode greedily, so a local teacher takes ``--temperature 0`` and ``--n 1``. Token
counts are the trace re-encoded by the teacher's tokenizer; a trace of ``--max-tokens`` tokens
or more counts as cut at the limit (``finish_reason`` ``length``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from smolmix.core.errors import SmolmixError
from smolmix.generate.endpoint import Completion

LOCAL_BACKENDS = ("hf", "vllm")


class LocalTeacher:
    """A checkpoint behind a generation backend (torch and transformers are imported here, so
    a run against an endpoint starts without them)."""

    def __init__(self, backend: str, path: Path, api: str | None) -> None:
        from smolmix.inference.backends import get_backend
        from smolmix.models.loading import load_tokenizer
        from smolmix.models.prompting import choose_format

        self.tokenizer = load_tokenizer(path, "--teacher")
        setting = {"chat": "on", "completion": "off", None: "auto"}[api]
        self.prompt_format = choose_format(setting, self.tokenizer, flag="--api")
        self.engine = get_backend(backend).from_checkpoint(Path(path),
                                                            prompt_format=self.prompt_format)

    def complete_many(self, prompts: Sequence[str], max_tokens: int) -> list[Completion]:
        from smolmix.models.prompting import CHAT, token_ids

        inputs = [[{"role": "user", "content": p}] if self.prompt_format == CHAT else p
                  for p in prompts]
        texts = self.engine.generate(inputs, max_tokens)
        lengths = [len(ids) for ids in token_ids(self.tokenizer, texts)]
        return [Completion(text, "length" if n >= max_tokens else "stop", n, None)
                for text, n in zip(texts, lengths, strict=True)]


def check_local_teacher(path: str, n: int, temperature: float) -> None:
    """A local teacher is a checkpoint that exists here, decoded greedily: one sample per
    problem, temperature 0."""
    if temperature != 0:
        raise SmolmixError("a local teacher decodes greedily; use --temperature 0 (or serve "
                           "the checkpoint and pass its URL to sample)", "--temperature")
    if n != 1:
        raise SmolmixError("a local teacher decodes greedily, so every sample would be the "
                           "same; use --n 1", "--n")
    from smolmix.models.loading import check_model_path

    check_model_path(path, "--teacher")

