"""Per-task held-out loss and exact-match accuracy under teacher forcing.

With the EOS token in the target, "every completion token is the argmax given the true prefix"
is exactly "greedy decoding reproduces the completion and stops", at the cost of one forward
pass instead of a generation loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from smolmix.encoding import IGNORE_INDEX, encode_prompt_completion
from smolmix.records import Record


@dataclass(frozen=True)
class TaskScore:
    """Mean completion-token loss and exact-match accuracy of one task."""

    loss: float
    exact_match: float
    count: int


def collate(rows: Sequence[Mapping[str, Sequence[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch of examples (``input_ids``, ``labels``, optional ``position_ids``) to
    its longest row; padded labels are ignored, ``attention_mask`` marks the real tokens."""
    width = max(len(r["input_ids"]) for r in rows)
    fill = {"input_ids": pad_id, "labels": IGNORE_INDEX, "position_ids": 0}
    out = {key: np.full((len(rows), width), fill[key], dtype=np.int64) for key in rows[0]}
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        for key, values in row.items():
            out[key][i, :len(values)] = values
        mask[i, :len(row["input_ids"])] = 1
    return {**{k: torch.from_numpy(v) for k, v in out.items()},
            "attention_mask": torch.from_numpy(mask)}


def pad_batch(input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]],
              pad_id: int) -> dict[str, torch.Tensor]:
    """:func:`collate` of parallel ``input_ids`` / ``labels`` lists."""
    return collate([{"input_ids": ids, "labels": lab} for ids, lab in zip(input_ids, labels)],
                   pad_id)


def padded_batches(encoded: Mapping[str, Sequence[Sequence[int]]], size: int,
                   pad_id: int) -> list[dict[str, torch.Tensor]]:
    """Encoded examples (``input_ids``/``labels``) as consecutive padded batches of ``size``."""
    ids, labels = encoded["input_ids"], encoded["labels"]
    return [pad_batch(ids[i:i + size], labels[i:i + size], pad_id)
            for i in range(0, len(ids), size)]


class TeacherForcedEvaluator:
    """Scores a model on fixed per-task eval sets; the sets are tokenized once, up front."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase,
                 eval_sets: Mapping[str, Sequence[Record]], batch_size: int = 256) -> None:
        self.pad_id = tokenizer.pad_token_id
        self.batch_size = batch_size
        self.encoded = {
            task: encode_prompt_completion(
                tokenizer, [r.prompt for r in recs], [r.completion for r in recs]
            )
            for task, recs in eval_sets.items()
        }

    @classmethod
    def from_encoded(cls, pad_id: int, encoded: Mapping[str, dict[str, list[list[int]]]],
                     batch_size: int = 256) -> TeacherForcedEvaluator:
        """An evaluator over per-task examples already encoded (``input_ids``/``labels``)."""
        evaluator = cls.__new__(cls)
        evaluator.pad_id, evaluator.batch_size = pad_id, batch_size
        evaluator.encoded = dict(encoded)
        return evaluator

    @torch.no_grad()
    def __call__(self, model: PreTrainedModel) -> dict[str, TaskScore]:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        scores = {}
        for task, enc in self.encoded.items():
            loss_sum, tokens, correct = 0.0, 0, 0
            for batch in padded_batches(enc, self.batch_size, self.pad_id):
                batch = {k: v.to(device) for k, v in batch.items()}
                logits = model(input_ids=batch["input_ids"],
                               attention_mask=batch["attention_mask"]).logits[:, :-1].float()
                target = batch["labels"][:, 1:]
                mask = target != IGNORE_INDEX
                token_loss = torch.nn.functional.cross_entropy(
                    logits.transpose(1, 2), target.clamp(min=0), reduction="none"
                )
                loss_sum += token_loss[mask].sum().item()
                tokens += int(mask.sum().item())
                hit = (logits.argmax(-1) == target) | ~mask
                correct += int(hit.all(dim=1).sum().item())
            n = len(enc["input_ids"])
            scores[task] = TaskScore(loss=loss_sum / max(tokens, 1), exact_match=correct / n,
                                     count=n)
        if was_training:
            model.train()
        return scores
