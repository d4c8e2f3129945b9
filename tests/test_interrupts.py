"""The kill harness: every long command (mix with a JSONL export, train, eval, lab rare-tasks,
diagnose) run as the real ``smolmix`` CLI in its own process group and stopped by SIGINT (to
the whole group, as Ctrl-C does), SIGTERM or SIGKILL (to the main process only, as ``kill``
does) at seeded-random points; then:

- no crash: the exit status is 0 (finished first), 130 (interrupted cleanly) or the signal's
  own, never a segfault or an abort, and no "Fatal Python error";
- nothing that looks complete: ``--out`` does not exist, or it is complete and matches its
  manifest (the command had finished);
- no orphans: nothing is left in the command's process group (the lab's workers included)
  ``ORPHAN_GRACE`` after its main process ended;
- no lost interrupt: a SIGINT or SIGTERM that came before the work was done does not let
  the command finish with exit 0;
- the next run on the same ``--out`` takes over what the interrupted one left (a stale
  ``<out>.partial`` after SIGKILL), and a last run ends complete, printing nothing with
  ``--quiet`` however talkative the libraries are set to be; ``train --resume`` after
  interruptions ends byte-identical (curves, training log, weights) to an uninterrupted run.

Each command's interruptions (4 for mix and train, 3 for the slower eval, diagnose and lab)
run one after another on one ``--out``, so every run after the first starts on what the
previous one left. The points are drawn from ``SEED``, in windows an uninterrupted run
measures (fixed ones for the lab); each test prints its tally (``pytest -s`` shows it).
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from helpers import sigint_default

from smolmix.core.output import PID_FILE, partial_path
from smolmix.core.pool import PARENT_CHECK_SECONDS

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"),
                                 reason="reads processes from /proc")]

SEED = 11
PER_COMMAND = 4
# Seconds a killed command's workers get to die: the kernel kills them with their parent
# (without that, the lab's orphaned workers here took 2.5 s, and hung in the report).
ORPHAN_GRACE = 1.0
RUN_TIMEOUT = 180
# One torch thread a process, as the in-process tests have: on a shared 2-core machine two
# spinning OpenMP threads per run make a tiny train run several times slower.
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1"}
# Libraries at their most talkative: a --quiet run must still print nothing.
VERBOSE = {**ENVIRONMENT, "TRANSFORMERS_VERBOSITY": "info", "DATASETS_VERBOSITY": "info",
           "PYTHONWARNINGS": "always"}
CRASH_CODES = {-signal.SIGSEGV, 128 + signal.SIGSEGV, -signal.SIGABRT, 128 + signal.SIGABRT,
               -signal.SIGBUS, -signal.SIGFPE, -signal.SIGILL}


def _smolmix() -> list[str]:
    script = Path(sys.executable).with_name("smolmix")
    return [str(script)] if script.exists() else [sys.executable, "-m", "smolmix.cli"]


def _signals(rng: random.Random, count: int) -> list[signal.Signals]:
    """``count`` (at least 3) signals: SIGINT, SIGTERM (and SIGKILL, and random ones when
    there are more) in a seeded order, then SIGKILL, so that the last run takes over the
    stale ``<out>.partial`` a kill -9 leaves."""
    kinds = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
    body = kinds[:count - 1] + [rng.choice(kinds) for _ in range(count - 4)]
    rng.shuffle(body)
    return body + [signal.SIGKILL]


@dataclass
class Tally:
    command: str
    runs: list[dict] = field(default_factory=list)
    reference: float | None = None
    final: float = 0.0
    seconds: float = 0.0

    def add(self, **run) -> None:
        self.runs.append(run)

    def show(self) -> str:
        working = [r for r in self.runs if not r["finished_first"] and not r["output"]]
        return (f"{self.command}: {len(self.runs)} signals ({len(working)} interrupted its "
                f"work; " + ", ".join(f"{r['signal']}@{r['delay']:.2f}s->{r['code']}"
                                     + ("+out" if r["output"] else "") + r["note"]
                                     for r in self.runs)
                + f"), complete-looking outputs {sum(r['bad_output'] for r in self.runs)}, "
                f"orphans {sum(len(r['orphans']) for r in self.runs)}, "
                f"segfaults {sum(r['crash'] for r in self.runs)}, "
                f"slowest group exit {max(r['group_exit'] for r in self.runs):.2f}s; "
                + (f"uninterrupted run {self.reference:.1f}s, " if self.reference else "")
                + f"last run {self.final:.1f}s, {self.seconds:.0f}s in all")


def _group(pgid: int) -> list[str]:
    """The live (not zombie) processes in process group ``pgid``, as 'pid state cmdline'."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) != pgid or fields[0] == "Z":
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        found.append(f"{entry.name} {fields[0]} {cmd.strip()[:160]}")
    return found


def _wait_for_empty_group(pgid: int) -> tuple[float, list[str]]:
    """Seconds until the group is empty (at most ``ORPHAN_GRACE``), and what is left."""
    start = time.monotonic()
    while True:
        left = _group(pgid)
        if not left or time.monotonic() - start > ORPHAN_GRACE:
            return time.monotonic() - start, left
        time.sleep(0.05)


def _claimed(out: Path, pid: int) -> bool:
    """Whether process ``pid`` holds ``<out>.partial`` (its PID file names it)."""
    try:
        return (partial_path(out) / PID_FILE).read_text().strip() == str(pid)
    except OSError:
        return False


# Where a run's signal delay is counted from: a test on (its pid, the wall time it started).
Anchor = Callable[[int, float], bool]


def started(pid: int, since: float) -> bool:
    return True


def claimed(out: Path) -> Anchor:
    """Once the run holds ``<out>.partial``."""
    return lambda pid, since: _claimed(out, pid)


def working_in(out: Path, folder: str) -> Anchor:
    """Once the run holds ``<out>.partial`` and has written into ``folder`` there (a folder
    a previous, killed run left is older than this run)."""
    def reached(pid: int, since: float) -> bool:
        path = partial_path(out) / folder
        try:
            return _claimed(out, pid) and path.stat().st_mtime >= since
        except OSError:
            return False
    return reached


def saving_checkpoint(out: Path) -> Anchor:
    """Once the run is saving a checkpoint while a complete one exists: a checkpoint folder
    of this run without the mark ``smolmix train`` writes last, and one with it."""
    def reached(pid: int, since: float) -> bool:
        if not _claimed(out, pid):
            return False
        saving = complete = False
        for folder in (partial_path(out) / "checkpoints").glob("checkpoint-*"):
            try:
                done = (folder / "smolmix_train.json").exists()
                complete = complete or done
                saving = saving or (not done and folder.stat().st_mtime >= since)
            except OSError:
                continue
        return saving and complete
    return reached


def _run(argv: list[str], cwd: Path, sig: signal.Signals | None = None,
         delay: float = 0.0, anchor: Anchor = started, out: Path | None = None,
         env: dict | None = None) -> dict:
    """Run ``smolmix argv``; ``sig`` ``delay`` seconds after ``anchor`` is reached (SIGINT to
    its group, the others to its main process). Returns what happened, with the seconds from
    the anchor to the moment ``out`` appeared (when given and no signal is sent), or whether
    ``out`` existed when the signal was sent."""
    err_path = cwd / f"stderr-{time.monotonic_ns()}.txt"
    since = time.time() - 1.0  # filesystem timestamps may lag the clock a little
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(_smolmix() + argv, cwd=cwd, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True,
                                env=env or ENVIRONMENT, preexec_fn=sigint_default)
    began = time.monotonic()
    finished_first, done_before = True, False
    try:
        while proc.poll() is None and not anchor(proc.pid, since):
            time.sleep(0.005)
        reached = time.monotonic()
        output = None
        while sig is None and out is not None and output is None:
            if out.exists():
                output = time.monotonic() - reached
            elif proc.poll() is not None:
                break
            time.sleep(0.005)
        if sig is not None:
            while proc.poll() is None and time.monotonic() - reached < delay:
                time.sleep(0.005)
            if proc.poll() is None:
                finished_first = False
                done_before = out is not None and out.exists()
                if sig == signal.SIGINT:
                    os.killpg(proc.pid, sig)
                else:
                    os.kill(proc.pid, sig)
        code = proc.wait(timeout=RUN_TIMEOUT)
        ended = time.monotonic()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    group_exit, orphans = _wait_for_empty_group(proc.pid)
    if orphans:  # report them, then clean up so the next run is not disturbed
        for line in orphans:
            try:
                os.kill(int(line.split()[0]), signal.SIGKILL)
            except ProcessLookupError:
                pass
    stderr = err_path.read_text(errors="replace")
    err_path.unlink()
    crash = code in CRASH_CODES or "Fatal Python error" in stderr \
        or "Segmentation fault" in stderr
    return {"pid": proc.pid, "signal": sig.name if sig else "none", "delay": delay,
            "code": code,
            "anchor_to_end": ended - reached, "anchor_to_output": output,
            "start_to_output": None if output is None else output + reached - began,
            "seconds": ended - began,
            "finished_first": finished_first, "done_before": done_before,
            "orphans": orphans, "crash": crash,
            "group_exit": group_exit, "stderr": stderr}


def _check_run(run: dict, out: Path, check_complete) -> bool:
    """Assert the harness's rules for one run; return whether ``out`` exists (then it is
    complete: the command had finished)."""
    allowed = {0, 130} | ({-signal.Signals[run["signal"]]} if run["signal"] != "none" else set())
    assert not run["crash"], run["stderr"][-3000:]
    assert run["code"] in allowed, (run["code"], run["stderr"][-3000:])
    if run["code"] not in (0, 130) and "Traceback" in run["stderr"]:
        # Python's own exit on a SIGINT that escaped main() (during start-up): allowed, but
        # it must not be a smolmix bug hiding behind the signal.
        assert "KeyboardInterrupt" in run["stderr"], run["stderr"][-3000:]
    assert not run["orphans"], run["orphans"]
    if run["code"] == 0 and run["signal"] in ("SIGINT", "SIGTERM") and not run["finished_first"]:
        # only a signal that came after the work was done may leave it unanswered
        assert run["done_before"], f"{run['signal']} was lost: the command ran on to the end"
    run["bad_output"] = False
    if out.exists():
        try:
            check_complete(out)
        except AssertionError:
            run["bad_output"] = True
            raise
        return True
    assert run["code"] != 0, "exit 0 without the output"
    return False


Phase = tuple[Anchor, tuple[float, float]]


def _harness(command: str, argv: list[str], cwd: Path, out: Path, check_complete,
             phases: list[Phase] | None = None, anchor: Anchor | None = None,
             next_argv=None, kills: int = PER_COMMAND, note=None) -> Tally:
    """``kills`` interrupted runs of ``argv`` on ``out`` (``next_argv(out)`` gives the argv
    of each run, e.g. with ``--resume``), then one that must finish. ``note(out)`` says
    something about what each interrupted run left, for the tally.

    Kill ``i`` comes a seeded-random time in ``phases[i % len(phases)]``'s window after its
    anchor is reached. Without ``phases``, an uninterrupted run first measures the time from
    ``anchor`` (default: claiming ``<out>.partial``), and from its start, until ``out``
    appears; nine tenths of those are the windows of the even and the odd kills (the
    seconds a process takes to exit after its work is done are left out).
    """
    began = time.monotonic()
    rng = random.Random(f"{SEED}-{command}")
    tally = Tally(command)
    argv_of = next_argv or (lambda out: argv)
    if phases is None:
        anchor = anchor or claimed(out)
        reference = _run(argv_of(out), cwd, anchor=anchor, out=out)
        _check_run(reference, out, check_complete)
        assert reference["code"] == 0 and out.exists(), reference["stderr"][-3000:]
        shutil.rmtree(out)
        # (a little short of the output: run times vary by a few tenths of a second)
        phases = [(anchor, (0.0, 0.9 * reference["anchor_to_output"])),
                  (started, (0.0, 0.9 * reference["start_to_output"]))]
        tally.reference = reference["seconds"]
    for i, sig in enumerate(_signals(rng, kills)):
        when, window = phases[i % len(phases)]
        delay = round(rng.uniform(*window), 2)
        run = _run(argv_of(out), cwd, sig, delay, when, out)
        existed = run["output"] = _check_run(run, out, check_complete)
        run["note"] = note(out) if note else ""
        tally.add(**{k: v for k, v in run.items() if k != "stderr"})
        if existed:
            shutil.rmtree(out)  # it had finished: the next run starts from nothing again
        if sig != signal.SIGKILL and command != "train":
            # SIGINT / SIGTERM clean up what the run claimed (train keeps its checkpoints for
            # --resume); a stale folder it never reached may stay, for the next run
            assert not _claimed(out, run["pid"]), sorted(partial_path(out).iterdir())
    final = _run(argv_of(out), cwd, env=VERBOSE)
    assert final["code"] == 0, final["stderr"][-3000:]
    assert final["stderr"] == "", final["stderr"][-3000:]  # --quiet, libraries included
    assert not final["orphans"], final["orphans"]
    assert not partial_path(out).exists()
    check_complete(out)
    tally.final = final["seconds"]
    tally.seconds = time.monotonic() - began
    print("\n" + tally.show())
    return tally


def _manifest(out: Path, kind: str) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["smolmix"]["kind"] == kind
    return manifest


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---- mix --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_sources(tmp_path_factory):
    """Three lab-task sources of 25,000 examples each: the mixture (70,000 rows) takes a
    moment to write."""
    from smolmix.core.records import write_jsonl
    from smolmix.lab.tasks import TrainStream, get_task

    root = tmp_path_factory.mktemp("kill-mix")
    for task in ("copy", "reverse", "sort"):
        stream = TrainStream(get_task(task), 0, set())
        write_jsonl((stream.draw() for _ in range(25_000)), root / f"{task}.jsonl")
    sources = "\n".join(f"  - {{name: {t}, path: {t}.jsonl}}" for t in ("copy", "reverse", "sort"))
    (root / "recipe.yaml").write_text(f"seed: 0\nbudget: {{examples: 70000}}\nsources:\n"
                                      f"{sources}\nstrategy: [natural]\nhygiene: "
                                      "{dedup: none}\n")
    return root


def _mixture_complete(out: Path) -> None:
    import datasets

    manifest = _manifest(out, "mixture")
    mixture = datasets.load_from_disk(str(out))
    assert len(mixture) == sum(stage["examples"] for stage in manifest["stages"])
    assert _jsonl(out / "mixture.jsonl") == mixture.to_list()  # the export, row for row


def test_mix_with_a_jsonl_export(big_sources):
    _harness("mix", ["mix", "recipe.yaml", "--out", "out", "--export", "jsonl", "--quiet"],
             big_sources, big_sources / "out", _mixture_complete)


# ---- train ------------------------------------------------------------------------------

TRAIN_STEPS, EVAL_EVERY, SAVE_EVERY, LOG_EVERY = 24, 4, 5, 3


@pytest.fixture(scope="module")
def train_setup(tmp_path_factory, tiny_checkpoint, lab_mixture):
    """A train config whose checkpoints (every 5 steps) fall between evaluation (every 4)
    and logging (every 3) steps, and an uninterrupted run of it; returns its folder and the
    run's seconds from claiming its output to the end."""
    root = tmp_path_factory.mktemp("kill-train")
    (root / "train.yaml").write_text(yaml.safe_dump({
        "model": str(tiny_checkpoint), "mixture": str(lab_mixture), "steps": TRAIN_STEPS,
        "batch_size": 8, "learning_rate": 0.003, "order": "shuffle",
        "save_every": SAVE_EVERY, "logging_steps": LOG_EVERY,
        "eval": {"holdout_per_task": 16, "every": EVAL_EVERY}}))
    whole = _run(["train", "train.yaml", "--out", "whole"], root,
                 anchor=claimed(root / "whole"), out=root / "whole", env=VERBOSE)
    assert whole["code"] == 0, whole["stderr"][-3000:]
    # Without --quiet the libraries do talk here (what the last, quiet run of every command
    # in this harness must not print):
    assert "[transformers] " in whole["stderr"], whole["stderr"][-3000:]
    return root, whole["anchor_to_output"]


def _train_complete(out: Path) -> None:
    from safetensors.torch import load_file

    manifest = _manifest(out, "train")
    assert manifest["steps"] == TRAIN_STEPS
    curves = _jsonl(out / "curves.jsonl")
    keys = [(r["step"], r["task"]) for r in curves]
    steps = sorted({*range(0, TRAIN_STEPS, EVAL_EVERY), TRAIN_STEPS})
    tasks = sorted({t for _, t in keys})
    # exactly one row per evaluation step and task
    assert sorted(keys) == [(s, t) for s in steps for t in tasks] and len(tasks) == 3
    logged = [r["step"] for r in _jsonl(out / "train_log.jsonl")]
    assert logged == list(range(LOG_EVERY, TRAIN_STEPS + 1, LOG_EVERY))
    assert load_file(out / "model" / "model.safetensors")


def _resume_if_possible(out: Path, used: list) -> list[str]:
    argv = ["train", "train.yaml", "--out", out.name, "--quiet"]
    checkpoints = partial_path(out) / "checkpoints"
    done = checkpoints.is_dir() and any((c / "smolmix_train.json").is_file()
                                        for c in checkpoints.glob("checkpoint-*"))
    used.append(argv + ["--resume"] if done else argv)
    return used[-1]


def _unfinished_checkpoints(out: Path) -> str:
    found = [c.name.split("-")[1] for c in (partial_path(out) / "checkpoints").glob("checkpoint-*")
             if not (c / "smolmix_train.json").exists()]
    return f"(unfinished checkpoint {','.join(sorted(found))})" if found else ""


def test_train_resumed_after_interruptions_ends_identical(train_setup):
    """Every other signal comes while the Trainer saves a checkpoint after a complete one
    (the one it leaves half written must be skipped by --resume), the others anywhere in the
    run. Each next run resumes from the latest complete checkpoint, when there is one; the
    last one does."""
    root, seconds = train_setup
    out = root / "cut"
    used: list[list[str]] = []
    _harness("train", [], root, out, _train_complete,
             [(claimed(out), (0.0, seconds)), (saving_checkpoint(out), (0.0, 0.0))],
             next_argv=lambda out: _resume_if_possible(out, used),
             note=lambda out: ("(resumed)" if "--resume" in used[-1] else "")
             + _unfinished_checkpoints(out))
    assert used[-1][-1] == "--resume", used
    for name in ("curves.jsonl", "train_log.jsonl", "model/model.safetensors"):
        assert filecmp.cmp(root / "whole" / name, root / "cut" / name, shallow=False), name


# ---- eval and diagnose ------------------------------------------------------------------


def _eval_complete(out: Path) -> None:
    _manifest(out, "eval")
    scores = json.loads((out / "scores.json").read_text())
    samples = _jsonl(out / "samples.jsonl")
    assert len(samples) == scores["overall"]["n"] == sum(t["n"] for t in
                                                          scores["tasks"].values())


def test_eval(train_setup):
    root, _ = train_setup
    _harness("eval", ["eval", "whole/model", "--tasks", "lab:copy", "--out", "scores",
                      "--quiet"], root, root / "scores", _eval_complete, kills=3)


def _diagnosis_complete(out: Path) -> None:
    manifest = _manifest(out, "diagnose")
    report = json.loads((out / "diagnosis.json").read_text())
    assert [v["task"] for v in report["verdicts"]] == report["tasks"] == \
        manifest["arguments"]["tasks"]


def test_diagnose(train_setup):
    root, _ = train_setup
    _harness("diagnose", ["diagnose", "whole", "--batch-size", "10", "--max-batches", "1",
                          "--retention-steps", "2", "--out", "diagnosis", "--quiet"],
             root, root / "diagnosis", _diagnosis_complete, anchor=started, kills=3)


# ---- lab ----------------------------------------------------------------------------------


def _lab_complete(out: Path) -> None:
    from smolmix.lab.rare_tasks.study import customize, get_preset, plan_cells

    manifest = _manifest(out, "lab.rare-tasks")
    preset = customize(get_preset("smoke"), ["xxs"], None, 8, None)
    assert manifest["arguments"]["preset"]["steps"] == 8
    results = json.loads((out / "results.json").read_text())
    assert sorted(c["id"] for c in results["cells"]) == sorted(c.id for c in plan_cells(preset))
    assert (out / "report.html").stat().st_size > 0
    for cell in results["cells"]:
        assert (out / "cells" / cell["id"] / "model" / "model.safetensors").is_file()


def test_lab_rare_tasks_workers_die_with_it(tmp_path):
    """Three kills (a lab run takes long): two while the workers train cells, one while they
    start; no uninterrupted reference run (the windows are fixed)."""
    out = tmp_path / "lab"
    _harness("lab", ["lab", "rare-tasks", "--preset", "smoke", "--sizes", "xxs", "--steps", "8",
                     "--jobs", "2", "--out", "lab", "--quiet"],
             tmp_path, out, _lab_complete,
             [(working_in(out, "recipes"), (0.0, 5.0)), (claimed(out), (0.0, 3.0))], kills=3)


# ---- an error in the middle of a progress bar ----------------------------------------------


def test_an_error_during_training_stands_on_its_own_line(train_setup, tmp_path):
    """Training a model with a NaN weight fails at the first logged step, while the training
    progress bar is on screen: the bar is cleared and ``error: ...`` is the last line of
    stderr, alone on it (not glued to the bar's text)."""
    from safetensors.torch import load_file, save_file

    root, _ = train_setup
    config = yaml.safe_load((root / "train.yaml").read_text())
    broken = tmp_path / "model"
    shutil.copytree(config["model"], broken)
    weights = load_file(broken / "model.safetensors")
    name = next(k for k in sorted(weights) if "mlp" in k)
    weights[name][0, 0] = float("nan")
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    run = _run(["train", str(root / "train.yaml"), "--out", "run", "--model", str(broken),
                "--set", "logging_steps=1"], tmp_path)
    assert run["code"] == 2, run["stderr"][-3000:]
    err = run["stderr"]
    assert f"0/{TRAIN_STEPS} [" in err, err[-3000:]  # the training bar was showing
    lines = err.rstrip("\n").split("\n")
    assert lines[-1].startswith("error: training diverged"), lines[-3:]
    assert "\r" not in lines[-1] and "%|" not in lines[-1], lines[-1]
    assert not (tmp_path / "run").exists()


# ---- the workers' parent-death check -----------------------------------------------------

_FAMILY = """
import ctypes, os, subprocess, sys, time
if sys.argv[1] == "parent":
    child = subprocess.Popen([sys.executable, "-c", sys.argv[2], "child", sys.argv[3]])
    time.sleep(60)
else:
    from smolmix.core.pool import die_with_parent
    die_with_parent(os.getppid())
    if sys.argv[2] == "watcher-only":  # disarm the kernel's signal: the thread must do it
        ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)
    print(os.getpid(), flush=True)
    time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.parametrize("how", ["kernel", "watcher-only"])
def test_a_worker_dies_with_its_parent(tmp_path, how):
    """A process that called ``die_with_parent`` ends soon after its parent is killed -9:
    through the kernel's parent-death signal, or, with that disarmed, the watcher thread."""
    family = subprocess.Popen([sys.executable, "-c", _FAMILY, "parent", _FAMILY, how],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        child = int(family.stdout.readline())
        assert _alive(child)
        os.kill(family.pid, signal.SIGKILL)
        family.wait()
        start = time.monotonic()
        while _alive(child) and time.monotonic() - start < 3:
            time.sleep(0.01)
        gone = time.monotonic() - start
        assert not _alive(child), f"the child outlived its parent by {gone:.1f} s"
        limit = 0.5 if how == "kernel" else 2 * PARENT_CHECK_SECONDS + 0.5
        assert gone < limit, gone
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(family.pid, signal.SIGKILL)


# ---- --quiet in this process ----------------------------------------------------------------


def test_quiet_silences_libraries_and_restores_them(capfd):
    """``--quiet`` hides warnings (even a category a library set to "always") and library
    logging below errors while the command runs, then puts everything back (``main`` may run
    inside another program)."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    from smolmix.cli import _silence_progress_bars

    library = hf_logging.get_logger("transformers.smolmix_test")
    heard: list[str] = []  # what reaches a handler (stderr's may be bound to any stream)
    catcher = logging.Handler()
    catcher.emit = lambda record: heard.append(record.getMessage())
    library.addHandler(catcher)

    def talk(tag: str) -> None:
        warnings.warn(f"warning {tag}", UserWarning, stacklevel=1)
        library.warning(f"log {tag}")
        library.error(f"error {tag}")

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        bars = hf_logging.is_progress_bar_enabled()
        with _silence_progress_bars(True):
            warnings.filterwarnings("always", category=UserWarning)
            talk("quiet")
            assert not hf_logging.is_progress_bar_enabled()
        talk("loud")
        assert hf_logging.is_progress_bar_enabled() == bars
    library.removeHandler(catcher)
    assert [str(w.message) for w in shown] == ["warning loud"]
    assert heard == ["error quiet", "log loud", "error loud"]  # errors still show
    assert logging.root.manager.disable == logging.NOTSET
