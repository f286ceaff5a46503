"""Per-structure seeds and the worker pool that runs generation jobs in order.

Every job carries its own seed, derived from (corpus seed, set name, job index), so a label
never depends on which worker computed it or on how many workers there are. Workers are
started with ``spawn`` (safe next to torch/OpenMP in the parent) and pinned to one OpenMP
thread each: small xTB calls get slower, not faster, with more threads.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def job_rng(seed: int, set_name: str, index: int) -> np.random.Generator:
    """The random generator of job ``index`` of set ``set_name`` (independent of the worker)."""
    return np.random.default_rng([int(seed), zlib.crc32(set_name.encode()), int(index)])


def _init_worker() -> None:
    for var in _THREAD_VARS:
        os.environ[var] = "1"


class JobPool:
    """Runs ``fn(job)`` over a list of jobs and yields results in job order.

    A spawn pool of ``workers`` processes is kept for the life of the object (use it as a
    context manager). Even one worker is a separate process: the calling process may already
    run its numerical libraries with several threads, and a different summation order changes
    the last bits of an SCF energy, which an MD run or an NEB then amplifies. ``workers=0``
    runs the jobs in the calling process (no start-up cost; for tests and debugging): results
    are then reproducible only if this process also runs one OpenMP thread.
    """

    def __init__(self, workers: int = 2) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.workers = workers
        self._pool: Any = None

    def __enter__(self) -> JobPool:
        if self.workers == 0:
            return self
        # Set the thread caps in our own environment while the children start, so they hold
        # before any numerical library is loaded there.
        saved = {v: os.environ.get(v) for v in _THREAD_VARS}
        _init_worker()
        try:
            ctx = mp.get_context("spawn")
            self._pool = ctx.Pool(self.workers, initializer=_init_worker)
        finally:
            for var, value in saved.items():
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.terminate() if exc[0] is not None else self._pool.close()
            self._pool.join()
            self._pool = None

    def imap(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> Iterator[Any]:
        """Results of ``fn`` over ``jobs``, in order. With workers the jobs are queued at once
        (before the first result is asked for); in-process they run as results are consumed."""
        if self.workers == 0:
            return map(fn, jobs)
        if self._pool is None:
            raise RuntimeError("JobPool used outside its 'with' block")
        return self._pool.imap(fn, jobs, chunksize=1)

    def submit(self, fn: Callable[[Any], Any], job: Any) -> Callable[[], Any]:
        """Start ``fn(job)`` in the background now; call the returned function to wait for it."""
        if self.workers == 0:
            return lambda: fn(job)
        if self._pool is None:
            raise RuntimeError("JobPool used outside its 'with' block")
        return self._pool.apply_async(fn, (job,)).get
