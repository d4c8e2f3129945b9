"""The cores this process may use, and independent jobs run in worker processes (one thread
each), or as tasks on a Ray cluster, with a progress bar.

The workers die with the process that started them, however it ends (kill -9 included): on
Linux the kernel kills each one when its parent dies (``PR_SET_PDEATHSIG``), and everywhere a
watcher thread in each worker ends it once its parent is gone. Ray ends its own workers.
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
from typing import Any, TypeVar

from tqdm import tqdm

from smolmix.core.errors import SmolmixError, lookup

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


RAY_MISSING = "--executor ray needs Ray: pip install 'smolmix[ray]'"


def run_cells(fn: Callable[[T], R], items: Sequence[T], jobs: int, threads: int = 1,
              label: str = "cells", quiet: bool = False, executor: str = "process") -> list[R]:
    """``[fn(item) for item in items]``, computed by ``jobs`` workers of ``threads`` threads.

    ``executor`` is ``"process"`` (worker processes on this machine; ``jobs == 1`` runs in
    this process) or ``"ray"`` (see ``run_on_ray``). Results keep the order of ``items``. On
    Ctrl-C or an error the pending cells are cancelled and the workers stopped before the
    exception rises.
    """
    check_executor(executor)
    bar = tqdm(total=len(items), desc=label, unit="cell", disable=quiet, leave=False)
    try:
        return EXECUTORS[executor](fn, items, jobs, threads, bar, quiet)
    finally:
        bar.close()


def check_executor(name: str) -> None:
    """A user error (``--executor``) unless ``name`` is an executor this install can run: the
    name is unknown, or it is ``ray`` and Ray is not installed. Call it before any output."""
    lookup(EXECUTORS, name, "executor", "--executor")
    if name == "ray":
        _import_ray()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SmolmixError(RAY_MISSING, "--executor") from None
    return ray


def _run_processes(fn: Callable[[T], R], items: Sequence[T], jobs: int, threads: int,
                   bar: tqdm, quiet: bool) -> list[R]:
    if jobs > 1:
        return _run_pool(fn, items, jobs, threads, bar, quiet)
    _init_worker(threads)
    results = []
    for item in items:
        results.append(fn(item))
        bar.update()
    return results


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


def start_ray(jobs: int, quiet: bool = False) -> None:
    """``ray.init``: the cluster at ``RAY_ADDRESS`` when that is set, else a new local instance
    of ``jobs`` CPUs; no dashboard, and with ``quiet`` no worker output on this terminal and
    only Ray's errors. This process's SIGTERM handler is kept (``ray.init`` sets one that
    exits at once, without the caller's Ctrl-C cleanup)."""
    ray = _import_ray()
    where = {} if os.environ.get("RAY_ADDRESS") else {"address": "local", "num_cpus": jobs}
    term = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(include_dashboard=False, log_to_driver=not quiet,
                 logging_level=logging.ERROR if quiet else logging.INFO, **where)
    finally:
        if term is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, term)


def run_on_ray(fn: Callable[[T], R], items: Sequence[T], jobs: int, threads: int, bar: tqdm,
               quiet: bool) -> list[R]:
    """Each item as a Ray task of ``threads`` CPUs (and torch threads), on the Ray this process
    is connected to, else one ``start_ray`` starts and shuts down afterwards (``jobs`` sizes
    only a local instance; a cluster runs as many cells at once as it has CPUs for).

    The cells write into the run folder, so on a cluster of several machines that folder must
    be on a filesystem every node sees at the same path (and smolmix installed on each); the
    tasks run in this process's working directory. A cell's exception rises as itself (its
    remote traceback chained).
    """
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        start_ray(jobs, quiet)
    try:
        return _gather_ray(ray, fn, items, threads, bar, quiet)
    finally:
        if started:
            ray.shutdown()


def _ray_cell(fn: Callable[[T], R], item: T, threads: int, quiet: bool, cwd: str) -> R:
    """``fn(item)`` in a Ray worker set up as a process worker, in the caller's working
    directory (relative paths mean the same as for the process executor)."""
    _init_worker(threads, quiet=quiet)  # Ray ends its workers with the driver
    try:
        os.chdir(cwd)
    except OSError:
        raise SmolmixError(f"a Ray node has no {cwd}: the cells need this working directory "
                           "on a filesystem shared at the same path", "--executor") from None
    return fn(item)


def _gather_ray(ray: Any, fn: Callable[[T], R], items: Sequence[T], threads: int, bar: tqdm,
                quiet: bool) -> list[R]:
    task = ray.remote(num_cpus=threads)(_ray_cell)
    refs: list = []
    try:
        refs = [task.remote(fn, item, threads, quiet, os.getcwd()) for item in items]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list = [None] * len(items)
        pending = refs
        while pending:
            done, pending = ray.wait(pending)
            for ref in done:
                results[index[ref]] = _ray_result(ray, ref)
                bar.update()
        return results
    except BaseException:
        _cancel_unfinished(ray, refs)
        raise


def _cancel_unfinished(ray: Any, refs: list) -> None:
    """Force-cancel the tasks of ``refs`` not finished yet. A finished one is left alone: Ray
    (2.60) may not have booked its completion yet, and cancelling it then aborts this process
    ("Tried to complete task that was not pending")."""
    if refs:
        _, unfinished = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        for ref in unfinished:
            ray.cancel(ref, force=True)


def _ray_result(ray: Any, ref: Any) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        raise exc.cause from exc


# How ``run_cells`` runs each executor, by --executor name.
EXECUTORS: dict[str, Callable[..., list]] = {"process": _run_processes, "ray": run_on_ray}
