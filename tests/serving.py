"""Real servers for the generate tests: ``transformers serve`` (an OpenAI-compatible server) on
a local checkpoint, and the failing proxy in ``servers/flaky_proxy.py`` in front of it. Both
are real processes on loopback; nothing is mocked."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
PROXY = Path(__file__).parent / "servers" / "flaky_proxy.py"
START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = START_TIMEOUT_S) -> None:
    """Wait until ``GET url`` answers (the process must stay alive meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def serve(model: Path, port: int, *extra: str, threads: int = 1) -> subprocess.Popen:
    """``transformers serve MODEL`` on 127.0.0.1:port (CPU, ``threads`` torch threads), ready
    to answer."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen([str(BIN / "transformers"), "serve", str(model), "--host",
                             "127.0.0.1", "--port", str(port), "--device", "cpu", *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1/models", proc)
    except BaseException:
        stop(proc)
        raise
    return proc


def proxy(upstream_port: int, port: int, *options: str) -> subprocess.Popen:
    """The failing proxy (see its module doc) in front of 127.0.0.1:upstream_port."""
    proc = subprocess.Popen([sys.executable, str(PROXY), "--upstream",
                             f"http://127.0.0.1:{upstream_port}", "--port", str(port),
                             *options], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop a server started here (its whole process group), and wait for it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def smolmix(*argv: str, **popen) -> subprocess.Popen:
    """``smolmix argv`` as a child process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **popen.pop("env", {})}
    return subprocess.Popen([str(BIN / "smolmix"), *map(str, argv)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def read_entries(folder: Path) -> set[tuple]:
    """A finished generate output as a set of (problem, sample, text, kept) tuples."""
    entries = set()
    for line in (folder / "traces.jsonl").read_text().splitlines():
        r = json.loads(line)
        entries.add((r["tags"]["problem"], int(r["tags"]["sample"]), r["completion"], True))
    for line in (folder / "rejected.jsonl").read_text().splitlines():
        r = json.loads(line)
        entries.add((r["problem"], r["sample"], r["text"], False))
    return entries
