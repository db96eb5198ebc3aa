"""The parse worker pool: started by its first job, replaced when a worker dies.

Starting a forkserver pool costs two fresh interpreters (the forkserver and the resource
tracker) before the first worker; a cycle of 304s parses nothing and should not pay for
them. A worker killed mid-parse (out of memory, a crash in a C extension) breaks a
``ProcessPoolExecutor`` for good: every later job would fail, so the pool is replaced and
only the jobs in flight at that moment fail (their feeds are retried next cycle).

Workers stay small: their job lives in ``monitor.parsejob``, which imports only parsing,
and they do not run the parent's main script (see :func:`_start_forkserver`), so no
worker imports the daemon, SQLAlchemy or the CLI.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import forkserver, spawn
from typing import ParamSpec, TypeVar

from monitor.parsejob import MAIN_ENV

log = logging.getLogger("monitor.workers")

P = ParamSpec("P")
T = TypeVar("T")

# What the forkserver imports: the job's module, which keeps workers off the main script.
PRELOAD = ["monitor.parsejob"]


def parse_pool(workers: int | None = None) -> Executor | None:
    """Parsing is CPU work: on 2+ cores a process pool keeps it off the event loop."""
    workers = workers or os.cpu_count() or 1
    if workers < 2:
        return None
    return LazyPool(lambda: _forkserver_pool(workers))


def _forkserver_pool(workers: int) -> ProcessPoolExecutor:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    _start_forkserver()
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def _start_forkserver() -> None:
    """Start the forkserver (if not running) telling it the parent's main script.

    A new worker runs the parent's main script again unless the forkserver already has
    it as ``__main__`` (Python 3.11 never passes the forkserver the script to preload).
    For the ``monitor`` console script that imports the whole CLI: ~40 MB a worker, for
    nothing, as the jobs live in ``monitor.parsejob``.  ``monitor.parsejob``, imported
    by the forkserver, records the script as loaded instead (see ``_skip_parent_main``).
    """
    main_path = spawn.get_preparation_data("forkserver").get("init_main_from_path")
    if main_path is None:  # main given as a module (python -m): workers skip it already
        forkserver.ensure_running()
        return
    os.environ[MAIN_ENV] = main_path
    try:
        forkserver.ensure_running()
    finally:
        os.environ.pop(MAIN_ENV, None)


class LazyPool(Executor):
    """An executor made by ``factory`` on the first ``submit``, remade after it breaks."""

    def __init__(self, factory: Callable[[], Executor]) -> None:
        self._factory = factory
        self._pool: Executor | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._pool is not None

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._pool is None:
                self._pool = self._factory()
            try:
                return self._pool.submit(fn, *args, **kwargs)
            except BrokenProcessPool:
                log.warning("parse_pool_replaced reason=a worker died; jobs in flight failed")
                broken, self._pool = self._pool, self._factory()
                broken.shutdown(wait=False, cancel_futures=True)
                return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=cancel_futures)
