"""``smolmix diagnose RUN``: why each task was or was not learned, for a ``smolmix train`` run.

:func:`measure` is the one orchestration of the measures (interference, retention, neurons)
on a model and its data; :func:`diagnose` reads a run folder (its config, mixture, held-out
data, curves, checkpoints and any ``controls.json``), calls it and gives each task a verdict.
The lab calls :func:`measure` on its cells with its own settings.

Held-out data: ``--data`` (JSONL records or a mixture folder), else the run's own (its
``eval`` setting). Shares come from the run's mixture. The isolation control and the
min-share curve come from ``--isolation`` / ``--min-share`` (JSON ``{task: value}``, each
value in [0, 1]) or from the run's ``controls.json`` (``{"isolation": {...}, "min_share":
{...}}``, which the lab writes into its cells). Every file is checked before a model loads.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from smolmix.core.errors import SmolmixError
from smolmix.core.inputs import read_json_object
from smolmix.core.output import atomic_output, check_output_dir
from smolmix.core.records import Record, by_task
from smolmix.core.rundir import checkpoint_step, list_checkpoints, read_manifest, write_manifest
from smolmix.diagnose.interference import (
    Interference,
    InterferenceCurve,
    interference,
    interference_over_checkpoints,
    task_gradients,
)
from smolmix.diagnose.live import OPTIMIZER_FILE, measure_checkpoint, summarize_rows
from smolmix.diagnose.neurons import Neurons, neuron_allocation
from smolmix.diagnose.retention import retention
from smolmix.diagnose.verdicts import curves_from_rows, judge
from smolmix.evaluate.metrics import bucket_of
from smolmix.mix.shares import mixture_shares
from smolmix.models.loading import check_model_path, load_checkpoint
from smolmix.models.prompting import PLAIN, read_prompt_format
from smolmix.train.command import held_out
from smolmix.train.config import CONFIG_FILE, TrainConfig, load_train_config
from smolmix.train.curves import CURVES_FILE, is_finite_number, read_curves
from smolmix.train.data import load_mixture, padded_batches, read_records
from smolmix.train.encoding import encode_records

DIAGNOSIS_FILE = "diagnosis.json"
CONTROLS_FILE = "controls.json"
MEASURES = ("interference", "retention", "neurons", "over_training")


@dataclass(frozen=True)
class DiagnoseSettings:
    """How the measures are taken.

    ``batch_size``/``max_batches``: the held-out batches each task is measured on.
    Retention: ``retention_steps`` Adam steps of ``step_batch_size`` examples on the task alone,
    then as many on the training mixture, at ``retention_lr`` (default: the run's learning
    rate × ``retention_lr_factor``; at the full rate a fresh Adam's first steps can wreck a
    trained tiny model, and the probe measures damage rather than retention); a gain under
    ``min_gain`` nats leaves retention undefined. ``probe_steps``: the mixture steps of the
    retention probe taken at each checkpoint (``over_training``).
    """

    batch_size: int = 32
    max_batches: int | None = 4
    step_batch_size: int | None = None
    retention_steps: int = 20
    retention_lr: float | None = None
    retention_lr_factor: float = 0.1
    min_gain: float = 0.01
    probe_steps: int = 16
    measures: tuple[str, ...] = MEASURES

    def __post_init__(self) -> None:
        for name, flag in (("batch_size", "--batch-size"), ("max_batches", "--max-batches"),
                           ("retention_steps", "--retention-steps"),
                           ("probe_steps", "--probe-steps")):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise SmolmixError(f"must be positive, got {value}", flag)
        unknown = set(self.measures) - set(MEASURES)
        if unknown:
            raise SmolmixError(f"unknown measure {sorted(unknown)[0]!r}; known: "
                               f"{', '.join(MEASURES)}", "measures")


@dataclass
class Measured:
    """What :func:`measure` found."""

    tasks: list[str]
    shares: dict[str, float]
    interference: Interference | None = None
    interference_over_checkpoints: InterferenceCurve | None = None
    retention: dict[str, dict] = field(default_factory=dict)
    neurons: Neurons | None = None


def batches(tokenizer: PreTrainedTokenizerBase, records: Sequence[Record], size: int,
            limit: int | None = None, prompt_format: str = PLAIN, turns: str = "all"
            ) -> list[dict]:
    """Records as consecutive padded batches of ``size`` (the first ``limit`` of them),
    encoded as the run trained on them (``prompt_format``, assistant ``turns``)."""
    out = padded_batches(encode_records(tokenizer, records, turns, prompt_format), size,
                         tokenizer.pad_token_id)
    return out[:limit] if limit else out


def measure(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
            held: Mapping[str, Sequence[Record]], mixture: Sequence[Record],
            shares: Mapping[str, float], learning_rate: float, settings: DiagnoseSettings,
            tasks: Sequence[str] | None = None, task_data: Mapping[str, Sequence[Record]] = {},
            checkpoints: Sequence[Path] = (), say: Callable[[str], None] = lambda msg: None,
            prompt_format: str = PLAIN, turns: str = "all") -> Measured:
    """The measures of ``settings.measures`` for ``tasks`` (default: every held-out task).

    Interference and neurons are measured on every task of ``held`` (neurons are attributed
    among all of them); retention on ``tasks`` only, training on ``task_data[task]`` (default:
    the task's records in ``mixture``) then on the start of ``mixture``. Examples are
    encoded in the run's ``prompt_format`` with the loss on its assistant ``turns``.
    """
    chosen = list(tasks) if tasks is not None else sorted(held)
    step_size = settings.step_batch_size or settings.batch_size

    def batches_of(records: Sequence[Record], size: int, limit: int | None = None):
        return batches(tokenizer, records, size, limit, prompt_format, turns)

    held_batches = {t: batches_of(held[t], settings.batch_size, settings.max_batches)
                    for t in held}
    weights = {t: shares.get(t, 0.0) for t in held}
    found = Measured(chosen, {t: weights[t] for t in chosen})
    if "interference" in settings.measures:
        say(f"interference on {len(held)} tasks")
        found.interference = interference(task_gradients(model, held_batches), weights)
        if len(checkpoints) > 1:
            say(f"interference over {len(checkpoints)} checkpoints")
            found.interference_over_checkpoints = interference_over_checkpoints(
                checkpoints, held_batches, weights, quiet=True)
    if "retention" in settings.measures:
        say("retention")
        k = settings.retention_steps
        rate = settings.retention_lr or learning_rate * settings.retention_lr_factor
        mixture_batches = batches_of(list(mixture[:k * step_size]), step_size)
        for task in chosen:
            own = list(task_data.get(task) or [r for r in mixture if r.task == task])[
                :k * step_size]
            if not own:
                found.retention[task] = {"retention": None,
                                         "reason": "no training examples of the task"}
                continue
            res = retention(model, batches_of(own, step_size), mixture_batches, k, k,
                            rate, "adam", held_out=held_batches[task],
                            min_gain=settings.min_gain)
            found.retention[task] = {"retention": res.retention, "gain": res.gain,
                                     "reason": res.reason}
    if "neurons" in settings.measures:
        say("neurons")
        found.neurons = neuron_allocation(model, held_batches, objective="logit")
    return found


@dataclass(frozen=True)
class TrainRun:
    """What diagnose reads from a ``smolmix train`` run folder."""

    folder: Path
    config: TrainConfig
    model: Path
    checkpoints: list[Path]
    curves: list[dict]
    controls: dict

    @classmethod
    def read(cls, folder: Path) -> TrainRun:
        folder = Path(folder)
        try:
            read_manifest(folder, kinds=("train",))
        except SmolmixError:
            raise SmolmixError("not a smolmix train run (no manifest.json from smolmix train)",
                               str(folder)) from None
        config = load_train_config(folder / CONFIG_FILE)
        checkpoints = list_checkpoints(folder, with_weights=True)
        model = folder / "model"
        if not (model / "config.json").is_file():
            if not checkpoints:
                raise SmolmixError("the run has no checkpoints (no model/ or checkpoints/)",
                                   str(folder))
            model = checkpoints[-1]
        for path in dict.fromkeys([model, *checkpoints]):  # all it loads, before any work
            check_model_path(path, str(folder))
        controls = read_controls(folder / CONTROLS_FILE) \
            if (folder / CONTROLS_FILE).exists() else {}
        return cls(folder, config, model, checkpoints, read_curves(folder / CURVES_FILE),
                   controls)


def task_values(data, what: str, where: str) -> dict[str, float]:
    """``{task: value}`` with every value a number in [0, 1] (or null, left out)."""
    if not isinstance(data, dict):
        raise SmolmixError(f"{what} must be a JSON object {{task: value}}", where)
    values = {}
    for task, value in data.items():
        if value is None:
            continue
        if not is_finite_number(value) or not 0 <= value <= 1:
            raise SmolmixError(f"{what} of {task!r} must be a number between 0 and 1, "
                               f"got {json.dumps(value)[:40]}", where)
        values[task] = float(value)
    return values


def read_task_values(path: Path, what: str, flag: str) -> dict[str, float]:
    """A ``--isolation`` / ``--min-share`` file: a JSON object {task: value in [0, 1]}."""
    return task_values(read_json_object(Path(path), f"{flag} file"), what, str(path))


def read_controls(path: Path) -> dict[str, dict[str, float]]:
    """A run's ``controls.json``: ``{"isolation": {task: acc}, "min_share": {task: share}}``."""
    data = read_json_object(path, CONTROLS_FILE)
    return {key: task_values(data.get(key) or {}, f"{CONTROLS_FILE} {key!r}", str(path))
            for key in ("isolation", "min_share")}


def diagnose(run: Path, tasks: Sequence[str] | None = None, data: Path | None = None,
             isolation: Path | None = None, min_share: Path | None = None,
             settings: DiagnoseSettings = DiagnoseSettings(), out: Path | None = None,
             quiet: bool = False) -> dict:
    """Interference (final model and over the run's checkpoints), retention and neurons per
    task, and a verdict for each; written to ``out/diagnosis.json`` when ``out`` is given."""
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    start = time.perf_counter()
    iso = read_task_values(isolation, "isolation accuracy", "--isolation") \
        if isolation is not None else None
    mins = read_task_values(min_share, "min share", "--min-share") \
        if min_share is not None else None
    if data is not None and not Path(data).exists():
        raise SmolmixError(f"data {str(data)!r} does not exist", "--data")
    r = TrainRun.read(run)
    inputs = [Path(p) for p in (run, data, isolation, min_share, r.config.mixture)
              if p is not None]
    if out is not None:
        check_output_dir(Path(out), inputs=inputs)
    iso = r.controls.get("isolation", {}) if iso is None else iso
    mins = r.controls.get("min_share", {}) if mins is None else mins
    records, held = held_out(r.config, load_mixture(r.config.mixture))
    if data is not None:
        held = by_task(read_records(data, "--data"))
    shares = mixture_shares(read_manifest(Path(r.config.mixture)).data)
    chosen = list(tasks) if tasks else sorted(held)
    for task in chosen:
        if task not in held:
            raise SmolmixError(f"unknown task {task!r}; the run's tasks: "
                               f"{', '.join(sorted(held))}", "--tasks")
        if len(held[task]) < settings.batch_size:
            raise SmolmixError(f"task {task!r} has {len(held[task])} held-out examples, "
                               f"fewer than one batch ({settings.batch_size})", "--batch-size")
    if not held:
        raise SmolmixError("the run has no held-out data; give --data", str(run))
    prompt_format = read_prompt_format(r.model) or PLAIN
    model, tokenizer = load_checkpoint(r.model)
    found = measure(model, tokenizer, {t: held[t] for t in chosen}, records, shares,
                    r.config.learning_rate, settings, chosen, checkpoints=r.checkpoints,
                    say=say, prompt_format=prompt_format,
                    turns=r.config.assistant_turns)
    over = over_training(r, records, {t: held[t] for t in chosen}, shares, tokenizer, settings,
                         say, prompt_format) if "over_training" in settings.measures else None
    curves = curves_from_rows(r.curves)
    verdicts = []
    for task in chosen:
        if task not in curves:
            continue
        mech = {"interference_from_others": found.interference.others_normalised[task]}
        if found.retention[task].get("retention") is not None:
            mech["retention"] = found.retention[task]["retention"]
        verdicts.append(judge(task, curves[task], iso.get(task), shares.get(task),
                              mins.get(task), mechanism=mech).to_dict())
    curve = found.interference_over_checkpoints
    report = {"run": str(run), "tasks": chosen, "shares": found.shares,
              "interference": found.interference.to_dict(),
              "interference_over_checkpoints": curve.to_dict() if curve else None,
              "retention": found.retention, "neurons": found.neurons.counts(),
              "neuron_shares": found.neurons.shares(), "over_training": over,
              "verdicts": verdicts, "seconds": round(time.perf_counter() - start, 2)}
    if out is not None:
        with atomic_output(Path(out), inputs=inputs) as work:
            (work / DIAGNOSIS_FILE).write_text(json.dumps(report, indent=1) + "\n")
            write_manifest(work, "diagnose", {"run": str(run), "tasks": chosen,
                                              "max_batches": settings.max_batches}, seed=None)
    return report


def probed_tasks(shares: Mapping[str, float], tasks: Sequence[str]) -> list[str]:
    """The tasks whose retention the checkpoint probe measures: the rare ones (share under
    1%), else the least frequent task."""
    rare = [t for t in tasks if bucket_of(shares.get(t, 0.0)) == "rare"]
    return rare or [min(tasks, key=lambda t: shares.get(t, 0.0))]


def over_training(run: TrainRun, records: Sequence[Record], held: Mapping[str, Sequence[Record]],
                  shares: Mapping[str, float], tokenizer: PreTrainedTokenizerBase,
                  settings: DiagnoseSettings, say: Callable[[str], None],
                  prompt_format: str) -> dict | None:
    """The mechanism at each of the run's checkpoints that kept its optimizer state, as the
    lab's probe measures it during training (:func:`smolmix.diagnose.live.measure_checkpoint`),
    condensed per task (:func:`smolmix.diagnose.live.summarize_rows`); None without
    checkpoints. Groups: the tasks' frequency buckets (rare < 1% <= medium < 10% <= frequent).
    The retention probe: one step on a batch of each probed task (:func:`probed_tasks`), then
    ``probe_steps`` steps on the mixture without the probed tasks."""
    usable = [c for c in run.checkpoints if (c / OPTIMIZER_FILE).is_file()]
    if not usable:
        return None
    size = settings.step_batch_size or settings.batch_size
    turns = run.config.assistant_turns

    def batches_of(recs: Sequence[Record], limit: int | None = None) -> list[dict]:
        return batches(tokenizer, recs, size, limit, prompt_format, turns)

    held_batches = {t: batches(tokenizer, recs, settings.batch_size, settings.max_batches,
                               prompt_format, turns) for t, recs in held.items()}
    groups: dict[str, list[str]] = {}
    for task in held:
        groups.setdefault(bucket_of(shares.get(task, 0.0)), []).append(task)
    probed = probed_tasks(shares, list(held))
    own = {t: [r for r in records if r.task == t][:size] for t in probed}
    rest = [r for r in records if r.task not in probed][:settings.probe_steps * size]
    if not rest or not all(own.values()):
        return {"rows": [], "summary": None, "reason": "the mixture has no examples of a probed "
                "task or nothing besides the probed tasks"}
    task_batches = {t: batches_of(recs) for t, recs in own.items()}
    mixture_batches = batches_of(rest)
    rows = []
    for i, checkpoint in enumerate(usable, 1):
        say(f"over training {i}/{len(usable)}: {checkpoint.name}")
        model, _ = load_checkpoint(checkpoint)
        rows.append({"step": checkpoint_step(checkpoint), **measure_checkpoint(
            model, checkpoint, held_batches, shares, groups, task_batches, mixture_batches,
            run.config.max_grad_norm, settings.probe_steps)})
    total = max([row["step"] for row in run.curves] + [row["step"] for row in rows])
    return {"probed": probed, "groups": groups, "rows": rows,
            "summary": summarize_rows(rows, total)}


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


def over_training_table(report: dict) -> str:
    """The over-training measures per task, one line each (see :func:`over_training`)."""
    over = report["over_training"]
    steps = ", ".join(str(r["step"]) for r in over["rows"])
    lines = [f"over training (checkpoints {steps}; first half, lr-weighted):",
             f"{'task':<16} {'others dL':>10} {'others/own':>10} {'half-life':>9} "
             f"{'neurons':>8} {'heads':>6}"]

    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    for task, v in sorted(over["summary"]["tasks"].items()):
        censored = v.get("censored") or 0
        half = cell(v.get("half_life"), ".1f") + ("+" if censored >= 0.5 else "")
        lines.append(f"{task:<16} {cell(v.get('delta_others'), '+.2e'):>10} "
                     f"{cell(v.get('others_over_self'), '+.2f'):>10} {half:>9} "
                     f"{cell(v.get('neuron_share'), '.1%'):>8} "
                     f"{cell(v.get('head_share'), '.1%'):>6}")
    return "\n".join(lines)
