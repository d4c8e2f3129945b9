"""The reference model of the ``excess-loss`` policy: its held-out loss on each task,
measured once (DoReMi's reference; here any checkpoint, e.g. a run on the natural mixture)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from smolmix.core.records import Record
from smolmix.models.loading import load_checkpoint
from smolmix.models.prompting import choose_format, read_prompt_format
from smolmix.train.curves import TeacherForcedEvaluator


def reference_losses(model_path: Path, heldout: Mapping[str, Sequence[Record]],
                     batch_size: int = 64) -> dict[str, float]:
    """Mean completion-token loss per task, prompted as the reference was trained."""
    model, tokenizer = load_checkpoint(model_path, flag="reference")
    fmt = choose_format("auto", tokenizer, read_prompt_format(model_path), flag="reference")
    evaluator = TeacherForcedEvaluator.from_records(tokenizer, heldout, batch_size, fmt)
    return {t: s.loss for t, s in evaluator(model).items()}
