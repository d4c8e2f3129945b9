"""The rare-task mechanism measured in the lab's natural cells (issue 5's measures, applied).

- During training, at every evaluation step: each task's gradient on its held-out set and
  the interference split under the cell's shares (``smolmix.diagnose.interference``); the
  per-task values go into the cell's curves (``interference_others`` is the other tasks'
  part over the task's own squared gradient norm: negative means they undo its progress).
- After training: the retention probe on each rare task (``RETENTION_K`` Adam steps on the
  task alone, then ``RETENTION_M`` steps of the cell's own mixture, at a tenth of the training
  learning rate — at the full rate a fresh Adam's first steps wreck a trained tiny model, and
  the probe measures damage rather than retention) and the allocation of the MLP neurons to
  tasks by activation × gradient of the correct-token logit margin.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

from smolmix.diagnose import interference, neuron_allocation, retention, task_gradients
from smolmix.encoding import encode_prompt_completion
from smolmix.evaluate.teacher_forced import padded_batches
from smolmix.records import Record

RETENTION_K = 25
RETENTION_M = 25
RETENTION_SEED = 10_000
RETENTION_LR_FACTOR = 0.1
MIN_GAIN = 0.01  # nats: below this the task steps taught nothing and retention is undefined


def batches(tokenizer, records: Sequence[Record], size: int) -> list[dict]:
    """Records as padded batches of ``size``."""
    enc = encode_prompt_completion(tokenizer, [r.prompt for r in records],
                                   [r.completion for r in records])
    return padded_batches(enc, size, tokenizer.pad_token_id)


def held_batches(tokenizer, eval_sets: Mapping[str, Sequence[Record]]) -> dict[str, list[dict]]:
    """Each task's held-out set as one batch."""
    return {task: batches(tokenizer, recs, len(recs)) for task, recs in eval_sets.items()}


def interference_scorer(held: Mapping[str, list[dict]], shares: Mapping[str, float]):
    """A curve scorer: per task, the interference split under ``shares`` at this step."""
    weights = {t: shares.get(t, 0.0) for t in held}

    def score(model) -> dict[str, dict[str, float]]:
        result = interference(task_gradients(model, held), weights)
        return {task: {"grad_norm": _num(result.norms[task]),
                       "interference_others": _num(result.others_normalised[task])}
                for task in result.tasks}

    return score


def after_training(model, tokenizer, held: Mapping[str, list[dict]], mixture: Sequence[Record],
                   rare_tasks: Sequence[str], seed: int, lr: float, batch_size: int) -> dict:
    """Retention of each rare task and the neurons each task holds, on the trained model."""
    from smolmix.lab.tasks import TrainStream, get_task

    mix_batches = batches(tokenizer, list(mixture[:RETENTION_M * batch_size]), batch_size)
    kept = {}
    for task in rare_tasks:
        stream = TrainStream(get_task(task), RETENTION_SEED + seed, set())
        own = batches(tokenizer, [stream.draw() for _ in range(RETENTION_K * batch_size)],
                      batch_size)
        result = retention(model, own, mix_batches, RETENTION_K, RETENTION_M,
                           lr * RETENTION_LR_FACTOR, "adam", held_out=held[task],
                           min_gain=MIN_GAIN)
        kept[task] = {"retention": _num(result.retention), "gain": _num(result.gain)}
    neurons = neuron_allocation(model, held, objective="logit")
    return {"retention": kept, "neurons": neurons.counts(),
            "neurons_total": int(sum(neurons.sizes))}


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(sum(kept) / len(kept), 4) if kept else None


def _median(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(statistics.median(kept), 4) if kept else None


def summarize_mechanism(preset, cells: Sequence[dict]) -> dict:
    """Per size, over seeds and tasks: mean interference on the rare and frequent tasks over
    training, median rare-task retention (where defined), mean neurons held per rare and per
    frequent task."""
    natural = [c for c in cells if c["kind"] == "natural" and c.get("mechanism")]
    out: dict = {"steps": [], "interference_rare": {}, "interference_frequent": {},
                 "interference_rare_final": [], "interference_frequent_final": [],
                 "retention_rare": [], "neurons_rare": [], "neurons_frequent": [],
                 "neurons_shared": [], "neurons_total": []}
    for size in preset.sizes:
        mine = [c for c in natural if c["size"] == size]
        if not mine:
            continue
        out["steps"] = mine[0]["curves"][preset.rare_tasks[0]]["step"]
        for group, tasks in (("rare", preset.rare_tasks), ("frequent", preset.frequent_tasks)):
            series = [c["curves"][t]["interference_others"] for c in mine for t in tasks]
            curve = [_mean([s[i] for s in series]) for i in range(len(series[0]))]
            out[f"interference_{group}"][size] = curve
            out[f"interference_{group}_final"].append(curve[-1])
            out[f"neurons_{group}"].append(_mean(
                [c["mechanism"]["neurons"][t] for c in mine for t in tasks]))
        out["retention_rare"].append(_median(
            [c["mechanism"]["retention"][t]["retention"] for c in mine
             for t in preset.rare_tasks]))
        out["neurons_shared"].append(_mean([c["mechanism"]["neurons"]["shared"] for c in mine]))
        out["neurons_total"].append(mine[0]["mechanism"]["neurons_total"])
    return out


CATEGORY = {"learned": "learned", "learned then overwritten": "expressible, not learned",
            "never learned": "expressible, not learned",
            "not expressible at this size": "not expressible"}


def lab_verdicts(preset, cells: Sequence[dict], min_share: Mapping[str, float | None],
                 threshold: float) -> dict:
    """A verdict for every rare task in every natural cell (from its curve, the isolation
    control of the same size and seed, and the measured min-share curve), and its agreement
    with the lab's ground truth: the same seed's outcome, and — not circular — another seed's
    runs (does the verdict on one seed predict what the other seed's runs show?)."""
    from smolmix.diagnose.verdicts import Curve, judge

    def cell(kind: str, size: str, seed: int, focus: str | None = None) -> dict | None:
        return next((c for c in cells if c["kind"] == kind and c["size"] == size
                     and c["seed"] == seed and c.get("focus") == focus), None)

    def truth(size: str, seed: int, task: str) -> str | None:
        nat, iso = cell("natural", size, seed), cell("isolation", size, seed, task)
        if nat is None or iso is None:
            return None
        if nat["final"][task]["exact_match"] >= threshold:
            return "learned"
        if iso["final"][task]["exact_match"] < threshold:
            return "not expressible"
        return "expressible, not learned"

    shares = preset.natural_shares()
    rows = []
    for c in cells:
        if c["kind"] != "natural":
            continue
        for task in preset.rare_tasks:
            iso = cell("isolation", c["size"], c["seed"], task)
            curve = Curve(c["curves"][task]["step"], c["curves"][task]["exact_match"])
            mech = {}
            if c.get("mechanism"):
                mech = {"interference_from_others": c["curves"][task]["interference_others"][-1],
                        "retention": c["mechanism"]["retention"][task]["retention"]}
                mech = {k: v for k, v in mech.items() if v is not None}
            v = judge(task, curve, iso["final"][task]["exact_match"] if iso else None,
                      shares[task], min_share.get(c["size"]) if task == preset.boost_target
                      else None, threshold, mech)
            rows.append({"size": c["size"], "seed": c["seed"], **v.to_dict()})
    same = [CATEGORY[r["verdict"]] == truth(r["size"], r["seed"], r["task"]) for r in rows]
    cross = [CATEGORY[r["verdict"]] == truth(r["size"], other, r["task"])
             for r in rows for other in preset.seeds if other != r["seed"]
             if truth(r["size"], other, r["task"]) is not None]
    return {"verdicts": rows,
            "agreement_same_seed": round(sum(same) / len(same), 4) if same else None,
            "agreement_other_seed": round(sum(cross) / len(cross), 4) if cross else None,
            "agreement_counts": {"same_seed": [sum(same), len(same)],
                                 "other_seed": [sum(cross), len(cross)]}}
