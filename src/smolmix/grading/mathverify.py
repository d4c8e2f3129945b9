"""math-verify, bounded in time from any thread.

math-verify bounds its own calls with ``signal.alarm``, which only works in the main thread
(and cannot stop a computation stuck in C, such as a huge integer power). Here each call runs
in a worker process (:mod:`smolmix.grading.mathverify_worker`) that is killed when the call
overruns its timeout, and restarted for the next one. Workers start on first use, are shared
by all threads, and are stopped at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from smolmix.core.errors import SmolmixError

EQUAL, DIFFERENT, TIMEOUT, ERROR = "equal", "different", "timeout", "error"
WORKER = Path(__file__).with_name("mathverify_worker.py")
START_TIMEOUT = 120.0
PER_WORKER = 32


class _Worker:
    """One worker process, and a thread that turns its replies into a queue."""

    def __init__(self) -> None:
        # run as a script, so that starting it imports nothing of smolmix
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, encoding="utf-8", bufsize=1)
        self.replies: queue.Queue[str | None] = queue.Queue()
        self.ready = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.replies.put(line)
        self.replies.put(None)

    def _wait_ready(self) -> None:
        try:
            line = self.replies.get(timeout=START_TIMEOUT)
        except queue.Empty:
            line = None
        reply = json.loads(line) if line else {"error": "the worker did not start"}
        if reply != "ready":
            self.kill()
            raise SmolmixError(f"math-verify is unavailable ({reply['error']}); "
                               "install it with: pip install math-verify", "math_verify")
        self.ready = True

    def ask(self, prediction: str, reference: str, timeout: float) -> str:
        if not self.ready:
            self._wait_ready()
        try:
            self.proc.stdin.write(json.dumps([prediction, reference]) + "\n")
            self.proc.stdin.flush()
            line = self.replies.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            return TIMEOUT
        except OSError:  # the process died (e.g. out of memory)
            self.kill()
            return ERROR
        if line is None:
            self.kill()
            return ERROR
        return json.loads(line)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        try:
            self.proc.stdin.close()
        except OSError:
            pass


class MathVerify:
    """A pool of ``workers`` math-verify processes; every call returns within ``timeout`` s
    (plus the one-off start of a worker) with :data:`EQUAL`, :data:`DIFFERENT`,
    :data:`TIMEOUT` or :data:`ERROR`."""

    def __init__(self, workers: int | None = None) -> None:
        self.size = workers or max(1, min(4, os.cpu_count() or 1))
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        for _ in range(self.size):
            self._idle.put(None)  # started on first use
        self._all: list[_Worker] = []
        self._lock = threading.Lock()

    def start(self, count: int | None = None) -> None:
        """Have ``count`` (default: all) workers running, without waiting for them to be
        ready: they start up meanwhile."""
        count = self.size if count is None else min(count, self.size)
        taken = []
        try:
            while len(taken) < self.size:
                taken.append(self._idle.get_nowait())
        except queue.Empty:
            pass
        running = sum(w is not None and w.alive for w in taken) + self.size - len(taken)
        for i, worker in enumerate(taken):
            if running >= count:
                break
            if worker is None or not worker.alive:
                taken[i] = _Worker()
                running += 1
                with self._lock:
                    self._all.append(taken[i])
        for worker in taken:
            self._idle.put(worker)

    def check(self, prediction: str, reference: str, timeout: float = 5.0) -> str:
        """Is ``prediction`` the same answer as ``reference``, according to math-verify?"""
        worker = self._idle.get()
        try:
            if worker is None or not worker.alive:
                worker = _Worker()
                with self._lock:
                    self._all.append(worker)
            result = worker.ask(prediction, reference, timeout)
        except BaseException:
            if worker is not None:
                worker.kill()
            self._idle.put(None)
            raise
        self._idle.put(worker if worker.alive else None)
        return result

    def check_many(self, pairs: Sequence[tuple[str, str]], timeout: float = 5.0) -> list[str]:
        """:meth:`check` for each ``(prediction, reference)``, on as many workers as there is
        work for (a worker takes ~0.5 s to start: one more per :data:`PER_WORKER` pairs)."""
        workers = min(self.size, len(pairs), 1 + len(pairs) // PER_WORKER)
        if workers <= 1:
            return [self.check(p, r, timeout) for p, r in pairs]
        self.start(workers)
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda pair: self.check(*pair, timeout), pairs))

    def close(self) -> None:
        """Stop every worker (a later call starts new ones)."""
        with self._lock:
            workers, self._all = self._all, []
        for worker in workers:
            worker.kill()


_default: MathVerify | None = None
_default_lock = threading.Lock()


def default_pool() -> MathVerify:
    """The process-wide pool, created on first use and closed at exit."""
    global _default
    with _default_lock:
        if _default is None:
            _default = MathVerify()
            atexit.register(_default.close)
        return _default
