"""The cores this process may use, and independent jobs run in worker processes (one thread
each) with a progress bar.

The workers die with the process that started them, however it ends (kill -9 included): on
Linux the kernel kills each one when its parent dies (``PR_SET_PDEATHSIG``), and everywhere a
watcher thread in each worker ends it once its parent is gone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_CHECK_SECONDS = 0.5


def die_with_parent(parent: int) -> None:
    """End this process as soon as ``parent`` (the process that started it) is gone: the
    kernel's parent-death signal on Linux, plus a daemon thread that checks the parent every
    ``PARENT_CHECK_SECONDS`` (other systems, or a parent gone before the signal was set)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watcher below still ends the worker
    if os.getppid() != parent:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGKILL)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="smolmix-parent-watch", daemon=True).start()


def quiet_libraries() -> None:
    """No warnings and no library logging below errors in this process (``--quiet``); a
    library that adds its own warning filters later still shows nothing."""
    warnings.simplefilter("ignore")
    warnings.showwarning = _show_no_warning
    logging.disable(logging.WARNING)


def _show_no_warning(*args, **kwargs) -> None:
    pass


def _init_worker(threads: int, parent: int | None = None, quiet: bool = False) -> None:
    if parent is not None:
        die_with_parent(parent)
    if quiet:
        quiet_libraries()
    # torch and transformers are imported here, in the worker, so that core (and smolmix mix,
    # which uses available_cores) does not pay torch's import time.
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()


def run_cells(fn: Callable[[T], R], items: Sequence[T], jobs: int, threads: int = 1,
              label: str = "cells", quiet: bool = False) -> list[R]:
    """``[fn(item) for item in items]``, computed by ``jobs`` processes of ``threads`` threads.

    ``jobs == 1`` runs in this process. Results keep the order of ``items``. On Ctrl-C or an
    error the pending cells are cancelled and the workers stopped before the exception rises.
    """
    bar = tqdm(total=len(items), desc=label, unit="cell", disable=quiet, leave=False)
    try:
        if jobs <= 1:
            _init_worker(threads)
            results = []
            for item in items:
                results.append(fn(item))
                bar.update()
            return results
        return _run_pool(fn, items, jobs, threads, bar, quiet)
    finally:
        bar.close()


def _run_pool(fn: Callable[[T], R], items: Sequence[T], jobs: int, threads: int,
              bar: tqdm, quiet: bool) -> list[R]:
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                               initargs=(threads, os.getpid(), quiet))
    futures: dict[Future, int] = {}
    try:
        futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        results: list = [None] * len(items)
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                results[futures[fut]] = fut.result()
                bar.update()
        return results
    except BaseException:
        for fut in futures:
            fut.cancel()
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
