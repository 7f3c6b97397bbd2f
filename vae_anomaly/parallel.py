"""Work spread over the cores: the cores this process may use, one thread per worker, and the
one pool of spawned worker processes that the baselines, the suite and the study share."""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from .cli import exit_without_final_collections, log_to_stderr


def usable_cores() -> int:
    """The cores this process may run on: a taskset or a container's CPU set can allow fewer
    than the machine has, which ``os.cpu_count()`` reports."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One thread for torch and for the BLAS and OpenMP pools of NumPy and scikit-learn,
    restored after. Our networks and PyOD's are small and trained one small batch at a time,
    where a thread pool costs more in synchronisation than it gains (docs/performance.md);
    one thread per process also makes the numbers independent of how many run at once."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    limits = threadpool_limits(limits=1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        limits.restore_original_limits()


def _start_worker(level: int, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    """A worker: the command's log format, a quick exit, one thread for its whole life, then
    the pool's own ``initializer``."""
    log_to_stderr(level)
    exit_without_final_collections()  # the pool's shutdown waits for each worker's exit
    one_thread().__enter__()  # never left: the worker ends with the pool
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def worker_pool(
    jobs: int, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = (),
    level: int = logging.INFO,
) -> Iterator[ProcessPoolExecutor]:
    """``jobs`` worker processes, each started by ``initializer(*initargs)`` (to hand it the data
    once), logging at ``level``. Spawned, not forked: a forked child inherits torch's thread
    pools half-initialised, and CUDA not at all. On the way out, work not yet started is
    cancelled (after an error or Ctrl-C nothing new starts) and the running work finishes."""
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(level, initializer, initargs))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
