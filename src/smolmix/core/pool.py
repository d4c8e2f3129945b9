"""The cores this process may use, and independent jobs run in worker processes (one thread
each) with a progress bar."""

from __future__ import annotations

import multiprocessing
import os
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


def _init_worker(threads: int) -> None:
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
        return _run_pool(fn, items, jobs, threads, bar)
    finally:
        bar.close()


def _run_pool(fn: Callable[[T], R], items: Sequence[T], jobs: int, threads: int,
              bar: tqdm) -> list[R]:
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(threads,))
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
