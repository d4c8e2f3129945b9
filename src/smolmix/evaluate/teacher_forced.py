"""Per-task held-out loss and exact-match accuracy under teacher forcing.

With the EOS token in the target, "every completion token is the argmax given the true prefix"
is exactly "greedy decoding reproduces the completion and stops", at the cost of one forward
pass instead of a generation loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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


def pad_batch(input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]],
              pad_id: int, position_ids: Sequence[Sequence[int]] | None = None,
              ) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest row; padded labels are ignored."""
    width = max(len(row) for row in input_ids)
    ids = torch.full((len(input_ids), width), pad_id, dtype=torch.long)
    lab = torch.full((len(input_ids), width), IGNORE_INDEX, dtype=torch.long)
    att = torch.zeros((len(input_ids), width), dtype=torch.long)
    for i, (row, lrow) in enumerate(zip(input_ids, labels)):
        ids[i, : len(row)] = torch.tensor(row)
        lab[i, : len(lrow)] = torch.tensor(lrow)
        att[i, : len(row)] = 1
    batch = {"input_ids": ids, "labels": lab, "attention_mask": att}
    if position_ids is not None:
        pos = torch.zeros((len(input_ids), width), dtype=torch.long)
        for i, prow in enumerate(position_ids):
            pos[i, : len(prow)] = torch.tensor(prow)
        batch["position_ids"] = pos
    return batch


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
            for start in range(0, len(enc["input_ids"]), self.batch_size):
                batch = pad_batch(enc["input_ids"][start : start + self.batch_size],
                                  enc["labels"][start : start + self.batch_size], self.pad_id)
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
