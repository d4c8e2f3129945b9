"""``smolmix diagnose RUN``: why each task was or was not learned, for a training run.

RUN is a ``smolmix train`` run (``model/``, ``checkpoints/``, ``curves.jsonl``,
``train_config.yaml``) or a lab cell (``checkpoint/``, ``curves.jsonl``, ``recipe.yaml``,
inside a ``smolmix lab rare-tasks`` run). Held-out data: ``--data`` (JSONL records or a
mixture folder), else the run's own (its ``eval`` setting; the lab's held-out sets for a lab
cell). Shares come from the run's mixture. The isolation control and the min-share curve come
from ``--isolation`` / ``--min-share`` (JSON ``{task: value}``) or, for a lab cell, from the
lab's ``results.json``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from smolmix.errors import SmolmixError
from smolmix.train_config import CONFIG_FILE

DIAGNOSIS_FILE = "diagnosis.json"


def _read_json(path: Path, flag: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except OSError:
        raise SmolmixError(f"cannot read {str(path)!r}", flag) from None
    except ValueError as exc:
        raise SmolmixError(f"not JSON ({exc})", str(path)) from None
    if not isinstance(data, dict):
        raise SmolmixError("expected a JSON object {task: value}", str(path))
    return data


class _Run:
    """What diagnose needs from a run folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.config: dict = {}  # a train run's resolved config
        if (self.folder / "checkpoint").is_dir() and (self.folder / "recipe.yaml").is_file():
            self.kind, self.model = "lab", self.folder / "checkpoint"
            self.checkpoints = [self.model]
        elif (self.folder / CONFIG_FILE).is_file():
            self.kind, self.model = "train", self.folder / "model"
            self.config = yaml.safe_load((self.folder / CONFIG_FILE).read_text()) or {}
            self.checkpoints = sorted(
                (p for p in (self.folder / "checkpoints").glob("checkpoint-*")
                 if (p / "config.json").is_file()),
                key=lambda p: int(p.name.rsplit("-", 1)[1]))
        else:
            raise SmolmixError("not a smolmix train run or lab cell (no train_config.yaml or "
                               "recipe.yaml)", str(folder))
        if not (self.model / "config.json").is_file() and not self.checkpoints:
            raise SmolmixError("the run has no checkpoints (no model/ or checkpoints/)",
                               str(folder))
        if not (self.model / "config.json").is_file():
            self.model = self.checkpoints[-1]
        curves = self.folder / "curves.jsonl"
        self.curve_rows = ([json.loads(line) for line in curves.read_text().splitlines()
                            if line.strip()] if curves.is_file() else [])

    def shares_and_rows(self) -> tuple[dict[str, float], list[dict]]:
        """Each task's share of the training mixture, and the mixture's rows."""
        from smolmix.evaluate.metrics import mixture_shares
        from smolmix.train_run import load_mixture, rows_of

        if self.kind == "lab":
            from smolmix.mix.build import mixture_records

            records = mixture_records(self.folder / "recipe.yaml")
            rows = [{"task": r.task, "prompt": r.prompt, "messages": None,
                     "completion": r.completion, "answer": r.answer} for r in records]
        else:
            mixture = Path(self.config["mixture"])
            rows = rows_of(load_mixture(str(mixture), "mixture"))
            return mixture_shares(json.loads((mixture / "manifest.json").read_text())), rows
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["task"]] = counts.get(row["task"], 0) + 1
        return {t: n / len(rows) for t, n in counts.items()}, rows

    def held_out(self, mixture_rows: list[dict], data: Path | None) -> dict[str, list[dict]]:
        from smolmix.train_run import by_task, read_eval_rows, split_holdout

        if data is not None:
            return by_task(read_eval_rows(str(data), "--data"))
        if self.kind == "lab":
            from smolmix.lab.rare_tasks import EVAL_SEED
            from smolmix.lab.tasks import TASKS, get_task, make_eval_set

            tasks = sorted({r["task"] for r in self.curve_rows} & set(TASKS))
            count = max((r.get("count", 100) for r in self.curve_rows), default=100)
            return {t: [{"task": t, "prompt": r.prompt, "messages": None,
                         "completion": r.completion, "answer": r.answer}
                        for r in make_eval_set(get_task(t), count, EVAL_SEED)] for t in tasks}
        spec = self.config.get("eval") or {}
        if spec.get("data"):
            return by_task(read_eval_rows(spec["data"], "eval.data"))
        if spec.get("holdout_per_task"):
            return split_holdout(mixture_rows, int(spec["holdout_per_task"]))[1]
        raise SmolmixError("the run has no held-out data; give --data", str(self.folder))

    def controls(self, isolation: Path | None, min_share: Path | None
                 ) -> tuple[dict[str, float], dict[str, float]]:
        iso = {k: float(v) for k, v in _read_json(isolation, "--isolation").items()} \
            if isolation else {}
        mins = {k: float(v) for k, v in _read_json(min_share, "--min-share").items()
                if v is not None} if min_share else {}
        results = self.folder.parent.parent / "results.json"
        if self.kind == "lab" and results.is_file() and not (iso and mins):
            lab = json.loads(results.read_text())
            me = next((c for c in lab["cells"] if c["id"] == self.folder.name), None)
            if me is not None:
                for c in lab["cells"]:
                    if (c["kind"] == "isolation" and c["size"] == me["size"]
                            and c["seed"] == me["seed"]):
                        iso.setdefault(c["focus"], c["final"][c["focus"]]["exact_match"])
                share = lab["summary"]["min_share_to_learn"].get(me["size"])
                if share is not None:
                    mins.setdefault(lab["summary"]["boost_target"], share)
        return iso, mins


def _batches(tokenizer, rows: Sequence[dict], size: int, limit: int | None) -> list[dict]:
    from smolmix.evaluate.teacher_forced import padded_batches
    from smolmix.train_run import encode_rows

    out = padded_batches(encode_rows(tokenizer, rows), size, tokenizer.pad_token_id)
    return out[:limit] if limit else out


def diagnose(run: Path, tasks: Sequence[str] | None = None, max_batches: int | None = 4,
             batch_size: int = 32, data: Path | None = None, isolation: Path | None = None,
             min_share: Path | None = None, retention_steps: int = 20, lr: float | None = None,
             out: Path | None = None, quiet: bool = False) -> dict:
    """Interference (final model and over the run's checkpoints), retention and neurons per
    task, and a verdict for each; written to ``out/diagnosis.json`` when ``out`` is given."""
    from smolmix.diagnose import (
        interference,
        interference_over_checkpoints,
        neuron_allocation,
        retention,
        task_gradients,
    )
    from smolmix.diagnose.verdicts import curves_from_rows, judge
    from smolmix.models import load_checkpoint
    from smolmix.rundir import atomic_output, check_output_dir, write_manifest

    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    start = time.perf_counter()
    if out is not None:
        check_output_dir(Path(out), replace=False)
    if batch_size <= 0:
        raise SmolmixError(f"must be positive, got {batch_size}", "--batch-size")
    if max_batches is not None and max_batches <= 0:
        raise SmolmixError(f"must be positive, got {max_batches}", "--max-batches")
    r = _Run(run)
    shares, mixture_rows = r.shares_and_rows()
    held_rows = r.held_out(mixture_rows, data)
    chosen = list(tasks) if tasks else sorted(held_rows)
    for task in chosen:
        if task not in held_rows:
            raise SmolmixError(f"unknown task {task!r}; the run's tasks: "
                               f"{', '.join(sorted(held_rows))}", "--tasks")
        if len(held_rows[task]) < batch_size:
            raise SmolmixError(f"task {task!r} has {len(held_rows[task])} held-out examples, "
                               f"fewer than one batch ({batch_size})", "--batch-size")
    model, tokenizer = load_checkpoint(r.model)
    held = {t: _batches(tokenizer, held_rows[t], batch_size, max_batches) for t in chosen}
    weights = {t: shares.get(t, 0.0) for t in chosen}
    say(f"interference on {len(chosen)} tasks")
    final = interference(task_gradients(model, held), weights)
    curve = None
    if len(r.checkpoints) > 1:
        say(f"interference over {len(r.checkpoints)} checkpoints")
        curve = interference_over_checkpoints(r.checkpoints, held, weights, quiet=True)
    say("retention and neurons")
    from smolmix.lab.mechanism import MIN_GAIN, RETENTION_LR_FACTOR

    rate = lr or _learning_rate(r) * RETENTION_LR_FACTOR
    mixture_batches = _batches(tokenizer, mixture_rows[:retention_steps * batch_size],
                               batch_size, None)
    kept = {}
    for task in chosen:
        own = [row for row in mixture_rows if row["task"] == task][:retention_steps * batch_size]
        if not own:
            kept[task] = {"retention": None, "reason": "no training examples of the task"}
            continue
        res = retention(model, _batches(tokenizer, own, batch_size, None), mixture_batches,
                        retention_steps, retention_steps, rate, "adam", held_out=held[task],
                        min_gain=MIN_GAIN)
        kept[task] = {"retention": res.retention, "gain": res.gain, "reason": res.reason}
    neurons = neuron_allocation(model, held, objective="logit")
    iso, mins = r.controls(isolation, min_share)
    curves = curves_from_rows(r.curve_rows)
    verdicts = []
    for task in chosen:
        if task not in curves:
            continue
        mech = {"interference_from_others": final.others_normalised[task]}
        if kept[task].get("retention") is not None:
            mech["retention"] = kept[task]["retention"]
        verdicts.append(judge(task, curves[task], iso.get(task), shares.get(task),
                              mins.get(task), mechanism=mech).to_dict())
    report = {"run": str(run), "kind": r.kind, "tasks": chosen, "shares": weights,
              "interference": final.to_dict(),
              "interference_over_checkpoints": curve.to_dict() if curve else None,
              "retention": kept, "neurons": neurons.counts(), "verdicts": verdicts,
              "seconds": round(time.perf_counter() - start, 2)}
    if out is not None:
        with atomic_output(Path(out), replace=False) as work:
            (work / DIAGNOSIS_FILE).write_text(json.dumps(report, indent=1) + "\n")
            write_manifest(work, "diagnose", {"run": str(run), "tasks": chosen,
                                              "max_batches": max_batches}, seed=None)
    return report


def _learning_rate(run: _Run) -> float:
    if run.kind == "train":
        return float(run.config.get("learning_rate", 2e-5))
    from smolmix.lab.rare_tasks import get_preset

    return get_preset("quick").learning_rate


def verdict_table(report: dict) -> str:
    lines = [f"{'task':<16} {'share':>7} {'final':>6} {'others':>7} {'retain':>7}  verdict"]
    for v in report["verdicts"]:
        n = v["numbers"]
        share = f"{n['share']:.2%}" if n.get("share") is not None else "-"
        ret = n.get("retention")
        lines.append(f"{v['task']:<16} {share:>7} {n['final']:>6.2f} "
                     f"{n.get('interference_from_others', float('nan')):>+7.3f} "
                     f"{(f'{ret:+.2f}' if ret is not None else '-'):>7}  {v['verdict']}")
        if v["remedy"]:
            lines.append(f"{'':<16} remedy: {v['remedy']}")
    return "\n".join(lines)
