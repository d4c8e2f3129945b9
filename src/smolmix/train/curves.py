"""Per-task held-out curves during training: teacher-forced loss and exact match, plus any
scorer's metrics (graded generation accuracy, the lab's interference split), one row per task
and evaluation step in ``curves.jsonl``.

With the EOS token in the target, "every completion token is the argmax given the true prefix"
is exactly "greedy decoding reproduces the completion and stops", at the cost of one forward
pass instead of a generation loop.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from smolmix.core.errors import SmolmixError
from smolmix.core.inputs import iter_json_objects
from smolmix.core.records import Record
from smolmix.grading.grade import grade_many
from smolmix.inference.hf import generate
from smolmix.models.prompting import PLAIN
from smolmix.train.data import padded_batches
from smolmix.train.encoding import IGNORE_INDEX, encode_records

CURVES_FILE = "curves.jsonl"

Scorer = Callable[[PreTrainedModel], Mapping[str, Mapping[str, float]]]


@dataclass(frozen=True)
class TaskScore:
    """Mean completion-token loss and exact-match accuracy of one task."""

    loss: float
    exact_match: float
    count: int


class TeacherForcedEvaluator:
    """Scores a model on fixed per-task examples, encoded once (``input_ids``/``labels``)."""

    def __init__(self, pad_id: int, encoded: Mapping[str, Mapping[str, list[list[int]]]],
                 batch_size: int = 256) -> None:
        self.pad_id = pad_id
        self.batch_size = batch_size
        self.encoded = dict(encoded)

    @classmethod
    def from_records(cls, tokenizer: PreTrainedTokenizerBase,
                     eval_sets: Mapping[str, Sequence[Record]],
                     batch_size: int = 256, prompt_format: str = PLAIN
                     ) -> TeacherForcedEvaluator:
        return cls(tokenizer.pad_token_id,
                   {task: encode_records(tokenizer, recs, prompt_format=prompt_format)
                    for task, recs in eval_sets.items()},
                   batch_size)

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


def generation_scorer(tokenizer: PreTrainedTokenizerBase, held: Mapping[str, Sequence[Record]],
                      max_new_tokens: int, answer_format: str, examples: int | None = None,
                      batch_size: int = 32, prompt_format: str = PLAIN) -> Scorer:
    """A curve scorer: greedy generation on each task's held-out prompts (in the format the
    model trains with), graded against the answer (or the reply) with ``answer_format``."""
    tasks = {}
    for task, records in held.items():
        records = records[:examples] if examples else records
        tasks[task] = ([r.prompt_input for r in records], [r.reference for r in records])

    def score(model: PreTrainedModel) -> dict[str, dict[str, float]]:
        out = {}
        for task, (prompts, references) in tasks.items():
            texts = generate(model, tokenizer, prompts, max_new_tokens, batch_size=batch_size,
                             prompt_format=prompt_format)
            verdicts = grade_many(texts, references, answer_format)
            out[task] = {"generation_accuracy": sum(v.correct for v in verdicts) / len(verdicts)}
        return out

    return score


class PerTaskEvalCallback(TrainerCallback):
    """Every ``every`` steps (and at the first and last step) score each task and append the
    rows to ``out_file``.

    ``scorers`` each map a model to per-task metrics; their metrics are merged per task. Only
    the main process evaluates (the others wait for it at the next step), unless the model is
    sharded across the processes (FSDP, DeepSpeed ZeRO-3: ``all_ranks``), where every process
    must take part in each forward pass; only the main process writes.
    """

    def __init__(self, evaluator: TeacherForcedEvaluator, every: int, out_file: Path | None,
                 scorers: Sequence[Scorer] = ()) -> None:
        self.evaluator = evaluator
        self.every = every
        self.out_file = out_file
        self.scorers = list(scorers)
        self.curves: list[dict] = []
        self.done: set[int] = set()
        self.all_ranks = False

    def resume(self, step: int) -> None:
        """Continue a run from a checkpoint at ``step``: keep the curve rows up to it only (and
        not a last row cut short by a kill)."""
        if self.out_file is None or not self.out_file.exists():
            return
        self.curves = [json.loads(line) for line in rows_up_to(self.out_file, step)]
        self.done = {r["step"] for r in self.curves}
        _write_rows(self.out_file, self.curves, mode="w")

    def due(self, state) -> bool:
        """An evaluation step: every ``every`` steps, the first (0) and the last. A run resumed
        from a checkpoint between two of them does not evaluate at its first step."""
        return state.global_step % self.every == 0 or state.global_step == state.max_steps

    def record(self, step: int, model: PreTrainedModel, write: bool = True) -> None:
        if step in self.done:
            return
        self.done.add(step)
        scores = self.evaluator(model)
        extra: dict[str, dict[str, float]] = {}
        for scorer in self.scorers:
            for task, metrics in scorer(model).items():
                extra.setdefault(task, {}).update(metrics)
        rows = [{"step": step, "task": t, **asdict(s), **extra.get(t, {})}
                for t, s in scores.items()]
        self.curves.extend(rows)
        if self.out_file is not None and write:
            _write_rows(self.out_file, rows, mode="a")

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.due(state) and (state.is_world_process_zero or self.all_ranks):
            self.record(state.global_step, model, state.is_world_process_zero)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.due(state) and (state.is_world_process_zero or self.all_ranks):
            self.record(state.global_step, model, state.is_world_process_zero)


def read_curves(path: Path) -> list[dict]:
    """The rows of a ``curves.jsonl`` (empty when the file does not exist), read through the
    input layer and checked: each an object with a non-negative integer ``step``, a ``task``
    name and, when present, a finite ``exact_match``; a bad row is an error at ``file:line``."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for where, row in iter_json_objects(path, CURVES_FILE):
        step, task, metric = row.get("step"), row.get("task"), row.get("exact_match")
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise SmolmixError("curve row has no step (a non-negative integer 'step')", where)
        if not isinstance(task, str):
            raise SmolmixError("curve row has no task name ('task')", where)
        if "exact_match" in row and not is_finite_number(metric):
            raise SmolmixError("curve row's 'exact_match' is not a finite number", where)
        rows.append(row)
    return rows


def is_finite_number(value: object) -> bool:
    """An int or float (not a bool) that is neither NaN nor infinite."""
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def rows_up_to(path: Path, step: int) -> list[str]:
    """The JSONL rows of ``path`` at or before ``step`` (a run resumed from that step's
    checkpoint writes the later ones again); a line that does not parse (the last one, cut
    short by a kill) is dropped."""
    kept = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            kept.append(line)
    return kept


def final_scores(curves: Sequence[Mapping]) -> dict[str, dict]:
    """Each task's metrics at the last evaluated step."""
    if not curves:
        return {}
    last = max(r["step"] for r in curves)
    return {r["task"]: {k: v for k, v in r.items() if k not in ("step", "task")}
            for r in curves if r["step"] == last}


def _write_rows(path: Path, rows: Sequence[dict], mode: str) -> None:
    with open(path, mode, encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
