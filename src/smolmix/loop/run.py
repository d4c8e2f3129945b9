"""``smolmix loop plan.yaml --out DIR``: train stage by stage, and between stages let the
plan's policy rebalance the mixture from each task's held-out scores and verdict.

Each stage is a segment (:mod:`smolmix.loop.segment`) under ``stages/<k>/`` (its mixture,
train run and eval run), followed by its verdicts, any probes, and the policy's decision for
the next stage (:func:`smolmix.loop.decisions.decide`). ``stages/<k>/stage.json`` is written
last, atomically: a stage with it is finished. ``--resume`` continues a killed loop from the
last finished stage, with the policy's saved state, so it ends with the same decisions and
scores as an uninterrupted loop. ``decisions.jsonl`` is rewritten from the finished stages.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from smolmix.core.errors import SmolmixError
from smolmix.core.output import check_output_dir, claim_partial, partial_path, write_whole
from smolmix.core.rundir import versions, write_manifest
from smolmix.diagnose.command import read_controls
from smolmix.diagnose.verdicts import LEARN_THRESHOLD, NEVER, Curve, judge
from smolmix.loop.decisions import DECISIONS_FILE, decide, write_decisions
from smolmix.loop.limits import cap_share
from smolmix.loop.plan import Plan, load_plan
from smolmix.loop.policies.base import TaskState, get_policy
from smolmix.loop.reference import reference_losses
from smolmix.loop.segment import Measured, Segment, run_segment, write_heldout_files
from smolmix.loop.sources import LoopData, read_loop_data

KIND = "loop"
STAGES_DIR = "stages"
STAGE_FILE = "stage.json"
PLAN_FILE = "plan.json"
RESULTS_FILE = "results.json"
REFERENCE_FILE = "reference.json"
ANNEAL_TOLERANCE = 0.0  # a proposal is kept unless its probe's mean accuracy is lower


def plan_inputs(plan: Plan, plan_path: Path) -> list[Path]:
    """The local files and folders a loop reads (``--out`` may be none of them)."""
    named = [plan_path, plan.path(plan.model), plan.path(plan.heldout),
             *(plan.path(x) for x in (plan.controls, plan.reference) if x is not None),
             *(s.location(plan.base_dir) for s in plan.sources)]
    return [p for p in named if p is not None and p.exists()]


def plan_fingerprint(plan: Plan) -> str:
    return hashlib.sha256(json.dumps(plan.model_dump(mode="json"), sort_keys=True)
                          .encode()).hexdigest()[:16]


def run_loop(plan_path: Path, out: Path, resume: bool = False, quiet: bool = False) -> dict:
    """Run the plan's stages into ``out`` (atomically: ``<out>.partial`` until the last stage
    is done); return the results. ``resume`` continues ``<out>.partial``."""
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    plan = load_plan(Path(plan_path))
    out = Path(out)
    inputs = plan_inputs(plan, Path(plan_path))
    check_output_dir(out, inputs=inputs)
    if resume and not (partial_path(out) / PLAN_FILE).is_file():
        raise SmolmixError(f"nothing to resume: no loop in {str(partial_path(out))!r}",
                           "--resume")
    data = read_loop_data(plan)
    policy = get_policy(plan.policy.name, plan.policy.options)
    controls = read_controls(plan.path(plan.controls)) if plan.controls else \
        {"isolation": {}, "min_share": {}}
    claim = claim_partial(out, inputs=inputs)
    try:
        root = claim.path
        if resume:
            _check_same_plan(root, plan)
        elif not claim.fresh:
            claim.clear()
        results = _run(plan, data, policy, controls, root, say)
        write_manifest(root, KIND, {"plan": str(plan_path), "resume": resume},
                       seed=plan.seed, extra={"summary": results["summary"]})
        claim.finish(out)
    except BaseException:
        if _finished_stages(claim.path):
            claim.release()  # finished stages stay in <out>.partial for --resume
        else:
            claim.discard()
        raise
    return results


def _check_same_plan(root: Path, plan: Plan) -> None:
    saved = json.loads((root / PLAN_FILE).read_text())
    if saved.get("fingerprint") != plan_fingerprint(plan):
        raise SmolmixError("the plan has changed since this loop started; a loop resumes only "
                           "with the plan it started with", "--resume")


def _finished_stages(root: Path) -> list[dict]:
    """The stage files of the finished stages, in order (stops at the first unfinished)."""
    done = []
    while (root / STAGES_DIR / str(len(done) + 1) / STAGE_FILE).is_file():
        done.append(json.loads((root / STAGES_DIR / str(len(done) + 1) / STAGE_FILE)
                               .read_text()))
    return done


def _write_json(path: Path, data: object) -> None:
    write_whole(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


class _Loop:
    """What the stages share: the plan, the data, and how a segment is run."""

    def __init__(self, plan: Plan, data: LoopData, root: Path,
                 heldout_files: Mapping[str, Path], threshold: float) -> None:
        self.plan, self.data, self.root = plan, data, root
        self.heldout_files = heldout_files
        self.steps = plan.steps_per_stage
        self.per_step = plan.examples_per_step
        self.total_steps = sum(self.steps)
        self.threshold = threshold

    def segment(self, folder: Path, shares: Mapping[str, float], steps: int, seed: int,
                continue_from: Path | None, tasks: Sequence[str], examples: int | None = None,
                **tags: str) -> Measured:
        seg = Segment(folder, dict(shares), examples or steps * self.per_step, steps, seed,
                      continue_from, tuple(tasks), tuple(sorted(tags.items())))
        return run_segment(self.plan, seg, self.total_steps, self.heldout_files)

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))


def _run(plan: Plan, data: LoopData, policy, controls: dict, root: Path,
         say: Callable[[str], None]) -> dict:
    started = time.perf_counter()
    _write_json(root / PLAN_FILE, {"fingerprint": plan_fingerprint(plan),
                                   "plan": plan.model_dump(mode="json")})
    # a policy's own threshold for "learned" (verdict's option), else smolmix's
    loop = _Loop(plan, data, root, write_heldout_files(data.heldout, root / "heldout"),
                 getattr(policy, "threshold", LEARN_THRESHOLD))
    done = _finished_stages(root)
    for extra in sorted((root / STAGES_DIR).glob("*")) if (root / STAGES_DIR).is_dir() else []:
        if not extra.name.isdigit() or int(extra.name) > len(done):
            shutil.rmtree(extra)  # an unfinished stage is done again from its start
    if done:
        say(f"resuming after stage {len(done)} of {plan.stages.count}")
    reference = _reference(plan, data, root) if plan.policy.name == "excess-loss" else None
    for k in range(len(done) + 1, plan.stages.count + 1):
        previous = done[-1] if done else None
        record = _stage(loop, policy, controls, reference, k, previous, say)
        _write_json(root / STAGES_DIR / str(k) / STAGE_FILE, record)
        done.append(record)
        write_decisions(root / DECISIONS_FILE, [row for stage in done for row in stage["rows"]])
    results = summarize(plan, data, done, reference, loop.threshold)
    results["summary"]["wall_seconds"] = round(time.perf_counter() - started, 1)
    _write_json(root / RESULTS_FILE, results)
    return results


def _reference(plan: Plan, data: LoopData, root: Path) -> dict:
    """The reference model's held-out loss per task, measured once (kept for a resume)."""
    path = root / REFERENCE_FILE
    if path.is_file():
        return json.loads(path.read_text())
    start = time.perf_counter()
    losses = reference_losses(plan.path(plan.reference), data.heldout)
    saved = {"losses": losses, "seconds": round(time.perf_counter() - start, 2)}
    _write_json(path, saved)
    return saved


def _stage(loop: _Loop, policy, controls: dict, reference: dict | None, k: int,
           previous: dict | None, say: Callable[[str], None]) -> dict:
    plan, data, root = loop.plan, loop.data, loop.root
    folder = root / STAGES_DIR / str(k)
    shares = previous["next_shares"] if previous else dict(data.start)
    state = copy.deepcopy(previous["policy_state"]) if previous else {}
    isolation = dict(previous["isolation"]) if previous else dict(controls["isolation"])
    history = {t: [*previous["history"][t]] for t in data.tasks} if previous else \
        {t: [] for t in data.tasks}
    used = dict(previous["used"]) if previous else {t: 0 for t in data.tasks}
    budget = plan.stages.budgets[k - 1]
    steps = loop.steps[k - 1]
    start_from = root / previous["measured"]["checkpoint"] if previous else None
    say(f"stage {k}/{plan.stages.count}: {steps} steps, {budget:,} examples")
    measured = loop.segment(folder, shares, steps, plan.seed * 1000 + k, start_from,
                            data.tasks, budget, loop="stage", stage=str(k))
    for t in data.tasks:
        history[t].append(measured.accuracy[t])
        used[t] += round(shares[t] * budget)
    ends = [*(previous["ends"] if previous else []), measured.end_step]
    probes: list[dict] = []
    last = k == plan.stages.count
    threshold = loop.threshold
    verdicts = {t: _verdict(t, ends, history[t], isolation, shares, controls, threshold)
                for t in data.tasks}
    if plan.probe.isolation_steps and not last:
        for t in data.tasks:
            if verdicts[t].verdict == NEVER and t not in isolation:
                # a probe is thrown away: it may cycle over a small task's examples
                examples = min(plan.probe.isolation_steps * loop.per_step,
                               int(plan.policy.max_epochs * data.available[t]))
                m = loop.segment(folder / "probes" / f"isolation-{data.tasks.index(t)}",
                                 {u: float(u == t) for u in data.tasks},
                                 plan.probe.isolation_steps, plan.seed * 1000 + k,
                                 measured.checkpoint, (t,), examples, loop="isolation-probe",
                                 stage=str(k), task=t)
                isolation[t] = m.accuracy[t]
                probes.append({"kind": "isolation", "task": t, "accuracy": m.accuracy[t],
                               "steps": plan.probe.isolation_steps, "seconds": m.seconds})
                verdicts[t] = _verdict(t, ends, history[t], isolation, shares, controls,
                                       threshold)
    rows, next_shares = [], None
    if not last:
        tasks = [TaskState(t, shares[t], data.start[t], tuple(history[t]), verdicts[t].verdict,
                           controls["min_share"].get(t), measured.train_loss.get(t),
                           measured.heldout_loss.get(t),
                           reference["losses"].get(t) if reference else None,
                           measured.end_step)
                 for t in data.tasks]
        next_budget = plan.stages.budgets[k]
        caps = {t: cap_share(data.available[t], used[t], plan.policy.max_epochs, next_budget)
                for t in data.tasks}
        rows = decide(policy, tasks, k, state, caps, plan.policy.max_change)
        next_shares = {r["task"]: r["new_share"] for r in rows}
        if plan.probe.anneal_steps and any(abs(next_shares[t] - shares[t]) > 1e-9
                                           for t in data.tasks):
            kept, probe = _anneal(loop, folder, k, shares, next_shares, measured.checkpoint)
            probes.append(probe)
            if not kept:
                next_shares = dict(shares)
                for r in rows:
                    kept = shares[r["task"]]
                    r["new_share"] = kept
                    r["text"] += f"; annealing probe: {probe['words']}: kept {kept:.2%}"
    for r in rows:
        say("  " + r["text"])
    return {"stage": k, "budget": budget, "steps": steps, "shares": shares,
            "measured": {**measured.to_dict(), "checkpoint": loop.relative(measured.checkpoint)},
            "ends": ends,
            "history": history, "used": used, "isolation": isolation,
            "verdicts": {t: v.to_dict() for t, v in verdicts.items()},
            "rows": rows, "next_shares": next_shares, "policy_state": state, "probes": probes}


def _verdict(task: str, ends: list[int], history: list[float], isolation: Mapping,
             shares: Mapping[str, float], controls: dict, threshold: float):
    """The task's verdict from its scores after each stage (a policy's own threshold for
    "learned", else smolmix's)."""
    return judge(task, Curve(list(ends), list(history)), isolation.get(task), shares[task],
                 controls["min_share"].get(task), threshold)


def _anneal(loop: _Loop, folder: Path, k: int, current: Mapping[str, float],
            proposed: Mapping[str, float], checkpoint: Path) -> tuple[bool, dict]:
    """SmolLM2's screening: a few steps with the proposed shares against as many with the
    current ones, from the same checkpoint; keep the proposal unless its mean falls."""
    plan, tasks = loop.plan, loop.data.tasks
    steps = plan.probe.anneal_steps
    means, seconds = {}, {"mix": 0.0, "train": 0.0, "eval": 0.0}
    for name, shares in (("proposed", proposed), ("current", current)):
        m = loop.segment(folder / "probes" / f"anneal-{name}", shares, steps,
                         plan.seed * 1000 + k, checkpoint, tasks, loop="anneal-probe",
                         stage=str(k), candidate=name)
        means[name] = sum(m.accuracy.values()) / len(tasks)
        seconds = {k: round(v + m.seconds[k], 2) for k, v in seconds.items()}
    kept = means["proposed"] >= means["current"] - ANNEAL_TOLERANCE
    words = (f"{steps} steps with the proposed shares reach mean accuracy "
             f"{means['proposed']:.3f}, with the current ones {means['current']:.3f}")
    return kept, {"kind": "anneal", "steps": 2 * steps, "means": means, "kept": kept,
                  "words": words, "seconds": seconds}


def compute(stages: Sequence[dict], reference: dict | None) -> dict:
    """Seconds and optimizer steps: the stages' training, and everything else the loop did
    (evaluations, mixing, probes, the reference model's losses) as overhead over training."""
    train = sum(s["measured"]["seconds"]["train"] for s in stages)
    other = sum(s["measured"]["seconds"]["mix"] + s["measured"]["seconds"]["eval"]
                for s in stages)
    probe_seconds = sum(sum(probe["seconds"].values()) for s in stages for probe in s["probes"])
    ref = reference["seconds"] if reference else 0.0
    steps = sum(s["steps"] for s in stages)
    probe_steps = sum(p["steps"] for s in stages for p in s["probes"])
    return {"train_seconds": round(train, 1), "eval_and_mix_seconds": round(other, 1),
            "probe_seconds": round(probe_seconds, 1), "reference_seconds": round(ref, 1),
            "overhead": round((other + probe_seconds + ref) / train, 3) if train else None,
            "train_steps": steps, "probe_steps": probe_steps}


def summarize(plan: Plan, data: LoopData, stages: Sequence[dict], reference: dict | None,
              threshold: float = LEARN_THRESHOLD) -> dict:
    """``results.json``: per stage the shares, scores and verdicts; the final scores; the
    tasks learned; the compute."""
    final = stages[-1]
    accuracy = final["measured"]["accuracy"]
    learned = [t for t in data.tasks if accuracy[t] >= threshold]
    return {
        "smolmix": {"kind": KIND, "version": versions()["smolmix"]},
        "plan": plan.model_dump(mode="json"),
        "tasks": [{"name": t, "examples": data.available[t], "natural": data.natural[t],
                   "start": data.start[t]} for t in data.tasks],
        "stages": [{"stage": s["stage"], "steps": s["steps"], "budget": s["budget"],
                    "end_step": s["measured"]["end_step"], "shares": s["shares"],
                    "accuracy": s["measured"]["accuracy"],
                    "heldout_loss": s["measured"]["heldout_loss"],
                    "verdicts": {t: v["verdict"] for t, v in s["verdicts"].items()},
                    "next_shares": s["next_shares"], "probes": s["probes"],
                    "decisions": [r["text"] for r in s["rows"]]}
                   for s in stages],
        "summary": {"policy": plan.policy.name, "final_accuracy": accuracy,
                    "learn_threshold": threshold,
                    "tasks_learned": learned, "learned_count": len(learned),
                    "final_verdicts": {t: v["verdict"] for t, v in final["verdicts"].items()},
                    "compute": compute(stages, reference)},
    }
