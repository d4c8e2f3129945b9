"""Output safety (smolmix.core.output) with real processes and real filesystems: the lock on
``<out>.partial``, which folders a command may replace, unwritable destinations refused before
any work, failing runs that leave nothing, and two ``smolmix mix`` runs racing for one --out."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import listing

from smolmix.core.errors import SmolmixError
from smolmix.core.output import PID_FILE, atomic_output, partial_path
from smolmix.core.rundir import write_manifest

TASKS = ("copy", "reverse", "sort")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Three lab-task JSONL sources of 300 records each (a mix of them takes ~1 s)."""
    from smolmix.core.records import write_jsonl
    from smolmix.lab.tasks import TrainStream, get_task

    data = tmp_path_factory.mktemp("sources")
    for task in TASKS:
        stream = TrainStream(get_task(task), 0, set())
        write_jsonl((stream.draw() for _ in range(300)), data / f"{task}.jsonl")
    return data


def write_recipe(path: Path, sources: Path, seed: int = 0) -> Path:
    lines = "\n".join(f"  - {{name: {t}, path: {sources / t}.jsonl}}" for t in TASKS)
    path.write_text(f"seed: {seed}\nbudget: {{examples: 600}}\nsources:\n{lines}\n"
                    "strategy: [natural]\n")
    return path


def smolmix(*args, prefix=(), **kwargs) -> subprocess.CompletedProcess:
    """The real CLI in a fresh process."""
    return subprocess.run([*prefix, sys.executable, "-m", "smolmix.cli", *map(str, args)],
                          capture_output=True, text=True, env=kwargs.pop("env", ENV), **kwargs)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def run_folder(path: Path, kind: str, content: str = "old") -> Path:
    path.mkdir(parents=True)
    (path / "content.txt").write_text(content)
    write_manifest(path, kind, {}, seed=0)
    return path


# -- the lock ----------------------------------------------------------------------------------

HOLDER = """
import sys, time
from smolmix.core.output import atomic_output
with atomic_output(sys.argv[1]) as work:
    (work / "half-written.txt").write_text("x")
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_live_holder_is_named_and_a_dead_ones_partial_is_taken_over(tmp_path, sources):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE,
                              text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "holding"
        # a second claim, in this process and through a real `smolmix mix`, is refused
        with pytest.raises(SmolmixError, match=rf"another smolmix run \(pid {holder.pid}\)"):
            with atomic_output(out):
                pytest.fail("claimed a partial folder that a live run holds")
        recipe = write_recipe(tmp_path / "recipe.yaml", sources)
        line = one_error_line(smolmix("mix", recipe, "--out", out, "--quiet"))
        assert f"pid {holder.pid}" in line and str(out) in line, line
        assert (partial_path(out) / "half-written.txt").exists()  # the holder's work untouched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    assert (partial_path(out) / PID_FILE).read_text().strip() == str(holder.pid)
    with atomic_output(out) as work:  # the dead run's partial folder: taken over, emptied
        assert work == partial_path(out)
        assert sorted(p.name for p in work.iterdir()) == [PID_FILE]
        assert (work / PID_FILE).read_text().strip() == str(os.getpid())
        (work / "result.txt").write_text("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "recipe.yaml"]
    assert sorted(p.name for p in out.iterdir()) == ["result.txt"]


def test_a_partial_that_is_a_symlink_or_a_file_is_refused_not_followed(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    partial_path(tmp_path / "a").symlink_to(precious)
    partial_path(tmp_path / "b").write_text("a file")
    before = listing(tmp_path)
    for name in ("a", "b"):
        with pytest.raises(SmolmixError, match="exists and is not a folder"):
            with atomic_output(tmp_path / name):
                pytest.fail("claimed a partial that is not a folder")
    assert listing(tmp_path) == before


# -- what may be replaced ----------------------------------------------------------------------

@pytest.mark.parametrize("existing", ["train", "mixture", "plain folder", "file", "symlink"])
def test_only_a_folder_of_the_commands_own_kind_is_replaced(tmp_path, existing):
    out = tmp_path / "out"
    if existing in ("train", "mixture"):
        run_folder(out, existing)
    elif existing == "plain folder":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif existing == "file":
        out.write_text("mine")
    else:
        run_folder(tmp_path / "gap-elsewhere", "gap")
        out.symlink_to(tmp_path / "gap-elsewhere")
    before = listing(tmp_path)
    with pytest.raises(SmolmixError) as refused:
        with atomic_output(out, replace=True, kind="gap"):
            pytest.fail("started a run that may not replace its output")
    assert (f"is a {existing} folder; only a gap folder" if existing in ("train", "mixture")
            else "exists and is not a smolmix run") in str(refused.value)
    assert listing(tmp_path) == before


def test_a_folder_of_its_own_kind_is_replaced_and_nothing_else_touched(tmp_path):
    out = run_folder(tmp_path / "out", "gap")
    (tmp_path / "out.old").mkdir()  # a user's folder that happens to be named like a backup
    (tmp_path / "out.old" / "keep.txt").write_text("mine")
    with pytest.raises(SmolmixError, match="already exists"):
        with atomic_output(out, kind="gap"):  # replace=False: never
            pytest.fail("replaced without leave")
    with atomic_output(out, replace=True, kind="gap") as work:
        (work / "content.txt").write_text("new")
        write_manifest(work, "gap", {}, seed=1)
    assert (out / "content.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.old"]
    assert (tmp_path / "out.old" / "keep.txt").read_text() == "mine"


def test_an_input_is_never_the_output(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.jsonl").write_text("{}\n")
    (tmp_path / "model").mkdir()
    inputs = [run_folder(tmp_path / "ev-a", "gap"), tmp_path / "data" / "x.jsonl",
              tmp_path / "model"]
    before = listing(tmp_path)
    for out, what in ((tmp_path / "ev-a", "is an input"),  # even one of the right kind
                      (tmp_path / "data" / "x.jsonl", "is an input"),
                      (tmp_path / "data", "holds an input"),
                      (tmp_path, "holds an input")):
        with pytest.raises(SmolmixError, match=what):
            with atomic_output(out, replace=True, kind="gap", inputs=inputs):
                pytest.fail("wrote over an input")
    assert listing(tmp_path) == before
    # a new folder inside an input folder leaves the input's own files alone: allowed
    with atomic_output(tmp_path / "ev-a" / "gap", replace=True, kind="gap", inputs=inputs):
        pass
    after = listing(tmp_path)
    assert (tmp_path / "ev-a" / "gap").is_dir()
    assert all(after[path] == state for path, state in before.items() if path != "ev-a")


CLAIMER = """
import os, random, sys, time
from pathlib import Path
from smolmix.core.errors import SmolmixError
from smolmix.core.output import atomic_output
from smolmix.core.rundir import write_manifest
out, rng = Path(sys.argv[1]), random.Random(os.getpid())
for i in range(30):
    try:
        with atomic_output(out, replace=True, kind="gap") as work:
            for k in range(10):
                (work / f"part{k}").write_text(f"{os.getpid()}-{i}")
            if rng.random() < 0.5:
                raise RuntimeError("a failing run")
            write_manifest(work, "gap", {"tag": f"{os.getpid()}-{i}"}, seed=0)
    except RuntimeError:
        pass
    except SmolmixError as exc:
        if "another smolmix run (pid " not in str(exc) or "unknown" in str(exc):
            sys.exit(f"unexpected refusal: {exc}")
    time.sleep(rng.random() * 0.005)
"""


def test_many_runs_replacing_one_out_leave_one_whole_output(tmp_path):
    """Six processes, each replacing (or failing to write) a/b/out 30 times: every refusal names
    a live holder, nothing is left over, and the output is whole (its parts match its manifest).
    """
    out = tmp_path / "a" / "b" / "out"
    runs = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(out)], env=ENV,
                             stderr=subprocess.PIPE, text=True) for _ in range(6)]
    for run in runs:
        assert run.wait(timeout=120) == 0, run.stderr.read()
        run.stderr.close()
    if out.exists():
        tag = json.loads((out / "manifest.json").read_text())["arguments"]["tag"]
        assert all((out / f"part{k}").read_text() == tag for k in range(10))
        assert sorted(p.name for p in out.parent.iterdir()) == ["out"]
    else:
        assert not (tmp_path / "a").exists()


# -- unwritable destinations, through the CLI ------------------------------------------------

def _refused_before_any_work(result: subprocess.CompletedProcess, says: str) -> None:
    # without --quiet, `mix` prints a progress line once it starts loading sources: the one
    # stderr line being the error shows the refusal came first
    line = one_error_line(result)
    assert says in line, line
    assert result.stdout == ""


@pytest.mark.parametrize("case", ["under a file", "name too long", "folder name too long",
                                  "the recipe", "holding the sources"])
def test_unwritable_destinations_are_one_line_before_any_work(tmp_path, sources, case):
    recipe = write_recipe(tmp_path / "recipe.yaml", sources)
    (tmp_path / "plain.txt").write_text("a file")
    out, says = {
        "under a file": (tmp_path / "plain.txt" / "sub" / "mix", "is a file, not a folder"),
        "name too long": (tmp_path / ("x" * 256), "output name too long (256 bytes"),
        "folder name too long": (tmp_path / ("y" * 300) / "mix", "folder name too long"),
        "the recipe": (recipe, "is an input of this command"),
        "holding the sources": (sources, "holds an input of this command"),
    }[case]
    before = listing(tmp_path)
    _refused_before_any_work(smolmix("mix", recipe, "--out", out), says)
    assert listing(tmp_path) == before


def test_a_read_only_filesystem_is_one_line_before_any_work(tmp_path, sources):
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to mount a read-only tmpfs")
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro tmpfs "
                            f"{tmp_path}"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs in a namespace here: "
                    f"{probe.stderr.strip()}")
    recipe = write_recipe(tmp_path / "recipe.yaml", sources)
    ro = tmp_path / "ro"
    ro.mkdir()
    cli = f"{sys.executable} -m smolmix.cli mix {recipe} --out {ro}/sub/mix"
    result = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro tmpfs {ro} "
                             f"&& {{ {cli}; rc=$?; ls -A {ro}; exit $rc; }}"],
                            capture_output=True, text=True, env=ENV)
    _refused_before_any_work(result, "(read-only filesystem)")
    assert os.listdir(ro) == []


def _unprivileged(folder: Path, recipe: Path) -> dict:
    """Make ``folder`` unwritable to a process started with the returned arguments of
    :func:`smolmix`."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return {}
    folder.chmod(0o755)  # root's: user 65534 may not write in it
    nobody = {"user": 65534, "group": 65534, "extra_groups": []}
    try:
        probe = subprocess.run([sys.executable, "-c", f"open({str(recipe)!r}).read()"],
                               capture_output=True, **nobody)
        if probe.returncode == 0:
            return nobody
    except PermissionError:  # this Python lives where user 65534 cannot reach it
        pass
    if shutil.which("setpriv") is None:
        pytest.skip("user 65534 cannot run this Python (or read the test files), and setpriv "
                    "is missing to drop root's file-permission override instead")
    # root without the capabilities that override file permissions, in a folder it does not own
    os.chown(folder, 65534, 65534)
    caps = "-dac_override,-dac_read_search"
    return {"prefix": ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]}


def test_no_permission_is_one_line_before_any_work(tmp_path, sources):
    recipe = write_recipe(tmp_path / "recipe.yaml", sources)
    locked = tmp_path / "locked"
    locked.mkdir()
    unprivileged = _unprivileged(locked, recipe)
    try:
        before = listing(tmp_path)
        _refused_before_any_work(smolmix("mix", recipe, "--out", locked / "sub" / "mix",
                                         **unprivileged), "(permission denied)")
        assert listing(tmp_path) == before
    finally:
        locked.chmod(0o755)


# -- failing runs leave nothing ----------------------------------------------------------------

@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failing_run_leaves_nothing(tmp_path, error):
    before = listing(tmp_path)
    with pytest.raises(error):
        with atomic_output(tmp_path / "a" / "b" / "out") as work:
            assert work.parent.is_dir()
            (work / "half.txt").write_text("x")
            raise error()
    assert listing(tmp_path) == before  # no partial folder, no parent folders made for it

    out = run_folder(tmp_path / "gap", "gap")
    before = listing(tmp_path)
    with pytest.raises(error):
        with atomic_output(out, replace=True, kind="gap") as work:
            (work / "content.txt").write_text("new")
            raise error()
    assert listing(tmp_path) == before  # the existing output as it was


def test_an_output_that_appears_meanwhile_is_not_replaced(tmp_path):
    out = tmp_path / "made" / "out"
    with pytest.raises(SmolmixError, match="already exists"):
        with atomic_output(out) as work:
            (work / "content.txt").write_text("ours")
            out.mkdir()  # someone else's, made while we worked
            (out / "theirs.txt").write_text("theirs")
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["theirs.txt"]


# -- the concurrency test ----------------------------------------------------------------------

# `smolmix mix` in a fresh process, its imports done, started when the file `go` appears: the
# two runs of a round begin their work at the same moment
RACER = """
import sys, time
from pathlib import Path
import smolmix.mix.command
from smolmix.cli import main
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.001)
sys.exit(main(sys.argv[3:]))
"""


def _rows(mixture: Path) -> list[dict]:
    from datasets import load_from_disk

    return load_from_disk(str(mixture)).to_list()


def test_two_runs_on_one_out_one_succeeds_the_other_is_refused(tmp_path, sources):
    from smolmix.mix.command import build_mixture

    seeds = (0, 1, 2, 3)
    recipes = {s: write_recipe(tmp_path / f"seed{s}.yaml", sources, seed=s) for s in seeds}
    reference = {}
    for s in seeds:
        build_mixture(recipes[s], tmp_path / "reference" / f"seed{s}", quiet=True)
        reference[s] = _rows(tmp_path / "reference" / f"seed{s}")
    assert all(reference[a] != reference[b] for a in seeds for b in seeds if a < b)

    rounds, by_lock, by_exists = 20, 0, 0
    start = time.perf_counter()
    for i in range(rounds):
        folder = tmp_path / f"round{i}"
        folder.mkdir()
        out, pair = folder / "mixture", (seeds[i % 4], seeds[(i + 1) % 4])
        racers = [subprocess.Popen(
            [sys.executable, "-c", RACER, folder / f"ready{k}", folder / "go", "mix",
             recipes[seed], "--out", out, "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
            for k, seed in enumerate(pair)]
        while not all((folder / f"ready{k}").exists() for k in range(2)):
            assert all(r.poll() is None for r in racers), [r.communicate() for r in racers]
            time.sleep(0.005)
        (folder / "go").touch()
        results = [r.communicate(timeout=120) + (r.returncode,) for r in racers]
        codes = sorted(code for _, _, code in results)
        assert codes == [0, 2], (i, results)
        won = next(k for k, (_, _, code) in enumerate(results) if code == 0)
        winner, loser = racers[won], results[1 - won]
        lines = loser[1].strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (i, loser[1])
        if f"another smolmix run (pid {winner.pid}) is writing" in lines[0]:
            by_lock += 1
        else:
            assert "already exists" in lines[0], (i, lines[0])
            by_exists += 1
        assert sorted(p.name for p in folder.iterdir()) == ["go", "mixture", "ready0", "ready1"]
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["seed"] == pair[won], (i, manifest["seed"], pair, won)
        assert _rows(out) == reference[pair[won]], f"round {i}: rows differ from the manifest"
    took = time.perf_counter() - start
    print(f"\nconcurrency: {rounds} rounds, {rounds} successes, refused by the lock {by_lock}, "
          f"by 'already exists' {by_exists}, 0 mismatches; {took:.1f} s "
          f"({took / rounds:.2f} s a round)")
